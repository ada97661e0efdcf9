//! Unit tests of the recovery checker on hand-written histories.

use super::*;
use chrono::TimeZone;

const MS: u64 = 1_000_000;

struct Builder {
    records: Vec<Record>,
}

impl Builder {
    fn new() -> Self {
        let mut b = Builder {
            records: Vec::new(),
        };
        b.push(
            0,
            Event::TrialStart {
                fault: "sigkill".into(),
                target: "app".into(),
            },
        );
        b
    }

    fn push(&mut self, at_ms: u64, event: Event) -> &mut Self {
        let base = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        self.records.push(Record {
            seq: self.records.len() as u64 + 1,
            time: base + chrono::Duration::milliseconds(at_ms as i64),
            elapsed_ns: at_ms * MS,
            trial: Some(1),
            event,
        });
        self
    }

    fn probe(&mut self, name: &str, start_ms: u64, ok: bool) -> &mut Self {
        self.attempt(name, start_ms, 1, ok, 0)
    }

    fn attempt(
        &mut self,
        name: &str,
        start_ms: u64,
        latency_ms: u64,
        ok: bool,
        proof_ms: u64,
    ) -> &mut Self {
        self.push(
            start_ms + latency_ms,
            Event::Probe {
                probe: name.into(),
                ok,
                start_ns: start_ms * MS,
                latency_ns: latency_ms * MS,
                late_ns: 0,
                skipped: 0,
                cancelled: false,
                proof_ns: (proof_ms > 0).then_some(proof_ms * MS),
                error: None,
            },
        )
    }
}

fn cfg(probes: &[&str], stable_for: u32) -> CheckConfig {
    CheckConfig {
        probes: probes.iter().map(|s| s.to_string()).collect(),
        stable_for,
        recover_within_ms: 1000.0,
        write_workloads: Vec::new(),
        max_lost_writes: 0,
    }
}

