//! Runs on the process backend: the quick start, accuracy, verdicts, errors, Ctrl-C.

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::*;

fn slo_and_run(extra_run: &str) -> String {
    format!("[slo]\nsuccess-rate = 0.5\nrecover-within = \"5s\"\n\n[run]\nwarm-up = \"100ms\"\n{extra_run}\n")
}

#[test]
fn quickstart_passes_and_check_repeats_its_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let o = run_scenario(
        Path::new("scenarios/quickstart.toml"),
        &out,
        &["--trials", "20"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (header, rows) = read_csv(&out.join("trials.csv"));
    let want = "trial,outcome,fault,target,injected_at,recovered_at,recovery_ms,recovery_lower_ms,downtime_ms";
    for col in want.split(',') {
        assert!(
            header.iter().any(|h| h == col),
            "missing column {col} in {header:?}"
        );
    }
    assert_eq!(rows.len(), 20);
    assert!(column(&header, &rows, "outcome")
        .iter()
        .all(|o| o == "pass"));
    // demo-app sleeps 200 ms before listening: nothing can recover faster. Its own
    // clock (ready.log) must lie inside every bracket, and the bracket spans one
    // probe period plus the successful attempt's latency and its tick's lateness.
    let data = out.join("data/app");
    crate::truth::check_bracket(&out, &data, 20.0, 200.0).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.join("history.jsonl").is_file());
    let s = summary(&out);
    assert_eq!(s["verdict"], "pass");
    assert_eq!(s["details"]["passed"], 20);
    // SIGKILL and SIGTERM are two distributions: each has its own figures, and the
    // ECDF draws them as two series with their own medians. After SIGKILL the restart
    // policy waits its 100 ms back-off; `sigterm` starts the service again itself.
    let faults = s["per_fault"].as_array().expect("per_fault");
    let p50 = |i: usize| {
        faults[i]["verdict"]["recovery"]["p50_ms"]
            .as_f64()
            .expect("p50")
    };
    assert_eq!(faults.len(), 2, "{s}");
    assert_eq!(
        (faults[0]["fault"].as_str(), faults[1]["fault"].as_str()),
        (Some("sigkill"), Some("sigterm"))
    );
    assert_eq!(faults[0]["verdict"]["trials"], 10);
    assert!(
        p50(0) > p50(1) + 50.0,
        "sigkill p50 {} vs sigterm {}",
        p50(0),
        p50(1)
    );
    let ecdf = std::fs::read_to_string(out.join("charts/recovery-ecdf.svg")).expect("ecdf");
    for (i, fault) in ["sigkill", "sigterm"].iter().enumerate() {
        let label = format!("{fault} → app · p50 {:.0} ms", p50(i));
        assert!(ecdf.contains(&label), "no series `{label}` in the ECDF");
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(html.contains("<h2>Per fault</h2>"));
    assert!(
        text(&o).contains("per fault   sigkill → app"),
        "{}",
        text(&o)
    );

    let c = run(&["check", out.to_str().expect("utf8")]);
    assert_eq!(c.status.code(), Some(0), "{}", text(&c));
    let verdict_line = |t: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with("verdict"))
            .map(str::to_string)
    };
    assert_eq!(verdict_line(&text(&c)), verdict_line(&text(&o)));
    let recovery_line = |t: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with("recovery "))
            .map(str::to_string)
    };
    assert_eq!(recovery_line(&text(&c)), recovery_line(&text(&o)));

    // The assertion can fail: in a copy of the history, trial 1's last failed probe
    // attempt is moved to 1 µs before recovered_at, so recovery_lower lies after the
    // instant demo-app was really ready.
    let edited = dir.path().join("edited");
    std::fs::create_dir_all(&edited).expect("mkdir");
    for f in ["scenario.toml", "ports.json", "summary.json"] {
        std::fs::copy(out.join(f), edited.join(f)).expect("copy");
    }
    let history = std::fs::read_to_string(out.join("history.jsonl")).expect("history");
    let mut records: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let gate = records
        .iter()
        .find(|v| v["trial"] == 1 && v["type"] == "fault-end")
        .and_then(|v| v["elapsed_ns"].as_u64())
        .expect("trial 1 has a fault-end");
    let probes: Vec<usize> = (0..records.len())
        .filter(|i| {
            let v = &records[*i];
            v["trial"] == 1 && v["type"] == "probe" && v["start_ns"].as_u64() >= Some(gate)
        })
        .collect();
    let first_ok = probes
        .iter()
        .position(|i| records[*i]["ok"] == true)
        .expect("trial 1 recovered");
    assert!(
        first_ok > 0,
        "trial 1 has no failed attempt before recovering"
    );
    let (fail, ok) = (probes[first_ok - 1], probes[first_ok]);
    let end = records[ok]["start_ns"].as_u64().expect("ns")
        + records[ok]["latency_ns"].as_u64().expect("ns");
    records[fail]["start_ns"] = (end - 1_000).into();
    let lines: Vec<String> = records.iter().map(|v| v.to_string()).collect();
    std::fs::write(edited.join("history.jsonl"), lines.join("\n") + "\n").expect("write");
    let r = run(&["report", edited.to_str().expect("utf8")]);
    assert!(edited.join("trials.csv").is_file(), "{}", text(&r));
    let caught = crate::truth::check_bracket(&edited, &data, 20.0, 200.0);
    assert!(
        caught
            .as_ref()
            .is_err_and(|e| e.contains("trial 1") && e.contains("outside the bracket")),
        "the edited history passed: {caught:?}"
    );
}

