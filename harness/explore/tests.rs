//! Explore on the in-memory fake stack: the same seed draws the same schedules,
//! and a planted bug that needs two faults (the app restarted while its
//! dependency is paused) is found, confirmed, shrunk to those two faults and
//! written as a scenario that parses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::probe::docker_health::DockerHealth;
use crate::scenario::ProbePlan;
use crate::stack::fake::{FakeStack, Script};
use crate::stack::{BuildCtx, Stack};

/// Two services `app` and `dep`; the probe is the fake's health of `app`.
fn plan() -> Plan {
    let text = "name = \"fake-explore\"\n\
         [stack]\nbackend = \"process\"\n\
         [[stack.service]]\nname = \"app\"\ncommand = [\"true\"]\n\
         [[stack.service]]\nname = \"dep\"\ncommand = [\"true\"]\n\
         [[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\
         [[probe]]\nkind = \"tcp\"\naddress = \"127.0.0.1:9\"\n\
         [slo]\nsuccess-rate = 0.5\nrecover-within = \"1s\"\n\
         [run]\nwarm-up = \"20ms\"\nprobe-period = \"5ms\"\nstable-for = 2\nheal-timeout = \"300ms\"\n\
         [explore]\nkinds = [\"sigkill\", \"pause-for\"]\nmax-duration = \"250ms\"\nmax-faults = 3\n";
    let mut plan = crate::scenario::parse(Path::new("fake-explore.toml"), text).expect("valid");
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

fn factory(script: Script) -> BuildFactory<'static> {
    Box::new(move || {
        let script = script.clone();
        Box::new(move |ctx: BuildCtx| {
            async move {
                Ok(
                    Arc::new(FakeStack::new(&["app", "dep"], script, ctx.history))
                        as Arc<dyn Stack>,
                )
            }
            .boxed()
        })
    })
}

