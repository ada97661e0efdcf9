//! rebound itself killed (SIGKILL) while a fault is active: its fault journal lets
//! `rebound heal` undo the fault and remove the stack it owned; until then a new run
//! of the same scenario refuses to start and names `rebound heal`. Each test keeps
//! its index of unfinished runs in its own state directory (`REBOUND_STATE_DIR`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::docker_runs::{history_lines, require_images};
use crate::helpers::*;

/// `docker ARGS…`'s trimmed stdout, whether or not it succeeded.
pub(crate) fn docker(args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn with_state(mut c: Command, state: &Path) -> Command {
    c.env("REBOUND_STATE_DIR", state);
    c
}

/// Starts `rebound run SCENARIO EXTRA…`, waits until trial 1's fault is active,
/// SIGKILLs rebound and returns its run id.
fn kill_during_fault(scenario: &str, extra: &[&str], state: &Path, out: &Path) -> String {
    kill_when(scenario, extra, state, out, "fault-ok")
}

/// Like [`kill_during_fault`], at the first history record of type `when`.
fn kill_when(scenario: &str, extra: &[&str], state: &Path, out: &Path, when: &str) -> String {
    let mut args = vec!["run", scenario, "--out", out.to_str().expect("utf8")];
    args.extend(extra);
    let mut child = with_state(rebound(), state)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while !history_lines(out).iter().any(|r| r["type"] == when) {
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("no `{when}` record within 180 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    history_lines(out)[0]["run_id"]
        .as_str()
        .expect("run id")
        .to_string()
}

fn labelled(kind: &str, run_id: &str) -> String {
    let label = format!("label=rebound.run={run_id}");
    match kind {
        "container" => docker(&[
            "ps",
            "-a",
            "--filter",
            &label,
            "--format",
            "{{.Names}} {{.State}}",
        ]),
        _ => docker(&[kind, "ls", "-q", "--filter", &label]),
    }
}

#[test]
fn docker_sigkill_during_pause_is_healed_by_rebound_heal_and_blocks_the_next_run_until_then() {
    require_images();
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = "scenarios/docker-db-pause.toml";
    let run_id = kill_during_fault(scenario, &[], state.path(), &dir.path().join("run"));
    let _cleanup = RemoveOnDrop(format!("rebound.run={run_id}"));
    let left = labelled("container", &run_id);
    assert!(
        left.contains("paused"),
        "the kill must land while db is paused: {left}"
    );

    // The next run of the scenario names the killed run and `rebound heal`.
    let refused = with_state(rebound(), state.path())
        .args(["run", scenario, "--trials", "1", "--out"])
        .arg(dir.path().join("refused"))
        .output()
        .expect("run");
    let said = text(&refused);
    assert_eq!(refused.status.code(), Some(4), "{said}");
    assert!(
        said.contains(&run_id) && said.contains("pause-for on db") && said.contains("rebound heal"),
        "{said}"
    );
    assert!(
        !dir.path().join("refused").exists(),
        "a refused run creates nothing"
    );

    let healed = with_state(rebound(), state.path())
        .arg("heal")
        .output()
        .expect("heal");
    let said = text(&healed);
    assert_eq!(healed.status.code(), Some(0), "{said}");
    assert!(
        said.contains("resumed db") && said.contains("removed container"),
        "{said}"
    );
    for kind in ["container", "network", "volume"] {
        assert_eq!(
            labelled(kind, &run_id),
            "",
            "{kind}s left after heal\n{said}"
        );
    }
    let again = with_state(rebound(), state.path())
        .arg("heal")
        .output()
        .expect("heal again");
    assert_eq!(again.status.code(), Some(0));
    assert!(text(&again).contains("nothing to heal"), "{}", text(&again));

    // And the scenario runs again.
    let next = with_state(rebound(), state.path())
        .args(["run", scenario, "--trials", "1", "--no-progress", "--out"])
        .arg(dir.path().join("next"))
        .output()
        .expect("run");
    assert!(matches!(next.status.code(), Some(0 | 2)), "{}", text(&next));
}

/// What `rebound heal` did to a kept stack whose rebound was SIGKILLed during the
/// fault of `scenario`: `look` at `service`'s container before and after heal.
struct KeptHeal {
    before: String,
    after: String,
    healed: std::process::Output,
    containers: String,
}

fn heal_kept(scenario: &str, service: &str, look: &str) -> KeptHeal {
    require_images();
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("tempdir");
    let run_id = kill_during_fault(scenario, &["--keep"], state.path(), &dir.path().join("run"));
    let cleanup = RemoveOnDrop(format!("rebound.run={run_id}"));
    let id = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=rebound.run={run_id}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ]);
    let inspect = || docker(&["inspect", "-f", look, &id]);
    let before = inspect();
    let healed = with_state(rebound(), state.path())
        .arg("heal")
        .arg(dir.path().join("run"))
        .output()
        .expect("heal");
    let after = inspect();
    let containers = labelled("container", &run_id);
    // A kept stack is the user's: heal undoes the fault, it does not remove the
    // stack. (Removed here, before the asserts, so the ports are free.)
    drop(cleanup);
    KeptHeal {
        before,
        after,
        healed,
        containers,
    }
}

#[test]
fn docker_sigkill_during_disconnect_of_a_kept_stack_is_reconnected_by_rebound_heal() {
    let h = heal_kept(
        "scenarios/docker-app-disconnect.toml",
        "app",
        "{{len .NetworkSettings.Networks}}",
    );
    let said = text(&h.healed);
    assert_eq!(h.before, "0", "the kill must land while app is cut off");
    assert_eq!(h.healed.status.code(), Some(0), "{said}");
    assert!(said.contains("reconnected app"), "{said}");
    assert_eq!(h.after, "1", "app is back on its network");
    assert!(
        h.containers.lines().count() >= 4,
        "the kept stack stays: {}",
        h.containers
    );
}

#[test]
fn docker_sigkill_during_stop_for_of_a_kept_stack_is_started_by_rebound_heal() {
    let h = heal_kept(
        "scenarios/docker-redis-down.toml",
        "redis",
        "{{.State.Status}}",
    );
    let said = text(&h.healed);
    assert_eq!(
        h.before, "exited",
        "the kill must land while redis is stopped"
    );
    assert_eq!(h.healed.status.code(), Some(0), "{said}");
    assert!(said.contains("started redis"), "{said}");
    assert_eq!(h.after, "running", "redis runs again after heal");
}

#[test]
fn process_services_do_not_outlive_a_sigkilled_rebound() {
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let scenario = format!(
        "name = \"orphans\"\n{}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
         [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\n\n\
         [slo]\nsuccess-rate = 0.5\nrecover-within = \"60s\"\n\n[run]\ntrials = 1\nwarm-up = \"30s\"\n",
        demo_service(port, &[], "always", "100ms")
    );
    let path = write_scenario(dir.path(), &scenario);
    let out = dir.path().join("run");
    // Killed during the warm-up, with the service running (not stopped: a stopped
    // process in a group orphaned by the kill gets SIGHUP from the kernel anyway).
    kill_when(
        path.to_str().expect("utf8"),
        &[],
        state.path(),
        &out,
        "trial-start",
    );
    let pid = history_lines(&out)
        .iter()
        .find(|r| r["type"] == "service" && r["action"] == "started")
        .and_then(|r| r["pid"].as_u64())
        .expect("the service's pid");
    // Orphaned by the kill: the kernel's parent-death signal ends it.
    let deadline = Instant::now() + Duration::from_secs(1);
    while Path::new(&format!("/proc/{pid}")).exists() {
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
        if zombie {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "demo-app (pid {pid}) outlived rebound by more than 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let healed = with_state(rebound(), state.path())
        .arg("heal")
        .output()
        .expect("heal");
    // Killed before any fault, its services gone with it: nothing is left to undo,
    // and the run leaves the index.
    assert_eq!(healed.status.code(), Some(0), "{}", text(&healed));
    assert!(
        text(&healed).contains("nothing to heal"),
        "{}",
        text(&healed)
    );
    let index = std::fs::read_dir(state.path().join("runs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(index, 0, "no index entry left");
}

/// The processes of process group `pgid` (not zombies).
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() != Some(&"Z") && f.get(2).and_then(|g| g.parse().ok()) == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

/// SIGKILLs whatever is left in a process group when the test ends, passed or not.
struct KillGroupOnDrop(i32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        for pid in group_members(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// A service that forks (a shell that starts a helper, then execs the server): the
/// kernel's parent-death signal ends only the service's own process; the journal
/// records its process group, the next run refuses while the helper lives, and
/// `rebound heal` kills it.
#[test]
fn what_a_process_service_forked_is_killed_by_rebound_heal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state");
    let port = free_port();
    let scenario = format!(
        "name = \"forks\"\n[stack]\nbackend = \"process\"\n\n[[stack.service]]\nname = \"app\"\n\
         command = [\"sh\", \"-c\", \"sleep 300 & exec \\\"$0\\\" demo-app --port {port} --data-dir \\\"$1\\\"\", \"${{rebound}}\", \"${{run_dir}}/data/app\"]\n\
         restart = \"always\"\nrestart-backoff = \"100ms\"\nrestart-max-backoff = \"100ms\"\n\n\
         [[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n\
         [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/healthz\"\n\n\
         [slo]\nsuccess-rate = 0.5\nrecover-within = \"60s\"\n\n[run]\ntrials = 1\nwarm-up = \"30s\"\n"
    );
    let path = write_scenario(dir.path(), &scenario);
    let out = dir.path().join("run");
    kill_when(
        path.to_str().expect("utf8"),
        &[],
        state.path(),
        &out,
        "trial-start",
    );
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).expect("journal");
    let pgid = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["op"] == "group")
        .and_then(|e| e["pgid"].as_i64())
        .expect("a group entry in the journal") as i32;
    let _cleanup = KillGroupOnDrop(pgid);
    // demo-app (the leader) goes with rebound; the helper it forked does not.
    let deadline = Instant::now() + Duration::from_secs(1);
    while group_members(pgid).len() > 1 {
        assert!(
            Instant::now() < deadline,
            "demo-app outlived rebound by 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = group_members(pgid);
    assert_eq!(
        left.len(),
        1,
        "the forked helper outlives rebound: {left:?}"
    );
    let again = with_state(rebound(), state.path())
        .args(["run", path.to_str().expect("utf8"), "--out"])
        .arg(dir.path().join("again"))
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(4), "{}", text(&again));
    assert!(
        text(&again).contains("process(es) of service `app` still running")
            && text(&again).contains("rebound heal"),
        "{}",
        text(&again)
    );
    let healed = with_state(rebound(), state.path())
        .arg("heal")
        .output()
        .expect("heal");
    assert_eq!(healed.status.code(), Some(0), "{}", text(&healed));
    assert!(
        text(&healed).contains("killed 1 leftover process(es) of service `app`"),
        "{}",
        text(&healed)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !group_members(pgid).is_empty() {
        assert!(Instant::now() < deadline, "heal did not kill the helper");
        std::thread::sleep(Duration::from_millis(10));
    }
    let twice = with_state(rebound(), state.path())
        .arg("heal")
        .output()
        .expect("heal");
    assert!(text(&twice).contains("nothing to heal"), "{}", text(&twice));
}

/// `partition-for` really partitions (a connect between groups times out, one
/// within a group succeeds), and after rebound is SIGKILLed mid-partition on a kept
/// stack, `rebound heal` deletes its iptables chain in every namespace.
#[test]
fn docker_partition_cuts_only_between_groups_and_rebound_heal_removes_its_chains() {
    require_images();
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let run_id = kill_during_fault(
        "scenarios/docker-app-db-partition.toml",
        &["--keep"],
        state.path(),
        &out,
    );
    let _cleanup = RemoveOnDrop(format!("rebound.run={run_id}"));
    let id = |service: &str| {
        docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=rebound.run={run_id}"),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
    };
    // The exit code of a 3 s connect from one service to another (124: timed out).
    let connect = |from: &str, to: &str, port: u16| {
        Command::new("docker")
            .args(["exec", &id(from), "timeout", "3", "bash", "-c"])
            .arg(format!("</dev/tcp/{to}/{port}"))
            .status()
            .expect("docker exec")
            .code()
    };
    let has_chain = |service: &str| {
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &id(service)]);
        Command::new("nsenter")
            .args([
                "-t",
                &pid,
                "-n",
                "iptables",
                "-w",
                "5",
                "-S",
                "REBOUND-PARTITION",
            ])
            .output()
            .expect("nsenter")
            .status
            .success()
    };
    assert_eq!(connect("app", "db", 5432), Some(124), "app → db is cut");
    assert_eq!(
        connect("redis", "app", 8080),
        Some(124),
        "redis → app is cut"
    );
    assert_eq!(
        connect("db", "redis", 6379),
        Some(0),
        "db → redis, one group, is not"
    );
    for s in ["app", "db", "redis"] {
        assert!(has_chain(s), "{s} has rebound's chain while partitioned");
    }
    let healed = with_state(rebound(), state.path())
        .arg("heal")
        .arg(&out)
        .output()
        .expect("heal");
    let said = text(&healed);
    assert_eq!(healed.status.code(), Some(0), "{said}");
    assert!(said.contains("removed REBOUND-PARTITION in app"), "{said}");
    for s in ["app", "db", "redis", "web"] {
        assert!(!has_chain(s), "{s} still has rebound's chain after heal");
    }
    assert_eq!(connect("app", "db", 5432), Some(0), "app reaches db again");
    let again = with_state(rebound(), state.path())
        .arg("heal")
        .arg(&out)
        .output()
        .expect("heal");
    assert!(text(&again).contains("nothing to heal"), "{}", text(&again));
}

/// A docker scenario of the demo stack with one fault table.
fn demo_scenario(dir: &Path, name: &str, fault: &str) -> std::path::PathBuf {
    let compose = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/demo/compose.yaml");
    write_scenario(
        &dir.join(name),
        &format!(
            "name = \"{name}\"\n[stack]\nbackend = \"docker\"\ncompose = \"{compose}\"\n\n[[fault]]\n{fault}\n\n\
             [[probe]]\nkind = \"tcp\"\nservice = \"redis\"\nport = 6379\nperiod = \"50ms\"\n\n\
             [slo]\nsuccess-rate = 0.5\nrecover-within = \"60s\"\n\n[run]\ntrials = 1\nwarm-up = \"500ms\"\nstartup-timeout = \"120s\"\n"
        ),
    )
}

/// `loss-for` with p = 0.3 on what redis receives: a share of fresh connects that is
/// consistent with 0.3 times out (a lost SYN is retransmitted only after 1 s), and
/// `rebound heal` after a SIGKILL mid-fault removes the chain; `latency-for` on this
/// kernel, which has no netem, fails with a message naming the proxy alternative.
#[test]
fn docker_loss_for_drops_a_binomial_share_and_latency_for_names_the_alternative() {
    require_images();
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = demo_scenario(
        dir.path(),
        "loss",
        "kind = \"loss-for\"\ntarget = \"redis\"\nprobability = 0.3\ndirection = \"ingress\"\nduration = \"120s\"",
    );
    let out = dir.path().join("run");
    let run_id = kill_during_fault(
        scenario.to_str().expect("utf8"),
        &["--keep"],
        state.path(),
        &out,
    );
    let cleanup = RemoveOnDrop(format!("rebound.run={run_id}"));
    let id = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=rebound.run={run_id}"),
        "--filter",
        "label=com.docker.compose.service=redis",
    ]);
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &id,
    ]);
    let addr: std::net::SocketAddr = format!("{ip}:6379").parse().expect("redis address");
    let n = 200u32;
    let lost = (0..n)
        .filter(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err()
        })
        .count() as f64;
    eprintln!("loss-for p = 0.3: {lost} of {n} connects timed out");
    // Binomial(200, 0.3): mean 60, sd 6.5; ± 3.3 sd is a 99.9 % band.
    let (mean, sd) = (0.3 * f64::from(n), (f64::from(n) * 0.3 * 0.7).sqrt());
    assert!(
        (lost - mean).abs() <= 3.3 * sd,
        "{lost} of {n} connects timed out; 0.3 would give {mean} ± {:.0}",
        3.3 * sd
    );
    let healed = with_state(rebound(), state.path())
        .arg("heal")
        .arg(&out)
        .output()
        .expect("heal");
    assert_eq!(healed.status.code(), Some(0), "{}", text(&healed));
    assert!(
        text(&healed).contains("removed REBOUND-LOSS in redis"),
        "{}",
        text(&healed)
    );
    let after = (0..50)
        .filter(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err()
        })
        .count();
    assert_eq!(after, 0, "connects time out after heal");
    drop(cleanup);

    let latency = demo_scenario(
        dir.path(),
        "latency",
        "kind = \"latency-for\"\ntarget = \"redis\"\nlatency = \"100ms\"\nduration = \"2s\"",
    );
    let o = run_scenario(&latency, &dir.path().join("latency-run"), &[]);
    let (h, rows) = read_csv(&dir.path().join("latency-run/trials.csv"));
    assert_eq!(column(&h, &rows, "outcome"), ["unknown"], "{}", text(&o));
    let reason = &column(&h, &rows, "reason")[0];
    assert!(
        reason.contains("no `netem` qdisc") && reason.contains("link-latency"),
        "{reason}"
    );
}

