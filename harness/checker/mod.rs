//! Checkers: pure functions from a trial's history records to its outcome —
//! recovery time with its lower bound, downtime, restarts, pass/fail/unknown.
//!
//! Definitions (DESIGN.md): `t_inject` is the fault's `fault-ok` record; only probe
//! attempts started after `fault-end` (the effect confirmed) count toward recovery;
//! the stack has recovered when every probe has `stable_for` consecutive successes,
//! and `recovered_at` is when the first attempt of the latest such streak completed
//! (the moment the service is known to be up: an attempt that began just before the
//! service was ready can still succeed, so its start would be too early).
//! `recovery_lower` is the latest instant that some failed attempt proves the stack
//! was not ready, and never before `fault-end`: a refused connection proves it when
//! the connect was issued (recorded as `proof_ns` after the start), any other
//! failure — a timeout, an error reply, an exit code — only at the attempt's start. The true recovery lies
//! between `recovery_lower` and `recovered_at`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::history::{Event, Lifecycle, Record};
use crate::stack::Health;

mod capture;
pub use capture::{Capture, Fold};

/// Outcome of one trial (or one checker). Merged: Fail > Unknown > Pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Recovered in time, nothing lost.
    Pass,
    /// Did not recover in time (or lost data).
    Fail,
    /// The data cannot tell (fault not injected, no probe data, …). Never a success.
    Unknown,
}

impl Outcome {
    /// Lower-case word.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        }
    }
}

/// One probe attempt as the checkers see it: which probe, when it ran, how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Index of the probe in the scenario.
    pub probe: usize,
    /// Monotonic start (run nanoseconds).
    pub start_ns: u64,
    /// Monotonic end.
    pub end_ns: u64,
    /// Success.
    pub ok: bool,
    /// How long after `start_ns` a failure proves the service down (a refused
    /// connect: when it was issued); 0 for every other failure.
    pub proof_ns: u64,
}

impl Span {
    /// The latest instant this failed attempt proves the service was not ready.
    pub fn down_at(&self) -> u64 {
        (self.start_ns + self.proof_ns).min(self.end_ns)
    }
}

/// Attempts a [`RecoveryTracker`] keeps before its gate is opened.
pub const PENDING_MAX: usize = 1024;

/// Incremental recovery detection over probe attempts; used live by the runner
/// (to stop observing) and offline by [`check_trial`] (to compute the figures).
#[derive(Debug, Clone)]
pub struct RecoveryTracker {
    stable_for: u32,
    gate_ns: Option<u64>,
    pending: std::collections::VecDeque<Span>,
    probes: Vec<ProbeTrack>,
    recovered: Option<Recovery>,
}

#[derive(Debug, Clone, Default)]
struct ProbeTrack {
    streak_start: Option<u64>,
    streak_len: u32,
    last_fail_ns: Option<u64>,
}

/// When the stack recovered, in monotonic run nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// First success of the stable streak (the latest streak across probes).
    pub at_ns: u64,
    /// Latest moment the stack was known down: the gate, or a later instant some
    /// failed attempt proves ([`Span::down_at`]); never after `at_ns`.
    pub lower_ns: u64,
}

impl RecoveryTracker {
    /// A tracker for `probes` probes requiring `stable_for` consecutive successes.
    pub fn new(probes: usize, stable_for: u32) -> Self {
        RecoveryTracker {
            stable_for: stable_for.max(1),
            gate_ns: None,
            pending: std::collections::VecDeque::new(),
            probes: vec![ProbeTrack::default(); probes],
            recovered: None,
        }
    }

    /// Opens the gate: attempts started at or after `gate_ns` count. Attempts seen
    /// before the gate was known are replayed (the latest [`PENDING_MAX`] of them:
    /// the runner opens the gate when the fault's end is recorded, after every
    /// attempt it had seen ended, so a long fault cannot grow this list).
    pub fn set_gate(&mut self, gate_ns: u64) {
        if self.gate_ns.is_some() {
            return;
        }
        self.gate_ns = Some(gate_ns);
        for a in std::mem::take(&mut self.pending) {
            self.observe(a);
        }
    }

