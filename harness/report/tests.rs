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
