//! A trial's records in bounded memory: fed one record at a time (live by the
//! runner, again by `rebound check` from `history.jsonl`), it keeps what the
//! checkers read and folds the rest of long probe streaks into counts, so a trial
//! of an hour at 100 Hz costs kilobytes and both paths compute the same figures.
//!
//! Which probe attempts can go, and why no figure changes (see
//! [`check_trial`](super::check_trial)): runs are consecutive attempts of one probe
//! with the same result, never spanning `t_inject`, the fault's end (the recovery
//! gate) or heal-invoke, so every count, window and gate sees whole runs.
//! - In a run of successes the first `stable_for` are kept: the recovery tracker
//!   needs a streak of that length and the time its first success ended; a later
//!   success lengthens a streak that is already long enough, and changes no
//!   downtime edge (the probe was already up).
//! - In a run of failures the first is kept (where downtime starts and a streak
//!   breaks), and the one that proves the service down latest (the recovery's
//!   lower bound); the others change neither.
//! - Cancelled attempts prove nothing; only pacing counts them.
//! - `op-invoke` records: no checker reads them (`op-complete` carries the op).
//!
//! Folded attempts still count (`probes_ok`, `probes_failed`) and still show on the
//! timeline, as a span. Pacing is accumulated as attempts arrive.

use std::collections::BTreeMap;

use crate::history::{Event, Record};

use super::{median_ms, ms, Pacing, Span};

/// Most phase boundaries a trial keeps (fault-ok and fault-end records of its
/// faults); past them folds merely stop splitting.
const MAX_MARKS: usize = 64;

/// Values a [`Median`] keeps exactly before it bins them.
const RAW_MAX: usize = 4096;

/// Significant bits a [`Median`] bin keeps: 1/1024 relative precision at worst.
const BIN_BITS: u32 = 11;

/// A median of nanosecond values in bounded memory: exact up to [`RAW_MAX`]
/// values, then from bins of 1/1024 relative width (a 10 ms period to ±5 µs).
#[derive(Debug, Clone, Default)]
struct Median {
    raw: Vec<u64>,
    bins: BTreeMap<u64, u64>,
    n: u64,
}

fn bin_of(v: u64) -> (u64, u64) {
    let bits = 64 - v.leading_zeros();
    if bits <= BIN_BITS {
        (v, 1)
    } else {
        let drop = bits - BIN_BITS;
        ((v >> drop) << drop, 1 << drop)
    }
}

impl Median {
    fn push(&mut self, v: u64) {
        self.n += 1;
        if self.bins.is_empty() && self.raw.len() < RAW_MAX {
            self.raw.push(v);
            return;
        }
        for x in std::mem::take(&mut self.raw).into_iter().chain([v]) {
            *self.bins.entry(bin_of(x).0).or_default() += 1;
        }
    }

    /// The lower middle, in ms (a bin's middle once binned); None when empty.
    fn median_ms(&self) -> Option<f64> {
        if self.bins.is_empty() {
            return median_ms(&mut self.raw.clone());
        }
        let rank = (self.n - 1) / 2;
        let mut seen = 0;
        for (&low, &count) in &self.bins {
            seen += count;
            if seen > rank {
                let (_, width) = bin_of(low);
                return Some(ms(low) + ms(width) / 2.0);
            }
        }
        None
    }
}

/// A probe's [`Pacing`], accumulated attempt by attempt (in start order, as every
/// history has them).
#[derive(Debug, Clone, Default)]
struct PacingAcc {
    attempts: u64,
    last_start: Option<u64>,
    intervals: Median,
    latencies: Median,
    gap_max: Option<u64>,
}

impl PacingAcc {
    /// `observed(prev, start)`: whether the time between two consecutive starts
    /// overlaps the window in which an outage counts (`t_inject` to heal).
    fn push(
        &mut self,
        start_ns: u64,
        ok: bool,
        latency_ns: u64,
        observed: impl Fn(u64, u64) -> bool,
    ) {
        self.attempts += 1;
        if let Some(prev) = self.last_start {
            // Out of start order only in a hand-edited history: the distance still
            // is a gap between two attempts.
            let gap = start_ns.abs_diff(prev);
            self.intervals.push(gap);
            if observed(prev.min(start_ns), prev.max(start_ns)) {
                self.gap_max = self.gap_max.max(Some(gap));
            }
        }
        self.last_start = self.last_start.max(Some(start_ns));
        if ok {
            self.latencies.push(latency_ns);
        }
    }

