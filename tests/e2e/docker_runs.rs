//! Runs on the docker backend against the demo stack (images from docker/images/build.sh,
//! which .ci/run builds first). A missing image or engine fails these tests loudly.

use std::io::BufRead;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Builds the demo images if any is missing (docker/images/build.sh is idempotent;
/// the docker test group runs one test at a time, so builds never race).
pub(crate) fn require_images() {
    let images = [
        "rebound/postgres:latest",
        "rebound/redis:latest",
        "rebound/nginx:latest",
        "rebound/zookeeper:latest",
        "rebound/nats:latest",
        "rebound/demo-app:latest",
        "rebound/proxy:latest",
    ];
    let missing = |image: &&str| {
        !Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if images.iter().any(missing) {
        let status = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docker/images/build.sh"
        ))
        .status()
        .expect("run build.sh");
        assert!(status.success(), "docker/images/build.sh failed");
    }
    for image in &images {
        assert!(
            !missing(image),
            "image {image} is still missing after docker/images/build.sh"
        );
    }
}

pub(crate) fn history_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let Ok(f) = std::fs::File::open(dir.join("history.jsonl")) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// Ids of the containers a run labelled with its run id, any state ("" if none).
fn containers_of(run_id: &str) -> String {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=rebound.run={run_id}"),
    ])
}

/// Removes everything a run labelled with its run id (used after --keep).
pub(crate) fn remove_run(run_id: &str) {
    let label = format!("label=rebound.run={run_id}");
    let ids = docker(&["ps", "-aq", "--filter", &label]);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.lines());
        docker(&args);
    }
    for kind in ["network", "volume"] {
        let names = docker(&[kind, "ls", "-q", "--filter", &label]);
        for n in names.lines() {
            let _ = Command::new("docker").args([kind, "rm", n]).output();
        }
    }
}

#[test]
fn docker_sigkill_restarts_the_app_and_never_touches_a_decoy() {
    require_images();
    let decoy_project = format!("rebound-decoy-{}", std::process::id());
    let decoy = docker(&[
        "run",
        "-d",
        "--label",
        &format!("com.docker.compose.project={decoy_project}"),
        "--label",
        "com.docker.compose.service=app",
        "--label",
        "rebound.run=decoy-test",
        "rebound/base:bookworm",
        "sleep",
        "600",
    ]);
    let started_before = docker(&["inspect", "-f", "{{.State.StartedAt}}", &decoy]);

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let o = run_scenario(
        std::path::Path::new("scenarios/docker-app-sigkill.toml"),
        &out,
        &["--trials", "3"],
    );
    let decoy_state = docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.State.StartedAt}} {{.RestartCount}}",
        &decoy,
    ]);
    docker(&["rm", "-f", &decoy]);

    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    let (header, rows) = read_csv(&out.join("trials.csv"));
    assert_eq!(rows.len(), 3);
    assert!(
        column(&header, &rows, "outcome")
            .iter()
            .all(|x| x == "pass"),
        "{}",
        text(&o)
    );
    // The fault really happened: Docker reported the app dying with 137 and starting again in every trial.
    let h = history_lines(&out);
    for trial in 1..=3 {
        let ev = |action: &str| {
            h.iter()
                .any(|r| r["trial"] == trial && r["service"] == "app" && r["action"] == action)
        };
        assert!(
            ev("exited") && ev("started"),
            "trial {trial}: no die/start events"
        );
        assert!(h
            .iter()
            .any(|r| r["trial"] == trial && r["action"] == "exited" && r["code"] == 137));
    }
    assert_eq!(
        decoy_state,
        format!("true {started_before} 0"),
        "the decoy container was touched"
    );
    // Torn down: no container of this run is left.
    let run_id = h[0]["run_id"].as_str().expect("run id").to_string();
    assert_eq!(containers_of(&run_id), "");
}

/// Starts a docker scenario with --keep, waits for the fault of trial 1 to be active,
/// sends SIGINT, and returns (exit code, run id, run dir).
fn interrupt_during_fault(scenario: &str) -> (Option<i32>, String, tempfile::TempDir) {
    signal_during_fault(scenario, nix::sys::signal::Signal::SIGINT)
}