/// Stores `len` bytes under a key in Redis at `addr`, then times reading them back
/// (the reply is what Redis sends: what `bandwidth-for` shapes).
fn redis_get_seconds(addr: std::net::SocketAddr, len: usize) -> f64 {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("redis");
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let value = vec![b'x'; len];
    let mut set = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${len}\r\n").into_bytes();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    c.write_all(&set).expect("SET");
    let mut ok = [0u8; 5];
    c.read_exact(&mut ok).expect("+OK");
    assert_eq!(&ok, b"+OK\r\n");
    let t = Instant::now();
    c.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").expect("GET");
    // `$<len>\r\n<bytes>\r\n`
    let header = format!("${len}\r\n").len();
    let mut reply = vec![0u8; header + len + 2];
    c.read_exact(&mut reply).expect("the value");
    t.elapsed().as_secs_f64()
}

/// `bandwidth-for` at 100 kB/s on redis: reading back 300 kB takes about 3 s
/// (less the 16 kB burst), and after `rebound heal` (SIGKILL mid-fault, kept stack)
/// rebound's qdisc is gone and the same read is fast again.
#[test]
fn docker_bandwidth_for_shapes_what_the_target_sends_and_rebound_heal_removes_it() {
    require_images();
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = demo_scenario(
        dir.path(),
        "bandwidth",
        "kind = \"bandwidth-for\"\ntarget = \"redis\"\nbytes-per-sec = 100000\nduration = \"120s\"",
    );
    let out = dir.path().join("run");
    let run_id = kill_during_fault(
        scenario.to_str().expect("utf8"),
        &["--keep"],
        state.path(),
        &out,
    );
    let _cleanup = RemoveOnDrop(format!("rebound.run={run_id}"));
    let id = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=rebound.run={run_id}"),
        "--filter",
        "label=com.docker.compose.service=redis",
    ]);
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &id,
    ]);
    let addr: std::net::SocketAddr = format!("{ip}:6379").parse().expect("redis address");
    let shaped = redis_get_seconds(addr, 300_000);
    eprintln!("bandwidth-for 100 kB/s: 300 kB read back in {shaped:.2} s");
    // At least the shaped time (2.84 s for 300 kB less the 16 kB burst; load
    // never speeds it up), at most one a rate off by half would give.
    assert!(
        (2.5..5.6).contains(&shaped),
        "300 kB at 100 kB/s took {shaped:.2} s"
    );
    let healed = with_state(rebound(), state.path())
        .arg("heal")
        .arg(&out)
        .output()
        .expect("heal");
    assert_eq!(healed.status.code(), Some(0), "{}", text(&healed));
    assert!(
        text(&healed).contains("removed the tbf qdisc of redis"),
        "{}",
        text(&healed)
    );
    let free = redis_get_seconds(addr, 300_000);
    assert!(free < 0.5, "after heal 300 kB took {free:.2} s");
}

