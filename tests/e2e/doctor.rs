//! `rebound doctor`: on this machine every check is ok but the ones the kernel or
//! the machine really lacks; with the engine unreachable or wedged it names that
//! and exits 4, and `rebound run` says doctor's finding when its stack cannot come up.

use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use crate::docker_runs::require_images;
use crate::helpers::*;

/// The lines of doctor's screen, as (level, check name, detail).
fn findings(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let level = w.next()?;
            if !matches!(level, "ok" | "warning" | "error") {
                return None;
            }
            let name = w.next()?.to_string();
            Some((level.to_string(), name, w.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// Whether this kernel has netem, tried the way doctor does (a throwaway netns).
fn kernel_has_netem() -> bool {
    std::process::Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && tc qdisc add dev lo root netem delay 1ms",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn doctor_on_this_machine_finds_everything_ok_but_what_the_kernel_lacks() {
    require_images();
    let out = run(&["doctor"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let f = findings(&said);
    for name in [
        "engine",
        "compose",
        "images",
        "swarm",
        "tbf",
        "iptables",
        "privileges",
        "state",
        "fuse",
        "disk",
    ] {
        let line = f
            .iter()
            .find(|(_, n, _)| n == name)
            .unwrap_or_else(|| panic!("no `{name}` line\n{said}"));
        assert_eq!(line.0, "ok", "{name}: {said}");
    }
    let netem = f.iter().find(|(_, n, _)| n == "netem").expect("netem line");
    if kernel_has_netem() {
        assert_eq!(netem.0, "ok", "{said}");
    } else {
        assert_eq!(netem.0, "warning", "{said}");
        assert!(netem.2.contains("no netem qdisc"), "{said}");
    }
    assert!(said.contains("API 1."), "{said}");
    // The FUSE trial mount is gone again.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    assert!(!mounts.contains("rebound-durable"), "{mounts}");
    assert!(said.contains("can run"), "{said}");
    // With a scenario: the host ports it takes are checked and named.
    let out = run(&["doctor", "scenarios/docker-app-sigkill.toml"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("host ports free for the run: "), "{said}");
}

#[test]
fn doctor_names_an_unreachable_engine_and_run_says_so_when_its_stack_cannot_come_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = format!("unix://{}", dir.path().join("no-engine.sock").display());
    let out = rebound()
        .args(["doctor"])
        .env("DOCKER_HOST", &host)
        .output()
        .expect("doctor");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(4), "{said}");
    let f = findings(&said);
    let engine = f
        .iter()
        .find(|(_, n, _)| n == "engine")
        .expect("engine line");
    assert_eq!(engine.0, "error", "{said}");
    assert!(
        engine
            .2
            .contains(&format!("cannot reach the Docker Engine at {host}")),
        "{said}"
    );
    assert!(said.contains("fix: start it"), "{said}");
    assert!(said.contains("cannot run"), "{said}");
    // A docker run on that engine fails at bring-up (exit 4) and names the cause.
    let run = rebound()
        .args([
            "run",
            "scenarios/docker-app-sigkill.toml",
            "--trials",
            "1",
            "--no-progress",
            "--out",
        ])
        .arg(dir.path().join("run"))
        .env("DOCKER_HOST", &host)
        .output()
        .expect("run");
    let said = text(&run);
    assert_eq!(run.status.code(), Some(4), "{said}");
    assert!(
        said.contains("doctor: engine: cannot reach the Docker Engine"),
        "{said}"
    );
}

#[test]
fn doctor_names_a_wedged_engine_within_its_bound() {
    // An "engine" that accepts connections and never answers.
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("wedged.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        listener.set_nonblocking(true).expect("nonblocking");
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until && conns.len() < 16 {
            if let Ok((c, _)) = listener.accept() {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let out = rebound()
        .args(["doctor"])
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .output()
        .expect("doctor");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(4), "{said}");
    let f = findings(&said);
    let engine = f
        .iter()
        .find(|(_, n, _)| n == "engine")
        .expect("engine line");
    assert_eq!(engine.0, "error", "{said}");
    assert!(
        engine.2.contains("did not answer within 5 s: it is wedged"),
        "{said}"
    );
    drop(held);
}