    fn pacing(&self, probe: &str) -> Pacing {
        Pacing {
            probe: probe.to_string(),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            interval_p50_ms: self.intervals.median_ms(),
            latency_p50_ms: self.latencies.median_ms(),
            gap_max_ms: self.gap_max.map(ms),
        }
    }
}

/// Attempts of one probe that a [`Capture`] folded away: part of one run (all
/// successes or all failures, in one phase of the trial).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fold {
    /// Index of the probe in the scenario.
    pub probe: usize,
    /// Whether they succeeded.
    pub ok: bool,
    /// Start of the earliest folded attempt (run nanoseconds).
    pub first_start_ns: u64,
    /// Start of the latest.
    pub last_start_ns: u64,
    /// How many.
    pub count: u64,
}

/// The run of one probe that the next attempt may continue.
#[derive(Debug, Clone)]
struct Run {
    ok: bool,
    phase: u32,
    len: u64,
    last_start: u64,
    fold: Option<usize>,
    /// A failure run's kept attempt proving the service down latest, after its
    /// first: (index in `records`, that instant).
    latest_proof: Option<(usize, u64)>,
}

/// A trial's records as the checkers need them, in bounded memory (module docs).
#[derive(Debug, Clone)]
pub struct Capture {
    probes: Vec<String>,
    keep_ok: u64,
    fold: bool,
    pub(super) records: Vec<Record>,
    pub(super) folds: Vec<Fold>,
    runs: Vec<Option<Run>>,
    pacing: Vec<PacingAcc>,
    inject_ns: Option<u64>,
    /// Every later fault-ok and every fault-end before heal (phase boundaries; a
    /// trial with follow-ups has several), at most [`MAX_MARKS`].
    marks: Vec<u64>,
    heal_ns: Option<u64>,
    /// Monotonic times of the first and the latest record seen.
    pub(super) span_ns: Option<(u64, u64)>,
}

impl Capture {
    /// An empty capture for a scenario's `probes` (names, in scenario order) whose
    /// recovery needs `stable_for` consecutive successes.
    pub fn new(probes: &[String], stable_for: u32) -> Self {
        Capture {
            probes: probes.to_vec(),
            keep_ok: u64::from(stable_for.max(1)),
            fold: true,
            records: Vec::new(),
            folds: Vec::new(),
            runs: vec![None; probes.len()],
            pacing: vec![PacingAcc::default(); probes.len()],
            inject_ns: None,
            marks: Vec::new(),
            heal_ns: None,
            span_ns: None,
        }
    }

    /// A capture that keeps every record it is given (tests compare it with the
    /// folding one).
    pub fn keeping_all(probes: &[String], stable_for: u32) -> Self {
        Capture {
            fold: false,
            ..Capture::new(probes, stable_for)
        }
    }

    /// A capture of `records` (in history order).
    pub fn of(records: &[Record], probes: &[String], stable_for: u32) -> Self {
        let mut c = Capture::new(probes, stable_for);
        for r in records {
            c.push(r);
        }
        c
    }

    /// The name of probe `idx`.
    pub fn probe_name(&self, idx: usize) -> Option<&str> {
        self.probes.get(idx).map(String::as_str)
    }

    /// Records kept so far (every one not folded; for memory figures and tests).
    pub fn kept(&self) -> usize {
        self.records.len()
    }

    /// The pacing of every probe, from the attempts seen so far.
    pub fn pacing(&self) -> Vec<Pacing> {
        self.probes
            .iter()
            .zip(&self.pacing)
            .map(|(name, acc)| acc.pacing(name))
            .collect()
    }

    /// Which side of each phase boundary known so far `start_ns` lies on. A probe
    /// attempt that started after a boundary was recorded after it, so its
    /// boundary is always known by the time the attempt arrives.
    fn phase(&self, start_ns: u64) -> u32 {
        let past = |b: Option<u64>| u32::from(b.is_some_and(|b| start_ns >= b));
        let marks = self.marks.iter().filter(|&&m| start_ns >= m).count() as u32;
        past(self.inject_ns) | past(self.heal_ns) << 1 | marks << 2
    }