    /// Feeds one probe attempt (per probe, in start order).
    pub fn observe(&mut self, a: Span) {
        let Some(gate) = self.gate_ns else {
            if self.pending.len() >= PENDING_MAX {
                self.pending.pop_front();
            }
            self.pending.push_back(a);
            return;
        };
        if a.start_ns < gate || self.recovered.is_some() {
            return;
        }
        let Some(track) = self.probes.get_mut(a.probe) else {
            return;
        };
        if a.ok {
            // The service is known up when the attempt succeeded, not when it began:
            // an attempt started just before the service was ready can still succeed.
            if track.streak_len == 0 {
                track.streak_start = Some(a.end_ns);
            }
            track.streak_len += 1;
        } else {
            track.streak_len = 0;
            track.streak_start = None;
            // Attempts arrive in start order, not end order: keep the latest proof.
            track.last_fail_ns = track.last_fail_ns.max(Some(a.down_at()));
        }
        if self.probes.iter().all(|t| t.streak_len >= self.stable_for) {
            let at_ns = self
                .probes
                .iter()
                .filter_map(|t| t.streak_start)
                .max()
                .unwrap_or(gate);
            let last_fail = self
                .probes
                .iter()
                .filter_map(|t| t.last_fail_ns)
                .max()
                .unwrap_or(gate);
            self.recovered = Some(Recovery {
                at_ns,
                // A refusal that arrived after a later attempt succeeded (timer
                // jitter around the ready instant) cannot push the bound past it.
                lower_ns: last_fail.max(gate).min(at_ns),
            });
        }
    }

    /// The recovery, once every probe has a stable streak after the gate.
    pub fn recovered(&self) -> Option<Recovery> {
        self.recovered
    }
}

/// Everything measured about one trial; one row of `trials.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// Trial number, from 1.
    pub trial: u32,
    /// Outcome.
    pub outcome: Outcome,
    /// Why (one line).
    pub reason: String,
    /// Fault kind.
    pub fault: String,
    /// Target service.
    pub target: String,
    /// Wall-clock `t_inject`.
    pub injected_at: Option<DateTime<Utc>>,
    /// Wall-clock recovery moment.
    pub recovered_at: Option<DateTime<Utc>>,
    /// `recovered_at − t_inject`.
    pub recovery_ms: Option<f64>,
    /// Lower bound of the true recovery time.
    pub recovery_lower_ms: Option<f64>,
    /// Total time at least one probe was failing, from inject to heal.
    pub downtime_ms: Option<f64>,
    /// Successful probe attempts between inject and heal.
    pub probes_ok: u64,
    /// Failed probe attempts between inject and heal.
    pub probes_failed: u64,
    /// Processes started during the trial (restarts by policy or by rebound).
    pub restarts: u64,
    /// How long the whole trial took (first to last record).
    pub trial_ms: Option<f64>,
    /// What each service went through after the fault (`services.csv`).
    pub services: Vec<ServiceTimeline>,
    /// What the clients saw (all zeros without workloads).
    pub clients: ClientFigures,
    /// What happened when, for the timeline chart (ms after `t_inject`).
    #[serde(skip)]
    pub timeline: Timeline,
    /// How each probe really paced its attempts during the trial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pacing: Vec<Pacing>,
}

impl TrialResult {
    /// The largest time between two consecutive attempt starts of any probe
    /// between `t_inject` and heal (trials.csv `probe_gap_ms`).
    pub fn probe_gap_ms(&self) -> Option<f64> {
        self.pacing
            .iter()
            .filter_map(|p| p.gap_max_ms)
            .max_by(f64::total_cmp)
    }
}

/// How a probe's attempts really went in one trial: an attempt starts on every tick
/// of the period unless the machine is late or too many are in flight, and each
/// takes its own time — together they set how wide a recovery bracket can be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pacing {
    /// Probe name.
    pub probe: String,
    /// Attempts started (cancelled ones included: they were started).
    pub attempts: u32,
    /// Median time between the starts of consecutive attempts.
    pub interval_p50_ms: Option<f64>,
    /// Median time a successful attempt took (what an attempt costs when the
    /// service is up; quick failures while it is down would hide it).
    pub latency_p50_ms: Option<f64>,
    /// The largest time between the starts of two consecutive attempts while an
    /// outage counts (between `t_inject` and heal): how long the service went
    /// unobserved at worst (a dead spell shorter than this can be missed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_max_ms: Option<f64>,
}

/// The pacing of every probe of `probes` over a trial's records.
pub fn pacing(records: &[Record], probes: &[String]) -> Vec<Pacing> {
    Capture::of(records, probes, 1).pacing()
}

