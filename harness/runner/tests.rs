//! Runner unit tests on the in-memory fake stack: heal on every path, Ctrl-C in each
//! phase, injection failures and panics, the sequential stop and shards — in
//! seconds, without processes or Docker.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::checker::Outcome;
use crate::probe::docker_health::DockerHealth;
use crate::probe::ProbePlan;
use crate::stack::fake::{FakeStack, Script};

/// A scenario on one service `app`, probed through the fake's health.
fn plan(faults: &str, slo: &str, run: &str) -> Plan {
    let warm_up = if run.contains("warm-up") {
        ""
    } else {
        "warm-up = \"20ms\"\n"
    };
    let text = format!(
        "name = \"fake\"\n\
         [stack]\nbackend = \"process\"\n[[stack.service]]\nname = \"app\"\ncommand = [\"true\"]\n\
         {faults}\n\
         [[probe]]\nkind = \"tcp\"\naddress = \"127.0.0.1:9\"\n\
         [slo]\n{slo}\n\
         [run]\n{warm_up}probe-period = \"5ms\"\nstable-for = 2\nseed = 7\n{run}\n"
    );
    let mut plan = crate::scenario::parse(Path::new("fake.toml"), &text).expect("valid scenario");
    plan.probes = vec![ProbePlan {
        name: "health".into(),
        check: Arc::new(DockerHealth {
            service: "app".into(),
        }),
        period: Duration::from_millis(5),
        timeout: Duration::from_millis(200),
    }];
    plan
}

const SIGKILL: &str = "[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n";
const SLO: &str = "success-rate = 0.5\nrecover-within = \"2s\"";

struct FakeRun {
    result: Result<RunOutcome, RunError>,
    fake: FakeStack,
    dir: tempfile::TempDir,
}

impl FakeRun {
    fn outcome(&self) -> &RunOutcome {
        self.result.as_ref().expect("the run finished")
    }

    fn history(&self) -> Vec<crate::history::Record> {
        crate::history::load(&self.dir.path().join("run/history.jsonl")).expect("history")
    }

    fn count(&self, ty: &str) -> usize {
        self.history()
            .iter()
            .filter(|r| serde_json::to_value(&r.event).expect("json")["type"] == ty)
            .count()
    }
}

/// Runs `plan` on a fake with `script`; `hook` may make the fake cancel the run.
async fn run_fake(
    plan: &Plan,
    opts: RunOptions,
    script: Script,
    hook: impl FnOnce(FakeStack, CancellationToken) -> FakeStack + Send + 'static,
) -> FakeRun {
    let dir = tempfile::tempdir().expect("tempdir");
    // The index of unfinished runs, per test (nextest runs each in its own process).
    if std::env::var_os("REBOUND_STATE_DIR").is_none() {
        std::env::set_var("REBOUND_STATE_DIR", dir.path().join("state"));
    }
    let opts = RunOptions {
        out: Some(dir.path().join("run")),
        progress: false,
        print_summary: false,
        ..opts
    };
    let cancel = CancellationToken::new();
    let slot: Arc<Mutex<Option<FakeStack>>> = Arc::default();
    let build: StackBuilder<'_> = {
        let (slot, cancel) = (Arc::clone(&slot), cancel.clone());
        Box::new(move |ctx: BuildCtx| {
            async move {
                let fake = hook(FakeStack::new(&["app"], script, ctx.history), cancel);
                *slot.lock().expect("slot") = Some(fake.clone());
                Ok(Arc::new(fake) as Arc<dyn Stack>)
            }
            .boxed()
        })
    };
    let result = run_with(plan, &opts, build, cancel).await;
    let fake = slot
        .lock()
        .expect("slot")
        .take()
        .expect("the stack was built");
    FakeRun { result, fake, dir }
}

fn trials(n: u32) -> RunOptions {
    RunOptions {
        trials: Some(n),
        ..RunOptions::default()
    }
}

fn no_hook(f: FakeStack, _: CancellationToken) -> FakeStack {
    f
}

