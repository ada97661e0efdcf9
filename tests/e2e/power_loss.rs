//! `power-cut` on the process backend: demo-app's stores on `durable-dirs` under a
//! stream of writes. Acknowledged without fsync (the file store, a rename without a
//! directory fsync, SQLite with synchronous = OFF), a SIGKILL loses nothing (the
//! page cache keeps the writes) and a power cut loses them; made durable before the
//! acknowledgement, a power cut loses none. No mount of rebound's is left.

use crate::helpers::*;

fn scenario(port: u16, fault: &str, flags: &[&str], model: &str) -> String {
    format!(
        "name = \"power\"\n{}durable-dirs = [\"${{run_dir}}/data/app\"]\ndurability = \"{model}\"\n\n\
         [[fault]]\nkind = \"{fault}\"\ntarget = \"app\"\n\n\
         [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nperiod = \"20ms\"\n\n\
         [[workload]]\nkind = \"http-writes\"\nurl = \"http://127.0.0.1:{port}/items\"\nread-url = \"http://127.0.0.1:{port}/items/{{id}}\"\nrate = 100\nconcurrency = 4\n\n\
         [slo]\nsuccess-rate = 0.99\nrecover-within = \"5s\"\n\n[run]\ntrials = 3\nwarm-up = \"500ms\"\n",
        demo_service(port, flags, "always", "50ms"),
    )
}

/// One configuration of demo-app (`flags`) under `fault` with the layer's `model`.
struct Config<'a> {
    name: &'a str,
    fault: &'a str,
    flags: &'a [&'a str],
    model: &'a str,
}

/// Runs one configuration; returns (exit code, lost per trial, acknowledged in all).
fn lost(dir: &std::path::Path, c: &Config<'_>) -> (Option<i32>, Vec<u64>, u64) {
    let port = free_port();
    let name = c.name;
    let out = dir.join(name);
    let o = run_scenario(
        &write_scenario(
            &dir.join(format!("{name}-scenario")),
            &scenario(port, c.fault, c.flags, c.model),
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
    assert!(
        acked > 50,
        "{name}: the workload must have written: {acked}"
    );
    assert!(
        rebound_mounts().is_empty(),
        "{name}: a mount is left: {:?}",
        rebound_mounts()
    );
    (o.status.code(), lost, acked)
}

/// `c` loses acknowledged writes in some trial, and the run fails for it.
fn loses(dir: &std::path::Path, c: &Config<'_>) {
    let (code, lost, _) = lost(dir, c);
    assert!(
        lost.iter().any(|n| *n > 0),
        "{}: nothing acknowledged was lost: {lost:?}",
        c.name
    );
    assert_eq!(code, Some(1), "{}: lost writes fail the SLO", c.name);
}

/// `c` loses no acknowledged write in any trial.
fn keeps(dir: &std::path::Path, c: &Config<'_>) {
    let (code, lost, _) = lost(dir, c);
    assert!(
        lost.iter().all(|n| *n == 0),
        "{}: acknowledged writes were lost: {lost:?}",
        c.name
    );
    assert!(matches!(code, Some(0 | 2)), "{}: {code:?}", c.name);
}

#[test]
fn a_power_cut_loses_the_unsynced_writes_a_sigkill_keeps_and_none_that_were_fsynced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let strict = "posix-strict";
    keeps(
        dir.path(),
        &Config {
            name: "nofsync-sigkill",
            fault: "sigkill",
            flags: &["--no-fsync"],
            model: strict,
        },
    );
    loses(
        dir.path(),
        &Config {
            name: "nofsync-power-cut",
            fault: "power-cut",
            flags: &["--no-fsync"],
            model: strict,
        },
    );
    keeps(
        dir.path(),
        &Config {
            name: "fsync-power-cut",
            fault: "power-cut",
            flags: &[],
            model: strict,
        },
    );
}

#[test]
fn a_rename_without_a_directory_fsync_is_lost_to_a_power_cut_and_kept_with_one_under_both_models() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unsafe_rename: &[&str] = &["--file-per-item", "--no-dir-fsync"];
    keeps(
        dir.path(),
        &Config {
            name: "rename-sigkill",
            fault: "sigkill",
            flags: unsafe_rename,
            model: "posix-strict",
        },
    );
    loses(
        dir.path(),
        &Config {
            name: "rename-power-cut",
            fault: "power-cut",
            flags: unsafe_rename,
            model: "posix-strict",
        },
    );
    for model in ["posix-strict", "ext4-like"] {
        keeps(
            dir.path(),
            &Config {
                name: &format!("rename-dir-fsync-{model}"),
                fault: "power-cut",
                flags: &["--file-per-item"],
                model,
            },
        );
    }
}