/// Like [`interrupt_during_fault`], with any terminating signal.
pub(crate) fn signal_during_fault(
    scenario: &str,
    signal: nix::sys::signal::Signal,
) -> (Option<i32>, String, tempfile::TempDir) {
    require_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let mut child = rebound()
        .args([
            "run",
            scenario,
            "--keep",
            "--out",
            out.to_str().expect("utf8"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while !history_lines(&out).iter().any(|r| r["type"] == "fault-ok") {
        // A deadline that only catches a hang (bring-up takes seconds, not minutes).
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the fault was never injected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).expect("signal");
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let run_id = history_lines(&out)[0]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    (code, run_id, dir)
}

#[test]
fn docker_sigint_during_pause_leaves_no_container_paused() {
    let (code, run_id, _dir) = interrupt_during_fault("scenarios/docker-db-pause.toml");
    let states = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=rebound.run={run_id}"),
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    remove_run(&run_id);
    assert_eq!(code, Some(130));
    assert!(!states.is_empty(), "--keep should leave the stack");
    assert!(!states.contains("paused"), "{states}");
}

#[test]
fn docker_sigint_during_disk_fill_frees_the_disk() {
    let (code, run_id, _dir) = interrupt_during_fault("scenarios/docker-db-disk-full.toml");
    let db = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=rebound.run={run_id}"),
        "--filter",
        "label=com.docker.compose.service=db",
    ]);
    let filler = Command::new("docker")
        .args([
            "exec",
            &db,
            "test",
            "-e",
            "/var/lib/postgresql/data/.rebound-disk-fill",
        ])
        .status()
        .expect("exec");
    let free = docker(&[
        "exec",
        &db,
        "df",
        "-B1",
        "--output=avail",
        "/var/lib/postgresql/data",
    ]);
    remove_run(&run_id);
    assert_eq!(code, Some(130));
    assert!(!filler.success(), "the filler file survived Ctrl-C");
    let free: u64 = free
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("df");
    assert!(free > 32 << 20, "only {free} bytes free after heal");
}

#[test]
fn docker_sigint_during_disconnect_leaves_the_app_connected() {
    let (code, run_id, _dir) = interrupt_during_fault("scenarios/docker-app-disconnect.toml");
    let app = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=rebound.run={run_id}"),
        "--filter",
        "label=com.docker.compose.service=app",
    ]);
    let nets = docker(&["inspect", "-f", "{{len .NetworkSettings.Networks}}", &app]);
    remove_run(&run_id);
    assert_eq!(code, Some(130));
    assert_eq!(nets, "1", "the app must be back on its network");
}

/// Trials of one --keep run against the demo stack: (run id, rows of trials.csv, history).
struct KeptRun {
    run_id: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    history: Vec<serde_json::Value>,
    code: Option<i32>,
    output: String,
    /// The host ports the run took (`ports.json`: `REBOUND_PORT_HTTP` → 23456).
    ports: serde_json::Map<String, serde_json::Value>,
    _dir: tempfile::TempDir,
}

impl KeptRun {
    /// The host port rebound took for `${port:NAME}`.
    fn port(&self, name: &str) -> u64 {
        let var = format!("REBOUND_PORT_{}", name.to_ascii_uppercase());
        self.ports
            .get(&var)
            .and_then(|v| v.as_u64())
            .unwrap_or_else(|| panic!("no {var} in ports.json: {:?}", self.ports))
    }