/// A one-trial scenario of the demo stack behind docker/demo/proxied.yaml with a
/// 120 s black hole on app → Redis.
fn proxy_blackhole_scenario(dir: &Path) -> std::path::PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    write_scenario(
        &dir.join("s"),
        &format!(
            "name = \"proxy-blackhole\"\n[stack]\nbackend = \"docker\"\ncompose = \"{root}/docker/demo/compose.yaml\"\n\
             compose-overrides = [\"{root}/docker/demo/proxied.yaml\"]\n\n\
             [[stack.link]]\nname = \"app-redis\"\nproxy = \"proxy\"\nfrom = \"app\"\nto = \"redis\"\n\n\
             [[fault]]\nkind = \"link-blackhole\"\ntarget = \"app-redis\"\nduration = \"120s\"\n\n\
             [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:${{port:http}}/readyz\"\nperiod = \"100ms\"\n\n\
             [slo]\nsuccess-rate = 0.5\nrecover-within = \"180s\"\n\n[run]\ntrials = 1\nwarm-up = \"500ms\"\nstartup-timeout = \"120s\"\n"
        ),
    )
}

/// The kept stack of a proxied run, seen from outside rebound.
pub(crate) struct ProxiedStack {
    run_id: String,
}

impl ProxiedStack {
    fn id(&self, service: &str) -> String {
        docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=rebound.run={}", self.run_id),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
    }