#[test]
fn sqlite_synchronous_off_loses_commits_to_a_power_cut_only_and_extra_loses_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let off: &[&str] = &["--sqlite", "--sqlite-synchronous", "off"];
    keeps(
        dir.path(),
        &Config {
            name: "sqlite-off-sigkill",
            fault: "sigkill",
            flags: off,
            model: "posix-strict",
        },
    );
    loses(
        dir.path(),
        &Config {
            name: "sqlite-off-power-cut",
            fault: "power-cut",
            flags: off,
            model: "posix-strict",
        },
    );
    keeps(
        dir.path(),
        &Config {
            name: "sqlite-extra-power-cut",
            fault: "power-cut",
            flags: &["--sqlite", "--sqlite-synchronous", "extra"],
            model: "posix-strict",
        },
    );
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
    signal_mid(dir, state, "power-cut", sig, when)
}

/// Runs `fault` (the kind, and more keys after a closing quote) on demo-app and
/// sends `sig` to rebound once the history shows `when`; returns the data dir.
fn signal_mid(
    dir: &std::path::Path,
    state: &std::path::Path,
    fault: &str,
    sig: &str,
    when: &str,
) -> std::path::PathBuf {
    let port = free_port();
    let text =
        scenario(port, fault, &["--no-fsync"], "posix-strict").replace("trials = 3", "trials = 2");
    signal_mid_run(dir, state, &text, sig, when);
    dir.join("run/data/app")
}

