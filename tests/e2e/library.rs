//! rebound as a library inside a test: PostgreSQL and the demo app started with
//! testcontainers, the scenario built in code, the SLO asserted — and a failing
//! SLO reported as a failed test whose message is the console summary.

#[path = "../../examples/common/pg_app.rs"]
mod pg_app;

use std::time::Duration;

use rebound::{Fault, Probe, Scenario, Slo, Workload};

use crate::helpers::{rebound, RemoveOnDrop};

/// The stack, and everything labelled with its tag removed on every path.
async fn stack(name: &str) -> (pg_app::PgApp, RemoveOnDrop, tempfile::TempDir) {
    let tag = format!("lib-{name}-{}", std::process::id());
    let guard = RemoveOnDrop(format!("rebound.run={tag}"));
    let dir = tempfile::tempdir().expect("tempdir");
    // This process's own index of unfinished runs (as the binary's tests have).
    std::env::set_var("REBOUND_STATE_DIR", dir.path().join("state"));
    let s = pg_app::PgApp::start(&tag).await.expect(
        "testcontainers starts rebound/postgres and rebound/demo-app (docker/images/build.sh)",
    );
    (s, guard, dir)
}

fn writes(app: &str) -> Workload {
    Workload::http_writes(format!("{app}/items"), format!("{app}/items/{{id}}"))
        .set("rate", 40.0)
        .set("timeout", Duration::from_secs(2))
}

// 3 of 3 proves 20 % at 95 % confidence: few trials keep CI short; a
// qualification run asks for more trials and a higher rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigkilled_under_writes_recovers_every_time_and_loses_no_acknowledged_write() {
    let (stack, _guard, dir) = stack("pass").await;
    let app = format!("http://127.0.0.1:{}", stack.app_port);
    let out = dir.path().join("run");
    let run = Scenario::new("lib-pg-sigkill")
        .containers(stack.ids())
        .fault(Fault::sigkill("db"))
        .probe(Probe::http(format!("{app}/readyz")).set("period", Duration::from_millis(20)))
        .probe(Probe::tcp("db", 5432))
        .workload(writes(&app))
        .slo(
            Slo::recover_within(Duration::from_secs(10))
                .success_rate(0.2)
                .max_lost_writes(0),
        )
        .trials(3)
        .run_setting("warm-up", Duration::from_secs(1))
        .out(&out)
        .run()
        .await
        .expect("the run ran");
    run.assert_slo();
    assert_eq!(run.summary.verdict.trials, 3);
    assert_eq!(run.summary.verdict.passed, 3, "{}", run.console());
    assert_eq!(run.lost_writes(), 0);
    for t in &run.trials {
        // The engine's restart policy brought PostgreSQL back each time, and the
        // recovery was measured, not assumed.
        assert!(t.restarts >= 1, "trial {}: {t:?}", t.trial);
        assert!(t.recovery_ms.is_some_and(|ms| ms > 0.0), "{t:?}");
        assert_eq!(t.target, "db");
    }
    // Writes were acknowledged during the trials (the read-back had something to find).
    let csv = std::fs::read_to_string(out.join("trials.csv")).expect("trials.csv");
    let (header, rows) = crate::helpers::read_csv(&out.join("trials.csv"));
    let ok: u64 = crate::helpers::column(&header, &rows, "ops_ok")
        .iter()
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .sum();
    assert!(ok >= 30, "{csv}");
    // The same run directory as `rebound run` writes: check and report read it.
    assert!(out.join("history.jsonl").is_file());
    let check = rebound()
        .args(["check", out.to_str().expect("utf8")])
        .output()
        .expect("rebound check");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        crate::helpers::text(&check)
    );
    let report = rebound()
        .args(["report", out.to_str().expect("utf8")])
        .output()
        .expect("rebound report");
    assert_eq!(
        report.status.code(),
        Some(0),
        "{}",
        crate::helpers::text(&report)
    );
    assert!(out.join("report.html").is_file());
    // rebound never removed the test's containers: they are still there, running.
    for (service, id) in stack.ids() {
        let state = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.State.Running}}", &id])
            .output()
            .expect("docker inspect");
        assert_eq!(
            String::from_utf8_lossy(&state.stdout).trim(),
            "true",
            "{service}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_slo_is_a_failed_test_whose_message_is_the_summary_and_the_run_directory() {
    let (stack, _guard, dir) = stack("fail").await;
    let app = format!("http://127.0.0.1:{}", stack.app_port);
    let out = dir.path().join("run");
    // PostgreSQL takes about a second to come back: 50 ms cannot hold.
    let run = Scenario::new("lib-pg-too-strict")
        .containers(stack.ids())
        .fault(Fault::sigkill("db"))
        .probe(Probe::http(format!("{app}/readyz")).set("period", Duration::from_millis(20)))
        .slo(Slo::recover_within(Duration::from_millis(50)).success_rate(0.9))
        .trials(2)
        .run_setting("warm-up", Duration::from_millis(500))
        .out(&out)
        .run()
        .await
        .expect("the run ran");
    assert!(!run.passed());
    assert_eq!(run.exit.code(), 1, "{}", run.console());
    let message = run.check().expect_err("the SLO failed").to_string();
    assert!(
        message.contains("scenario `lib-pg-too-strict` did not meet its SLO (exit 1"),
        "{message}"
    );
    assert!(message.contains("FAIL"), "{message}");
    assert!(message.contains("0/2"), "{message}");
    assert!(
        message.contains(&format!("run directory: {}", out.display())),
        "{message}"
    );
    // assert_slo panics with that message: the test framework shows it.
    let panic = std::panic::catch_unwind(|| run.assert_slo()).expect_err("it panics");
    let shown = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(shown, message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_container_is_probed_at_its_new_address_though_its_host_port_moved() {
    let (stack, _guard, dir) = stack("ports").await;
    let before = stack.app_port;
    let run = Scenario::new("lib-app-restart")
        .containers(stack.ids())
        .fault(Fault::restart("app"))
        .probe(Probe::http_service("app", 8080, "/readyz").set("period", Duration::from_millis(20)))
        .slo(Slo::recover_within(Duration::from_secs(10)).success_rate(0.2))
        .trials(2)
        .run_setting("warm-up", Duration::from_millis(500))
        .out(dir.path().join("run"))
        .run()
        .await
        .expect("the run ran");
    run.assert_slo();
    assert!(
        run.trials.iter().all(|t| t.restarts >= 1),
        "{}",
        run.console()
    );
    // The engine gave the app a new host port on each restart: a probe on the
    // port testcontainers mapped first would never have seen it come back.
    let after = stack
        .app
        .as_ref()
        .expect("app")
        .get_host_port_ipv4(8080)
        .await
        .expect("port");
    assert_ne!(before, after);
}