    fn start(scenario_text: &str) -> Self {
        require_images();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_scenario(dir.path(), scenario_text);
        let out = dir.path().join("run");
        let o = run_scenario(&path, &out, &["--keep"]);
        let (header, rows) = read_csv(&out.join("trials.csv"));
        let history = history_lines(&out);
        let run_id = history[0]["run_id"].as_str().expect("run id").to_string();
        let ports = std::fs::read_to_string(out.join("ports.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        KeptRun {
            run_id,
            header,
            rows,
            history,
            code: o.status.code(),
            output: text(&o),
            ports,
            _dir: dir,
        }
    }

    fn out(&self) -> std::path::PathBuf {
        self._dir.path().join("run")
    }

    fn container(&self, service: &str) -> String {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=rebound.run={}", self.run_id),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
    }

    fn events(&self, trial: u64, service: &str, action: &str) -> Vec<&serde_json::Value> {
        self.history
            .iter()
            .filter(|r| r["trial"] == trial && r["service"] == service && r["action"] == action)
            .collect()
    }
}

impl Drop for KeptRun {
    fn drop(&mut self) {
        remove_run(&self.run_id);
    }
}

const COMPOSE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/demo/compose.yaml");

fn demo_probes() -> String {
    "[[probe]]\nname = \"web\"\nkind = \"http\"\nurl = \"http://127.0.0.1:${port:http}/healthz\"\nperiod = \"50ms\"\ntimeout = \"500ms\"\n\n\
     [[probe]]\nname = \"db\"\nkind = \"postgres\"\naddress = \"127.0.0.1:${port:db}\"\nperiod = \"50ms\"\ntimeout = \"500ms\"\n\n\
     [[probe]]\nname = \"redis\"\nkind = \"exec\"\nservice = \"redis\"\ncommand = [\"redis-cli\", \"ping\"]\nperiod = \"100ms\"\n"
        .to_string()
}

#[test]
fn docker_every_fault_kind_really_happens_and_the_stack_heals() {
    let faults = [
        ("sigkill", "app", ""),
        ("sigterm", "app", "grace = \"5s\""),
        ("restart", "app", "grace = \"5s\""),
        ("stop-for", "redis", "duration = \"2s\"\ngrace = \"5s\""),
        ("pause-for", "app", "duration = \"1s\""),
        ("disconnect-for", "app", "duration = \"1s\""),
        ("db-restart", "db", "mode = \"fast\""),
        ("db-restart", "db", "mode = \"immediate\""),
        (
            "exec",
            "db",
            "command = [\"touch\", \"/tmp/rebound-exec-marker\"]",
        ),
        ("signal", "app", "signal = \"SIGHUP\""),
        (
            "http",
            "app",
            "url = \"http://127.0.0.1:${port:http}/items\"\nbody = '{\"id\": \"from-http-fault\"}'\nexpect-status = 201",
        ),
    ];
    let mut text_in = format!(
        "name = \"every-fault\"\n[stack]\nbackend = \"docker\"\ncompose = \"{COMPOSE}\"\n\n"
    );
    for (kind, target, extra) in faults {
        text_in += &format!("[[fault]]\nkind = \"{kind}\"\ntarget = \"{target}\"\n{extra}\n\n");
    }
    text_in += &demo_probes();
    text_in += &format!("\n[slo]\nsuccess-rate = 0.5\nrecover-within = \"20s\"\n\n[run]\ntrials = {}\nwarm-up = \"300ms\"\nstartup-timeout = \"120s\"\n", faults.len());
    let run = KeptRun::start(&text_in);
    assert!(matches!(run.code, Some(0 | 2)), "{}", run.output);
    assert_eq!(run.rows.len(), faults.len(), "{}", run.output);
    let outcome = column(&run.header, &run.rows, "outcome");
    let failed: Vec<u64> = column(&run.header, &run.rows, "probes_failed")
        .iter()
        .map(|x| x.parse().expect("count"))
        .collect();
    for (i, (kind, target, _)) in faults.iter().enumerate() {
        let t = i as u64 + 1;
        assert_eq!(
            outcome[i], "pass",
            "trial {t} ({kind}) did not recover: {}",
            run.output
        );
        let exited = run.events(t, target, "exited");
        let started = run.events(t, target, "started");
        match *kind {
            // SIGHUP (1) ends demo-app (no handler): the container exits with 128 + 1.
            "signal" => assert!(
                exited.iter().any(|e| e["code"] == 129),
                "{kind}: demo-app did not die of SIGHUP"
            ),
            "sigkill" => assert!(
                exited.iter().any(|e| e["code"] == 137) && !started.is_empty(),
                "{kind}: no crash and restart"
            ),
            "sigterm" => assert!(
                exited.iter().any(|e| e["code"] != 137) && !started.is_empty(),
                "{kind}: no graceful exit and start"
            ),
            "restart" | "stop-for" => assert!(
                !exited.is_empty() && !started.is_empty(),
                "{kind}: no die/start"
            ),
            "pause-for" => assert!(
                !run.events(t, target, "paused").is_empty()
                    && !run.events(t, target, "resumed").is_empty(),
                "{kind}: no pause/unpause"
            ),
            "disconnect-for" | "db-restart" => {
                assert!(failed[i] > 0, "{kind}: the probes never saw the fault")
            }
            _ => {}
        }
        if *kind == "stop-for" {
            let gap = started[0]["daemon_time_ns"].as_i64().expect("ns")
                - exited[0]["daemon_time_ns"].as_i64().expect("ns");
            assert!(gap >= 2_000_000_000, "redis was down only {gap} ns");
        }
    }
    // The http fault's write went through nginx and the app into PostgreSQL.
    let stored = docker(&[
        "exec",
        &run.container("db"),
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-qAtc",
        "SELECT count(*) FROM items WHERE id = 'from-http-fault'",
    ]);
    assert_eq!(stored, "1", "the http fault did not reach the store");
    // exec really ran; postgres really restarted twice (plus its first start).
    let db = run.container("db");
    docker(&["exec", &db, "test", "-f", "/tmp/rebound-exec-marker"]);
    let logs = Command::new("docker")
        .args(["logs", &db])
        .output()
        .expect("logs");
    let ready = String::from_utf8_lossy(&logs.stderr)
        .matches("database system is ready to accept connections")
        .count();
    assert!(ready >= 3, "postgres was ready {ready} times");
    // Healed: every container runs, none paused, the app is on its network.
    let states = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=rebound.run={}", run.run_id),
        "--format",
        "{{.State}}",
    ]);
    assert!(states.lines().all(|s| s == "running"), "{states}");
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{len .NetworkSettings.Networks}}",
            &run.container("app")
        ]),
        "1"
    );
}

#[test]
fn docker_db_restart_recovery_agrees_with_postgres_ready_log_line() {
    let scenario = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/docker-db-restart.toml"
    ))
    .expect("scenario");
    let scenario = scenario.replace(
        "compose = \"../docker/demo/compose.yaml\"",
        &format!("compose = \"{COMPOSE}\""),
    );
    let run = KeptRun::start(&scenario);
    assert!(matches!(run.code, Some(0 | 2)), "{}", run.output);
    let logs = Command::new("docker")
        .args(["logs", &run.container("db")])
        .output()
        .expect("logs");
    // "2026-11-22 00:40:01.123 UTC [57] LOG:  database system is ready to accept connections"
    let ready: Vec<crate::truth::Truth> = String::from_utf8_lossy(&logs.stderr)
        .lines()
        .filter(|l| l.contains("database system is ready to accept connections"))
        .filter_map(|l| {
            chrono::NaiveDateTime::parse_from_str(l.get(..23)?, "%Y-%m-%d %H:%M:%S%.3f").ok()
        })
        .filter_map(|t| t.and_utc().timestamp_nanos_opt())
        // PostgreSQL truncates its log time to milliseconds.
        .map(|ns| crate::truth::Truth {
            at_unix_ns: i128::from(ns),
            resolution_ns: 1_000_000,
        })
        .collect();
    assert_eq!(run.rows.len(), 6, "{}", run.output);
    // PostgreSQL's own ready line lies inside every bracket of the 20 ms probe, and the
    // bracket is one period plus the attempt's recorded latency and tick lateness.
    crate::truth::check_bracket_against(&run.out(), &ready, 20.0, 0.0)
        .unwrap_or_else(|e| panic!("{e}\nready lines: {ready:?}"));
}

