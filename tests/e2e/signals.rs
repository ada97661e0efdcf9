//! rebound interrupted while it brings the demo stack up or tears it down, by
//! SIGTERM, SIGHUP (a closed terminal) or a terminal's Ctrl-C (SIGINT to the whole
//! process group, rebound's compose children included): it exits 130 and leaves no
//! container, network or volume of the run, and no traceback in its output.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::crash_safety::docker;
use crate::docker_runs::{history_lines, remove_run, require_images};
use crate::helpers::*;

const COMPOSE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/demo/compose.yaml");

/// Where the signal lands.
#[derive(Clone, Copy, Debug)]
enum When {
    /// Once compose has created the run's first container, before the stack is up.
    BringUp,
    /// Once teardown has stopped the first container of the run.
    Teardown,
}

/// How it is sent.
#[derive(Clone, Copy, Debug)]
enum How {
    /// To rebound's pid only.
    Process(Signal),
    /// To rebound's whole process group, as a terminal sends Ctrl-C.
    Group(Signal),
}

/// `(all, running)` containers labelled with `run_id`.
fn containers(run_id: &str) -> (usize, usize) {
    let label = format!("label=rebound.run={run_id}");
    let count = |extra: &[&str]| {
        let mut args = vec!["ps", "-q", "--filter", label.as_str()];
        args.extend(extra);
        docker(&args).lines().count()
    };
    (count(&["-a"]), count(&[]))
}

fn labelled(kind: &str, run_id: &str) -> String {
    docker(&[
        kind,
        "ls",
        "-q",
        "--filter",
        &format!("label=rebound.run={run_id}"),
    ])
}

/// Removes what a run left when the test fails, so the next test starts clean.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_run(&self.0);
    }
}