#[tokio::test]
async fn a_clean_run_passes_every_trial_heals_each_and_tears_down_last() {
    let r = run_fake(
        &plan(SIGKILL, SLO, ""),
        trials(5),
        Script::default(),
        no_hook,
    )
    .await;
    let o = r.outcome();
    assert_eq!(o.trials.len(), 5);
    assert!(
        o.trials.iter().all(|t| t.outcome == Outcome::Pass),
        "{:?}",
        o.trials
    );
    assert_eq!(o.exit, ExitStatus::SloMet);
    let calls = r.fake.calls();
    assert_eq!(calls.iter().filter(|c| *c == "signal app Kill").count(), 5);
    assert_eq!(calls.last().map(String::as_str), Some("teardown"));
    assert_eq!(r.count("heal-ok"), 5);
}

#[tokio::test]
async fn an_injection_failure_is_unknown_and_heal_still_runs() {
    let script = Script {
        fail_signal: true,
        ..Script::default()
    };
    let r = run_fake(&plan(SIGKILL, SLO, ""), trials(3), script, no_hook).await;
    let o = r.outcome();
    assert!(
        o.trials.iter().all(|t| t.outcome == Outcome::Unknown),
        "{:?}",
        o.trials
    );
    assert_eq!(r.count("fault-fail"), 3);
    assert_eq!(r.count("heal-ok"), 3);
    assert_ne!(o.exit, ExitStatus::SloMet);
}

#[tokio::test]
async fn heal_runs_after_a_panicking_trial() {
    let script = Script {
        panic_on_signal: true,
        ..Script::default()
    };
    let r = run_fake(&plan(SIGKILL, SLO, ""), trials(2), script, no_hook).await;
    let o = r.outcome();
    assert_eq!(o.trials.len(), 2);
    assert!(o.trials.iter().all(|t| t.outcome == Outcome::Unknown));
    let panics = r
        .history()
        .iter()
        .filter(|rec| matches!(&rec.event, Event::FaultFail { error } if error.contains("the fault panicked: scripted panic")))
        .count();
    assert_eq!(panics, 2);
    assert_eq!(r.count("heal-ok"), 2);
    assert_eq!(r.fake.calls().last().map(String::as_str), Some("teardown"));
}

#[tokio::test]
async fn a_stack_that_never_recovers_fails_the_trial_and_is_healed() {
    let script = Script {
        never_ready_after_fault: true,
        ..Script::default()
    };
    let slo = "success-rate = 0.5\nrecover-within = \"100ms\"";
    let run = "heal-timeout = \"200ms\"";
    let r = run_fake(&plan(SIGKILL, slo, run), trials(1), script, no_hook).await;
    // The stack never returns to steady state after heal either: the run stops with
    // the trial kept and exit 4.
    let o = r.outcome();
    assert_eq!(o.trials.len(), 1);
    assert_eq!(o.trials[0].outcome, Outcome::Fail);
    assert_eq!(r.count("heal-ok"), 1);
    assert_eq!(o.exit, ExitStatus::StackFailure);
}

/// Ctrl-C at one phase: exit 130, heal for a trial in progress, teardown last.
async fn interrupted(
    faults: &str,
    slo: &str,
    run: &str,
    n: u32,
    script: Script,
    op: &'static str,
    nth: usize,
) -> FakeRun {
    let r = run_fake(&plan(faults, slo, run), trials(n), script, move |f, c| {
        f.cancel_on(op, nth, c)
    })
    .await;
    assert_eq!(r.outcome().exit, ExitStatus::Interrupted, "{op} #{nth}");
    assert_eq!(
        r.fake.calls().last().map(String::as_str),
        Some("teardown"),
        "{op} #{nth}"
    );
    r
}

#[tokio::test]
async fn ctrl_c_during_bring_up_runs_no_trial_and_tears_down() {
    let r = interrupted(SIGKILL, SLO, "", 3, Script::default(), "up", 1).await;
    assert!(r.outcome().trials.is_empty());
    assert!(!r.fake.calls().iter().any(|c| c.starts_with("signal")));
}

