//! Scale-out: two shards of one docker scenario at once on this engine (host ports
//! from rebound), and `rebound swarm run` / `stop` on a single-node swarm the test
//! makes and leaves again.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::crash_safety::docker;
use crate::docker_runs::{history_lines, remove_run, require_images};
use crate::helpers::*;

const SIGKILL_SCENARIO: &str = "scenarios/docker-app-sigkill.toml";

fn ports(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("ports.json")).expect("ports.json"))
        .expect("ports json")
}

#[test]
fn two_shards_of_docker_app_sigkill_run_at_once_on_one_engine_and_merge_into_one_verdict() {
    require_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let start = |shard: &str, out: &Path| {
        rebound()
            .args(["run", SIGKILL_SCENARIO, "--trials", "2", "--shard", shard])
            .arg("--out")
            .arg(out)
            .args(["--no-progress"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rebound runs")
    };
    let (one, two) = (start("1/2", &a), start("2/2", &b));
    let (one, two) = (
        one.wait_with_output().expect("shard 1"),
        two.wait_with_output().expect("shard 2"),
    );
    for (o, d) in [(&one, &a), (&two, &b)] {
        if let Some(id) = history_lines(d)
            .first()
            .and_then(|h| h["run_id"].as_str().map(String::from))
        {
            remove_run(&id);
        }
        // One trial cannot decide an 80 % rate: inconclusive (2), not an error.
        assert_eq!(o.status.code(), Some(2), "{}", text(o));
        let (_, rows) = read_csv(&d.join("trials.csv"));
        assert_eq!(rows.len(), 1, "one trial per shard: {}", text(o));
    }
    // The two stacks published different host ports, each run's probes used its own.
    let (pa, pb) = (ports(&a), ports(&b));
    for var in [
        "REBOUND_PORT_HTTP",
        "REBOUND_PORT_APP",
        "REBOUND_PORT_DB",
        "REBOUND_PORT_REDIS",
    ] {
        assert!(pa[var].is_u64() && pb[var].is_u64(), "{var}: {pa} {pb}");
        assert_ne!(pa[var], pb[var], "{var} taken by both shards");
    }
    assert!(text(&one).contains(&format!("http {}", pa["REBOUND_PORT_HTTP"])));
    // One verdict over both.
    let merged = dir.path().join("merged");
    let o = run(&[
        "merge",
        a.to_str().expect("utf8"),
        b.to_str().expect("utf8"),
        "--out",
        merged.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let (_, rows) = read_csv(&merged.join("trials.csv"));
    assert_eq!(rows.len(), 2, "the sum of the shards' trials");
    let details = &summary(&merged)["details"];
    assert_eq!(details["trials"], 2, "{}", text(&o));
    assert_eq!(details["passed"], 2, "both kills recovered: {}", text(&o));
    // `check` reads the merged copy with its recorded ports: the same verdict.
    let o = run(&["check", merged.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Makes a single-node swarm if the engine is in none, and leaves it when dropped
/// (after removing what the test's swarm runs left); a swarm that was there stays.
struct SingleNodeSwarm {
    made: bool,
    /// `docker swarm init` also makes the `docker_gwbridge` network; `leave` keeps it.
    had_gwbridge: bool,
}

impl SingleNodeSwarm {
    fn ensure() -> Self {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let had_gwbridge =
            !docker(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"]).is_empty();
        if state == "active" {
            return SingleNodeSwarm {
                made: false,
                had_gwbridge,
            };
        }
        assert_eq!(state, "inactive", "the engine's swarm state");
        docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        SingleNodeSwarm {
            made: true,
            had_gwbridge,
        }
    }
}

impl Drop for SingleNodeSwarm {
    fn drop(&mut self) {
        let sh = |args: &[&str]| {
            let _ = Command::new("docker").args(args).output();
        };
        let ids = |args: &[&str]| -> Vec<String> {
            Command::new("docker")
                .args(args)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        for s in ids(&["service", "ls", "-q", "--filter", "label=rebound.swarm"]) {
            sh(&["service", "rm", &s]);
        }
        for c in ids(&["ps", "-aq", "--filter", "label=rebound.swarm"]) {
            sh(&["rm", "-f", &c]);
        }
        for c in ids(&["config", "ls", "-q", "--filter", "label=rebound.swarm"]) {
            sh(&["config", "rm", &c]);
        }
        if self.made {
            sh(&["swarm", "leave", "--force"]);
            // Its ingress sandbox may hold the bridge for a moment after `leave`.
            for _ in 0..20 {
                if self.had_gwbridge
                    || ids(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"])
                        .is_empty()
                {
                    break;
                }
                sh(&["network", "rm", "docker_gwbridge"]);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// A `swarm run` in the background: stopped with `swarm stop` (every shard heals)
/// and then killed if a failed assertion drops it still running.
struct BackgroundRun(std::process::Child);

impl Drop for BackgroundRun {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = rebound().args(["swarm", "stop"]).output();
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn rebound_image() {
    require_images();
    assert!(
        Command::new("docker")
            .args(["image", "inspect", "rebound/rebound:latest"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "docker/images/build.sh builds rebound/rebound"
    );
}

#[test]
fn swarm_run_merges_three_shards_into_one_run_and_swarm_stop_leaves_no_task_or_stack() {
    rebound_image();
    let _swarm = SingleNodeSwarm::ensure();
    let dir = tempfile::tempdir().expect("tempdir");
    // Containers of other runs (another test, another user) are not this test's to judge.
    let others: std::collections::BTreeSet<String> =
        docker(&["ps", "-aq", "--no-trunc", "--filter", "label=rebound.run"])
            .lines()
            .map(str::to_string)
            .collect();
    const NETWORKS: [&str; 6] = [
        "network",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        "label=rebound.run",
    ];
    let other_networks: std::collections::BTreeSet<String> =
        docker(&NETWORKS).lines().map(str::to_string).collect();
    let ours = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["ps", "-q", "--no-trunc", "--filter", "label=rebound.run"];
        args.extend_from_slice(extra);
        docker(&args)
            .lines()
            .filter(|c| !others.contains(*c))
            .map(str::to_string)
            .collect()
    };

    // Three shards of three trials, all at once.
    let out = dir.path().join("merged");
    let o = run(&[
        "swarm",
        "run",
        SIGKILL_SCENARIO,
        "--shards",
        "3",
        "--trials",
        "3",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "3 trials leave 80 % undecided: {}",
        text(&o)
    );
    let (_, rows) = read_csv(&out.join("trials.csv"));
    assert_eq!(rows.len(), 3, "every shard's trial: {}", text(&o));
    assert_eq!(summary(&out)["details"]["passed"], 3, "{}", text(&o));
    for i in 1..=3 {
        let shard = out.join(format!("shards/shard-{i}"));
        let (_, rows) = read_csv(&shard.join("trials.csv"));
        assert_eq!(rows.len(), 1, "shard {i}: {}", text(&o));
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("merged run of swarm run"), "{stdout}");
    screenshot_in_chromium(&out.join("report.html"), &dir.path().join("report.png"));
    // Nothing of it is left on the swarm.
    assert_eq!(
        docker(&["service", "ls", "-q", "--filter", "label=rebound.swarm"]),
        ""
    );
    assert_eq!(
        docker(&["config", "ls", "-q", "--filter", "label=rebound.swarm"]),
        ""
    );

    // A long run stopped mid-trial: every shard heals and tears its stack down.
    let mut long = BackgroundRun(
        rebound()
            .args([
                "swarm",
                "run",
                SIGKILL_SCENARIO,
                "--shards",
                "2",
                "--trials",
                "40",
            ])
            .arg("--out")
            .arg(dir.path().join("stopped"))
            .stdout(std::fs::File::create(dir.path().join("long.out")).expect("file"))
            .stderr(std::fs::File::create(dir.path().join("long.err")).expect("file"))
            .spawn()
            .expect("swarm run starts"),
    );
    let long_output = || {
        format!(
            "{}{}",
            std::fs::read_to_string(dir.path().join("long.out")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("long.err")).unwrap_or_default()
        )
    };
    // Wait until both shards' stacks are up and a trial is under way.
    let deadline = Instant::now() + Duration::from_secs(240);
    let id = loop {
        assert!(
            Instant::now() < deadline,
            "the shards never got going: {}",
            long_output()
        );
        std::thread::sleep(Duration::from_secs(2));
        let status = run(&["swarm", "status"]);
        let s = String::from_utf8_lossy(&status.stdout).to_string();
        let running = s.matches(" running ").count();
        let stack_containers = ours(&[]).len();
        if running == 2 && stack_containers >= 8 {
            if let Some(id) = s
                .lines()
                .find_map(|l| l.strip_prefix("swarm run "))
                .map(|i| i.trim().to_string())
            {
                break id;
            }
        }
    };
    std::thread::sleep(Duration::from_secs(5));
    let stop = run(&["swarm", "stop", &id]);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));
    let code = wait_exit(&mut long.0, Duration::from_secs(120));
    assert_eq!(
        code,
        Some(130),
        "the stopped run says so: {}",
        long_output()
    );
    assert_eq!(
        docker(&["service", "ls", "-q", "--filter", "label=rebound.swarm"]),
        "",
        "no task left"
    );
    assert_eq!(
        ours(&["-a"]),
        Vec::<String>::new(),
        "no stack left: {}",
        text(&stop)
    );
    assert_eq!(
        docker(&["ps", "-q", "--filter", "status=paused"]),
        "",
        "nothing paused"
    );
    let networks: Vec<String> = docker(&NETWORKS)
        .lines()
        .filter(|n| !other_networks.contains(*n))
        .map(str::to_string)
        .collect();
    assert_eq!(networks, Vec::<String>::new(), "no network of ours left");
}