#[test]
fn docker_demo_app_keeps_items_in_postgres_across_a_db_restart_and_caches_in_redis() {
    let scenario = format!(
        "name = \"store\"\n[stack]\nbackend = \"docker\"\ncompose = \"{COMPOSE}\"\n\n[[fault]]\nkind = \"db-restart\"\ntarget = \"db\"\nmode = \"immediate\"\n\n{}\n[slo]\nsuccess-rate = 0.5\nrecover-within = \"20s\"\n\n[run]\ntrials = 1\nwarm-up = \"300ms\"\nstartup-timeout = \"120s\"\n",
        demo_probes()
    );
    // Bring the stack up (and keep it) with one db-restart, then write and read through nginx.
    let run = KeptRun::start(&scenario);
    assert!(matches!(run.code, Some(0 | 2)), "{}", run.output);
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{}/items", run.port("http"));
    let url = url.as_str();
    let created = client
        .post(url)
        .json(&serde_json::json!({"id": "kept-1", "value": {"n": 1}}))
        .send()
        .expect("post");
    assert_eq!(created.status().as_u16(), 201);
    let db = run.container("db");
    let in_pg = docker(&[
        "exec",
        &db,
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-qAtc",
        "SELECT value->>'n' FROM items WHERE id = 'kept-1'",
    ]);
    assert_eq!(in_pg, "1", "the acknowledged item is not in PostgreSQL");
    // Another crash-restart of the database: the item survives, the app reconnects.
    docker(&["exec", &db, "pg_ctl", "stop", "-m", "immediate", "-w"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let fetched = loop {
        let r = client.get(format!("{url}/kept-1")).send();
        if let Ok(r) = r {
            if r.status().as_u16() == 200 {
                break r.json::<serde_json::Value>().expect("json");
            }
        }
        // A deadline that only catches a hang.
        assert!(
            Instant::now() < deadline,
            "the item never came back after the db restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(fetched["value"]["n"], 1);
    let cached = docker(&[
        "exec",
        &run.container("redis"),
        "redis-cli",
        "GET",
        "item:kept-1",
    ]);
    assert_eq!(cached, "{\"n\":1}", "the item is not in the cache");
}

/// What a Redis probe's recovery is held against, from Redis's own log (truncated to
/// milliseconds).
#[derive(Clone, Copy)]
enum RedisTruth {
    /// "Ready to accept connections": Redis answers commands (a `redis` probe).
    Ready,
    /// Redis listens on its port: after its first log line ("Redis is starting") and
    /// before "Server initialized" (inside `initServer` up to 7.0, in
    /// `initListeners` from 7.2 — both before that line). From then on the kernel
    /// completes connections into the backlog, although Redis only answers after
    /// loading its data ("Ready"). So a tcp probe recovers somewhere in that
    /// interval, a few ms before "Ready" — not at "Ready".
    Listening,
}

/// The unix ns of a Redis log line ("1:M 02 Dec 2026 06:40:01.123 * …").
fn redis_log_time(line: &str) -> Option<i128> {
    let stamp = line.split_once(' ')?.1.get(..24)?;
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%d %b %Y %H:%M:%S%.3f").ok()?;
    t.and_utc().timestamp_nanos_opt().map(i128::from)
}

/// The instants (or intervals) Redis's log gives for `truth`, one per start.
fn redis_truths(log: &str, truth: RedisTruth) -> Vec<crate::truth::Truth> {
    const MS: i128 = 1_000_000;
    match truth {
        RedisTruth::Ready => log
            .lines()
            .filter(|l| l.contains("Ready to accept connections"))
            .filter_map(redis_log_time)
            .map(|at_unix_ns| crate::truth::Truth {
                at_unix_ns,
                resolution_ns: MS,
            })
            .collect(),
        RedisTruth::Listening => {
            let mut out = Vec::new();
            let mut starting = None;
            for line in log.lines() {
                if line.contains("Redis is starting") {
                    starting = redis_log_time(line);
                } else if line.contains("Server initialized") {
                    if let (Some(from), Some(to)) = (starting.take(), redis_log_time(line)) {
                        out.push(crate::truth::Truth {
                            at_unix_ns: from,
                            resolution_ns: to - from + MS,
                        });
                    }
                }
            }
            out
        }
    }
}

/// Redis stopped for 1 s and started again, 3 trials, probed by `probe` (a 20 ms
/// `[[probe]]` table): the instant `truth` names, from Redis's own log, must lie in
/// every recovery bracket.
fn redis_truth(probe: &str, truth: RedisTruth) {
    let scenario = format!(
        r#"name = "redis-truth"
[stack]
backend = "docker"
compose = "{COMPOSE}"

[[fault]]
kind = "stop-for"
target = "redis"
duration = "1s"
grace = "2s"

[[probe]]
{probe}
period = "20ms"

[slo]
success-rate = 0.5
recover-within = "10s"

[run]
trials = 3
warm-up = "300ms"
startup-timeout = "120s"
"#
    );
    let run = KeptRun::start(&scenario);
    assert!(matches!(run.code, Some(0 | 2)), "{}", run.output);
    assert_eq!(run.rows.len(), 3, "{}", run.output);
    let logs = Command::new("docker")
        .args(["logs", &run.container("redis")])
        .output()
        .expect("logs");
    let log = String::from_utf8_lossy(&logs.stdout);
    let truths = redis_truths(&log, truth);
    assert!(truths.len() >= 4, "truths: {truths:?}\n{log}");
    crate::truth::check_bracket_against(&run.out(), &truths, 20.0, 0.0)
        .unwrap_or_else(|e| panic!("{e}\ntruths: {truths:?}\n{log}"));
}

#[test]
fn redis_probe_recovery_agrees_with_redis_ready_log_line() {
    redis_truth(
        "kind = \"redis\"\naddress = \"127.0.0.1:${port:redis}\"",
        RedisTruth::Ready,
    );
}

#[test]
fn tcp_probe_on_the_service_address_agrees_with_redis_listening() {
    // The container's own address: no port proxy accepts for a Redis not yet
    // listening (a tcp probe on the published port recovers before Redis even runs).
    redis_truth(
        "kind = \"tcp\"\nservice = \"redis\"\nport = 6379",
        RedisTruth::Listening,
    );
}

#[test]
fn docker_disk_fill_makes_writes_fail_until_freed() {
    let scenario = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/docker-db-disk-full.toml"
    ))
    .expect("scenario");
    let scenario = scenario
        .replace(
            "compose = \"../docker/demo/compose.yaml\"",
            &format!("compose = \"{COMPOSE}\""),
        )
        .replace(
            "\"../docker/demo/small-disk.yaml\"",
            concat!(
                "\"",
                env!("CARGO_MANIFEST_DIR"),
                "/docker/demo/small-disk.yaml\""
            ),
        )
        .replace("trials = 3", "trials = 1");
    let run = KeptRun::start(&scenario);
    assert!(matches!(run.code, Some(0 | 2)), "{}", run.output);
    assert_eq!(
        column(&run.header, &run.rows, "outcome"),
        ["pass"],
        "{}",
        run.output
    );
    let failed: u64 = column(&run.header, &run.rows, "probes_failed")[0]
        .parse()
        .expect("count");
    assert!(failed > 0, "no INSERT failed while the disk was full");
    let no_space = run.history.iter().any(|r| {
        r["type"] == "probe"
            && r["error"]
                .as_str()
                .is_some_and(|e| e.contains("No space left on device"))
    });
    assert!(no_space, "the failures were not ENOSPC");
    let recovery: f64 = column(&run.header, &run.rows, "recovery_ms")[0]
        .parse()
        .expect("ms");
    assert!(
        recovery >= 5000.0,
        "recovered in {recovery} ms, before the 5 s fill ended"
    );
}

#[test]
fn docker_attach_uses_a_running_project_and_leaves_it_running() {
    require_images();
    let project = format!("rebound-attach-{}", std::process::id());
    let run_label = format!("attach-test-{}", std::process::id());
    let compose = |args: &[&str]| {
        let o = Command::new("docker-compose")
            .args(["-p", &project, "-f", COMPOSE])
            .args(args)
            .env("REBOUND_RUN", &run_label)
            .output()
            .expect("docker-compose");
        assert!(
            o.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    compose(&["up", "-d"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = format!(
        "name = \"attach\"\n[stack]\nbackend = \"docker\"\nattach = \"{project}\"\n\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
         [[probe]]\nkind = \"docker-health\"\nservice = \"app\"\nperiod = \"100ms\"\n\n[slo]\nsuccess-rate = 0.5\nrecover-within = \"20s\"\n\n[run]\ntrials = 1\nwarm-up = \"300ms\"\nstartup-timeout = \"120s\"\n"
    );
    let path = write_scenario(dir.path(), &scenario);
    let o = run_scenario(&path, &dir.path().join("run"), &[]);
    let states = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--format",
        "{{.State}}",
    ]);
    compose(&["down", "-v", "-t", "2"]);
    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    assert_eq!(states.lines().count(), 4, "{states}");
    assert!(
        states.lines().all(|s| s == "running"),
        "an attached stack must be left running: {states}"
    );
}

#[test]
fn docker_bulk_load_across_a_db_restart_loses_no_acknowledged_row() {
    let scenario = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/docker-db-restart-bulk-load.toml"
    ))
    .expect("scenario");
    let scenario = scenario
        .replace(
            "compose = \"../docker/demo/compose.yaml\"",
            &format!("compose = \"{COMPOSE}\""),
        )
        .replace("trials = 5", "trials = 2");
    let run = KeptRun::start(&scenario);
    assert!(matches!(run.code, Some(0 | 2)), "{}", run.output);
    let col = |name: &str| column(&run.header, &run.rows, name);
    assert_eq!(col("outcome"), ["pass", "pass"], "{}", run.output);
    assert_eq!(col("lost_acked_writes"), ["0", "0"]);
    for (ok, window) in col("ops_ok").iter().zip(col("client_error_window_ms")) {
        assert!(
            ok.parse::<u64>().expect("count") > 100,
            "too few acknowledged inserts: {ok}"
        );
        assert!(
            !window.is_empty(),
            "the restart must be visible to the client as errors"
        );
    }
    assert!(col("client_recovered_ms").iter().all(|x| !x.is_empty()));
    // A docker run directory re-checks offline, without the compose file next to it.
    let check = crate::helpers::run(&["check", run.out().to_str().expect("utf8")]);
    assert_eq!(check.status.code(), run.code, "{}", text(&check));
    // Every acknowledged row is really in the table.
    let acked: u64 = col("ops_ok")
        .iter()
        .map(|x| x.parse::<u64>().expect("count"))
        .sum();
    let rows = docker(&[
        "exec",
        &run.container("db"),
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-qAtc",
        "SELECT count(*) FROM bulk_load",
    ]);
    assert!(
        rows.parse::<u64>().expect("count") >= acked,
        "{rows} rows for {acked} acknowledged inserts"
    );
}

#[test]
fn tcp_probe_on_the_published_port_agrees_with_redis_listening() {
    // Docker's port proxy accepts there before Redis listens; the probe must also
    // see Redis itself accept (or the proxy close within the hold).
    redis_truth(
        "kind = \"tcp\"\naddress = \"127.0.0.1:${port:redis}\"",
        RedisTruth::Listening,
    );
}

/// A user's compose file as written for production: an image it builds itself, a
/// `service_healthy` dependency, no `init`, no rebound labels. The target runs
/// `sleep` as PID 1 without init, so it ignores SIGTERM: the trial says so.
#[test]
fn a_user_compose_file_with_build_and_no_labels_runs_end_to_end() {
    require_images();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("cache")).expect("mkdir");
    std::fs::write(
        dir.path().join("cache/Dockerfile"),
        "FROM rebound/redis:latest\nLABEL org.example.built-by=user-compose-test\n",
    )
    .expect("Dockerfile");
    std::fs::write(
        dir.path().join("compose.yaml"),
        "version: \"2.4\"\nservices:\n  cache:\n    build: ./cache\n    image: rebound-test/user-cache:latest\n\
         \x20 worker:\n    image: rebound/redis:latest\n    command: [\"sleep\", \"infinity\"]\n    restart: always\n\
         \x20   depends_on:\n      cache: { condition: service_healthy }\n",
    )
    .expect("compose");
    let scenario = "name = \"user-compose\"\n[stack]\nbackend = \"docker\"\ncompose = \"compose.yaml\"\n\n\
        [[fault]]\nkind = \"sigterm\"\ntarget = \"worker\"\ngrace = \"1s\"\n\n\
        [[probe]]\nkind = \"exec\"\nservice = \"worker\"\ncommand = [\"true\"]\nperiod = \"100ms\"\n\n\
        [[probe]]\nkind = \"exec\"\nservice = \"cache\"\ncommand = [\"redis-cli\", \"ping\"]\nperiod = \"100ms\"\n\n\
        [slo]\nsuccess-rate = 0.5\nrecover-within = \"30s\"\n\n[run]\ntrials = 1\nwarm-up = \"500ms\"\nstartup-timeout = \"120s\"\n";
    let path = dir.path().join("user.toml");
    std::fs::write(&path, scenario).expect("scenario");
    let out = dir.path().join("run");
    let o = run_scenario(&path, &out, &["--no-progress"]);
    let said = text(&o);
    let _cleanup = history_lines(&out)
        .iter()
        .find_map(|r| r["run_id"].as_str().map(String::from))
        .map(|id| {
            RemoveOnDrop(format!(
                "com.docker.compose.project={}",
                rebound::stack::compose_project_name("user-compose", &id)
            ))
        });
    let _ = Command::new("docker")
        .args(["image", "rm", "rebound-test/user-cache:latest"])
        .output();
    assert_eq!(
        o.status.code(),
        Some(2),
        "1 clean trial is inconclusive at 50 %: {said}"
    );
    let (header, rows) = read_csv(&out.join("trials.csv"));
    let reason = &rows[0][header.iter().position(|h| h == "reason").expect("reason")];
    assert!(
        reason.contains("worker ignored SIGTERM for the whole grace and was SIGKILLed"),
        "{reason}"
    );
    assert!(
        said.contains("ignored SIGTERM"),
        "the console names it: {said}"
    );
    let project = history_lines(&out)
        .iter()
        .find_map(|r| r["run_id"].as_str().map(String::from))
        .map(|id| rebound::stack::compose_project_name("user-compose", &id))
        .expect("run id");
    let left = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    assert_eq!(left, "", "the stack is torn down");
}

/// One trial of a shipped scenario, which must pass: (its temporary directory, kept
/// alive; the run directory; trials.csv's header and rows).
fn one_passing_trial(
    scenario: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Vec<String>,
    Vec<Vec<String>>,
) {
    require_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let o = run_scenario(std::path::Path::new(scenario), &out, &["--trials", "1"]);
    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    let (header, rows) = read_csv(&out.join("trials.csv"));
    assert_eq!(column(&header, &rows, "outcome")[0], "pass", "{}", text(&o));
    (dir, out, header, rows)
}

/// `link-latency` through the `rebound/proxy` container (scenario
/// docker-app-db-latency, one trial): PostgreSQL's replies to the app come 500 ms
/// late for 10 s, so writes through nginx take at least that much longer while the
/// latency is on and are fast again after it is lifted; the app, ready only when it
/// answers within 300 ms, is ready again within 5 s of the end; nothing is lost.
#[test]
fn docker_link_latency_through_the_proxy_container_slows_writes_by_the_delay() {
    let (_dir, out, header, rows) = one_passing_trial("scenarios/docker-app-db-latency.toml");
    let cell = |name: &str| -> f64 {
        column(&header, &rows, name)[0]
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number"))
    };
    // At least the delay while it is on (a busy machine only adds to it); after
    // the lift the delay is gone, whatever else the load adds to both.
    let (during, after) = (cell("latency_during_p50_ms"), cell("latency_after_p50_ms"));
    assert!(
        during >= 500.0,
        "writes during the latency: p50 {during} ms"
    );
    assert!(
        during - after >= 400.0,
        "writes after it was lifted: p50 {after} ms (during {during} ms)"
    );
    // Ready again only after the 10 s of latency (the pass above: within recover-within).
    let recovery = cell("recovery_ms");
    assert!(
        recovery >= 10_000.0,
        "ready again {recovery} ms after the latency began"
    );
    assert_eq!(cell("lost_acked_writes"), 0.0);
    let h = history_lines(&out);
    assert!(
        h.iter().any(|r| r["type"] == "fault-end"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("latency 500ms") && d.contains("lifted"))),
        "the proxy's fault was lifted"
    );
    let run_id = h[0]["run_id"].as_str().expect("run id");
    assert_eq!(containers_of(run_id), "", "torn down, proxy included");
}