    /// A Redis PING from the app container through the proxy, bounded by 3 s:
    /// (exit code, output).
    fn ping(&self) -> (Option<i32>, String) {
        let o = Command::new("docker")
            .args(["exec", &self.id("app"), "timeout", "3"])
            .args(["redis-cli", "-h", "proxy", "-p", "6379", "ping"])
            .output()
            .expect("docker exec");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )
    }

    /// The fault the proxy's control API reports on link app-redis (null: none).
    fn fault(&self) -> serde_json::Value {
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &self.id("proxy"),
        ]);
        let links: serde_json::Value = reqwest::blocking::get(format!("http://{ip}:8474/links"))
            .expect("control API")
            .json()
            .expect("json");
        links
            .as_array()
            .expect("array")
            .iter()
            .find(|l| l["name"] == "app-redis")
            .expect("link app-redis")["fault"]
            .clone()
    }
}

/// A link fault through the `rebound/proxy` container of docker/demo/proxied.yaml
/// (a black hole on app → Redis): while it is on, a Redis PING from the app through
/// the proxy hangs and the proxy's control API reports the fault; after a SIGKILL
/// mid-fault, `rebound heal` lifts it through that API (the run's scenario names the
/// proxy service) and the PING answers again.
#[test]
fn docker_link_blackhole_through_the_proxy_container_is_lifted_by_rebound_heal() {
    require_images();
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = proxy_blackhole_scenario(dir.path());
    let out = dir.path().join("run");
    let run_id = kill_during_fault(
        scenario.to_str().expect("utf8"),
        &["--keep"],
        state.path(),
        &out,
    );
    let _cleanup = RemoveOnDrop(format!("rebound.run={run_id}"));
    let stack = ProxiedStack { run_id };
    assert_eq!(
        stack.ping().0,
        Some(124),
        "a PING through the black hole hangs"
    );
    assert_eq!(
        stack.fault()["fault"],
        "blackhole",
        "the proxy reports the fault"
    );
    let healed = with_state(rebound(), state.path())
        .arg("heal")
        .arg(&out)
        .output()
        .expect("heal");
    let said = text(&healed);
    assert_eq!(healed.status.code(), Some(0), "{said}");
    assert!(
        said.contains("lifted blackhole on link app-redis"),
        "{said}"
    );
    assert!(stack.fault().is_null(), "no fault left on the link");
    assert_eq!(
        stack.ping(),
        (Some(0), "PONG".to_string()),
        "Redis answers through the proxy again"
    );
    let again = with_state(rebound(), state.path())
        .arg("heal")
        .arg(&out)
        .output()
        .expect("heal");
    assert!(text(&again).contains("nothing to heal"), "{}", text(&again));
}

