//! Snapshot tests of the text outputs, rendered from a fixed history (the run
//! directory of the previous release in tests/fixtures): console, junit.xml,
//! summary.md and trials.csv. A change in wording or figures shows as a diff;
//! accept it with `cargo insta review` (or `INSTA_UPDATE=always`) when intended.

use std::path::{Path, PathBuf};

use super::*;

fn fixture() -> (Summary, Vec<TrialResult>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs/quickstart-v0");
    let (mut summary, trials) = crate::analysis::reanalyse(&dir).expect("the fixture re-checks");
    // The path differs per checkout.
    summary.run_dir = PathBuf::from("<run dir>");
    (summary, trials)
}

#[test]
fn console_summary_snapshot() {
    let (s, t) = fixture();
    insta::assert_snapshot!(render_console(&s, &t));
}

#[test]
fn junit_snapshot() {
    let (s, t) = fixture();
    insta::assert_snapshot!(junit::render(&s, &t).expect("junit"));
}

#[test]
fn markdown_summary_snapshot() {
    let (s, t) = fixture();
    insta::assert_snapshot!(markdown::render(&s, &t));
}

#[test]
fn trials_csv_snapshot() {
    let (_, t) = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(crate::run_dir::TRIALS_CSV);
    let mut csv = CsvReporter::create(&path).expect("create");
    for trial in &t {
        csv.trial_finished(trial).expect("row");
    }
    drop(csv);
    insta::assert_snapshot!(std::fs::read_to_string(&path).expect("read"));
}

#[test]
fn the_csv_header_names_every_column_with_its_unit() {
    let h = TrialRow::header();
    assert_eq!(h.len(), 25);
    assert_eq!(&h[..3], ["trial", "outcome", "reason"]);
    assert!(h.contains(&"recovery_lower_ms".to_string()));
}

#[test]
fn a_probe_slower_than_its_period_is_named_in_the_console_with_its_real_pacing() {
    let (mut s, trials) = fixture();
    s.probes = vec![
        ProbePacing {
            name: "exec-1".into(),
            period_ms: 10.0,
            effective_period_ms: Some(10.2),
            latency_p50_ms: Some(85.0),
        },
        ProbePacing {
            name: "http-1".into(),
            period_ms: 20.0,
            effective_period_ms: Some(20.1),
            latency_p50_ms: Some(1.2),
        },
    ];
    let text = render_console(&s, &trials);
    assert!(
        text.contains("probe       exec-1: period 10 ms configured; attempts started every 10.2 ms (p50) and succeeded in 85.0 ms (p50): recovery brackets are about 95.2 ms wide"),
        "{text}"
    );
    assert!(
        !text.contains("http-1"),
        "a probe on pace is not mentioned: {text}"
    );
}
