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
fn require_images() {
    let images = [
        "rebound/postgres:latest",
        "rebound/redis:latest",
        "rebound/nginx:latest",
        "rebound/demo-app:latest",
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

fn history_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let Ok(f) = std::fs::File::open(dir.join("history.jsonl")) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// Removes everything a run labelled with its run id (used after --keep).
fn remove_run(run_id: &str) {
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
    assert_eq!(
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=rebound.run={run_id}")
        ]),
        ""
    );
}

/// Starts a docker scenario with --keep, waits for the fault of trial 1 to be active,
/// sends SIGINT, and returns (exit code, run id, run dir).
fn interrupt_during_fault(scenario: &str) -> (Option<i32>, String, tempfile::TempDir) {
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
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the fault was never injected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
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