#[tokio::test]
async fn ctrl_c_during_warm_up_injects_nothing_and_still_heals() {
    // Warm-up of 10 s; steady state takes a handful of health calls, so the 30th
    // lands in the warm-up of trial 1.
    let r = interrupted(
        SIGKILL,
        SLO,
        "warm-up = \"10s\"",
        3,
        Script::default(),
        "health",
        30,
    )
    .await;
    assert!(r.outcome().trials.is_empty());
    assert!(!r.fake.calls().iter().any(|c| c.starts_with("signal")));
    assert_eq!(r.count("heal-invoke"), 1);
}

#[tokio::test]
async fn ctrl_c_during_inject_of_trial_2_keeps_trial_1_and_heals_the_fault() {
    // The restart policy is slow, so only heal can bring the service back in time.
    let script = Script {
        restart_after: Duration::from_secs(30),
        ..Script::default()
    };
    let slo = "success-rate = 0.5\nrecover-within = \"100ms\"";
    let r = interrupted(SIGKILL, slo, "", 3, script, "signal", 2).await;
    let o = r.outcome();
    assert_eq!(o.trials.len(), 1, "trial 1 is kept");
    let calls = r.fake.calls();
    let second_kill = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| *c == "signal app Kill")
        .nth(1)
        .map(|(i, _)| i)
        .expect("two kills");
    assert!(
        calls[second_kill..].iter().any(|c| c == "start app"),
        "heal started the killed service: {calls:?}"
    );
    assert_eq!(r.count("heal-ok"), 2);
    let rows = std::fs::read_to_string(r.dir.path().join("run/trials.csv")).expect("csv");
    assert_eq!(rows.lines().count(), 2, "header + trial 1: {rows}");
}

