//! Shared helpers: run the binary, write scenarios, read run directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The rebound binary under test.
pub fn rebound() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rebound"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    // The index of unfinished runs, per test process: a test killed half-way must
    // not stop later runs of its scenario on this machine.
    c.env(
        "REBOUND_STATE_DIR",
        std::env::temp_dir().join(format!("rebound-e2e-state-{}", std::process::id())),
    );
    c
}

/// Removes everything labelled `label` (`key=value`) when dropped: a failed test
/// leaves no stack on the fixed ports the next tests use.
pub struct RemoveOnDrop(pub String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let docker = |args: &[&str]| {
            Command::new("docker")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let filter = format!("label={}", self.0);
        for id in docker(&["ps", "-aq", "--filter", &filter]).lines() {
            // A frozen container cannot be removed (the engine waits for it).
            docker(&["unpause", id]);
            docker(&["rm", "-f", "-v", id]);
        }
        for kind in ["network", "volume"] {
            for n in docker(&[kind, "ls", "-q", "--filter", &filter]).lines() {
                docker(&[kind, "rm", n]);
            }
        }
    }
}

/// Runs rebound with args, returning its output.
pub fn run(args: &[&str]) -> Output {
    rebound().args(args).output().expect("rebound runs")
}

/// `rebound run SCENARIO --out OUT EXTRA…`.
pub fn run_scenario(scenario: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        scenario.to_str().expect("utf8 path"),
        "--out",
        out.to_str().expect("utf8 path"),
    ];
    args.extend(extra);
    run(&args)
}

/// A port that was free a moment ago (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A demo-app process service table.
pub fn demo_service(port: u16, extra: &[&str], restart: &str, backoff: &str) -> String {
    let mut argv = vec![
        "${rebound}".to_string(),
        "demo-app".into(),
        "--port".into(),
        port.to_string(),
        "--data-dir".into(),
        "${run_dir}/data/app".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[stack]\nbackend = \"process\"\n\n[[stack.service]]\nname = \"app\"\ncommand = [{}]\nrestart = \"{restart}\"\nrestart-backoff = \"{backoff}\"\nrestart-max-backoff = \"{backoff}\"\nstop-grace = \"3s\"\n",
        argv.join(", ")
    )
}

/// Writes a scenario file into `dir` and returns its path.
pub fn write_scenario(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("scenario dir");
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Parsed trials.csv: header and rows.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).expect("trials.csv");
    let header = r
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("row").iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Column `name` of every row.
pub fn column(header: &[String], rows: &[Vec<String>], name: &str) -> Vec<String> {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    rows.iter().map(|r| r[i].clone()).collect()
}

/// summary.json as a JSON value.
pub fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary.json"))
        .expect("json")
}

/// Text of a command's stdout and stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// State letter of a process (R, S, T, Z…), None when it does not exist.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Waits for a child to exit, failing the test after `timeout`.
pub fn wait_exit(child: &mut std::process::Child, timeout: std::time::Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.code();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rebound did not exit within {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Opens `html` in headless Chromium and screenshots it to `png` (1100 px wide):
/// asserts the browser ran, logged no console message, and wrote a PNG.
pub fn screenshot_in_chromium(html: &Path, png: &Path) {
    let browser = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1100,2400",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium must be installed (.ci/run installs Debian's chromium package)");
    let log = String::from_utf8_lossy(&browser.stderr);
    assert!(browser.status.success(), "chromium failed: {log}");
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let shot = std::fs::read(png).expect("screenshot written");
    assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(
        u32::from_be_bytes(shot[16..20].try_into().expect("width")),
        1100
    );
}