fn wait_for(what: &str, child: &mut Child, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        // A deadline that only catches a hang.
        if started.elapsed() > Duration::from_secs(180) || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            panic!("{what} never happened (or rebound ended first)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A rebound run of a one-trial scenario on the demo stack, in its own process group
/// (as a job in a terminal: a group signal reaches rebound and whatever it did not
/// move into a group of its own), with its own state directory.
struct Run {
    child: Child,
    out: std::path::PathBuf,
    state: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Run {
    /// Starts `name` with `fault` (a `[[fault]]` table's keys) and a redis probe.
    fn start(name: &str, fault: &str) -> Run {
        require_images();
        let dir = tempfile::tempdir().expect("tempdir");
        let scenario = format!(
            "name = \"{name}\"\n[stack]\nbackend = \"docker\"\ncompose = \"{COMPOSE}\"\n\n\
             [[fault]]\n{fault}\n\n\
             [[probe]]\nkind = \"redis\"\naddress = \"127.0.0.1:${{port:redis}}\"\nperiod = \"50ms\"\n\n\
             [slo]\nsuccess-rate = 0.5\nrecover-within = \"90s\"\n\n\
             [run]\ntrials = 1\nwarm-up = \"200ms\"\nstartup-timeout = \"120s\"\n"
        );
        let path = write_scenario(dir.path(), &scenario);
        let out = dir.path().join("run");
        let state = tempfile::tempdir().expect("state");
        let child = rebound()
            .env("REBOUND_STATE_DIR", state.path())
            .args([
                "run",
                path.to_str().expect("utf8"),
                "--no-progress",
                "--out",
            ])
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn");
        Run {
            child,
            out,
            state,
            _dir: dir,
        }
    }

    /// The run id, once the history names it.
    fn id(&mut self) -> String {
        let out = self.out.clone();
        let id = |out: &Path| {
            history_lines(out)
                .first()
                .and_then(|r| r["run_id"].as_str().map(String::from))
        };
        wait_for("run-start", &mut self.child, || id(&out).is_some());
        id(&self.out).expect("run id")
    }

    fn signal(&self, how: How) {
        let pid = Pid::from_raw(self.child.id() as i32);
        match how {
            How::Process(sig) => kill(pid, sig).expect("signal"),
            How::Group(sig) => killpg(pid, sig).expect("signal the group"),
        }
    }

    /// Waits for rebound to exit: its exit code and all it printed.
    fn exit(&mut self) -> (Option<i32>, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            // A deadline that only catches a hang.
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "rebound did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut said = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut said);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut said);
        }
        (status.code(), said)
    }
}

/// Runs a one-trial redis restart on the demo stack, sends `how` at `when`, and
/// checks exit 130 and that nothing of the run is left.
fn interrupt(when: When, how: How) {
    let mut run = Run::start("signals", "kind = \"restart\"\ntarget = \"redis\"");
    let id = run.id();
    let _cleanup = Cleanup(id.clone());
    match when {
        When::BringUp => wait_for("a container of the run", &mut run.child, || {
            containers(&id).0 > 0
        }),
        When::Teardown => {
            let out = run.out.clone();
            wait_for("the trial's end", &mut run.child, || {
                history_lines(&out).iter().any(|r| r["type"] == "trial-end")
            });
            let (_, up) = containers(&id);
            wait_for("teardown stopping a container", &mut run.child, || {
                containers(&id).1 < up
            });
        }
    }
    run.signal(how);
    let (code, said) = run.exit();
    assert_eq!(code, Some(130), "{when:?} {how:?}: {said}");
    assert!(!said.contains("Traceback"), "a traceback: {said}");
    assert_eq!(containers(&id).0, 0, "containers left: {said}");
    assert_eq!(labelled("network", &id), "", "networks left: {said}");
    assert_eq!(labelled("volume", &id), "", "volumes left: {said}");
    let index = std::fs::read_dir(run.state.path().join("runs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(index, 0, "the run is still in the index: {said}");
}

#[test]
fn sigterm_at_bring_up_exits_130_and_leaves_nothing() {
    interrupt(When::BringUp, How::Process(Signal::SIGTERM));
}

#[test]
fn sighup_at_bring_up_exits_130_and_leaves_nothing() {
    interrupt(When::BringUp, How::Process(Signal::SIGHUP));
}

#[test]
fn terminal_ctrl_c_at_bring_up_exits_130_and_leaves_nothing() {
    interrupt(When::BringUp, How::Group(Signal::SIGINT));
}

#[test]
fn sigterm_at_teardown_exits_130_and_leaves_nothing() {
    interrupt(When::Teardown, How::Process(Signal::SIGTERM));
}

#[test]
fn sighup_at_teardown_exits_130_and_leaves_nothing() {
    interrupt(When::Teardown, How::Process(Signal::SIGHUP));
}

#[test]
fn terminal_ctrl_c_at_teardown_exits_130_and_leaves_nothing() {
    interrupt(When::Teardown, How::Group(Signal::SIGINT));
}

/// The second Ctrl-C kills the stack at once — and still removes the containers,
/// networks and volumes of a stack rebound brought up.
#[test]
fn a_second_ctrl_c_kills_and_removes_the_stack() {
    let mut run = Run::start(
        "signals-twice",
        "kind = \"pause-for\"\ntarget = \"db\"\nduration = \"60s\"",
    );
    let id = run.id();
    let _cleanup = Cleanup(id.clone());
    let out = run.out.clone();
    wait_for("the pause", &mut run.child, || {
        history_lines(&out).iter().any(|r| r["type"] == "fault-ok")
    });
    let before: Vec<String> =
        docker(&["ps", "-aq", "--filter", &format!("label=rebound.run={id}")])
            .lines()
            .map(String::from)
            .collect();
    assert!(!before.is_empty());
    run.signal(How::Group(Signal::SIGINT));
    std::thread::sleep(Duration::from_millis(100));
    run.signal(How::Group(Signal::SIGINT));
    let (code, said) = run.exit();
    assert!(said.contains("killing the stack now"), "{said}");
    assert_eq!(code, Some(130), "{said}");
    // Gone, not stuck: a paused container killed without a thaw never dies, and
    // the engine then blocks every call on it while `docker ps` stops listing it.
    for c in &before {
        let o = Command::new("timeout")
            .args(["20", "docker", "inspect", c])
            .output()
            .expect("docker inspect");
        assert_eq!(
            o.status.code(),
            Some(1),
            "container {c} still there (124 = the engine hangs on it): {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    assert_eq!(containers(&id).0, 0, "containers left: {said}");
    assert_eq!(labelled("network", &id), "", "networks left: {said}");
    assert_eq!(labelled("volume", &id), "", "volumes left: {said}");
}