#[tokio::test]
async fn ctrl_c_during_observe_heals_a_frozen_service() {
    let faults = "[[fault]]\nkind = \"pause-for\"\ntarget = \"app\"\nduration = \"30s\"\n";
    // Health calls while frozen: cancel a few periods into the pause.
    let r = run_fake(
        &plan(faults, SLO, "observe-for = \"60s\""),
        trials(2),
        Script::default(),
        |f, c| {
            let watch = f.clone();
            tokio::spawn(async move {
                while !watch.calls().iter().any(|x| x == "pause app") {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                c.cancel();
            });
            f
        },
    )
    .await;
    assert_eq!(r.outcome().exit, ExitStatus::Interrupted);
    let calls = r.fake.calls();
    let pause = calls.iter().position(|c| c == "pause app").expect("paused");
    let unpause = calls
        .iter()
        .position(|c| c == "unpause app")
        .expect("heal resumed it");
    let teardown = calls
        .iter()
        .position(|c| c == "teardown")
        .expect("teardown");
    assert!(pause < unpause && unpause < teardown, "{calls:?}");
    assert!(r.outcome().trials.is_empty());
}

#[tokio::test]
async fn ctrl_c_during_heal_finishes_the_heal_and_drops_the_trial() {
    let script = Script {
        restart_after: Duration::from_secs(30),
        ..Script::default()
    };
    let slo = "success-rate = 0.5\nrecover-within = \"50ms\"";
    let r = interrupted(SIGKILL, slo, "", 2, script, "start", 1).await;
    assert!(r.outcome().trials.is_empty());
    assert_eq!(
        r.count("heal-ok"),
        1,
        "the heal that was interrupted completed"
    );
}

#[tokio::test]
async fn ctrl_c_during_teardown_keeps_every_trial_and_exits_130() {
    let r = interrupted(SIGKILL, SLO, "", 3, Script::default(), "teardown", 1).await;
    assert_eq!(r.outcome().trials.len(), 3);
}

#[tokio::test]
async fn the_sequential_rule_stops_as_soon_as_the_rate_is_decided() {
    let opts = RunOptions {
        until_decided: true,
        ..trials(200)
    };
    let slo = "success-rate = 0.5\nconfidence = 0.8\nrecover-within = \"2s\"";
    let r = run_fake(&plan(SIGKILL, slo, ""), opts, Script::default(), no_hook).await;
    let o = r.outcome();
    let n = o.trials.len() as u64;
    assert!(n < 200, "ran all {n} trials");
    assert_eq!(o.exit, ExitStatus::SloMet);
    // It stopped at the first look that decides, not later.
    let d = |k: u64| crate::stats::decide_rate_sequential(k, k, 0.5, 0.8).decision;
    assert_ne!(d(n), crate::stats::Decision::Inconclusive);
    assert_eq!(d(n - 1), crate::stats::Decision::Inconclusive);
}

#[tokio::test]
async fn per_fault_sequential_runs_until_every_fault_is_decided() {
    let opts = RunOptions {
        until_decided: true,
        ..trials(200)
    };
    let faults = format!("{SIGKILL}[[fault]]\nkind = \"sigterm\"\ntarget = \"app\"\n");
    let slo = "success-rate = 0.5\nconfidence = 0.8\nrecover-within = \"2s\"\nper-fault = true";
    let r = run_fake(&plan(&faults, slo, ""), opts, Script::default(), no_hook).await;
    let o = r.outcome();
    // Each fault needs the clean trials one rate needs; they alternate.
    let d = |k: u64| crate::stats::decide_rate_sequential(k, k, 0.5, 0.8).decision;
    let m = (1..200u64)
        .find(|&k| d(k) != crate::stats::Decision::Inconclusive)
        .expect("decides");
    assert_eq!(o.trials.len() as u64, 2 * m);
    assert_eq!(o.exit, ExitStatus::SloMet);
    assert_eq!(o.summary.per_fault.len(), 2);
    assert!(o.summary.decided_per_fault);
}

#[tokio::test]
async fn shard_2_of_3_runs_the_global_trials_2_5_8() {
    let faults = "[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\
                  [[fault]]\nkind = \"sigterm\"\ntarget = \"app\"\n\
                  [[fault]]\nkind = \"pause-for\"\ntarget = \"app\"\nduration = \"10ms\"\n";
    let opts = RunOptions {
        shard: Some((2, 3)),
        ..trials(9)
    };
    let r = run_fake(&plan(faults, SLO, ""), opts, Script::default(), no_hook).await;
    let o = r.outcome();
    // Global trials 2, 5 and 8 are all the second fault of the round-robin.
    assert_eq!(o.trials.len(), 3);
    assert!(
        o.trials.iter().all(|t| t.fault == "sigterm"),
        "{:?}",
        o.trials
    );
}

#[tokio::test]
async fn every_fault_is_journaled_before_injection_and_marked_healed_after() {
    let p = plan(SIGKILL, SLO, "");
    let r = run_fake(&p, trials(3), Script::default(), no_hook).await;
    assert!(r.result.is_ok(), "{:?}", r.result.as_ref().err());
    let text = std::fs::read_to_string(r.dir.path().join("run").join(crate::journal::JOURNAL))
        .expect("journal");
    let ops: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["op"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(
        ops,
        ["run", "fault", "healed", "fault", "healed", "fault", "healed", "end"],
        "{text}"
    );
    let pending = crate::journal::read(&r.dir.path().join("run")).expect("read");
    assert!(pending.is_clean(), "{pending:?}");
    // The fault's journaled undo record is exactly what heal applied.
    assert!(
        text.contains("\"undo\":{\"fault\":\"sigkill\",\"target\":\"app\""),
        "{text}"
    );
}

#[tokio::test]
async fn a_killed_run_of_the_same_scenario_stops_the_next_until_healed() {
    let state = tempfile::tempdir().expect("tempdir");
    std::env::set_var("REBOUND_STATE_DIR", state.path());
    let p = plan(SIGKILL, SLO, "");
    // A run of the same scenario whose rebound is gone (its pid's start time does
    // not match), killed with a fault not healed.
    let dead = tempfile::tempdir().expect("tempdir");
    let run = crate::journal::RunEntry {
        run_id: "20261202T000000Z-dead".into(),
        scenario: p.name.clone(),
        pid: std::process::id(),
        pid_start: u64::MAX,
        backend: "process".into(),
        project: None,
        owns_stack: false,
        swarm: None,
        containers: Default::default(),
    };
    let j = crate::journal::Journal::create(dead.path(), run).expect("journal");
    j.fault(&crate::nemesis::UndoRecord::restore("pause-for", "app"))
        .expect("fault");
    drop(j);

    let out = tempfile::tempdir().expect("tempdir");
    let opts = RunOptions {
        out: Some(out.path().join("run")),
        progress: false,
        print_summary: false,
        ..trials(1)
    };
    let build: StackBuilder<'_> = Box::new(|ctx: BuildCtx| {
        async move {
            Ok(
                Arc::new(FakeStack::new(&["app"], Script::default(), ctx.history))
                    as Arc<dyn Stack>,
            )
        }
        .boxed()
    });
    let refused = run_with(&p, &opts, build, CancellationToken::new()).await;
    let Err(RunError::Stale(msg)) = &refused else {
        panic!(
            "expected a stale-run error, got {:?}",
            refused.as_ref().map(|o| o.exit)
        );
    };
    assert!(
        !out.path().join("run").exists(),
        "a refused run creates nothing"
    );
    assert!(
        msg.contains("20261202T000000Z-dead")
            && msg.contains("pause-for on app")
            && msg.contains("rebound heal"),
        "{msg}"
    );
    assert_eq!(
        RunError::Stale(msg.clone()).exit_status(),
        ExitStatus::StackFailure
    );

    let healed = run_fake(
        &p,
        RunOptions {
            heal_stale: true,
            ..trials(1)
        },
        Script::default(),
        no_hook,
    )
    .await;
    assert!(healed.result.is_ok(), "{:?}", healed.result.as_ref().err());
    assert!(crate::journal::read(dead.path()).expect("read").is_clean());
    assert!(crate::journal::stale().is_empty());
}