/// The median of `ns` in ms (the lower middle of an even count), None when empty.
pub fn median_ms(ns: &mut [u64]) -> Option<f64> {
    if ns.is_empty() {
        return None;
    }
    ns.sort_unstable();
    Some(ms(ns[(ns.len() - 1) / 2]))
}

/// Kinds of marks on a trial's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A probe attempt succeeded.
    ProbeOk,
    /// A probe attempt failed.
    ProbeFail,
    /// A service process/container died.
    Died,
    /// A service started.
    Started,
    /// A service became healthy.
    Healthy,
    /// A client operation failed or was indeterminate.
    ClientError,
    /// A client operation was acknowledged.
    ClientOk,
    /// A fault of a trial with several was injected (its lane names it).
    Fault,
}

/// A trial's events on lanes (probes, services, clients), in ms after `t_inject`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// `(ms, lane, mark)`.
    pub marks: Vec<(f64, String, Mark)>,
    /// Probe attempts folded into spans (long runs of one result): `(from ms, to
    /// ms, lane, mark)`, each span's attempts all [`Mark::ProbeOk`] or all
    /// [`Mark::ProbeFail`].
    pub spans: Vec<(f64, f64, String, Mark)>,
    /// When the fault's effect ended (the recovery gate), ms after `t_inject`.
    pub fault_end_ms: Option<f64>,
}

/// Builds the timeline of a trial.
pub fn timeline(capture: &Capture, inject: &Record) -> Timeline {
    let t0 = inject.elapsed_ns as i64;
    let rel = |ns: u64| (ns as i64 - t0) as f64 / 1e6;
    let mut t = Timeline::default();
    for f in &capture.folds {
        if let Some(name) = capture.probe_name(f.probe) {
            t.spans.push((
                rel(f.first_start_ns),
                rel(f.last_start_ns),
                format!("probe {name}"),
                if f.ok { Mark::ProbeOk } else { Mark::ProbeFail },
            ));
        }
    }
    // Trials with follow-ups show when each fault landed, on a lane of its own.
    let several = capture
        .records
        .iter()
        .filter(|r| matches!(r.event, Event::FaultInvoke { .. }))
        .count()
        > 1;
    let mut invoked: Option<String> = None;
    for r in &capture.records {
        match &r.event {
            Event::FaultInvoke { fault, target } => {
                invoked = Some(format!("fault {fault} → {target}"))
            }
            Event::FaultOk { .. } if several => {
                if let Some(lane) = invoked.take() {
                    t.marks.push((rel(r.elapsed_ns), lane, Mark::Fault));
                }
            }
            Event::Probe {
                probe,
                ok,
                start_ns,
                cancelled: false,
                ..
            } => t.marks.push((
                rel(*start_ns),
                format!("probe {probe}"),
                if *ok { Mark::ProbeOk } else { Mark::ProbeFail },
            )),
            Event::Service {
                service, action, ..
            } => {
                let mark = match action {
                    Lifecycle::Exited => Mark::Died,
                    Lifecycle::Started => Mark::Started,
                    Lifecycle::Health if matches!(&r.event, Event::Service { detail: Some(d), .. } if d == Health::HEALTHY) => {
                        Mark::Healthy
                    }
                    _ => continue,
                };
                t.marks
                    .push((rel(r.elapsed_ns), format!("service {service}"), mark));
            }
            Event::OpComplete {
                workload,
                result,
                start_ns,
                ..
            } => {
                let mark = if *result == crate::history::OpResult::Ok {
                    Mark::ClientOk
                } else {
                    Mark::ClientError
                };
                t.marks
                    .push((rel(*start_ns), format!("client {workload}"), mark));
            }
            Event::FaultEnd { .. } => t.fault_end_ms = Some(rel(r.elapsed_ns)),
            _ => {}
        }
    }
    t
}