/// Two faults in one trial on docker (scenario docker-app-restart-redis-hung): the
/// app is SIGKILLed 1 s into a 12 s black hole on its Redis link. It dies during
/// the black hole, restarts and is healthy again before the black hole lifts (it
/// does not wait for its cache), and the trial's recovery counts from the black
/// hole until after both faults ended.
#[test]
fn docker_app_killed_during_a_redis_black_hole_starts_without_its_cache() {
    let (_dir, out, header, rows) =
        one_passing_trial("scenarios/docker-app-restart-redis-hung.toml");
    let recovery: f64 = column(&header, &rows, "recovery_ms")[0]
        .parse()
        .expect("ms");
    assert!(
        recovery >= 12_000.0,
        "recovery {recovery} ms: after the black hole lifted"
    );
    // From the run's own history: the app died after the kill and became healthy
    // again before the black hole's end was recorded.
    let h = history_lines(&out);
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        h.iter()
            .position(|r| r["trial"] == 1 && pred(r))
            .unwrap_or_else(|| panic!("record not found"))
    };
    let hole = at(&|r| r["type"] == "fault-invoke" && r["fault"] == "link-blackhole");
    let kill = at(&|r| r["type"] == "fault-invoke" && r["fault"] == "sigkill");
    let died = at(&|r| r["type"] == "service" && r["service"] == "app" && r["action"] == "exited");
    let healthy = h
        .iter()
        .enumerate()
        .position(|(i, r)| {
            i > died
                && r["type"] == "service"
                && r["service"] == "app"
                && r["action"] == "health"
                && r["detail"] == "healthy"
        })
        .expect("app healthy again");
    let lifted = at(&|r| {
        r["type"] == "fault-end"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("blackhole lifted"))
    });
    assert!(
        hole < kill && kill < died,
        "black hole {hole}, kill {kill}, app died {died}"
    );
    assert!(
        healthy < lifted,
        "app healthy again (record {healthy}) before the black hole lifted (record {lifted})"
    );
}