/// `[[fault.then]]`: a pause, and 60 ms after it a SIGKILL while the service is
/// still frozen. Both are injected in order, both are journaled and healed (latest
/// first), and recovery counts from the first fault but only after the last
/// fault's effect ended (the pause lifted at 300 ms).
#[tokio::test]
async fn a_follow_up_fires_after_its_delay_and_every_fault_of_the_trial_is_healed() {
    let faults = "[[fault]]\nkind = \"pause-for\"\ntarget = \"app\"\nduration = \"300ms\"\n\
                  [[fault.then]]\nafter = \"60ms\"\nkind = \"sigkill\"\ntarget = \"app\"\n";
    let r = run_fake(
        &plan(faults, SLO, ""),
        trials(2),
        Script::default(),
        no_hook,
    )
    .await;
    let o = r.outcome();
    assert_eq!(o.trials.len(), 2);
    for t in &o.trials {
        assert_eq!(t.outcome, Outcome::Pass, "{t:?}");
        assert_eq!((t.fault.as_str(), t.target.as_str()), ("pause-for", "app"));
        let recovery = t.recovery_ms.expect("recovered");
        assert!(
            recovery >= 300.0,
            "recovery {recovery} ms counts only after the pause lifted"
        );
    }
    let h = r.history();
    let at = |ty: &str| -> Vec<u64> {
        h.iter()
            .filter(|rec| rec.trial == Some(1))
            .filter(|rec| serde_json::to_value(&rec.event).expect("json")["type"] == ty)
            .map(|rec| rec.elapsed_ns)
            .collect()
    };
    let (invokes, oks, ends) = (at("fault-invoke"), at("fault-ok"), at("fault-end"));
    assert_eq!((invokes.len(), oks.len(), ends.len()), (2, 2, 2));
    let gap = (oks[1] - oks[0]) as f64 / 1e6;
    assert!(
        gap >= 60.0,
        "the follow-up came {gap} ms after the first fault"
    );
    let calls = r.fake.calls();
    let first = |c: &str| calls.iter().position(|x| x == c).expect(c);
    assert!(first("pause app") < first("signal app Kill"), "{calls:?}");
    let heal = h
        .iter()
        .find_map(|rec| match &rec.event {
            Event::HealOk { detail } if rec.trial == Some(1) => Some(detail.clone()),
            _ => None,
        })
        .expect("heal-ok");
    assert!(
        heal.starts_with("sigkill on app:") && heal.contains("; pause-for on app:"),
        "{heal}"
    );
    // Every journaled fault was marked healed: nothing is left for `rebound heal`.
    let pending = crate::journal::read(&r.dir.path().join("run")).expect("journal");
    assert!(pending.faults.is_empty(), "{:?}", pending.faults);
}