/// Client-side figures of a trial, from the workloads' operations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientFigures {
    /// Acknowledged operations.
    pub ops_ok: u64,
    /// Operations certainly not applied.
    pub ops_failed: u64,
    /// Indeterminate operations (never counted as lost nor as kept).
    pub ops_info: u64,
    /// From the first failed or indeterminate operation's start to the last one's end.
    pub client_error_window_ms: Option<f64>,
    /// First acknowledged operation after the last error, after `t_inject`.
    pub client_recovered_ms: Option<f64>,
    /// Acknowledged writes the read-back did not find.
    pub lost_acked_writes: u64,
    /// Their ids.
    pub lost_ids: Vec<String>,
    /// Acknowledged writes that could not be read back (their fate is unknown).
    pub unverifiable_writes: u64,
    /// Latency of acknowledged operations started between the fault and recovery.
    pub latency_during_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub latency_during_p99_ms: Option<f64>,
    /// Latency of acknowledged operations started after recovery.
    pub latency_after_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub latency_after_p99_ms: Option<f64>,
}

/// Computes the client figures; `inject_ns` / `recovered_ns` split latencies.
pub fn client_figures(
    records: &[Record],
    write_workloads: &[String],
    inject_ns: Option<u64>,
    recovered_ns: Option<u64>,
) -> ClientFigures {
    use crate::history::OpResult;
    let mut f = ClientFigures::default();
    let mut acked = std::collections::HashSet::new();
    let mut errors: Vec<(u64, u64)> = Vec::new();
    let mut oks: Vec<(u64, u64)> = Vec::new();
    for r in records {
        match &r.event {
            Event::OpComplete {
                workload,
                id,
                result,
                start_ns,
                latency_ns,
                ..
            } => match result {
                OpResult::Ok => {
                    f.ops_ok += 1;
                    oks.push((*start_ns, *latency_ns));
                    if write_workloads.contains(workload) {
                        acked.insert(id.clone());
                    }
                }
                OpResult::Fail => {
                    f.ops_failed += 1;
                    errors.push((*start_ns, *latency_ns));
                }
                OpResult::Info => {
                    f.ops_info += 1;
                    errors.push((*start_ns, *latency_ns));
                }
            },
            Event::Verify {
                missing,
                unverifiable,
                ..
            } => {
                // Only acknowledged ids are read back; filter anyway so that the
                // figure means exactly "acknowledged and missing".
                f.lost_ids
                    .extend(missing.iter().filter(|id| acked.contains(*id)).cloned());
                f.unverifiable_writes += unverifiable;
            }
            _ => {}
        }
    }
    f.lost_ids.sort();
    f.lost_acked_writes = f.lost_ids.len() as u64;
    if let (Some(first), Some(last)) = (
        errors.iter().map(|e| e.0).min(),
        errors.iter().map(|e| e.0 + e.1).max(),
    ) {
        f.client_error_window_ms = Some(ms(last - first));
        let last_error_start = errors.iter().map(|e| e.0).max().unwrap_or(first);
        if let Some(t0) = inject_ns {
            f.client_recovered_ms = oks
                .iter()
                .map(|o| o.0)
                .filter(|s| *s > last_error_start)
                .min()
                .map(|s| ms(s.saturating_sub(t0)));
        }
    }
    let pct = |mut v: Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        crate::stats::quantile(&v, q)
    };
    if let Some(t0) = inject_ns {
        let cut = recovered_ns.unwrap_or(u64::MAX);
        let during: Vec<f64> = oks
            .iter()
            .filter(|o| o.0 >= t0 && o.0 < cut)
            .map(|o| ms(o.1))
            .collect();
        let after: Vec<f64> = oks.iter().filter(|o| o.0 >= cut).map(|o| ms(o.1)).collect();
        f.latency_during_p50_ms = pct(during.clone(), 0.5);
        f.latency_during_p99_ms = pct(during, 0.99);
        f.latency_after_p50_ms = pct(after.clone(), 0.5);
        f.latency_after_p99_ms = pct(after, 0.99);
    }
    f
}

/// One service's lifecycle in a trial, in ms after `t_inject` (negative: before it,
/// e.g. a death the engine reported before its kill call returned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceTimeline {
    /// Service name.
    pub service: String,
    /// First exit after the fault was invoked.
    pub died_ms: Option<f64>,
    /// Its exit code (128 + signal for a death by signal).
    pub exit_code: Option<i32>,
    /// First start after that exit.
    pub started_ms: Option<f64>,
    /// First `healthy` status after that start.
    pub healthy_ms: Option<f64>,
    /// Starts during the trial.
    pub starts: u64,
}