/// A follow-up fired by an event on docker (scenario docker-app-killed-as-db-returns):
/// PostgreSQL is restarted and the app is SIGKILLed when Docker reports the
/// database healthy again. The kill lands after that healthy event, the app dies
/// and comes back, the trial recovers, and the timeline has a lane per fault.
#[test]
fn docker_app_killed_when_the_database_is_healthy_again() {
    let (_dir, out, _, _) = one_passing_trial("scenarios/docker-app-killed-as-db-returns.toml");
    let h = history_lines(&out);
    let index = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        h.iter()
            .position(|r| r["trial"] == 1 && pred(r))
            .unwrap_or_else(|| panic!("record not found"))
    };
    let db_healthy = index(&|r| {
        r["type"] == "service"
            && r["service"] == "db"
            && r["action"] == "health"
            && r["detail"] == "healthy"
    });
    let kill = index(&|r| r["type"] == "fault-invoke" && r["fault"] == "sigkill");
    let app_died =
        index(&|r| r["type"] == "service" && r["service"] == "app" && r["action"] == "exited");
    assert!(
        db_healthy < kill && kill < app_died,
        "db healthy {db_healthy}, kill {kill}, app died {app_died}"
    );
    let ok = &h[kill + 1..]
        .iter()
        .find(|r| r["type"] == "fault-ok")
        .expect("fault-ok of the kill")["detail"];
    assert!(
        ok.as_str().is_some_and(|d| d.contains("when db healthy")),
        "{ok}"
    );
    let svg = std::fs::read_to_string(out.join("charts/timeline.svg")).expect("timeline chart");
    assert!(
        svg.contains("fault sigkill → app") && svg.contains("fault restart → db"),
        "lanes per fault"
    );
}

