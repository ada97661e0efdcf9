//! `power-cut` on the process backend: demo-app's file store on `durable-dirs`
//! under a stream of writes. Acknowledged without fsync, a SIGKILL loses nothing
//! (the page cache keeps the writes) and a power cut loses them; fsynced before
//! the acknowledgement, a power cut loses none. No mount of rebound's is left.

use crate::helpers::*;

fn scenario(port: u16, fault: &str, no_fsync: bool) -> String {
    let extra: &[&str] = if no_fsync { &["--no-fsync"] } else { &[] };
    format!(
        "name = \"power\"\n{}durable-dirs = [\"${{run_dir}}/data/app\"]\n\n\
         [[fault]]\nkind = \"{fault}\"\ntarget = \"app\"\n\n\
         [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nperiod = \"20ms\"\n\n\
         [[workload]]\nkind = \"http-writes\"\nurl = \"http://127.0.0.1:{port}/items\"\nread-url = \"http://127.0.0.1:{port}/items/{{id}}\"\nrate = 100\nconcurrency = 4\n\n\
         [slo]\nsuccess-rate = 0.99\nrecover-within = \"5s\"\n\n[run]\ntrials = 3\nwarm-up = \"500ms\"\n",
        demo_service(port, extra, "always", "50ms"),
    )
}

/// Runs one configuration; returns (exit code, lost per trial, acknowledged in all).
fn lost(
    dir: &std::path::Path,
    name: &str,
    fault: &str,
    no_fsync: bool,
) -> (Option<i32>, Vec<u64>, u64) {
    let port = free_port();
    let out = dir.join(name);
    let o = run_scenario(
        &write_scenario(
            &dir.join(format!("{name}-scenario")),
            &scenario(port, fault, no_fsync),
        ),
        &out,
        &[],
    );
    let (header, rows) = read_csv(&out.join("trials.csv"));
    assert_eq!(rows.len(), 3, "{name}: {}", text(&o));
    let outcomes = column(&header, &rows, "outcome");
    assert!(
        outcomes.iter().all(|x| x != "unknown"),
        "{name}: a trial could not be run: {}",
        text(&o)
    );
    let lost = column(&header, &rows, "lost_acked_writes")
        .iter()
        .map(|x| x.parse().expect("count"))
        .collect();
    let acked = column(&header, &rows, "ops_ok")
        .iter()
        .map(|x| x.parse::<u64>().expect("count"))
        .sum();
    let mounts = std::fs::read_to_string("/proc/mounts").expect("mounts");
    assert!(
        !mounts.contains("rebound-durable"),
        "{name}: a mount is left: {mounts}"
    );
    (o.status.code(), lost, acked)
}

#[test]
fn a_power_cut_loses_the_unsynced_writes_a_sigkill_keeps_and_none_that_were_fsynced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, lost_kill, acked) = lost(dir.path(), "nofsync-sigkill", "sigkill", true);
    assert!(acked > 50, "the workload must have written: {acked}");
    assert!(
        lost_kill.iter().all(|n| *n == 0),
        "SIGKILL lost writes the page cache kept: {lost_kill:?}"
    );
    assert!(matches!(code, Some(0 | 2)), "{code:?}");

    let (code, lost_cut, acked) = lost(dir.path(), "nofsync-power-cut", "power-cut", true);
    assert!(acked > 50, "the workload must have written: {acked}");
    assert!(
        lost_cut.iter().any(|n| *n > 0),
        "a power cut lost nothing unsynced: {lost_cut:?}"
    );
    assert_eq!(code, Some(1), "lost writes fail the SLO");

    let (code, lost_safe, acked) = lost(dir.path(), "fsync-power-cut", "power-cut", false);
    assert!(acked > 50, "the workload must have written: {acked}");
    assert!(
        lost_safe.iter().all(|n| *n == 0),
        "fsynced writes were lost: {lost_safe:?}"
    );
    assert!(matches!(code, Some(0 | 2)), "{code:?}");
}

/// Starts a power-cut run and signals rebound with `sig` at trial 1's first
/// history record of type `when` (`fault-ok`: the services killed, their layers
/// aborted; `fault-end`: rolled back and mounted again, the services starting).
fn signal_mid_cut(
    dir: &std::path::Path,
    state: &std::path::Path,
    sig: &str,
    when: &str,
) -> std::path::PathBuf {
    let port = free_port();
    let text = scenario(port, "power-cut", true).replace("trials = 3", "trials = 2");
    let path = write_scenario(&dir.join("scenario"), &text);
    let out = dir.join("run");
    let mut child = rebound()
        .env("REBOUND_STATE_DIR", state)
        .args([
            "run",
            path.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    while !crate::docker_runs::history_lines(&out)
        .iter()
        .any(|r| r["type"] == when)
    {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("no {when} within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args([format!("-{sig}"), pid])
        .status()
        .expect("kill")
        .success());
    let _ = child.wait();
    out.join("data/app")
}

fn rebound_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/mounts")
        .expect("mounts")
        .lines()
        .filter(|l| l.starts_with("rebound-durable "))
        .map(String::from)
        .collect()
}

#[test]
fn sigint_mid_power_cut_and_rebound_heal_after_sigkill_leave_no_mount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state");
    // Ctrl-C: rebound finishes the cut (heal), tears the stack down, unmounts.
    let data = signal_mid_cut(&dir.path().join("int"), state.path(), "INT", "fault-ok");
    assert!(rebound_mounts().is_empty(), "{:?}", rebound_mounts());
    let names: Vec<_> = std::fs::read_dir(&data)
        .expect("the data directory reads after Ctrl-C")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(names.iter().any(|n| n == "items.log"), "{names:?}");
    assert!(
        !names.iter().any(|n| n == ".rebound-unsynced"),
        "the cut was not finished: {names:?}"
    );

    // SIGKILL once the layer is mounted again: the mount outlives rebound (its
    // connection dead) until `rebound heal`.
    let data = signal_mid_cut(&dir.path().join("kill"), state.path(), "KILL", "fault-end");
    let data = data.canonicalize().expect("data dir");
    let left = rebound_mounts();
    assert!(
        left.iter()
            .any(|l| l.contains(data.to_str().expect("utf8"))),
        "a killed rebound's mount should still be there: {left:?}"
    );
    let healed = rebound()
        .env("REBOUND_STATE_DIR", state.path())
        .arg("heal")
        .output()
        .expect("heal");
    assert_eq!(healed.status.code(), Some(0), "{}", text(&healed));
    assert!(
        text(&healed).contains("unmounted the power-loss layer"),
        "{}",
        text(&healed)
    );
    assert!(rebound_mounts().is_empty(), "{:?}", rebound_mounts());
    let names: Vec<_> = std::fs::read_dir(&data)
        .expect("the data directory reads after heal")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(!names.iter().any(|n| n == ".rebound-unsynced"), "{names:?}");
    // Heal kept the store: its (fsynced at creation) log is there and readable.
    assert!(
        names.iter().any(|n| n == "items.log"),
        "the store is gone: {names:?}"
    );
    std::fs::read(data.join("items.log")).expect("items.log reads");
}
