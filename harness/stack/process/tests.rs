//! Unit tests of the process backend with real (tiny) processes.

use super::*;

fn service(name: &str, command: &[&str], restart: RestartPolicy) -> ServicePlan {
    ServicePlan {
        name: name.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        workdir: None,
        restart,
        restart_backoff: Duration::ZERO,
        restart_max_backoff: Duration::ZERO,
        stop_grace: Duration::from_secs(2),
        durable_dirs: Vec::new(),
        durability: crate::durable::Model::PosixStrict,
    }
}

fn stack(services: &[ServicePlan]) -> (ProcessStack, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = ExpandContext {
        rebound: PathBuf::from("/bin/true"),
        run_dir: dir.path().to_path_buf(),
        scenario_dir: dir.path().to_path_buf(),
    };
    let stack = ProcessStack::new(services, &ctx, Arc::new(History::in_memory())).expect("stack");
    (stack, dir)
}

fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the parenthesised command name.
    stat.rsplit(')').next()?.trim_start().chars().next()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn always_restarts_a_killed_service_and_never_leaves_it_down() {
    let (s, _d) = stack(&[
        service("a", &["sleep", "100"], RestartPolicy::Always),
        service("n", &["sleep", "100"], RestartPolicy::Never),
    ]);
    s.up().await.expect("up");
    for name in ["a", "n"] {
        s.signal(name, Sig::Kill).await.expect("kill");
        s.wait_exit(name, 0, Duration::from_secs(5))
            .await
            .expect("exit");
    }
    wait_until("restart of a", || {
        s.status("a").expect("a").starts == 2 && s.status("a").expect("a").running
    })
    .await;
    let n = s.status("n").expect("n");
    assert!(!n.running && !n.wanted, "{n:?}");
    assert_eq!(n.last_signal, Some(9));
    s.start("n").await.expect("start");
    assert!(s.status("n").expect("n").running);
    s.teardown().await.expect("teardown");
    assert!(s.pids().is_empty());
}

/// `sleep` dies at once on SIGTERM, so the supervisor may clear its pid while a stop
/// or a SIGTERM fault is still sending SIGCONT; that must be a clean stop, never
/// "service is not running" (it once turned a PASS run into exit 4 at teardown). On a
/// multi-threaded runtime the supervisor runs beside the caller, as in `rebound run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_gone_right_after_sigterm_is_stopped_not_an_error() {
    let (s, _d) = stack(&[service("q", &["sleep", "100"], RestartPolicy::Always)]);
    s.up().await.expect("up");
    for round in 0..40u64 {
        let exits = s.status("q").expect("q").exits;
        s.signal("q", Sig::Term)
            .await
            .unwrap_or_else(|e| panic!("round {round}: sigterm fault: {e}"));
        s.wait_exit("q", exits, Duration::from_secs(5))
            .await
            .expect("exit");
        wait_until("restart", || s.status("q").expect("q").running).await;
        s.stop("q", Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("round {round}: stop: {e}"));
        assert!(!s.status("q").expect("q").running);
        s.start("q").await.expect("start");
    }
    s.teardown().await.expect("teardown");
    assert!(s.pids().is_empty());
}

#[tokio::test]
async fn on_failure_restarts_only_unclean_exits() {
    let (s, _d) = stack(&[
        service(
            "ok",
            &["sh", "-c", "sleep 0.05; exit 0"],
            RestartPolicy::OnFailure,
        ),
        service(
            "bad",
            &["sh", "-c", "sleep 0.05; exit 3"],
            RestartPolicy::OnFailure,
        ),
    ]);
    s.up().await.expect("up");
    wait_until("bad restarts", || s.status("bad").expect("bad").starts >= 3).await;
    let ok = s.status("ok").expect("ok");
    assert_eq!(ok.starts, 1);
    assert!(!ok.wanted);
    assert_eq!(ok.last_code, Some(0));
    s.teardown().await.expect("teardown");
}

#[tokio::test]
async fn pause_freezes_the_process_and_teardown_resumes_and_stops_it() {
    let (s, _d) = stack(&[service("p", &["sleep", "100"], RestartPolicy::Always)]);
    s.up().await.expect("up");
    let pid = s.pids()[0].1;
    s.pause("p").await.expect("pause");
    wait_until("stopped state", || proc_state(pid) == Some('T')).await;
    s.teardown().await.expect("teardown");
    assert!(
        proc_state(pid).is_none() || proc_state(pid) == Some('Z'),
        "{:?}",
        proc_state(pid)
    );
}

#[tokio::test]
async fn teardown_reaps_the_whole_process_group() {
    let (s, d) = stack(&[service(
        "g",
        &["sh", "-c", "sleep 100 & echo $! > child.pid; wait"],
        RestartPolicy::Never,
    )]);
    s.up().await.expect("up");
    let pidfile = d.path().join("child.pid");
    wait_until("child pid file", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    let child: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("number");
    assert!(proc_state(child).is_some());
    s.teardown().await.expect("teardown");
    wait_until("grandchild gone", || {
        matches!(proc_state(child), None | Some('Z'))
    })
    .await;
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_naming_it() {
    let (s, _d) = stack(&[service(
        "x",
        &["definitely-not-a-program-rebound"],
        RestartPolicy::Always,
    )]);
    let err = s.up().await.expect_err("spawn must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("definitely-not-a-program-rebound") && msg.contains("`x`"),
        "{msg}"
    );
}

#[tokio::test]
async fn kill_now_stops_everything_and_refuses_new_starts() {
    let (s, _d) = stack(&[service("k", &["sleep", "100"], RestartPolicy::Always)]);
    s.up().await.expect("up");
    s.kill_now();
    s.wait_exit("k", 0, Duration::from_secs(5))
        .await
        .expect("exit");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !s.status("k").expect("k").running,
        "restart policy must not revive a killed stack"
    );
    assert!(s.start("k").await.is_err());
    s.teardown().await.expect("teardown");
}

#[test]
fn backoff_doubles_and_is_capped() {
    let (s, _d) = stack(&[ServicePlan {
        restart_backoff: Duration::from_millis(100),
        restart_max_backoff: Duration::from_secs(1),
        ..service("b", &["true"], RestartPolicy::Always)
    }]);
    let svc = &s.services[0];
    let delays: Vec<u128> = (0..6).map(|i| svc.delay(i).as_millis()).collect();
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
}

/// `durable-dirs`: the layer is mounted before the service starts (its first
/// write goes through it) and gone after teardown, the writes kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_dirs_are_under_the_layer_while_up_and_plain_again_after_teardown() {
    let (s, d) = stack(&[ServicePlan {
        durable_dirs: vec![PathBuf::from("${run_dir}/data")],
        ..service(
            "w",
            &[
                "sh",
                "-c",
                "printf written > ${run_dir}/data/f && exec sleep 100",
            ],
            RestartPolicy::Never,
        )
    }]);
    let data = d.path().join("data");
    s.up().await.expect("up");
    // The whole write, not only the file's creation: teardown kills the writer.
    wait_until("the write", || {
        std::fs::read(data.join("f")).is_ok_and(|b| b == b"written")
    })
    .await;
    let data = data.canonicalize().expect("canonical");
    assert!(
        crate::durable::mounts().contains(&data),
        "{} is not under the layer",
        data.display()
    );
    s.teardown().await.expect("teardown");
    assert!(
        !crate::durable::mounts().contains(&data),
        "still mounted after teardown"
    );
    assert_eq!(std::fs::read(data.join("f")).expect("read"), b"written");
}