#[test]
fn failing_restarts_with_policy_never_violate_the_slo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = format!(
        "name = \"failing\"\n{}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n[[probe]]\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n\n[slo]\nsuccess-rate = 0.99\nrecover-within = \"1s\"\n\n[run]\ntrials = 5\nwarm-up = \"100ms\"\n",
        demo_service(port, &["--fail-start-probability", "1.0"], "never", "0s"),
    );
    let path = write_scenario(dir.path(), &scenario);
    let out = dir.path().join("run");
    let o = run_scenario(&path, &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = summary(&out);
    assert_eq!(s["verdict"], "fail");
    assert_eq!(s["details"]["passed"], 0);
    assert!(text(&o).contains("FAIL"), "{}", text(&o));
}

#[test]
fn a_command_that_does_not_exist_exits_4_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = "name = \"missing\"\n[stack]\nbackend = \"process\"\n[[stack.service]]\nname = \"app\"\ncommand = [\"no-such-program-rebound-test\"]\n\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n[[probe]]\nkind = \"tcp\"\naddress = \"127.0.0.1:9\"\n\n[slo]\nrecover-within = \"1s\"\n";
    let path = write_scenario(dir.path(), scenario);
    let o = run(&[
        "run",
        path.to_str().expect("utf8"),
        "--out",
        dir.path().join("run").to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("no-such-program-rebound-test") && t.contains("No such file"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn an_unknown_key_exits_3_naming_the_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/quickstart.toml"
    ))
    .expect("quickstart");
    let bad = text_in.replace("stable-for = 3", "stable-for = 3\nstabel-for = 4");
    let line = bad
        .lines()
        .position(|l| l.starts_with("stabel-for"))
        .expect("line")
        + 1;
    let path = write_scenario(dir.path(), &bad);
    for args in [
        vec!["run", path.to_str().expect("utf8")],
        vec!["validate", path.to_str().expect("utf8")],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        let t = text(&o);
        assert!(
            t.contains("stabel-for") && t.contains(&format!("scenario.toml:{line}:")),
            "{t}"
        );
    }
    let o = run(&["run", "--trials", "many"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "usage errors exit 3: {}",
        text(&o)
    );
    let o = run(&["check", dir.path().to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("not a run directory"), "{}", text(&o));
}

#[test]
fn list_shows_the_shipped_scenarios() {
    let o = run(&["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("quickstart"));
}

#[test]
fn sigint_during_pause_heals_tears_down_and_keeps_finished_trials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = format!(
        "name = \"interrupt\"\n{}\n[[fault]]\nkind = \"pause-for\"\ntarget = \"app\"\nduration = \"4s\"\n\n[[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\ntimeout = \"200ms\"\n\n[slo]\nsuccess-rate = 0.5\nrecover-within = \"10s\"\n\n[run]\ntrials = 10\nwarm-up = \"100ms\"\n",
        demo_service(port, &[], "always", "0s"),
    );
    let path = write_scenario(dir.path(), &scenario);
    let out = dir.path().join("run");
    let mut child = rebound()
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
    // Wait until trial 2 has paused the app (trial 1 is then finished).
    let history = out.join("history.jsonl");
    let started = Instant::now();
    loop {
        let paused_in_trial_2 = std::fs::File::open(&history).is_ok_and(|f| {
            std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.contains("\"trial\":2") && l.contains("\"fault-ok\""))
        });
        if paused_in_trial_2 {
            break;
        }
        // A deadline that only catches a hang.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "trial 2 never paused the app"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids: Vec<u32> = std::io::BufReader::new(std::fs::File::open(&history).expect("history"))
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains("\"action\":\"started\""))
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(&l).ok()?["pid"]
                .as_u64()
                .map(|p| p as u32)
        })
        .collect();
    assert!(!pids.is_empty());
    assert!(
        pids.iter().any(|p| proc_state(*p) == Some('T')),
        "the app should be frozen now"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let code = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(code, Some(130));
    for pid in pids {
        assert_eq!(proc_state(pid), None, "process {pid} survived the run");
    }
    let (_, rows) = read_csv(&out.join("trials.csv"));
    assert_eq!(
        rows.len(),
        1,
        "trial 1 finished and is kept; the interrupted trial 2 is not counted"
    );
    let s = summary(&out);
    assert_eq!(s["interrupted"], true);
    assert_eq!(s["exit_code"], 130);
}

#[test]
fn signal_and_http_faults_really_happen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = format!(
        "name = \"signal-http\"\n{}\n[[fault]]\nkind = \"signal\"\ntarget = \"app\"\nsignal = \"HUP\"\n\n\
         [[fault]]\nkind = \"http\"\ntarget = \"app\"\nurl = \"http://127.0.0.1:{port}/items\"\nbody = '{{\"id\": \"from-fault\", \"value\": 7}}'\nexpect-status = 201\n\n\
         [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nperiod = \"10ms\"\n\n{}",
        demo_service(port, &[], "always", "0s"),
        slo_and_run("trials = 2")
    );
    let path = write_scenario(dir.path(), &scenario);
    let out = dir.path().join("run");
    let o = run_scenario(&path, &out, &[]);
    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    let history = std::fs::read_to_string(out.join("history.jsonl")).expect("history");
    let died_of_sighup = history.lines().any(|l| {
        l.contains("\"trial\":1")
            && l.contains("\"action\":\"exited\"")
            && l.contains("\"signal\":1")
    });
    assert!(died_of_sighup, "SIGHUP did not reach demo-app");
    let items = std::fs::read_to_string(out.join("data/app/items.log")).expect("items.log");
    assert!(
        items.contains("\"from-fault\""),
        "the http fault's write is not stored: {items}"
    );
}

