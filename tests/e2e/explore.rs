//! `rebound explore` on the process backend: the planted sticky-dependency bug of
//! demo-app is found, shrunk to the two faults it needs and written as a scenario
//! that `rebound run` replays; without the plant, nothing is found.

use std::path::Path;

use crate::helpers::*;

const SCENARIO: &str = "scenarios/explore-sticky-dependency.toml";

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("readable")).expect("json")
}

#[test]
fn explore_finds_the_planted_bug_shrinks_it_to_two_faults_and_the_scenario_replays_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("explore");
    let o = run(&[
        "explore",
        SCENARIO,
        "--budget",
        "4m",
        "--seed",
        "1",
        "--max-modes",
        "1",
        "--confirm",
        "3",
        "--no-progress",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    // A failure mode found: exit 1, as a violated SLO.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = json(&out.join("explore.json"));
    let modes = e["modes"].as_array().expect("modes");
    assert_eq!(modes.len(), 1, "{e:#}");
    let m = &modes[0];
    assert!(
        m["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("never recovered")),
        "{m:#}"
    );
    // The bug needs the app to start while dep is down: two faults, no fewer.
    let steps = m["shrunk"]["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{m:#}");
    assert!(steps.iter().any(|s| s["target"] == "dep"), "{m:#}");
    assert!(steps.iter().any(|s| s["target"] == "app"), "{m:#}");
    // It reproduces every time, and the report says so.
    assert_eq!(m["rate"]["failures"], m["rate"]["trials"], "{m:#}");
    assert!(m["rate"]["trials"].as_u64() >= Some(3), "{m:#}");
    let html = std::fs::read_to_string(out.join("explore.html")).expect("html");
    assert!(html.contains("Mode 1: never recovered"), "{html}");
    let run_dir = out.join(m["run_dir"].as_str().expect("run dir"));
    assert!(
        run_dir.join("charts/timeline.svg").is_file(),
        "{}",
        run_dir.display()
    );
    // The emitted scenario replays it with `rebound run`: its first trial fails
    // the same way (and leaves the app stuck, which ends the run).
    let file = m["file"].as_str().expect("file");
    let replay = dir.path().join("replay");
    let r = run_scenario(
        Path::new(file),
        &replay,
        &["--trials", "2", "--no-progress"],
    );
    let (header, rows) = read_csv(&replay.join("trials.csv"));
    let outcomes = column(&header, &rows, "outcome");
    assert_eq!(
        outcomes.first().map(String::as_str),
        Some("fail"),
        "{}",
        text(&r)
    );
    assert!(outcomes.iter().all(|o| o == "fail"), "{outcomes:?}");
}

#[test]
fn explore_without_the_plant_finds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text_in = std::fs::read_to_string(SCENARIO).expect("scenario");
    let clean = text_in.replace(",\n           \"--plant\", \"sticky-dependency\"]", "]");
    assert_ne!(clean, text_in, "the plant is in the scenario");
    let scenario = dir.path().join("clean.toml");
    std::fs::write(&scenario, clean).expect("write");
    let out = dir.path().join("explore");
    let o = run(&[
        "explore",
        scenario.to_str().expect("utf8"),
        "--budget",
        "4m",
        "--seed",
        "1",
        "--max-schedules",
        "8",
        "--no-progress",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let e = json(&out.join("explore.json"));
    assert_eq!(e["modes"].as_array().map(Vec::len), Some(0), "{e:#}");
    assert_eq!(e["schedules"].as_array().map(Vec::len), Some(8), "{e:#}");
    // What it saw is recorded (coverage), though nothing failed.
    assert!(!e["features"].as_array().expect("features").is_empty());
}