/// A follow-up whose injection fails makes the trial unknown, and the first
/// fault is still healed.
#[tokio::test]
async fn a_failed_follow_up_makes_the_trial_unknown_and_the_first_fault_is_healed() {
    let faults = "[[fault]]\nkind = \"pause-for\"\ntarget = \"app\"\nduration = \"100ms\"\n\
                  [[fault.then]]\nafter = \"10ms\"\nkind = \"sigkill\"\ntarget = \"app\"\n";
    let script = Script {
        fail_signal: true,
        ..Script::default()
    };
    let r = run_fake(&plan(faults, SLO, ""), trials(1), script, no_hook).await;
    let t = &r.outcome().trials[0];
    assert_eq!(t.outcome, Outcome::Unknown, "{t:?}");
    assert!(
        t.reason.contains("a fault of the trial failed"),
        "{}",
        t.reason
    );
    assert!(
        r.fake.calls().iter().any(|c| c == "unpause app"),
        "{:?}",
        r.fake.calls()
    );
    assert_eq!(r.count("heal-ok"), 1);
}

/// `when = "app started"`: the follow-up waits for the event, not a timer. A SIGKILL,
/// then a second SIGKILL as soon as the service has started again (a kill inside
/// the restart): it lands after the first restart's `started` record, and both
/// deaths are seen.
#[tokio::test]
async fn a_follow_up_on_an_event_fires_when_the_event_is_recorded() {
    let faults = "[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\
                  [[fault.then]]\nwhen = \"app started\"\nkind = \"sigkill\"\ntarget = \"app\"\n";
    let r = run_fake(
        &plan(faults, SLO, ""),
        trials(1),
        Script::default(),
        no_hook,
    )
    .await;
    let t = &r.outcome().trials[0];
    assert_eq!(t.outcome, Outcome::Pass, "{t:?}");
    let h = r.history();
    let in_trial: Vec<&crate::history::Record> =
        h.iter().filter(|rec| rec.trial == Some(1)).collect();
    let pos = |f: &dyn Fn(&Event) -> bool| -> Vec<usize> {
        in_trial
            .iter()
            .enumerate()
            .filter(|(_, rec)| f(&rec.event))
            .map(|(i, _)| i)
            .collect()
    };
    let oks = pos(&|e| matches!(e, Event::FaultOk { .. }));
    let started = pos(&|e| {
        matches!(
            e,
            Event::Service {
                action: crate::history::Lifecycle::Started,
                ..
            }
        )
    });
    assert_eq!(oks.len(), 2, "two faults were injected");
    assert!(
        started.iter().any(|s| *s > oks[0] && *s < oks[1]),
        "the second fault came after the restart: oks {oks:?}, started {started:?}"
    );
    match &in_trial[oks[1]].event {
        Event::FaultOk { detail } => assert!(detail.contains("when app started"), "{detail}"),
        _ => unreachable!(),
    }
    assert_eq!(
        r.fake
            .calls()
            .iter()
            .filter(|c| *c == "signal app Kill")
            .count(),
        2
    );
    // The timeline has a lane for each fault.
    let lanes: Vec<&str> = t.timeline.marks.iter().map(|m| m.1.as_str()).collect();
    assert!(lanes.contains(&"fault sigkill → app"), "{lanes:?}");
}

/// A follow-up whose event never comes: the trial is unknown, saying so.
#[tokio::test]
async fn a_follow_up_whose_event_never_comes_makes_the_trial_unknown() {
    let faults = "[[fault]]\nkind = \"pause-for\"\ntarget = \"app\"\nduration = \"30ms\"\n\
                  [[fault.then]]\nwhen = \"app died\"\nkind = \"sigkill\"\ntarget = \"app\"\n";
    let slo = "success-rate = 0.5\nrecover-within = \"200ms\"";
    let r = run_fake(
        &plan(faults, slo, ""),
        trials(1),
        Script::default(),
        no_hook,
    )
    .await;
    let t = &r.outcome().trials[0];
    assert_eq!(t.outcome, Outcome::Unknown, "{t:?}");
    assert!(
        t.reason.contains("never fired: `app died` did not happen"),
        "{}",
        t.reason
    );
    assert!(!r.fake.calls().iter().any(|c| c == "signal app Kill"));
}