fn writes_scenario(port: u16, unsafe_mode: bool) -> String {
    let extra: &[&str] = if unsafe_mode {
        &["--ack-before-fsync"]
    } else {
        &[]
    };
    format!(
        "name = \"writes\"\n{}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
         [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nperiod = \"20ms\"\n\n\
         [[workload]]\nkind = \"http-writes\"\nurl = \"http://127.0.0.1:{port}/items\"\nread-url = \"http://127.0.0.1:{port}/items/{{id}}\"\nrate = 100\nconcurrency = 4\n\n\
         [slo]\nsuccess-rate = 0.99\nrecover-within = \"5s\"\n\n[run]\ntrials = 5\nwarm-up = \"500ms\"\n",
        demo_service(port, extra, "always", "50ms"),
    )
}

#[test]
fn unsafe_acks_lose_writes_on_sigkill_and_safe_mode_loses_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();

    let unsafe_out = dir.path().join("unsafe");
    let o = run_scenario(
        &write_scenario(&dir.path().join("u"), &writes_scenario(port, true)),
        &unsafe_out,
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "lost writes must violate the SLO: {}",
        text(&o)
    );
    let (header, rows) = read_csv(&unsafe_out.join("trials.csv"));
    let lost: Vec<u64> = column(&header, &rows, "lost_acked_writes")
        .iter()
        .map(|x| x.parse().expect("count"))
        .collect();
    assert!(
        lost.iter().any(|n| *n > 0),
        "unsafe mode lost nothing: {lost:?}"
    );
    let ids = column(&header, &rows, "lost_ids");
    for (n, ids) in lost.iter().zip(&ids) {
        assert_eq!(
            ids.split_whitespace().count() as u64,
            *n,
            "every lost write is listed by id"
        );
    }
    let data_line = |t: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with("data "))
            .map(str::to_string)
    };
    assert!(data_line(&text(&o)).is_some(), "{}", text(&o));
    // Offline re-check recomputes the same loss from history.jsonl.
    let c = run(&["check", unsafe_out.to_str().expect("utf8")]);
    assert_eq!(c.status.code(), Some(1), "{}", text(&c));
    assert_eq!(data_line(&text(&c)), data_line(&text(&o)));

    let safe_out = dir.path().join("safe");
    let o = run_scenario(
        &write_scenario(&dir.path().join("s"), &writes_scenario(port, false)),
        &safe_out,
        &[],
    );
    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    let (header, rows) = read_csv(&safe_out.join("trials.csv"));
    assert_eq!(rows.len(), 5);
    assert!(
        column(&header, &rows, "lost_acked_writes")
            .iter()
            .all(|x| x == "0"),
        "safe mode lost writes"
    );
    let acked: u64 = column(&header, &rows, "ops_ok")
        .iter()
        .map(|x| x.parse::<u64>().expect("count"))
        .sum();
    assert!(
        acked > 100,
        "the check must have read back real writes, got {acked}"
    );
}