/// SIGINT, SIGTERM and SIGHUP to rebound in the middle of a black hole through the
/// proxy container: rebound lifts the fault itself before it exits 130 (its stack
/// kept, so the proxy can be asked).
#[test]
fn docker_link_blackhole_through_the_proxy_container_is_lifted_on_sigint_sigterm_and_sighup() {
    use nix::sys::signal::Signal;
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let dir = tempfile::tempdir().expect("tempdir");
        let scenario = proxy_blackhole_scenario(dir.path());
        let (code, run_id, _run) =
            crate::docker_runs::signal_during_fault(scenario.to_str().expect("utf8"), signal);
        let _cleanup = RemoveOnDrop(format!("rebound.run={run_id}"));
        let stack = ProxiedStack { run_id };
        assert_eq!(code, Some(130), "{signal}");
        assert!(
            stack.fault().is_null(),
            "{signal}: no fault left on the link"
        );
        assert_eq!(stack.ping(), (Some(0), "PONG".to_string()), "{signal}");
    }
}

#[test]
fn given_containers_paused_by_a_killed_rebound_are_resumed_by_rebound_heal_and_left_in_place() {
    require_images();
    let tag = format!("given-{}", std::process::id());
    let _cleanup = RemoveOnDrop(format!("rebound.run={tag}"));
    // A container rebound did not start (as a test's testcontainers would).
    let id = docker(&[
        "run",
        "-d",
        "--label",
        &format!("rebound.run={tag}"),
        "rebound/postgres:latest",
    ]);
    assert!(!id.is_empty(), "docker run rebound/postgres");
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = write_scenario(
        dir.path(),
        &format!(
            "name = \"given-pause\"\n[stack]\nbackend = \"docker\"\ncontainers = {{ db = \"{id}\" }}\n\
             [[fault]]\nkind = \"pause-for\"\ntarget = \"db\"\nduration = \"60s\"\n\
             [[probe]]\nkind = \"tcp\"\nservice = \"db\"\nport = 5432\n\
             [slo]\nrecover-within = \"5s\"\n[run]\ntrials = 1\nwarm-up = \"500ms\"\n"
        ),
    );
    let run_id = kill_during_fault(
        scenario.to_str().expect("utf8"),
        &[],
        state.path(),
        &dir.path().join("run"),
    );
    let look = || docker(&["inspect", "-f", "{{.State.Status}}", &id]);
    assert_eq!(look(), "paused", "the kill must land while db is paused");
    let healed = with_state(rebound(), state.path())
        .arg("heal")
        .output()
        .expect("heal");
    let said = text(&healed);
    assert_eq!(healed.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&run_id) && said.contains("resumed db"),
        "{said}"
    );
    // Resumed, and not removed: rebound never owned it.
    assert_eq!(look(), "running", "{said}");
}