/// Per-service timelines of a trial, relative to `inject` (the fault-ok record).
/// Backend timestamps (the Docker daemon's) are preferred over arrival times.
pub fn service_timelines(records: &[Record], inject: &Record) -> Vec<ServiceTimeline> {
    let invoked = records
        .iter()
        .position(|r| matches!(r.event, Event::FaultInvoke { .. }))
        .unwrap_or(0);
    let mut out: Vec<ServiceTimeline> = Vec::new();
    for r in &records[invoked..] {
        let Event::Service {
            service,
            action,
            code,
            signal,
            detail,
            daemon_time_ns,
            ..
        } = &r.event
        else {
            continue;
        };
        let at = daemon_time_ns.map_or(r.time, DateTime::<Utc>::from_timestamp_nanos);
        let ms = (at - inject.time)
            .num_microseconds()
            .map_or(f64::NAN, |us| us as f64 / 1e3);
        let idx = match out.iter().position(|t| &t.service == service) {
            Some(i) => i,
            None => {
                out.push(ServiceTimeline {
                    service: service.clone(),
                    died_ms: None,
                    exit_code: None,
                    started_ms: None,
                    healthy_ms: None,
                    starts: 0,
                });
                out.len() - 1
            }
        };
        let t = &mut out[idx];
        match action {
            Lifecycle::Exited if t.died_ms.is_none() => {
                t.died_ms = Some(ms);
                // A death by signal reads as 128 + signal, as shells and Docker report it.
                t.exit_code = code.or(signal.map(|s| 128 + s));
            }
            Lifecycle::Started => {
                t.starts += 1;
                if t.started_ms.is_none() {
                    t.started_ms = Some(ms);
                }
            }
            Lifecycle::Health
                if t.healthy_ms.is_none()
                    && detail.as_deref() == Some(Health::HEALTHY)
                    && (t.starts > 0 || t.died_ms.is_none()) =>
            {
                t.healthy_ms = Some(ms);
            }
            _ => {}
        }
    }
    out
}

/// Inputs of [`check_trial`] that do not come from the history.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// Probe names, in scenario order.
    pub probes: Vec<String>,
    /// Consecutive successes that make "recovered".
    pub stable_for: u32,
    /// Per-trial recovery deadline (the SLO's `recover-within`).
    pub recover_within_ms: f64,
    /// Names of the workloads whose acknowledged writes must survive.
    pub write_workloads: Vec<String>,
    /// Acknowledged writes a trial may lose (the SLO's `max-lost-writes`).
    pub max_lost_writes: u64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn wall(anchor: &Record, at_ns: u64) -> DateTime<Utc> {
    let delta = at_ns as i64 - anchor.elapsed_ns as i64;
    anchor.time + chrono::Duration::nanoseconds(delta)
}

/// The measured recovery times of trials that recovered, in trial order.
pub fn recoveries(trials: &[TrialResult]) -> Vec<f64> {
    trials
        .iter()
        .filter_map(|t| t.recovery_ms)
        .filter(|v| v.is_finite())
        .collect()
}

/// Computes a trial's outcome and figures from its records alone: recovery first,
/// then what the clients saw and whether acknowledged writes survived.
pub fn check_trial(trial: u32, records: &[Record], cfg: &CheckConfig) -> TrialResult {
    check_capture(
        trial,
        &Capture::of(records, &cfg.probes, cfg.stable_for),
        cfg,
    )
}