#[test]
fn recovery_clock_starts_at_inject_ok_and_stops_at_first_success_of_the_streak() {
    let mut b = Builder::new();
    b.probe("h", 90, true);
    b.push(
        100,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.probe("h", 105, true); // in flight while dying: before the gate, ignored
    b.push(
        110,
        Event::FaultEnd {
            detail: String::new(),
        },
    );
    for t in [120, 140, 160] {
        b.probe("h", t, false);
    }
    for t in [180, 200, 220] {
        b.probe("h", t, true);
    }
    b.push(230, Event::HealInvoke);
    let r = check_trial(1, &b.records, &cfg(&["h"], 3));
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
    assert_eq!(
        r.recovery_ms,
        Some(81.0),
        "the first success of the streak completed at 181"
    );
    assert_eq!(r.recovery_lower_ms, Some(60.0));
    assert_eq!(
        r.downtime_ms,
        Some(60.0),
        "from the first failure (120) to the next success (180)"
    );
    assert_eq!(r.probes_failed, 3);
    let recovered = r.recovered_at.expect("recovered_at");
    assert_eq!(
        (recovered - r.injected_at.expect("injected")).num_milliseconds(),
        81
    );
}

/// A trial injected at 100 ms, its effect confirmed at 110 ms, then `attempts`
/// (start ms, latency ms, ok, proof ms after the start: 0 = none) and heal at 1 000 ms.
fn evidence_trial(attempts: &[(u64, u64, bool, u64)]) -> TrialResult {
    let mut b = Builder::new();
    b.push(
        100,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.push(
        110,
        Event::FaultEnd {
            detail: String::new(),
        },
    );
    for &(start, latency, ok, proof) in attempts {
        b.attempt("h", start, latency, ok, proof);
    }
    b.push(1000, Event::HealInvoke);
    check_trial(1, &b.records, &cfg(&["h"], 1))
}

#[test]
fn a_refusal_proves_the_service_down_when_its_connect_was_issued_a_timeout_only_at_its_start() {
    // Started at 200, connect issued at 202 (after a lookup), refusal reported at
    // 205: down at 202, not 205 (the report can come late on a busy machine).
    let r = evidence_trial(&[(200, 5, false, 2), (210, 1, true, 0)]);
    assert_eq!(r.recovery_ms, Some(111.0));
    assert_eq!(r.recovery_lower_ms, Some(102.0));
    // The same attempt timing out (or any other failure) proves only its start.
    let r = evidence_trial(&[(200, 5, false, 0), (210, 1, true, 0)]);
    assert_eq!(r.recovery_lower_ms, Some(100.0));
    // A timeout that started late outweighs an earlier refusal; the later proof
    // wins whatever order the attempts ended in.
    let r = evidence_trial(&[(150, 500, false, 0), (160, 2, false, 1), (700, 1, true, 0)]);
    assert_eq!(r.recovery_lower_ms, Some(61.0));
    let r = evidence_trial(&[(150, 2, false, 1), (160, 500, false, 0), (700, 1, true, 0)]);
    assert_eq!(r.recovery_lower_ms, Some(60.0));
    // The latest evidence, not the effect's confirmation, bounds the recovery.
    let r = evidence_trial(&[(400, 1, false, 1), (410, 1, true, 0)]);
    assert_eq!(r.recovery_lower_ms, Some(301.0));
    // A proof is never later than its attempt's end.
    let r = evidence_trial(&[(400, 1, false, 9), (410, 1, true, 0)]);
    assert_eq!(r.recovery_lower_ms, Some(301.0));
}

#[test]
fn a_proof_later_than_a_later_success_never_passes_the_recovery() {
    // Started at 300, connect issued at 310 (a slow lookup); the attempt started at
    // 305 succeeded at 306.
    let r = evidence_trial(&[(300, 20, false, 10), (305, 1, true, 0)]);
    assert_eq!(r.recovery_ms, Some(206.0));
    assert_eq!(r.recovery_lower_ms, Some(206.0));
}

#[test]
fn a_broken_streak_restarts_the_count() {
    let mut b = Builder::new();
    b.push(
        0,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.push(
        0,
        Event::FaultEnd {
            detail: String::new(),
        },
    );
    for (t, ok) in [
        (10, true),
        (20, true),
        (30, false),
        (40, true),
        (50, true),
        (60, true),
    ] {
        b.probe("h", t, ok);
    }
    let r = check_trial(1, &b.records, &cfg(&["h"], 3));
    assert_eq!(r.recovery_ms, Some(41.0));
    assert_eq!(r.recovery_lower_ms, Some(30.0));
}

#[test]
fn the_stack_is_up_only_when_every_probe_is() {
    let mut b = Builder::new();
    b.push(
        0,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.push(
        0,
        Event::FaultEnd {
            detail: String::new(),
        },
    );
    for t in [10, 20, 30] {
        b.probe("a", t, true);
    }
    for (t, ok) in [(15, false), (25, false), (35, true), (45, true)] {
        b.probe("b", t, ok);
    }
    let r = check_trial(1, &b.records, &cfg(&["a", "b"], 2));
    assert_eq!(r.recovery_ms, Some(36.0));
    assert_eq!(r.recovery_lower_ms, Some(25.0));
}

#[test]
fn never_recovering_fails_and_missing_data_is_unknown() {
    let mut b = Builder::new();
    b.push(
        0,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.push(
        5,
        Event::FaultEnd {
            detail: String::new(),
        },
    );
    for t in [10, 20, 30] {
        b.probe("h", t, false);
    }
    b.push(40, Event::HealInvoke);
    let r = check_trial(1, &b.records, &cfg(&["h"], 1));
    assert_eq!(r.outcome, Outcome::Fail);
    assert_eq!(r.recovery_ms, None);
    assert_eq!(r.downtime_ms, Some(30.0));

    let mut b = Builder::new();
    b.push(
        0,
        Event::FaultFail {
            error: "no such process".into(),
        },
    );
    let r = check_trial(1, &b.records, &cfg(&["h"], 1));
    assert_eq!(r.outcome, Outcome::Unknown);
    assert!(r.reason.contains("no such process"), "{}", r.reason);

    let mut b = Builder::new();
    b.push(
        0,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.probe("h", 10, true);
    let r = check_trial(1, &b.records, &cfg(&["h"], 1));
    assert_eq!(
        r.outcome,
        Outcome::Unknown,
        "no fault-end: the effect was never confirmed"
    );
}

#[test]
fn slow_recovery_fails_the_deadline_but_keeps_its_figure() {
    let mut b = Builder::new();
    b.push(
        0,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.push(
        0,
        Event::FaultEnd {
            detail: String::new(),
        },
    );
    b.probe("h", 1500, true);
    let r = check_trial(1, &b.records, &cfg(&["h"], 1));
    assert_eq!(r.outcome, Outcome::Fail);
    assert_eq!(r.recovery_ms, Some(1501.0));
}

#[test]
fn tracker_replays_attempts_seen_before_the_gate_was_known() {
    let mut t = RecoveryTracker::new(1, 2);
    let ok = |start_ns, end_ns| Span {
        probe: 0,
        start_ns,
        end_ns,
        ok: true,
        proof_ns: 0,
    };
    t.observe(ok(5, 6)); // before the gate: dropped on replay
    t.observe(ok(12, 13));
    t.observe(ok(14, 15));
    assert_eq!(t.recovered(), None, "no gate yet");
    t.set_gate(10);
    assert_eq!(
        t.recovered(),
        Some(Recovery {
            at_ns: 13,
            lower_ns: 10
        })
    );
}

#[test]
fn service_timelines_prefer_the_daemon_clock_and_follow_die_start_healthy() {
    let mut b = Builder::new();
    b.push(
        0,
        Event::FaultInvoke {
            fault: "sigkill".into(),
            target: "app".into(),
        },
    );
    let base = b.records[0].time;
    let daemon = |ms: i64| (base + chrono::Duration::milliseconds(ms)).timestamp_nanos_opt();
    // The engine saw the death 30 ms before its kill call returned at 100 ms.
    b.push(
        95,
        Event::Service {
            service: "app".into(),
            action: Lifecycle::Exited,
            pid: None,
            code: Some(137),
            signal: None,
            detail: None,
            daemon_time_ns: daemon(70),
        },
    );
    b.push(
        100,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.push(150, Event::service("app", Lifecycle::Started, None));
    b.push(
        400,
        Event::service("app", Lifecycle::Health, Some("healthy".into())),
    );
    b.push(
        410,
        Event::Service {
            service: "db".into(),
            action: Lifecycle::Exited,
            pid: None,
            code: None,
            signal: Some(9),
            detail: None,
            daemon_time_ns: None,
        },
    );
    let inject = b
        .records
        .iter()
        .find(|r| matches!(r.event, Event::FaultOk { .. }))
        .expect("inject")
        .clone();
    let t = service_timelines(&b.records, &inject);
    assert_eq!(t.len(), 2);
    assert_eq!(
        (
            t[0].died_ms,
            t[0].exit_code,
            t[0].started_ms,
            t[0].healthy_ms,
            t[0].starts
        ),
        (Some(-30.0), Some(137), Some(50.0), Some(300.0), 1)
    );
    assert_eq!(
        (t[1].service.as_str(), t[1].exit_code, t[1].started_ms),
        ("db", Some(137), None)
    );
}

fn op(b: &mut Builder, at: u64, id: &str, result: crate::history::OpResult) {
    b.push(
        at,
        Event::OpInvoke {
            workload: "w".into(),
            id: id.into(),
        },
    );
    b.push(
        at + 5,
        Event::OpComplete {
            workload: "w".into(),
            id: id.into(),
            result,
            start_ns: at * MS,
            latency_ns: 5 * MS,
            error: None,
        },
    );
}

fn write_cfg() -> CheckConfig {
    CheckConfig {
        write_workloads: vec!["w".into()],
        ..cfg(&["h"], 1)
    }
}

fn recovered_trial() -> Builder {
    let mut b = Builder::new();
    b.push(
        0,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.push(
        0,
        Event::FaultEnd {
            detail: String::new(),
        },
    );
    b.probe("h", 10, true);
    b
}

#[test]
fn a_timed_out_write_missing_afterwards_is_never_counted_as_lost() {
    use crate::history::OpResult;
    let mut b = recovered_trial();
    op(&mut b, 20, "acked", OpResult::Ok);
    op(&mut b, 30, "timed-out", OpResult::Info);
    op(&mut b, 40, "refused", OpResult::Fail);
    // The read-back only checks acknowledged ids; even if it reported others, they must not count.
    b.push(
        100,
        Event::Verify {
            workload: "w".into(),
            checked: 1,
            missing: vec!["timed-out".into()],
            unverifiable: 0,
            error: None,
        },
    );
    let r = check_trial(1, &b.records, &write_cfg());
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
    assert_eq!(
        (r.clients.ops_ok, r.clients.ops_info, r.clients.ops_failed),
        (1, 1, 1)
    );
    assert_eq!(r.clients.lost_acked_writes, 0);
    assert_eq!(
        r.clients.client_error_window_ms,
        Some(15.0),
        "from the first error's start (30) to the last one's end (45)"
    );
}

#[test]
fn an_acknowledged_write_missing_afterwards_fails_the_trial_with_its_id() {
    use crate::history::OpResult;
    let mut b = recovered_trial();
    op(&mut b, 20, "kept", OpResult::Ok);
    op(&mut b, 30, "gone", OpResult::Ok);
    b.push(
        100,
        Event::Verify {
            workload: "w".into(),
            checked: 2,
            missing: vec!["gone".into()],
            unverifiable: 0,
            error: None,
        },
    );
    let r = check_trial(1, &b.records, &write_cfg());
    assert_eq!(r.outcome, Outcome::Fail);
    assert_eq!(r.clients.lost_ids, vec!["gone".to_string()]);
    assert!(r.reason.contains("gone"), "{}", r.reason);
    // One lost write allowed by the SLO: the trial passes and still reports it.
    let lenient = CheckConfig {
        max_lost_writes: 1,
        ..write_cfg()
    };
    let r = check_trial(1, &b.records, &lenient);
    assert_eq!((r.outcome, r.clients.lost_acked_writes), (Outcome::Pass, 1));
}

#[test]
fn writes_that_could_not_be_read_back_make_the_trial_unknown() {
    use crate::history::OpResult;
    let mut b = recovered_trial();
    op(&mut b, 20, "a", OpResult::Ok);
    let r = check_trial(1, &b.records, &write_cfg());
    assert_eq!(r.outcome, Outcome::Unknown, "no verify record at all");
    b.push(
        100,
        Event::Verify {
            workload: "w".into(),
            checked: 1,
            missing: vec![],
            unverifiable: 1,
            error: Some("boom".into()),
        },
    );
    let r = check_trial(1, &b.records, &write_cfg());
    assert_eq!(r.outcome, Outcome::Unknown);
}

#[test]
fn pacing_is_the_median_interval_between_starts_and_the_median_latency() {
    let mut b = Builder::new();
    for (start, latency) in [(0, 80), (30, 85), (60, 90), (100, 95)] {
        b.attempt("slow", start, latency, true, 0);
    }
    // Quick failures while the service is down do not make it look fast.
    b.attempt("slow", 130, 0, false, 0);
    b.attempt("other", 5, 1, true, 0);
    let p = pacing(&b.records, &["slow".into(), "other".into(), "none".into()]);
    assert_eq!(p[0].attempts, 5);
    assert_eq!(p[0].interval_p50_ms, Some(30.0), "intervals 30, 30, 40, 30");
    assert_eq!(p[0].latency_p50_ms, Some(85.0));
    assert_eq!((p[1].attempts, p[1].interval_p50_ms), (1, None));
    assert_eq!((p[2].attempts, p[2].latency_p50_ms), (0, None));
}

#[test]
fn a_target_that_ignored_sigterm_is_named_in_the_reason() {
    let mut b = Builder::new();
    b.push(
        100,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.push(
        5100,
        Event::FaultEnd {
            detail: "app ignored SIGTERM for 5s, SIGKILLed, started again".into(),
        },
    );
    b.attempt("h", 5200, 1, true, 0);
    b.push(6000, Event::HealInvoke);
    let mut c = cfg(&["h"], 1);
    c.recover_within_ms = 10_000.0;
    let r = check_trial(1, &b.records, &c);
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
    assert!(
        r.reason
            .ends_with("app ignored SIGTERM for the whole grace and was SIGKILLed"),
        "{}",
        r.reason
    );
}

/// One probe's attempts for [`random_trial`]: segments of (result, how many).
type Segments = Vec<(bool, u16)>;

/// A trial shaped like the runner's: probes on their own periods, attempts
/// recorded in start order when released (never before an earlier one), phase
/// records at the given times, a service restart and a few client operations.
fn random_trial(
    probes: &[(u64, Segments, u64)],
    inject_ms: u64,
    gate_ms: Option<u64>,
    heal_ms: u64,
) -> Vec<Record> {
    let mut timed: Vec<(u64, u64, Event)> = Vec::new();
    let mut order = 0u64;
    let mut at = |ns: u64, event: Event, timed: &mut Vec<(u64, u64, Event)>| {
        order += 1;
        timed.push((ns, order, event));
    };
    at(
        0,
        Event::TrialStart {
            fault: "sigkill".into(),
            target: "app".into(),
        },
        &mut timed,
    );
    at(
        inject_ms * MS,
        Event::FaultOk {
            detail: String::new(),
        },
        &mut timed,
    );
    at(
        inject_ms * MS + 1,
        Event::service("app", Lifecycle::Exited, None),
        &mut timed,
    );
    if let Some(g) = gate_ms {
        at(
            g * MS,
            Event::FaultEnd {
                detail: String::new(),
            },
            &mut timed,
        );
        at(
            g * MS + 1,
            Event::service("app", Lifecycle::Started, None),
            &mut timed,
        );
    }
    at(heal_ms * MS, Event::HealInvoke, &mut timed);
    for (k, start) in [inject_ms.saturating_sub(3), inject_ms + 2, heal_ms + 1]
        .into_iter()
        .enumerate()
    {
        at(
            start * MS + 500_000,
            Event::OpComplete {
                workload: "w".into(),
                id: format!("op-{k}"),
                result: if k == 1 {
                    crate::history::OpResult::Info
                } else {
                    crate::history::OpResult::Ok
                },
                start_ns: start * MS,
                latency_ns: 500_000,
                error: None,
            },
            &mut timed,
        );
    }
    for (p, (period_us, segments, salt)) in probes.iter().enumerate() {
        let mut start = *salt % 1000 * 1000;
        let mut released = 0u64;
        let mut i = 0u64;
        for (ok, n) in segments {
            for _ in 0..*n {
                i += 1;
                let h = (i * 2654435761 + salt) % 1000;
                let latency = 200_000 + h * 3_000; // 0.2–3.2 ms, jittered
                let cancelled = h < 15;
                let proof = (!ok && h.is_multiple_of(3)).then_some(h * 1_000);
                released = released.max(start + latency) + 1;
                at(
                    released,
                    Event::Probe {
                        probe: format!("p{p}"),
                        ok: *ok && !cancelled,
                        start_ns: start,
                        latency_ns: latency,
                        late_ns: h % 7,
                        skipped: 0,
                        cancelled,
                        proof_ns: proof,
                        error: None,
                    },
                    &mut timed,
                );
                start += period_us * 1000 + h % 5 * 1000;
            }
        }
    }
    at(
        released_end(&timed),
        Event::TrialEnd { interrupted: false },
        &mut timed,
    );
    timed.sort_by_key(|(ns, order, _)| (*ns, *order));
    let base = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    timed
        .into_iter()
        .enumerate()
        .map(|(i, (ns, _, event))| Record {
            seq: i as u64 + 1,
            time: base + chrono::Duration::nanoseconds(ns as i64),
            elapsed_ns: ns,
            trial: Some(1),
            event,
        })
        .collect()
}

fn released_end(timed: &[(u64, u64, Event)]) -> u64 {
    timed.iter().map(|t| t.0).max().unwrap_or(0) + 1
}

/// A result without its timeline (the folding capture draws runs as spans).
fn figures(mut r: TrialResult) -> TrialResult {
    r.timeline = Timeline::default();
    r
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Folding long runs changes no figure: every field of the result is the same
    /// as when every record is kept.
    #[test]
    fn a_folding_capture_computes_what_keeping_every_record_computes(
        probes in proptest::collection::vec(
            (1u64..30_000, proptest::collection::vec((proptest::bool::ANY, 1u16..40), 1..12), 0u64..10_000),
            1..4,
        ),
        stable_for in 1u32..5,
        inject_ms in 5u64..200,
        gate_after in proptest::option::of(0u64..300),
        heal_after in 0u64..600,
    ) {
        let gate_ms = gate_after.map(|g| inject_ms + g);
        let heal_ms = gate_ms.unwrap_or(inject_ms) + heal_after;
        let records = random_trial(&probes, inject_ms, gate_ms, heal_ms);
        let names: Vec<String> = (0..probes.len()).map(|p| format!("p{p}")).collect();
        let mut c = cfg(&names.iter().map(String::as_str).collect::<Vec<_>>(), stable_for);
        c.write_workloads = Vec::new();
        let (mut folding, mut all) = (
            Capture::new(&c.probes, stable_for),
            Capture::keeping_all(&c.probes, stable_for),
        );
        for r in &records {
            folding.push(r);
            all.push(r);
        }
        let folded = check_capture(1, &folding, &c);
        let kept = check_capture(1, &all, &c);
        // Every attempt is somewhere on the timeline: a mark or inside a span.
        let marks = folded.timeline.marks.iter().filter(|m| m.1.starts_with("probe ")).count();
        let spans = folding.folds.iter().map(|f| f.count as usize).sum::<usize>();
        let attempts = records.iter().filter(|r| matches!(r.event, Event::Probe { cancelled: false, .. })).count();
        proptest::prop_assert_eq!(marks + spans, attempts);
        proptest::prop_assert_eq!(figures(folded), figures(kept));
    }
}

#[test]
fn an_hour_of_100_hz_probing_keeps_a_few_records_and_counts_every_attempt() {
    // 360 000 attempts: up for 20 minutes, down for 20 (the fault), up again.
    let mut b = Builder::new();
    let up = |b: &mut Builder, from: u64, to: u64, ok: bool| {
        for t in (from..to).step_by(10) {
            b.probe("h", t, ok);
        }
    };
    up(&mut b, 0, 1_200_000, true);
    b.push(
        1_200_000,
        Event::FaultOk {
            detail: String::new(),
        },
    );
    b.push(
        1_200_001,
        Event::FaultEnd {
            detail: String::new(),
        },
    );
    up(&mut b, 1_200_010, 2_400_000, false);
    up(&mut b, 2_400_000, 3_600_000, true);
    b.push(3_600_002, Event::HealInvoke);
    b.push(3_600_003, Event::TrialEnd { interrupted: false });
    let mut capture = Capture::new(&["h".into()], 3);
    for r in &b.records {
        capture.push(r);
    }
    assert!(capture.kept() < 20, "kept {} records", capture.kept());
    let mut c = cfg(&["h"], 3);
    c.recover_within_ms = 3_600_000.0;
    let r = check_capture(1, &capture, &c);
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
    assert_eq!((r.probes_ok, r.probes_failed), (120_000, 119_999));
    assert_eq!(
        r.recovery_ms,
        Some(1_200_001.0),
        "first success of the streak ended at 2 400 001"
    );
    assert_eq!(r.pacing[0].attempts, 359_999);
    assert_eq!(
        r.pacing[0].gap_max_ms,
        Some(20.0),
        "no attempt at 1 200 000"
    );
    // Binned after 4 096 values: the 10 ms interval to within 0.1 %.
    let p50 = r.pacing[0].interval_p50_ms.expect("interval");
    assert!((p50 - 10.0).abs() < 0.01, "{p50}");
    assert_eq!(r.timeline.spans.len(), 3, "{:?}", r.timeline.spans);
}