/// Runs the scenario `text` (written under `dir`, run into `dir/run`) and sends
/// `sig` to rebound once the history shows `when`; a terminating signal must end
/// it with 130.
fn signal_mid_run(
    dir: &std::path::Path,
    state: &std::path::Path,
    text: &str,
    sig: &str,
    when: &str,
) {
    let path = write_scenario(&dir.join("scenario"), text);
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
        if started.elapsed() > std::time::Duration::from_secs(180) {
            let _ = child.kill();
            panic!("no {when} within 180 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args([format!("-{sig}"), pid])
        .status()
        .expect("kill")
        .success());
    let status = child.wait().expect("wait");
    if sig != "KILL" {
        assert_eq!(
            status.code(),
            Some(130),
            "SIG{sig} mid-fault exits 130 (interrupted, healed)"
        );
    }
}

/// `rebound heal` on `state`: exits 0 and says it unmounted a layer; its output.
fn heal_unmounts(state: &std::path::Path) -> String {
    let healed = rebound()
        .env("REBOUND_STATE_DIR", state)
        .arg("heal")
        .output()
        .expect("heal");
    let said = text(&healed);
    assert_eq!(healed.status.code(), Some(0), "{said}");
    assert!(said.contains("unmounted the power-loss layer"), "{said}");
    said
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
fn sigint_sigterm_sighup_mid_power_cut_and_rebound_heal_after_sigkill_leave_no_mount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state");
    // Ctrl-C, SIGTERM, SIGHUP: rebound finishes the cut (heal), tears the stack
    // down, unmounts.
    for sig in ["INT", "TERM", "HUP"] {
        let data = signal_mid_cut(&dir.path().join(sig), state.path(), sig, "fault-ok");
        assert!(
            rebound_mounts().is_empty(),
            "SIG{sig}: {:?}",
            rebound_mounts()
        );
        let names: Vec<_> = std::fs::read_dir(&data)
            .expect("the data directory reads after the signal")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(
            names.iter().any(|n| n == "items.log"),
            "SIG{sig}: {names:?}"
        );
        assert!(
            !names.iter().any(|n| n == ".rebound-unsynced"),
            "SIG{sig}: the cut was not finished: {names:?}"
        );
    }

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
    heal_unmounts(state.path());
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

/// Lost acknowledged writes per trial of each fault, of a shipped docker scenario
/// run for `trials` (alternating sigkill and power-cut).
fn losses(dir: &std::path::Path, scenario: &str, trials: &str) -> (Vec<u64>, Vec<u64>) {
    let out = dir.join(scenario);
    let o = run_scenario(
        std::path::Path::new(&format!("scenarios/{scenario}.toml")),
        &out,
        &["--trials", trials],
    );
    let (header, rows) = read_csv(&out.join("trials.csv"));
    assert_eq!(rows.len().to_string(), trials, "{scenario}: {}", text(&o));
    let faults = column(&header, &rows, "fault");
    let lost = column(&header, &rows, "lost_acked_writes");
    let acked = column(&header, &rows, "ops_ok");
    let outcomes = column(&header, &rows, "outcome");
    let (mut kill, mut cut) = (Vec::new(), Vec::new());
    for i in 0..rows.len() {
        assert_ne!(outcomes[i], "unknown", "{scenario}: {}", text(&o));
        assert!(
            acked[i].parse::<u64>().expect("count") > 50,
            "{scenario}: trial {} wrote too little to tell",
            i + 1
        );
        let n: u64 = lost[i].parse().expect("count");
        match faults[i].as_str() {
            "sigkill" => kill.push(n),
            "power-cut" => cut.push(n),
            other => panic!("{scenario}: unexpected fault {other}"),
        }
    }
    assert!(
        !kill.is_empty() && !cut.is_empty(),
        "{scenario}: both faults ran"
    );
    let history = std::fs::read_to_string(out.join("history.jsonl")).expect("history");
    assert!(
        history.contains("posix-strict:") && history.contains("unsynced bytes"),
        "{scenario}: the cut's loss is not in the history"
    );
    assert!(
        rebound_mounts().is_empty(),
        "{scenario}: {:?}",
        rebound_mounts()
    );
    assert!(
        !out.join("durable").exists(),
        "{scenario}: the layer's data outlived the stack"
    );
    (kill, cut)
}

#[test]
fn postgres_with_fsync_off_loses_acknowledged_rows_to_a_power_cut_only_and_with_fsync_on_none() {
    crate::docker_runs::require_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let (kill, cut) = losses(dir.path(), "docker-db-power-cut-no-fsync", "4");
    assert!(
        kill.iter().all(|n| *n == 0),
        "SIGKILL lost rows the page cache kept: {kill:?}"
    );
    assert!(
        cut.iter().any(|n| *n > 0),
        "fsync = off lost nothing to a power cut: {cut:?}"
    );
    let (kill, cut) = losses(dir.path(), "docker-db-power-cut", "4");
    assert!(kill.iter().all(|n| *n == 0), "{kill:?}");
    assert!(
        cut.iter().all(|n| *n == 0),
        "fsync = on lost committed rows: {cut:?}"
    );
    assert_eq!(
        crate::crash_safety::docker(&["ps", "-aq", "--filter", "status=paused"]),
        "",
        "nothing paused"
    );
}

/// The second store of the contrast: Redis acknowledges a write with
/// `appendfsync everysec` before it is durable, with `always` after.
#[test]
fn redis_with_appendfsync_everysec_loses_acknowledged_writes_to_a_power_cut_only_and_with_always_none(
) {
    crate::docker_runs::require_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let (kill, cut) = losses(dir.path(), "docker-redis-power-cut-everysec", "4");
    assert!(
        kill.iter().all(|n| *n == 0),
        "SIGKILL lost writes the page cache kept: {kill:?}"
    );
    assert!(
        cut.iter().any(|n| *n > 0),
        "appendfsync everysec lost nothing to a power cut: {cut:?}"
    );
    let (kill, cut) = losses(dir.path(), "docker-redis-power-cut", "4");
    assert!(kill.iter().all(|n| *n == 0), "{kill:?}");
    assert!(
        cut.iter().all(|n| *n == 0),
        "appendfsync always lost acknowledged writes: {cut:?}"
    );
}

#[test]
fn postgres_panics_on_a_failed_fsync_replays_its_wal_and_loses_no_acknowledged_row() {
    crate::docker_runs::require_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("io-error");
    let o = run_scenario(
        std::path::Path::new("scenarios/docker-db-io-error.toml"),
        &out,
        &["--trials", "1"],
    );
    let (header, rows) = read_csv(&out.join("trials.csv"));
    assert_eq!(rows.len(), 1, "{}", text(&o));
    assert_ne!(
        column(&header, &rows, "outcome")[0],
        "unknown",
        "{}",
        text(&o)
    );
    assert_eq!(column(&header, &rows, "lost_acked_writes")[0], "0");
    let history = crate::docker_runs::history_lines(&out);
    // The fault says what it matched: PostgreSQL's fsyncs under its data directory.
    let end = history
        .iter()
        .find(|r| r["type"] == "fault-end")
        .unwrap_or_else(|| panic!("no fault-end: {}", text(&o)));
    let detail = end.to_string();
    assert!(
        detail.contains("fsync operations fail with EIO")
            && detail.contains("operation(s) matched (first: fsync"),
        "{detail}"
    );
    // PostgreSQL's own account (record-log): it PANICked and replayed its WAL.
    let logs: Vec<String> = history
        .iter()
        .filter(|r| r["type"] == "log" && r["service"] == "db")
        .map(|r| r["line"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("PANIC")),
        "no PANIC recorded: {logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("automatic recovery in progress") || l.contains("redo starts")),
        "no crash recovery recorded: {logs:#?}"
    );
    assert!(rebound_mounts().is_empty(), "{:?}", rebound_mounts());
    assert!(
        !out.join("durable").exists(),
        "the layer's data outlived the stack"
    );
}

#[test]
fn sigint_sigterm_sighup_mid_disk_fault_lift_it_and_leave_no_mount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state");
    for sig in ["INT", "TERM", "HUP"] {
        let at = dir.path().join(sig);
        let data = signal_mid(
            &at,
            state.path(),
            "io-latency-for\"\ndelay = \"20ms\"\nduration = \"60s",
            sig,
            "fault-ok",
        );
        let history = crate::docker_runs::history_lines(&at.join("run"));
        let healed = history
            .iter()
            .find(|r| r["type"] == "heal-ok")
            .unwrap_or_else(|| panic!("SIG{sig}: no heal-ok: {history:#?}"));
        assert!(
            healed.to_string().contains("lifted the disk fault"),
            "SIG{sig}: {healed}"
        );
        assert!(
            rebound_mounts().is_empty(),
            "SIG{sig}: {:?}",
            rebound_mounts()
        );
        std::fs::read(data.join("items.log")).expect("the store reads after the signal");
    }
}

/// What of the run in `out` is on the engine now: its containers and networks
/// (by its `rebound.run` label, from the history's run-start), and any paused
/// container of it.
fn run_objects(out: &std::path::Path) -> Vec<String> {
    let history = crate::docker_runs::history_lines(out);
    let id = history
        .iter()
        .find(|r| r["type"] == "run-start")
        .and_then(|r| r["run_id"].as_str())
        .unwrap_or_else(|| panic!("no run-start in {}", out.display()))
        .to_string();
    let label = format!("label=rebound.run={id}");
    let d = crate::crash_safety::docker;
    let mut found = Vec::new();
    for (what, args) in [
        ("container", vec!["ps", "-aq", "--filter", &label]),
        ("network", vec!["network", "ls", "-q", "--filter", &label]),
        (
            "paused",
            vec!["ps", "-q", "--filter", &label, "--filter", "status=paused"],
        ),
    ] {
        found.extend(d(&args).lines().map(|l| format!("{what} {l}")));
    }
    found
}

#[test]
fn ctrl_c_mid_docker_power_cut_finishes_it_and_rebound_heal_after_sigkill_removes_mount_and_stack()
{
    let shipped = std::fs::read_to_string("scenarios/docker-db-power-cut.toml").expect("scenario");
    let repo = env!("CARGO_MANIFEST_DIR");
    let toml = shipped
        .replace("\"../docker/", &format!("\"{repo}/docker/"))
        .replace("[[fault]]\nkind = \"sigkill\"\ntarget = \"db\"\n", "")
        .replace("trials = 4", "trials = 2");
    assert!(!toml.contains("sigkill\""), "only the power cut: {toml}");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state");

    // Ctrl-C once PostgreSQL is frozen and its layer aborted: the cut is finished
    // (rolled back), the stack torn down, the layer unmounted.
    signal_mid_run(
        &dir.path().join("int"),
        state.path(),
        &toml,
        "INT",
        "fault-ok",
    );
    assert!(rebound_mounts().is_empty(), "{:?}", rebound_mounts());
    assert_eq!(
        run_objects(&dir.path().join("int/run")),
        Vec::<String>::new(),
        "nothing of the run is left"
    );
    let history = crate::docker_runs::history_lines(&dir.path().join("int/run"));
    assert!(
        history.iter().any(|r| r["type"] == "heal-ok"),
        "the cut was healed: {history:#?}"
    );

    // SIGKILL once the layer is mounted again: the mount and the stack outlive
    // rebound until `rebound heal`.
    signal_mid_run(
        &dir.path().join("kill"),
        state.path(),
        &toml,
        "KILL",
        "fault-end",
    );
    assert!(
        !rebound_mounts().is_empty(),
        "a killed rebound's mount is still there"
    );
    let killed = dir.path().join("kill/run");
    assert!(
        run_objects(&killed)
            .iter()
            .any(|o| o.starts_with("container ")),
        "a killed rebound's stack is still there"
    );
    let healed = heal_unmounts(state.path());
    assert!(rebound_mounts().is_empty(), "{:?}", rebound_mounts());
    assert_eq!(
        run_objects(&killed),
        Vec::<String>::new(),
        "heal removed the stack: {healed}"
    );
}