#[test]
fn report_recreates_every_output_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = format!(
        "name = \"rerender\"\n{}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
         [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nperiod = \"20ms\"\n\n\
         [[workload]]\nkind = \"http-writes\"\nurl = \"http://127.0.0.1:{port}/items\"\nread-url = \"http://127.0.0.1:{port}/items/{{id}}\"\nrate = 50\n\n\
         [slo]\nsuccess-rate = 0.5\nrecover-within = \"5s\"\np50 = \"2s\"\n\n[run]\ntrials = 3\nwarm-up = \"200ms\"\n",
        demo_service(port, &[], "always", "0s"),
    );
    let out = dir.path().join("run");
    let o = run_scenario(&write_scenario(dir.path(), &scenario), &out, &[]);
    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    let files = [
        "trials.csv",
        "services.csv",
        "summary.json",
        "junit.xml",
        "summary.md",
        "report.html",
        "charts/recovery-ecdf.svg",
        "charts/recovery-histogram.svg",
        "charts/recovery-by-trial.svg",
        "charts/success-rate.svg",
        "charts/timeline.svg",
        "charts/recovery-ecdf.png",
        "charts/timeline.png",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")))
        .collect();
    for f in files {
        std::fs::remove_file(out.join(f)).expect("remove");
    }
    let r = run(&["report", out.to_str().expect("utf8")]);
    assert_eq!(r.status.code(), o.status.code(), "{}", text(&r));
    for (f, old) in files.iter().zip(before) {
        let new = std::fs::read(out.join(f)).unwrap_or_else(|e| panic!("{f} not re-rendered: {e}"));
        assert!(new == old, "{f} differs after `rebound report`");
    }
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit");
    assert_eq!(
        junit.matches("<testcase ").count(),
        3 + 2,
        "3 trials + success rate + p50 limit: {junit}"
    );
    assert!(std::fs::read_to_string(out.join("summary.md"))
        .expect("md")
        .contains("success rate"));
    // report.html is self-contained: every chart inline, nothing loaded from elsewhere.
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert_eq!(html.matches("<svg").count(), 5, "five inline charts");
    assert!(
        !html.contains("src=") && !html.contains("<link"),
        "report.html must not load external assets"
    );
    assert!(
        html.contains("recovery time (ms)"),
        "axis labels carry units"
    );
    // A real browser opens it without console errors and can screenshot it.
    screenshot_in_chromium(&out.join("report.html"), &dir.path().join("report.png"));
}

#[test]
fn until_decided_stops_as_soon_as_the_sequential_rule_decides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = format!(
        "name = \"sequential\"\n{}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
         [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nperiod = \"10ms\"\n\n\
         [slo]\nsuccess-rate = 0.5\nrecover-within = \"5s\"\n\n[run]\nwarm-up = \"50ms\"\nstable-for = 2\n",
        demo_service(port, &[], "always", "0s"),
    );
    let out = dir.path().join("run");
    let o = run_scenario(
        &write_scenario(dir.path(), &scenario),
        &out,
        &["--until-decided", "--max-trials", "40"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (_, rows) = read_csv(&out.join("trials.csv"));
    // The PASS e-value bets on a failure rate of 5 % against 50 %: each clean trial
    // multiplies it by 0.95/0.5, and (0.95/0.5)^n ≥ 1/0.05 first at n = 5.
    assert_eq!(rows.len(), 5, "{}", text(&o));
    assert!(
        text(&o).contains("decided after 5 of at most 40 trials (35 saved"),
        "{}",
        text(&o)
    );
    let c = run(&["check", out.to_str().expect("utf8")]);
    assert_eq!(
        c.status.code(),
        Some(0),
        "the offline check applies the same sequential rule: {}",
        text(&c)
    );
}

#[test]
fn three_runs_of_15_clean_trials_pass_90_percent_on_their_pooled_evidence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = |trials: u32| {
        format!(
            "name = \"evidence\"\n{}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
             [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nperiod = \"10ms\"\n\n\
             [slo]\nsuccess-rate = 0.9\nrecover-within = \"5s\"\n\n[run]\ntrials = {trials}\nwarm-up = \"50ms\"\nstable-for = 2\n",
            demo_service(port, &[], "always", "0s"),
        )
    };
    let file = write_scenario(dir.path(), &scenario(15));
    let ledger = dir.path().join("ledger/evidence.jsonl");
    let ledger_arg = ledger.to_str().expect("utf8");
    let mut codes = Vec::new();
    let mut last = None;
    for i in 1..=3 {
        let out = dir.path().join(format!("run{i}"));
        let o = run_scenario(&file, &out, &["--evidence", ledger_arg]);
        let (_, rows) = read_csv(&out.join("trials.csv"));
        assert!(
            rows.iter().all(|r| r[1] == "pass"),
            "run {i}: every trial passes: {}",
            text(&o)
        );
        codes.push(o.status.code());
        if i == 3 {
            assert!(
                text(&o).contains("evidence    3 run(s) in")
                    && text(&o).contains("45/45 trials passed"),
                "{}",
                text(&o)
            );
        }
        last = Some(out);
    }
    // 15 clean trials prove at most 81.9 % (no single run can pass 90 %); the
    // pooled e-value 1.1^n reaches 20 at n = 32, i.e. in the third run.
    assert_eq!(codes, vec![Some(2), Some(2), Some(0)]);
    let lines = std::fs::read_to_string(&ledger).expect("ledger");
    assert_eq!(lines.lines().count(), 3, "{lines}");
    // Re-checking the third run decides on the same evidence.
    let last = last.expect("a run");
    let c = run(&["check", last.to_str().expect("utf8")]);
    assert_eq!(c.status.code(), Some(0), "{}", text(&c));
    // An edited scenario is another experiment: its evidence starts anew.
    let edited = write_scenario(dir.path(), &scenario(16));
    let out = dir.path().join("run-edited");
    let o = run_scenario(&edited, &out, &["--evidence", ledger_arg]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("evidence    1 run(s) in")
            && text(&o).contains("3 line(s) not counted (other scenarios or versions"),
        "{}",
        text(&o)
    );
}

#[test]
fn compare_says_no_change_for_a_a_and_regressed_for_a_twice_slower_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = |delay: &str| {
        format!(
            "name = \"compare\"\n{}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
             [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nperiod = \"10ms\"\n\n\
             [slo]\nsuccess-rate = 0.5\nrecover-within = \"5s\"\n\n[run]\ntrials = 12\nwarm-up = \"100ms\"\n",
            demo_service(port, &["--startup-delay", delay], "always", "0s"),
        )
    };
    let runs: Vec<std::path::PathBuf> = [("a1", "200ms"), ("a2", "200ms"), ("slow", "400ms")]
        .iter()
        .map(|(name, delay)| {
            let out = dir.path().join(name);
            let o = run_scenario(
                &write_scenario(&dir.path().join(format!("s-{name}")), &scenario(delay)),
                &out,
                &[],
            );
            assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
            out
        })
        .collect();
    let s = |p: &std::path::PathBuf| p.to_str().expect("utf8").to_string();
    let aa = run(&["compare", &s(&runs[0]), &s(&runs[1])]);
    assert_eq!(aa.status.code(), Some(0), "{}", text(&aa));
    let aa_text = text(&aa);
    assert_eq!(aa_text.matches("No change").count(), 4, "{aa_text}");
    assert_eq!(
        aa_text.matches("No change (detects").count(),
        4,
        "{aa_text}"
    );
    let slow = run(&["compare", &s(&runs[0]), &s(&runs[2])]);
    assert_eq!(slow.status.code(), Some(1), "{}", text(&slow));
    let line = text(&slow)
        .lines()
        .find(|l| l.contains("median recovery"))
        .map(str::to_string)
        .expect("median line");
    assert!(line.contains("Regressed"), "{line}");
    // The same gate inline: run --baseline exits 1 on the regression.
    let inline = run_scenario(
        &write_scenario(&dir.path().join("s-inline"), &scenario("400ms")),
        &dir.path().join("inline"),
        &["--baseline", &s(&runs[0])],
    );
    assert_eq!(inline.status.code(), Some(1), "{}", text(&inline));
}

#[test]
fn an_interleaved_ab_run_alternates_abba_blocks_and_finds_a_twice_slower_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = |name: &str, delay: &str| {
        let text = format!(
            "name = \"{name}\"\n{}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
             [[fault]]\nkind = \"sigterm\"\ntarget = \"app\"\n\n\
             [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nperiod = \"10ms\"\n\n\
             [slo]\nsuccess-rate = 0.5\nrecover-within = \"5s\"\n\n[run]\ntrials = 6\nwarm-up = \"100ms\"\n",
            demo_service(port, &["--startup-delay", delay], "always", "0s"),
        );
        write_scenario(&dir.path().join(name), &text)
    };
    let (a, b) = (scenario("fast", "150ms"), scenario("slow", "300ms"));
    let out = dir.path().join("ab");
    let o = run(&[
        "ab",
        a.to_str().expect("utf8"),
        b.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--seed",
        "7",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let line = text(&o)
        .lines()
        .find(|l| l.contains("recovery shift"))
        .map(str::to_string)
        .expect("shift line");
    assert!(line.contains("Regressed"), "{line}");
    // ABBA: blocks 1, 3, 5 run the baseline first, 2, 4, 6 the candidate.
    let mut blocks: Vec<String> = std::fs::read_dir(out.join("blocks"))
        .expect("blocks")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    blocks.sort();
    assert_eq!(blocks.len(), 12, "{blocks:?}");
    assert_eq!(
        &blocks[..4],
        [
            "001-baseline-001",
            "002-candidate-001",
            "003-candidate-002",
            "004-baseline-002"
        ]
    );
    // Both sides ran the same schedule: block j of each injected the same fault.
    let fault_of = |name: &str| {
        let (h, rows) = read_csv(&out.join("blocks").join(name).join("trials.csv"));
        column(&h, &rows, "fault")
    };
    for j in 1..=6 {
        let find = |side: &str| {
            blocks
                .iter()
                .find(|b| b.ends_with(&format!("{side}-{j:03}")))
                .expect("block")
                .clone()
        };
        assert_eq!(
            fault_of(&find("baseline")),
            fault_of(&find("candidate")),
            "block {j}"
        );
    }
    // Each side is one merged run of 6 trials with both faults.
    for side in ["baseline", "candidate"] {
        let (h, rows) = read_csv(&out.join(side).join("trials.csv"));
        let mut faults = column(&h, &rows, "fault");
        faults.sort();
        assert_eq!(
            faults,
            ["sigkill", "sigkill", "sigkill", "sigterm", "sigterm", "sigterm"]
        );
    }
    assert!(out.join("compare.txt").is_file() && out.join("compare.json").is_file());
    // Too few blocks is refused before anything runs.
    let few = run(&[
        "ab",
        a.to_str().expect("utf8"),
        b.to_str().expect("utf8"),
        "--trials",
        "2",
        "--block",
        "2",
        "--out",
        dir.path().join("few").to_str().expect("utf8"),
    ]);
    assert_eq!(few.status.code(), Some(3), "{}", text(&few));
    assert!(
        text(&few).contains("needs at least 2 per side"),
        "{}",
        text(&few)
    );
}

#[test]
fn shards_cover_the_schedule_and_merge_into_one_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = format!(
        "name = \"sharded\"\n{}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n[[fault]]\nkind = \"sigterm\"\ntarget = \"app\"\n\n\
         [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\nperiod = \"10ms\"\n\n\
         [slo]\nsuccess-rate = 0.5\nrecover-within = \"5s\"\n\n[run]\ntrials = 7\nwarm-up = \"50ms\"\n",
        demo_service(port, &[], "always", "0s"),
    );
    let path = write_scenario(dir.path(), &scenario);
    let shards: Vec<std::path::PathBuf> = ["1/2", "2/2"]
        .iter()
        .enumerate()
        .map(|(i, shard)| {
            let out = dir.path().join(format!("shard{i}"));
            let o = run_scenario(&path, &out, &["--shard", shard]);
            assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
            out
        })
        .collect();
    let faults = |d: &std::path::Path| {
        let (h, rows) = read_csv(&d.join("trials.csv"));
        column(&h, &rows, "fault")
    };
    // 7 trials over 2 shards: global trials 1,3,5,7 and 2,4,6 of the round-robin.
    assert_eq!(faults(&shards[0]), ["sigkill"; 4]);
    assert_eq!(faults(&shards[1]), ["sigterm"; 3]);
    let merged = dir.path().join("merged");
    let m = run(&[
        "merge",
        shards[0].to_str().expect("utf8"),
        shards[1].to_str().expect("utf8"),
        "--out",
        merged.to_str().expect("utf8"),
    ]);
    assert!(matches!(m.status.code(), Some(0 | 2)), "{}", text(&m));
    let (h, rows) = read_csv(&merged.join("trials.csv"));
    assert_eq!(
        column(&h, &rows, "trial"),
        ["1", "2", "3", "4", "5", "6", "7"]
    );
    assert_eq!(summary(&merged)["details"]["trials"], 7);
    // The merged directory is a run like any other.
    let c = run(&["check", merged.to_str().expect("utf8")]);
    assert_eq!(c.status.code(), m.status.code(), "{}", text(&c));
    let again = run(&[
        "merge",
        shards[0].to_str().expect("utf8"),
        shards[1].to_str().expect("utf8"),
        "--out",
        merged.to_str().expect("utf8"),
    ]);
    assert_eq!(
        again.status.code(),
        Some(3),
        "merging into an existing run must be refused"
    );
    // A shard made by another rebound version is refused, with both versions named.
    let older = dir.path().join("older");
    std::fs::create_dir_all(&older).expect("mkdir");
    for f in ["scenario.toml", "history.jsonl"] {
        std::fs::copy(shards[1].join(f), older.join(f)).expect("copy");
    }
    let history = std::fs::read_to_string(older.join("history.jsonl")).expect("history");
    let (first, rest) = history.split_once('\n').expect("lines");
    let mut start: serde_json::Value = serde_json::from_str(first).expect("json");
    assert_eq!(start["rebound"], env!("CARGO_PKG_VERSION"), "{first}");
    start["rebound"] = "0.0.9".into();
    std::fs::write(older.join("history.jsonl"), format!("{start}\n{rest}")).expect("write");
    let refused = run(&[
        "merge",
        shards[0].to_str().expect("utf8"),
        older.to_str().expect("utf8"),
        "--out",
        dir.path().join("mixed").to_str().expect("utf8"),
    ]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("was run by rebound 0.0.9")
            && text(&refused).contains(&format!("by rebound {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        text(&refused)
    );
    // With a ledger: the merged run is one entry made of its shards, and a second
    // merge of the same shards does not count their trials twice.
    let ledger = dir.path().join("evidence.jsonl");
    let merge_into = |name: &str| {
        let out = dir.path().join(name);
        let o = run(&[
            "merge",
            shards[0].to_str().expect("utf8"),
            shards[1].to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
            "--evidence",
            ledger.to_str().expect("utf8"),
        ]);
        assert_eq!(o.status.code(), m.status.code(), "{}", text(&o));
        summary(&out)
    };
    for name in ["merged-e1", "merged-e2"] {
        let s = merge_into(name);
        assert_eq!(s["evidence"]["runs"], 1, "{s}");
        assert_eq!(s["evidence"]["trials"], 7, "{s}");
    }
    let lines = std::fs::read_to_string(&ledger).expect("ledger");
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(lines.contains("\"parts\":["), "{lines}");
    // A shard of an edited scenario is another experiment: refused.
    let edited = dir.path().join("shard-edited");
    std::fs::create_dir(&edited).expect("mkdir");
    for f in std::fs::read_dir(&shards[1]).expect("shard") {
        let f = f.expect("entry").path();
        if f.is_file() {
            std::fs::copy(&f, edited.join(f.file_name().expect("name"))).expect("copy");
        }
    }
    let toml = edited.join("scenario.toml");
    let text_of = std::fs::read_to_string(&toml).expect("scenario") + "# edited\n";
    std::fs::write(&toml, text_of).expect("write");
    let other = run(&[
        "merge",
        shards[0].to_str().expect("utf8"),
        edited.to_str().expect("utf8"),
        "--out",
        dir.path().join("merged-x").to_str().expect("utf8"),
    ]);
    assert_eq!(other.status.code(), Some(3), "{}", text(&other));
    assert!(
        text(&other).contains("ran another version of scenario `sharded`"),
        "{}",
        text(&other)
    );
}

/// A run directory written by the previous release (tests/fixtures/runs/quickstart-v0:
/// no `late_ns`, no format version) re-checks and re-renders to the same verdict and
/// the same trials.csv.
#[test]
fn a_run_dir_of_the_previous_release_rechecks_to_its_verdict() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs/quickstart-v0");
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["scenario.toml", "history.jsonl", "summary.json"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).expect("copy");
    }
    let c = run(&["check", dir.path().to_str().expect("utf8")]);
    assert_eq!(c.status.code(), Some(2), "{}", text(&c));
    assert!(text(&c).contains("6/6 (100.0%)"), "{}", text(&c));
    let r = run(&["report", dir.path().to_str().expect("utf8")]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    let old: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("summary.json")).expect("summary"),
    )
    .expect("json");
    let new = summary(dir.path());
    assert_eq!(new["verdict"], old["verdict"]);
    assert_eq!(new["details"], old["details"]);
    // Every column the previous release wrote has the same values; later releases
    // may add columns (probe_gap_ms).
    let (old_header, old_rows) = read_csv(&fixture.join("trials.csv"));
    let (new_header, new_rows) = read_csv(&dir.path().join("trials.csv"));
    assert_eq!(old_rows.len(), new_rows.len());
    for name in &old_header {
        assert_eq!(
            column(&new_header, &new_rows, name),
            column(&old_header, &old_rows, name),
            "column {name}"
        );
    }
    let gaps = column(&new_header, &new_rows, "probe_gap_ms");
    assert!(
        gaps.iter().all(|g| g.parse::<f64>().is_ok_and(|g| g > 0.0)),
        "{gaps:?}"
    );
}

/// `when = "app log /pattern/"`: the second SIGKILL waits for the restarted
/// demo-app to log that it listens (read from its log file as it is written),
/// and the line is in the history before the second fault.
#[test]
fn a_follow_up_fires_on_a_logged_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = format!(
        "name = \"log-trigger\"\n{}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
         [[fault.then]]\nwhen = \"app log /listening on .* \\\\(boot [0-9]+/\"\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
         [[probe]]\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n\n{}trials = 5\n",
        demo_service(port, &[], "on-failure", "100ms"),
        slo_and_run(""),
    );
    let path = write_scenario(dir.path(), &scenario);
    let out = dir.path().join("run");
    let o = run_scenario(&path, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let history = std::fs::read_to_string(out.join("history.jsonl")).expect("history");
    let records: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    for trial in 1..=5 {
        let of = |event: &str| -> Vec<usize> {
            records
                .iter()
                .enumerate()
                .filter(|(_, r)| r["trial"] == trial && r["type"] == event)
                .map(|(i, _)| i)
                .collect()
        };
        let oks = of("fault-ok");
        assert_eq!(oks.len(), 2, "trial {trial}: two faults");
        let logs: Vec<usize> = of("log")
            .into_iter()
            .filter(|&i| {
                records[i]["line"]
                    .as_str()
                    .is_some_and(|l| l.contains("listening on"))
            })
            .collect();
        assert!(
            logs.iter().any(|&l| l > oks[0] && l < oks[1]),
            "trial {trial}: the line came between the faults: oks {oks:?}, logs {logs:?}"
        );
        let detail = records[oks[1]]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("when app log /listening on"), "{detail}");
    }
}