/// [`check_trial`] of a trial's records as a [`Capture`] took them in.
pub fn check_capture(trial: u32, capture: &Capture, cfg: &CheckConfig) -> TrialResult {
    let records = capture.records.as_slice();
    let mut report = check_recovery(trial, capture, cfg);
    let inject_ns = records
        .iter()
        .find(|r| matches!(r.event, Event::FaultOk { .. }))
        .map(|r| r.elapsed_ns);
    let recovered_ns = match (inject_ns, report.recovery_ms) {
        (Some(t0), Some(rec)) => Some(t0 + (rec * 1e6).round() as u64),
        _ => None,
    };
    let clients = client_figures(records, &cfg.write_workloads, inject_ns, recovered_ns);
    let verified: Vec<&String> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Verify { workload, .. } => Some(workload),
            _ => None,
        })
        .collect();
    let unverified = cfg.write_workloads.iter().any(|w| !verified.contains(&w));
    if clients.lost_acked_writes > cfg.max_lost_writes {
        let shown: Vec<&str> = clients
            .lost_ids
            .iter()
            .take(10)
            .map(String::as_str)
            .collect();
        let more = if clients.lost_ids.len() > shown.len() {
            format!(" and {} more", clients.lost_ids.len() - shown.len())
        } else {
            String::new()
        };
        report.outcome = Outcome::Fail;
        report.reason = format!(
            "lost {} acknowledged write(s): {}{more}; {}",
            clients.lost_acked_writes,
            shown.join(", "),
            report.reason
        );
    } else if report.outcome == Outcome::Pass && (clients.unverifiable_writes > 0 || unverified) {
        report.outcome = Outcome::Unknown;
        report.reason = format!(
            "{}; but {} acknowledged write(s) could not be read back",
            report.reason,
            if unverified {
                "the".to_string()
            } else {
                clients.unverifiable_writes.to_string()
            }
        );
    }
    report.clients = clients;
    // A graceful stop that was not: say so where a reader looks.
    if let Some(detail) = records.iter().find_map(|r| match &r.event {
        Event::FaultEnd { detail } if detail.contains("ignored SIGTERM") => Some(detail),
        _ => None,
    }) {
        let who = detail.split(" ignored").next().unwrap_or_default();
        report.reason = format!(
            "{}; {who} ignored SIGTERM for the whole grace and was SIGKILLed",
            report.reason
        );
    }
    report
}

/// A trial's result before any checker ran: what was done to whom, how long the
/// trial took, how many services started; outcome Unknown.
fn blank_result(trial: u32, capture: &Capture) -> TrialResult {
    let records = capture.records.as_slice();
    let (fault, target) = records
        .iter()
        .find_map(|r| match &r.event {
            Event::TrialStart { fault, target } | Event::FaultInvoke { fault, target } => {
                Some((fault.clone(), target.clone()))
            }
            _ => None,
        })
        .unwrap_or_default();
    TrialResult {
        trial,
        outcome: Outcome::Unknown,
        reason: String::new(),
        fault,
        target,
        injected_at: None,
        recovered_at: None,
        recovery_ms: None,
        recovery_lower_ms: None,
        downtime_ms: None,
        probes_ok: 0,
        probes_failed: 0,
        services: Vec::new(),
        clients: ClientFigures::default(),
        timeline: Timeline::default(),
        pacing: capture.pacing(),
        trial_ms: capture
            .span_ns
            .map(|(first, last)| ms(last.saturating_sub(first))),
        restarts: records
            .iter()
            .filter(|r| {
                matches!(
                    r.event,
                    Event::Service {
                        action: Lifecycle::Started,
                        ..
                    }
                )
            })
            .count() as u64,
    }
}

/// How the runner's `fault-fail` records about follow-ups begin.
pub const FOLLOW_UP_FAILED: &str = "follow-up ";