/// Ctrl-C while a follow-up is being injected: exit 130, and heal takes back both
/// faults of the trial (the journal keeps nothing for `rebound heal`).
#[tokio::test]
async fn ctrl_c_during_a_follow_up_heals_every_fault_of_the_trial() {
    let faults = "[[fault]]\nkind = \"pause-for\"\ntarget = \"app\"\nduration = \"5s\"\n\
                  [[fault.then]]\nafter = \"30ms\"\nkind = \"sigkill\"\ntarget = \"app\"\n";
    let r = interrupted(faults, SLO, "", 2, Script::default(), "signal", 1).await;
    let calls = r.fake.calls();
    let kill = calls
        .iter()
        .position(|c| c == "signal app Kill")
        .expect("the follow-up ran");
    // The killed (no longer frozen) service is started again by heal.
    assert!(
        calls[kill..].iter().any(|c| c == "start app"),
        "healed after Ctrl-C: {calls:?}"
    );
    let heal = r
        .history()
        .iter()
        .find_map(|rec| match &rec.event {
            Event::HealOk { detail } => Some(detail.clone()),
            _ => None,
        })
        .expect("heal-ok");
    assert!(
        heal.contains("sigkill on app") && heal.contains("pause-for on app"),
        "{heal}"
    );
    let pending = crate::journal::read(&r.dir.path().join("run")).expect("journal");
    assert!(pending.faults.is_empty(), "{:?}", pending.faults);
}

/// `when = "probe tcp-1 down"` fires once the probe failed after the first
/// fault, `probe tcp-1 up` only once it came back after failing: the second
/// kill lands after a failed attempt, the third after a later success.
#[tokio::test]
async fn follow_ups_on_a_probe_going_down_and_coming_back() {
    let faults = "[[fault]]\nkind = \"pause-for\"\ntarget = \"app\"\nduration = \"50ms\"\n\
                  [[fault.then]]\nwhen = \"probe tcp-1 down\"\nkind = \"sigkill\"\ntarget = \"app\"\n\
                  [[fault.then]]\nwhen = \"probe tcp-1 up\"\nkind = \"sigkill\"\ntarget = \"app\"\n";
    // The file's probe is `tcp-1`; the fake's health probe takes its name.
    let mut p = plan(faults, SLO, "");
    p.probes[0].name = "tcp-1".into();
    let r = run_fake(&p, trials(1), Script::default(), no_hook).await;
    let t = &r.outcome().trials[0];
    assert_eq!(t.outcome, Outcome::Pass, "{t:?}");
    let h = r.history();
    let in_trial: Vec<&crate::history::Record> =
        h.iter().filter(|rec| rec.trial == Some(1)).collect();
    let invokes: Vec<u64> = in_trial
        .iter()
        .filter(|rec| matches!(rec.event, Event::FaultInvoke { .. }))
        .map(|rec| rec.seq)
        .collect();
    assert_eq!(invokes.len(), 3, "three faults were invoked");
    let probe = |ok: bool, after: u64, before: u64| {
        in_trial.iter().any(|rec| {
            rec.seq > after
                && rec.seq < before
                && matches!(&rec.event, Event::Probe { ok: o, cancelled: false, .. } if *o == ok)
        })
    };
    // Down: a failed attempt between the first and the second invoke.
    assert!(probe(false, invokes[0], invokes[1]), "{in_trial:#?}");
    // Up: a failure and then a success between the second and the third.
    assert!(probe(false, invokes[1], invokes[2]), "{in_trial:#?}");
    assert!(probe(true, invokes[1], invokes[2]), "{in_trial:#?}");
    let details: Vec<&str> = in_trial
        .iter()
        .filter_map(|rec| match &rec.event {
            Event::FaultOk { detail } => Some(detail.as_str()),
            _ => None,
        })
        .collect();
    assert!(details[1].contains("when probe tcp-1 down"), "{details:?}");
    assert!(details[2].contains("when probe tcp-1 up"), "{details:?}");
    assert_eq!(
        r.fake
            .calls()
            .iter()
            .filter(|c| *c == "signal app Kill")
            .count(),
        2
    );
}