/// `when = "app log /listening on/"` on Docker: the app's log stream is
/// followed across its restart (the stream ends when the container dies and is
/// opened again), so the second SIGKILL lands after the restarted app logged
/// that it listens, and that line is in the history between the two faults.
#[test]
fn docker_follow_up_fires_on_a_line_the_restarted_container_logged() {
    require_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let compose = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/demo/compose.yaml");
    let scenario = format!(
        "name = \"docker-log-trigger\"\n[stack]\nbackend = \"docker\"\ncompose = {compose:?}\n\n\
         [[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
         [[fault.then]]\nwhen = \"app log /listening on/\"\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
         [[probe]]\nname = \"through-nginx\"\nkind = \"http\"\nurl = \"http://127.0.0.1:${{port:http}}/healthz\"\nperiod = \"50ms\"\n\n\
         [slo]\nsuccess-rate = 0.5\nrecover-within = \"15s\"\n\n[run]\ntrials = 1\nwarm-up = \"10s\"\nstartup-timeout = \"120s\"\n",
        compose = compose.display().to_string(),
    );
    let path = write_scenario(dir.path(), &scenario);
    let out = dir.path().join("run");
    let o = run_scenario(&path, &out, &[]);
    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    let h = history_lines(&out);
    let in_trial: Vec<&serde_json::Value> = h.iter().filter(|r| r["trial"] == 1).collect();
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| -> Vec<usize> {
        in_trial
            .iter()
            .enumerate()
            .filter(|(_, r)| pred(r))
            .map(|(i, _)| i)
            .collect()
    };
    let oks = at(&|r| r["type"] == "fault-ok");
    assert_eq!(oks.len(), 2, "two faults: {}", text(&o));
    let started =
        at(&|r| r["type"] == "service" && r["service"] == "app" && r["action"] == "started");
    let lines = at(&|r| {
        r["type"] == "log"
            && r["service"] == "app"
            && r["line"]
                .as_str()
                .is_some_and(|l| l.contains("listening on"))
    });
    assert!(
        lines
            .iter()
            .any(|&l| l > oks[0] && l < oks[1] && started.iter().any(|&s| s > oks[0] && s < l)),
        "the restarted app's line came between the faults: oks {oks:?}, started {started:?}, lines {lines:?}"
    );
    let detail = in_trial[oks[1]]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("when app log /listening on/"), "{detail}");
}