async fn explore_fake(
    script: Script,
    seed: u64,
    schedules: u32,
    modes: Option<usize>,
) -> (ExploreOutcome, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("REBOUND_STATE_DIR").is_none() {
        std::env::set_var("REBOUND_STATE_DIR", dir.path().join("state"));
    }
    let opts = ExploreOptions {
        budget: Duration::from_secs(120),
        seed: Some(seed),
        max_schedules: Some(schedules),
        max_modes: modes,
        batch: 4,
        confirm: 3,
        out: Some(dir.path().join("explore")),
        progress: false,
        ..ExploreOptions::default()
    };
    let o = explore(&plan(), &opts, factory(script), CancellationToken::new())
        .await
        .expect("explore ran");
    (o, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_tries_the_same_schedules() {
    let (a, _d1) = explore_fake(Script::default(), 42, 8, None).await;
    let (b, _d2) = explore_fake(Script::default(), 42, 8, None).await;
    let (c, _d3) = explore_fake(Script::default(), 43, 4, None).await;
    assert_eq!(a.schedules.len(), 8);
    assert_eq!(a.schedules, b.schedules);
    assert_ne!(a.schedules[..4], c.schedules[..]);
    // Nothing fails on a healthy fake.
    assert!(a.modes.is_empty(), "{:?}", a.modes);
    assert_eq!(a.exit, ExitStatus::SloMet);
    // Kept schedules showed something new each.
    assert!(a.kept >= 1 && a.kept <= 8);
    assert!(!a.features.is_empty());
    assert!(a.dir.join("explore.json").is_file() && a.dir.join("explore.html").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_needing_two_faults_is_found_and_shrunk_to_them() {
    // The dependency takes 100 ms to come back and the app 20 ms: killing
    // both strikes every time (two equal delays would race under load, and a
    // shrink candidate that fails only sometimes can be dropped).
    let script = Script {
        stuck_if_started_while_down: Some(("app".into(), "dep".into())),
        slow_restart: vec![("dep".into(), Duration::from_millis(100))],
        ..Script::default()
    };
    let (o, _dir) = explore_fake(script, 7, 60, Some(1)).await;
    assert_eq!(o.modes.len(), 1, "{:#?}", o.modes);
    let m = &o.modes[0];
    assert!(m.key.starts_with("never recovered"), "{}", m.key);
    // Two faults, no fewer: the app (re)started while the dependency was down
    // (paused, or killed and not back yet).
    assert_eq!(m.shrunk.steps.len(), 2, "shrunk to {}", m.shrunk);
    assert!(
        m.shrunk.steps.iter().any(|s| s.target == "dep")
            && m.shrunk
                .steps
                .iter()
                .any(|s| s.target == "app" && s.kind == "sigkill"),
        "shrunk to {}",
        m.shrunk
    );
    // The shrunk schedule reproduces (a race between two restarts may not every
    // time: the rate says how often).
    assert!(m.rate.failures >= 1, "{:?}", m.rate);
    assert!(m.rate.trials >= 3);
    assert_eq!(o.exit, ExitStatus::SloViolated);
    // The replay file is a scenario with that schedule as its only fault.
    let replay = crate::scenario::load(&m.file).expect("the mode file parses");
    assert_eq!(replay.faults.len(), 1);
    assert_eq!(replay.faults[0].then.len(), 1);
    let replayed: Vec<(&str, &str)> = replay.faults[0]
        .steps()
        .map(|f| (f.kind.name(), f.target.as_str()))
        .collect();
    let shrunk: Vec<(&str, &str)> = m
        .shrunk
        .steps
        .iter()
        .map(|s| (s.kind.as_str(), s.target.as_str()))
        .collect();
    assert_eq!(replayed, shrunk);
    let html = std::fs::read_to_string(o.dir.join("explore.html")).expect("html");
    assert!(html.contains("Mode 1: never recovered"), "{html}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(o.dir.join("explore.json")).expect("json"))
            .expect("valid json");
    assert_eq!(
        json["modes"][0]["shrunk"]["steps"].as_array().map(Vec::len),
        Some(2)
    );
}

/// Ctrl-C in the middle of a run: the run heals and tears down, explore stops
/// too and still writes its report, exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_session_and_keeps_what_it_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("REBOUND_STATE_DIR").is_none() {
        std::env::set_var("REBOUND_STATE_DIR", dir.path().join("state"));
    }
    let cancel = CancellationToken::new();
    let fakes: Arc<std::sync::Mutex<Vec<FakeStack>>> = Arc::default();
    let build: BuildFactory<'static> = {
        let (cancel, fakes) = (cancel.clone(), Arc::clone(&fakes));
        Box::new(move || {
            let (cancel, fakes) = (cancel.clone(), Arc::clone(&fakes));
            Box::new(move |ctx: BuildCtx| {
                async move {
                    // The third fault of the first run is Ctrl-C'd.
                    let fake = FakeStack::new(&["app", "dep"], Script::default(), ctx.history);
                    let fake = if fakes.lock().expect("fakes").is_empty() {
                        fake.cancel_on("signal", 3, cancel)
                    } else {
                        fake
                    };
                    fakes.lock().expect("fakes").push(fake.clone());
                    Ok(Arc::new(fake) as Arc<dyn Stack>)
                }
                .boxed()
            })
        })
    };
    let opts = ExploreOptions {
        budget: Duration::from_secs(60),
        seed: Some(3),
        batch: 8,
        out: Some(dir.path().join("explore")),
        progress: false,
        ..ExploreOptions::default()
    };
    // Only sigkill, so every schedule's faults are signals.
    let mut p = plan();
    p.explore.kinds = vec!["sigkill".into()];
    let o = explore(&p, &opts, build, cancel)
        .await
        .expect("explore ran");
    assert!(o.interrupted);
    assert_eq!(o.exit, ExitStatus::Interrupted);
    assert_eq!(o.runs, 1, "no run after Ctrl-C");
    let fakes = fakes.lock().expect("fakes");
    assert_eq!(fakes.len(), 1);
    // The interrupted run healed and tore its stack down.
    assert!(
        fakes[0].calls().iter().any(|c| c == "teardown"),
        "{:?}",
        fakes[0].calls()
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(o.dir.join("explore.json")).expect("json"))
            .expect("valid json");
    assert_eq!(json["interrupted"], true);
    assert!(o.dir.join("explore.html").is_file());
}
