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
    assert_eq!(h.len(), 26);
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
            gap_max_ms: Some(12.0),
            gap_trial: Some(2),
        },
        ProbePacing {
            name: "http-1".into(),
            period_ms: 20.0,
            effective_period_ms: Some(20.1),
            latency_p50_ms: Some(1.2),
            gap_max_ms: Some(39.9),
            gap_trial: Some(3),
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
    assert!(!text.contains("apart"), "a gap within 2 periods: {text}");
}

#[test]
fn a_gap_of_more_than_two_periods_between_attempts_is_named_with_its_trial() {
    let (mut s, trials) = fixture();
    s.probes = vec![ProbePacing {
        name: "http-1".into(),
        period_ms: 10.0,
        effective_period_ms: Some(10.0),
        latency_p50_ms: Some(1.0),
        gap_max_ms: Some(26.0),
        gap_trial: Some(3),
    }];
    let text = render_console(&s, &trials);
    assert!(
        text.contains("two attempts were 26.0 ms apart in trial 3, more than 2× the period"),
        "{text}"
    );
    let md = markdown::render(&s, &trials);
    assert!(md.contains("26.0 ms apart in trial 3"), "{md}");
}

#[test]
fn a_trials_largest_probe_gap_is_the_largest_start_interval_of_any_probe() {
    use crate::history::{Event, Record};
    let probe = |name: &str, start_ms: u64| Record {
        seq: 0,
        time: chrono::Utc::now(),
        elapsed_ns: start_ms * 1_000_000,
        trial: Some(1),
        event: Event::Probe {
            probe: name.into(),
            ok: true,
            start_ns: start_ms * 1_000_000,
            latency_ns: 1_000_000,
            late_ns: 0,
            skipped: 0,
            cancelled: false,
            proof_ns: None,
            error: None,
        },
    };
    // The fault at 60 ms, heal at 120 ms: only gaps that overlap that window count.
    let mut records: Vec<Record> = [
        ("a", 0),
        ("a", 50),
        ("a", 70),
        ("a", 80),
        ("a", 106),
        ("a", 116),
        ("a", 130),
        ("a", 230),
        ("b", 65),
        ("b", 95),
        ("b", 105),
        ("b", 115),
    ]
    .iter()
    .map(|(n, t)| probe(n, *t))
    .collect();
    let at = |ms: u64, event: Event| Record {
        seq: 0,
        time: chrono::Utc::now(),
        elapsed_ns: ms * 1_000_000,
        trial: Some(1),
        event,
    };
    records.push(at(
        60,
        Event::FaultOk {
            detail: String::new(),
        },
    ));
    records.push(at(120, Event::HealInvoke));
    records.sort_by_key(|r| r.elapsed_ns);
    let pacing = crate::checker::pacing(&records, &["a".into(), "b".into()]);
    assert_eq!(
        pacing[0].gap_max_ms,
        Some(26.0),
        "80 → 106; not 0 → 50 (before the fault) nor 130 → 230 (after heal)"
    );
    assert_eq!(pacing[1].gap_max_ms, Some(30.0));
    assert_eq!(
        pacing[0].interval_p50_ms,
        Some(20.0),
        "the median of 50, 20, 10, 26, 10, 14, 100"
    );
}

#[test]
fn per_fault_decisions_are_junit_cases_only_when_they_decide() {
    let (mut s, t) = fixture();
    assert_eq!(
        s.per_fault.len(),
        2,
        "the fixture has sigkill and sigterm trials"
    );
    let plain = junit::render(&s, &t).expect("junit");
    assert!(!plain.contains("alone"), "{plain}");
    s.decided_per_fault = true;
    let xml = junit::render(&s, &t).expect("junit");
    for fault in ["sigkill → app", "sigterm → app"] {
        let case = format!("SLO for {fault} alone");
        let at = xml
            .find(&case)
            .unwrap_or_else(|| panic!("no case `{case}` in {xml}"));
        // 3 clean trials of each cannot prove 80 %: not proven is not passed.
        let rest = &xml[at..];
        let end = rest.find("</testcase>").expect("case end");
        assert!(
            rest[..end].contains("type=\"Inconclusive\""),
            "{}",
            &rest[..end]
        );
    }
}