    /// Takes in the next record of the trial.
    pub fn push(&mut self, r: &Record) {
        self.span_ns = Some(match self.span_ns {
            None => (r.elapsed_ns, r.elapsed_ns),
            Some((first, _)) => (first, r.elapsed_ns),
        });
        match &r.event {
            Event::FaultOk { .. } if self.inject_ns.is_none() => {
                self.inject_ns = Some(r.elapsed_ns);
            }
            Event::FaultOk { .. } | Event::FaultEnd { .. }
                if self.heal_ns.is_none() && self.marks.len() < MAX_MARKS =>
            {
                self.marks.push(r.elapsed_ns);
            }
            Event::HealInvoke => {
                self.heal_ns.get_or_insert(r.elapsed_ns);
            }
            Event::OpInvoke { .. } if self.fold => return,
            Event::Probe {
                probe,
                ok,
                start_ns,
                latency_ns,
                cancelled,
                proof_ns,
                ..
            } => {
                if let Some(idx) = self.probes.iter().position(|p| p == probe) {
                    // A boundary is known by the time an attempt after it arrives;
                    // one not known yet is later than this attempt.
                    let (inject, heal) = (self.inject_ns, self.heal_ns);
                    self.pacing[idx].push(*start_ns, *ok, *latency_ns, |a, b| {
                        inject.is_some_and(|i| b > i) && heal.is_none_or(|h| a < h)
                    });
                    if !self.fold {
                        self.records.push(r.clone());
                    } else if !cancelled {
                        let down_at = Span {
                            probe: idx,
                            start_ns: *start_ns,
                            end_ns: start_ns.saturating_add(*latency_ns),
                            ok: *ok,
                            proof_ns: proof_ns.unwrap_or(0),
                        }
                        .down_at();
                        self.attempt(idx, *ok, *start_ns, down_at, r);
                    }
                    return;
                }
            }
            _ => {}
        }
        self.records.push(r.clone());
    }

    fn attempt(&mut self, idx: usize, ok: bool, start_ns: u64, down_at: u64, r: &Record) {
        let phase = self.phase(start_ns);
        let Capture {
            runs,
            records,
            folds,
            keep_ok,
            ..
        } = self;
        let run = &mut runs[idx];
        let continues = run
            .as_ref()
            .is_some_and(|run| run.ok == ok && run.phase == phase && start_ns >= run.last_start);
        let Some(run) = run.as_mut().filter(|_| continues) else {
            *run = Some(Run {
                ok,
                phase,
                len: 1,
                last_start: start_ns,
                fold: None,
                latest_proof: None,
            });
            records.push(r.clone());
            return;
        };
        run.len += 1;
        run.last_start = start_ns;
        if ok {
            if run.len <= *keep_ok {
                records.push(r.clone());
            } else {
                fold_into(folds, &mut run.fold, idx, ok, start_ns);
            }
            return;
        }
        match run.latest_proof {
            None => {
                run.latest_proof = Some((records.len(), down_at));
                records.push(r.clone());
            }
            Some((i, best)) if down_at > best => {
                // The new attempt takes the kept one's place: still after the run's
                // first failure and before anything that follows the run.
                let old_start = match &records[i].event {
                    Event::Probe { start_ns, .. } => *start_ns,
                    _ => start_ns,
                };
                fold_into(folds, &mut run.fold, idx, ok, old_start);
                records[i] = r.clone();
                run.latest_proof = Some((i, down_at));
            }
            Some(_) => fold_into(folds, &mut run.fold, idx, ok, start_ns),
        }
    }
}

/// Counts one attempt (started at `start`) into the run's fold, making it if needed.
fn fold_into(folds: &mut Vec<Fold>, slot: &mut Option<usize>, probe: usize, ok: bool, start: u64) {
    match *slot {
        Some(i) => {
            let f = &mut folds[i];
            f.first_start_ns = f.first_start_ns.min(start);
            f.last_start_ns = f.last_start_ns.max(start);
            f.count += 1;
        }
        None => {
            *slot = Some(folds.len());
            folds.push(Fold {
                probe,
                ok,
                first_start_ns: start,
                last_start_ns: start,
                count: 1,
            });
        }
    }
}