fn check_recovery(trial: u32, capture: &Capture, cfg: &CheckConfig) -> TrialResult {
    let records = capture.records.as_slice();
    let mut report = blank_result(trial, capture);

    let inject = records
        .iter()
        .find(|r| matches!(r.event, Event::FaultOk { .. }));
    let Some(inject) = inject else {
        report.reason = records
            .iter()
            .find_map(|r| match &r.event {
                Event::FaultFail { error } => Some(format!("fault not injected: {error}")),
                _ => None,
            })
            .unwrap_or_else(|| "fault not injected (no fault-ok record)".into());
        return report;
    };
    let t_inject = inject.elapsed_ns;
    report.injected_at = Some(inject.time);
    report.services = service_timelines(records, inject);
    report.timeline = timeline(capture, inject);
    // The observation window closes when heal begins (or at the last record).
    let window_end = records
        .iter()
        .find(|r| matches!(r.event, Event::HealInvoke))
        .map(|r| r.elapsed_ns)
        .or(capture.span_ns.map(|(_, last)| last))
        .unwrap_or(t_inject);
    let in_window = |start_ns: u64| start_ns >= t_inject && start_ns < window_end;

    let attempts: Vec<Span> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Probe {
                probe,
                ok,
                start_ns,
                latency_ns,
                cancelled: false,
                proof_ns,
                ..
            } if in_window(*start_ns) => {
                cfg.probes
                    .iter()
                    .position(|p| p == probe)
                    .map(|probe| Span {
                        probe,
                        start_ns: *start_ns,
                        end_ns: *start_ns + *latency_ns,
                        ok: *ok,
                        proof_ns: proof_ns.unwrap_or(0),
                    })
            }
            _ => None,
        })
        .collect();
    // Folded attempts count too (a fold lies wholly inside or outside the window).
    let folded = |ok: bool| -> u64 {
        capture
            .folds
            .iter()
            .filter(|f| f.ok == ok && in_window(f.first_start_ns))
            .map(|f| f.count)
            .sum()
    };
    report.probes_ok = attempts.iter().filter(|a| a.ok).count() as u64 + folded(true);
    report.probes_failed = attempts.iter().filter(|a| !a.ok).count() as u64 + folded(false);
    report.downtime_ms = Some(ms(downtime_ns(&attempts, cfg.probes.len(), window_end)));

    // With follow-ups (`[[fault.then]]`), every fault must have been injected and
    // its effect confirmed; the gate is the end of the last effect.
    let count = |f: fn(&Event) -> bool| records.iter().filter(|r| f(&r.event)).count();
    let invoked = count(|e| matches!(e, Event::FaultInvoke { .. }));
    let oks = count(|e| matches!(e, Event::FaultOk { .. }));
    // A failure in a trial with follow-ups: one injected after the first failed,
    // or one never fired (the runner says `follow-up …`). A single fault's records
    // are checked as they always were.
    let failed = records.iter().find_map(|r| match &r.event {
        Event::FaultFail { error } if invoked > 1 || error.starts_with(FOLLOW_UP_FAILED) => {
            Some(error)
        }
        _ => None,
    });
    if let Some(error) = failed {
        report.reason = format!("a fault of the trial failed: {error}");
        return report;
    }
    let ends: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r.event, Event::FaultEnd { .. }))
        .collect();
    let Some(gate) = ends.last().copied() else {
        report.reason = "the fault's effect was never confirmed (no fault-end record)".into();
        return report;
    };
    if ends.len() < oks.max(invoked) {
        report.reason = format!(
            "{} of the trial's {} fault(s) did not take effect within the observation window (fault-end records: {})",
            invoked.max(oks) - ends.len(),
            invoked.max(oks),
            ends.len()
        );
        return report;
    }
    let mut tracker = RecoveryTracker::new(cfg.probes.len(), cfg.stable_for);
    tracker.set_gate(gate.elapsed_ns);
    for a in &attempts {
        tracker.observe(*a);
    }
    if !attempts.iter().any(|a| a.start_ns >= gate.elapsed_ns) {
        report.reason = "no probe attempt after the fault".into();
        return report;
    }
    match tracker.recovered() {
        None => {
            report.outcome = Outcome::Fail;
            report.reason = format!(
                "not recovered: no stable streak of {} successful probes within {:.0} ms of the fault",
                cfg.stable_for,
                ms(window_end - t_inject)
            );
        }
        Some(rec) => {
            let recovery = ms(rec.at_ns - t_inject);
            report.recovered_at = Some(wall(inject, rec.at_ns));
            report.recovery_ms = Some(recovery);
            report.recovery_lower_ms = Some(ms(rec.lower_ns.saturating_sub(t_inject)));
            if recovery <= cfg.recover_within_ms {
                report.outcome = Outcome::Pass;
                report.reason = format!("recovered in {recovery:.1} ms");
            } else {
                report.outcome = Outcome::Fail;
                report.reason = format!(
                    "recovered in {recovery:.1} ms, later than recover-within {:.0} ms",
                    cfg.recover_within_ms
                );
            }
        }
    }
    report
}

/// Time during which at least one probe's latest attempt had failed, from the first
/// attempt to `end`.
fn downtime_ns(attempts: &[Span], probes: usize, end: u64) -> u64 {
    let mut sorted = attempts.to_vec();
    sorted.sort_by_key(|a| a.start_ns);
    let mut failing = vec![false; probes];
    let mut down_since: Option<u64> = None;
    let mut total = 0;
    for Span {
        probe,
        start_ns,
        ok,
        ..
    } in sorted
    {
        let start = start_ns;
        failing[probe] = !ok;
        let down = failing.iter().any(|f| *f);
        match (down, down_since) {
            (true, None) => down_since = Some(start),
            (false, Some(since)) => {
                total += start - since;
                down_since = None;
            }
            _ => {}
        }
    }
    if let Some(since) = down_since {
        total += end.saturating_sub(since);
    }
    total
}

#[cfg(test)]
mod tests;