/// Docker 20.10 can refuse to remove a network that still lists an endpoint ("has
/// active endpoints"; seen in CI after a compose down, with its container gone):
/// the sweep of a run's leftovers force-deletes the endpoints and removes it. Here
/// the endpoint belongs to a running container of another run, which the sweep
/// detaches but never touches otherwise.
#[test]
fn the_sweep_of_a_run_removes_its_network_even_while_an_endpoint_is_still_on_it() {
    require_images();
    let run_id = format!("sweep-test-{}", std::process::id());
    let net = format!("rebound-sweep-{}", std::process::id());
    docker(&[
        "network",
        "create",
        "--label",
        &format!("rebound.run={run_id}"),
        &net,
    ]);
    let bystander = docker(&[
        "run",
        "-d",
        "--network",
        &net,
        "--label",
        &format!("rebound.run={run_id}-bystander"),
        "rebound/base:bookworm",
        "sleep",
        "600",
    ]);
    let healed = tokio::runtime::Runtime::new().expect("runtime").block_on(
        rebound::stack::docker::heal_dead_run(
            &format!("rebound-none-{}", std::process::id()),
            &run_id,
            true,
            &Default::default(),
            &[],
            &Default::default(),
            &[],
        ),
    );
    let networks = docker(&["network", "ls", "-q", "--filter", &format!("name=^{net}$")]);
    let state = docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{len .NetworkSettings.Networks}}",
        &bystander,
    ]);
    docker(&["rm", "-f", &bystander]);
    if !networks.is_empty() {
        let _ = Command::new("docker")
            .args(["network", "rm", &net])
            .output();
    }
    let done = healed.expect("the sweep removes the network");
    assert!(
        done.iter().any(|d| d == &format!("removed network {net}")),
        "{done:?}"
    );
    assert_eq!(networks, "", "the network is gone");
    assert_eq!(state, "true 0", "the bystander runs on, detached");
}
