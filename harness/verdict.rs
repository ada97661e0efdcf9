//! The SLO verdict over all trials: success rate with exact bounds, recovery-time
//! quantiles against their limits, merged into one decision and an exit status.
//!
//! Pure: the same trial reports always give the same verdict, live or offline.

use serde::{Deserialize, Serialize};

use crate::checker::{Outcome, TrialResult};
use crate::exit::ExitStatus;
use crate::scenario::{Quantile, Slo};
use crate::stats::{self, Decision, RateDecision};

/// A recovery-time quantile limit, decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitDecision {
    /// Which quantile.
    pub quantile: Quantile,
    /// The limit.
    pub limit_ms: f64,
    /// Point estimate (None: not enough recovered trials; infinite when the
    /// quantile falls on a trial that never recovered).
    pub estimate_ms: Option<f64>,
    /// One-sided upper confidence bound (None: too few trials to bound it).
    pub upper_ms: Option<f64>,
    /// One-sided lower confidence bound.
    pub lower_ms: Option<f64>,
    /// The decision.
    pub decision: Decision,
}

/// Recovery-time summary over trials that were Pass or Fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RecoveryStats {
    /// Trials that recovered.
    pub recovered: u64,
    /// Trials that never recovered within the observation window.
    pub not_recovered: u64,
    /// Median (None if undefined or on a non-recovered trial).
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Largest recovery.
    pub max_ms: Option<f64>,
    /// Mean of recovered trials.
    pub mean_ms: Option<f64>,
}

/// The decision over a whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Trials counted.
    pub trials: u64,
    /// Passed.
    pub passed: u64,
    /// Failed.
    pub failed: u64,
    /// Unknown (counted as not successful).
    pub unknown: u64,
    /// Success rate decision.
    pub success_rate: RateDecision,
    /// Recovery quantiles.
    pub recovery: RecoveryStats,
    /// Quantile limit decisions.
    pub limits: Vec<LimitDecision>,
    /// Acknowledged writes lost, over all trials.
    pub lost_acked_writes: u64,
    /// Trials that lost at least one acknowledged write.
    pub trials_with_loss: u64,
    /// Merged decision.
    pub decision: Decision,
}

impl Verdict {
    /// Exit status for this verdict (0, 1 or 2).
    pub fn exit_status(&self) -> ExitStatus {
        self.decision.exit_status()
    }
}

/// One fault's share of a run (a fault is its kind and target, e.g. `sigkill → app`):
/// its trials' figures and decisions on their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultVerdict {
    /// Fault kind.
    pub fault: String,
    /// Its target.
    pub target: String,
    /// The verdict over its trials only.
    pub verdict: Verdict,
}

impl FaultVerdict {
    /// `sigkill → app`.
    pub fn label(&self) -> String {
        fault_label(&self.fault, &self.target)
    }
}

/// A fault's name for people: `sigkill → app`, or the kind alone for a stack-wide
/// fault.
pub fn fault_label(fault: &str, target: &str) -> String {
    if target.is_empty() || target == crate::nemesis::ALL_SERVICES {
        fault.to_string()
    } else {
        format!("{fault} → {target}")
    }
}

/// The trials of each fault (kind and target), in the order the faults first ran.
pub fn by_fault(trials: &[TrialResult]) -> Vec<((String, String), Vec<TrialResult>)> {
    let mut groups: Vec<((String, String), Vec<TrialResult>)> = Vec::new();
    for t in trials {
        let key = (t.fault.clone(), t.target.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(t.clone()),
            None => groups.push((key, vec![t.clone()])),
        }
    }
    groups
}

/// Every fault's verdict over its own trials, when the scenario has more than one
/// fault; empty otherwise (the run's verdict is that fault's). `planned` are the
/// scenario's faults (kind, target): one that never ran gets an empty, hence
/// INCONCLUSIVE, verdict — an untested fault cannot pass.
pub fn per_fault(
    trials: &[TrialResult],
    slo: &Slo,
    sequential: bool,
    planned: &[(String, String)],
) -> Vec<FaultVerdict> {
    let mut groups = by_fault(trials);
    for key in planned {
        if !groups.iter().any(|(k, _)| k == key) {
            groups.push((key.clone(), Vec::new()));
        }
    }
    if groups.len() < 2 {
        return Vec::new();
    }
    groups
        .into_iter()
        .map(|((fault, target), ts)| FaultVerdict {
            verdict: decide_with(&ts, slo, sequential),
            fault,
            target,
        })
        .collect()
}

/// With `[slo] per-fault = true`, the run's decision is the worst of its faults'.
pub fn worst_of_faults(mut v: Verdict, faults: &[FaultVerdict]) -> Verdict {
    if let Some(first) = faults.first() {
        v.decision = faults
            .iter()
            .skip(1)
            .fold(first.verdict.decision, |d, f| d.merge(f.verdict.decision));
    }
    v
}

/// Recovery times of decided trials, sorted; a trial that never recovered counts
/// as +∞ (its recovery is longer than anything observed), unknown trials are left out.
fn recovery_sample(trials: &[TrialResult]) -> Vec<f64> {
    let mut v: Vec<f64> = trials
        .iter()
        .filter(|t| t.outcome != Outcome::Unknown)
        .map(|t| t.recovery_ms.unwrap_or(f64::INFINITY))
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

/// `v` with its success-rate decision replaced by `rate` (decided on more trials
/// than `v`'s own: the evidence ledger's), and the overall decision merged again.
pub fn with_pooled_rate(mut v: Verdict, rate: RateDecision) -> Verdict {
    v.decision = v
        .limits
        .iter()
        .fold(rate.decision, |d, l| d.merge(l.decision));
    v.success_rate = rate;
    v
}

/// Decides the SLO over the given trials, as a fixed-size run.
pub fn decide(trials: &[TrialResult], slo: &Slo) -> Verdict {
    decide_with(trials, slo, false)
}

/// Decides the SLO; `sequential` when the run could stop as soon as it was decided
/// (`--until-decided`), which needs the stricter sequential bounds.
pub fn decide_with(trials: &[TrialResult], slo: &Slo, sequential: bool) -> Verdict {
    let count = |o: Outcome| trials.iter().filter(|t| t.outcome == o).count() as u64;
    let (passed, failed, unknown) = (
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Unknown),
    );
    let n = trials.len() as u64;
    let success_rate = if sequential {
        stats::decide_rate_sequential(passed, n, slo.success_rate, slo.confidence)
    } else {
        stats::decide_rate(passed, n, slo.success_rate, slo.confidence)
    };

    let sample = recovery_sample(trials);
    let recovered: Vec<f64> = sample.iter().copied().filter(|v| v.is_finite()).collect();
    let recovery = RecoveryStats {
        recovered: recovered.len() as u64,
        not_recovered: (sample.len() - recovered.len()) as u64,
        p50_ms: finite(stats::quantile(&sample, 0.5)),
        p95_ms: finite(stats::quantile(&sample, 0.95)),
        p99_ms: finite(stats::quantile(&sample, 0.99)),
        max_ms: finite(stats::quantile(&sample, 1.0)),
        mean_ms: (!recovered.is_empty())
            .then(|| recovered.iter().sum::<f64>() / recovered.len() as f64),
    };

    let limits: Vec<LimitDecision> = slo
        .limits
        .iter()
        .map(|&(q, limit)| decide_limit(&sample, q, limit.as_secs_f64() * 1e3, slo.confidence))
        .collect();

    let decision = limits
        .iter()
        .fold(success_rate.decision, |d, l| d.merge(l.decision));
    Verdict {
        lost_acked_writes: trials.iter().map(|t| t.clients.lost_acked_writes).sum(),
        trials_with_loss: trials
            .iter()
            .filter(|t| t.clients.lost_acked_writes > 0)
            .count() as u64,
        trials: n,
        passed,
        failed,
        unknown,
        success_rate,
        recovery,
        limits,
        decision,
    }
}

fn decide_limit(sample: &[f64], q: Quantile, limit_ms: f64, confidence: f64) -> LimitDecision {
    let n = sample.len() as u64;
    let estimate_ms = stats::quantile(sample, q.level());
    let (lower_ms, upper_ms, decision) = if q == Quantile::Max {
        // The largest observation is a fact, not an estimate: decide on it directly.
        match estimate_ms {
            None => (None, None, Decision::Inconclusive),
            Some(m) if m <= limit_ms => (Some(m), Some(m), Decision::Pass),
            Some(m) => (Some(m), Some(m), Decision::Fail),
        }
    } else {
        let (lo_rank, hi_rank) = stats::quantile_bound_ranks(n, q.level(), confidence);
        let at = |rank: Option<u64>| rank.map(|r| sample[(r - 1) as usize]);
        let (lo, hi) = (at(lo_rank), at(hi_rank));
        let decision = match (lo, hi) {
            (_, Some(h)) if h <= limit_ms => Decision::Pass,
            (Some(l), _) if l > limit_ms => Decision::Fail,
            _ => Decision::Inconclusive,
        };
        (lo, hi, decision)
    };
    LimitDecision {
        quantile: q,
        limit_ms,
        estimate_ms,
        upper_ms,
        lower_ms,
        decision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn trial(i: u32, outcome: Outcome, recovery_ms: Option<f64>) -> TrialResult {
        TrialResult {
            trial: i,
            outcome,
            reason: String::new(),
            fault: "sigkill".into(),
            target: "app".into(),
            injected_at: None,
            recovered_at: None,
            recovery_ms,
            recovery_lower_ms: None,
            downtime_ms: None,
            probes_ok: 0,
            probes_failed: 0,
            restarts: 0,
            services: Vec::new(),
            clients: Default::default(),
            trial_ms: None,
            timeline: Default::default(),
            pacing: Vec::new(),
        }
    }

    fn slo(rate: f64, limits: Vec<(Quantile, Duration)>) -> Slo {
        Slo {
            success_rate: rate,
            confidence: 0.95,
            recover_within: Duration::from_secs(5),
            limits,
            max_lost_writes: 0,
            per_fault: false,
        }
    }

    #[test]
    fn twenty_clean_trials_pass_80_percent_but_not_99() {
        let trials: Vec<_> = (1..=20)
            .map(|i| trial(i, Outcome::Pass, Some(100.0 + f64::from(i))))
            .collect();
        assert_eq!(decide(&trials, &slo(0.8, vec![])).decision, Decision::Pass);
        let v = decide(&trials, &slo(0.99, vec![]));
        assert_eq!(v.decision, Decision::Inconclusive);
        assert_eq!(v.exit_status(), ExitStatus::Inconclusive);
    }

    #[test]
    fn unknown_trials_are_never_successes() {
        let trials = vec![trial(1, Outcome::Unknown, None)];
        let v = decide(&trials, &slo(0.99, vec![]));
        assert_eq!(v.passed, 0);
        assert_eq!(v.unknown, 1);
        assert_eq!(
            v.decision,
            Decision::Fail,
            "0/1 excludes 99% at 95% confidence"
        );
    }

    #[test]
    fn a_non_recovered_trial_is_infinite_in_the_quantiles() {
        let mut trials: Vec<_> = (1..=9)
            .map(|i| trial(i, Outcome::Pass, Some(100.0)))
            .collect();
        trials.push(trial(10, Outcome::Fail, None));
        let v = decide(
            &trials,
            &slo(0.5, vec![(Quantile::Max, Duration::from_secs(1))]),
        );
        assert_eq!(v.recovery.not_recovered, 1);
        assert_eq!(v.recovery.max_ms, None);
        assert_eq!(v.recovery.p50_ms, Some(100.0));
        assert_eq!(v.limits[0].decision, Decision::Fail);
    }

    #[test]
    fn each_fault_gets_its_own_figures_and_per_fault_takes_the_worst() {
        // sigkill always recovers in 300 ms; sigterm in 200 ms but only 5 of 20 times.
        let mut trials = Vec::new();
        for i in 1..=40u32 {
            let mut t = if i % 2 == 1 {
                trial(i, Outcome::Pass, Some(300.0))
            } else if i % 8 == 0 {
                trial(i, Outcome::Pass, Some(200.0))
            } else {
                trial(i, Outcome::Fail, None)
            };
            if i % 2 == 0 {
                t.fault = "sigterm".into();
            }
            trials.push(t);
        }
        let s = slo(0.5, vec![]);
        let pooled = decide(&trials, &s);
        assert_eq!(pooled.passed, 25);
        assert_eq!(pooled.decision, Decision::Inconclusive);
        let faults = per_fault(&trials, &s, false, &[]);
        let labels: Vec<String> = faults.iter().map(FaultVerdict::label).collect();
        assert_eq!(labels, ["sigkill → app", "sigterm → app"]);
        assert_eq!(faults[0].verdict.recovery.p50_ms, Some(300.0));
        assert_eq!(faults[1].verdict.passed, 5);
        assert_eq!(faults[0].verdict.decision, Decision::Pass);
        assert_eq!(faults[1].verdict.decision, Decision::Fail);
        assert_eq!(worst_of_faults(pooled, &faults).decision, Decision::Fail);
        // One fault: no breakdown (it would repeat the run's verdict).
        assert!(per_fault(&trials[..1], &s, false, &[]).is_empty());
        // A planned fault that never ran is there, undecided.
        let planned = [
            ("sigkill".to_string(), "app".to_string()),
            ("pause-for".to_string(), "app".to_string()),
        ];
        let with_unrun = per_fault(&trials[..1], &s, false, &planned);
        assert_eq!(with_unrun.len(), 2);
        assert_eq!(with_unrun[1].verdict.trials, 0);
        assert_eq!(with_unrun[1].verdict.decision, Decision::Inconclusive);
        assert_eq!(fault_label("stack-restart", "*"), "stack-restart");
    }

    #[test]
    fn median_limit_is_decided_on_its_confidence_bound() {
        let trials: Vec<_> = (1..=20)
            .map(|i| trial(i, Outcome::Pass, Some(f64::from(i) * 100.0)))
            .collect();
        // The 95% upper bound of the median of 20 is the 15th value: 1500 ms.
        let pass = decide(
            &trials,
            &slo(0.5, vec![(Quantile::P50, Duration::from_millis(1500))]),
        );
        assert_eq!(pass.limits[0].upper_ms, Some(1500.0));
        assert_eq!(pass.limits[0].decision, Decision::Pass);
        let unsure = decide(
            &trials,
            &slo(0.5, vec![(Quantile::P50, Duration::from_millis(1000))]),
        );
        assert_eq!(unsure.limits[0].decision, Decision::Inconclusive);
        let fail = decide(
            &trials,
            &slo(0.5, vec![(Quantile::P50, Duration::from_millis(500))]),
        );
        assert_eq!(fail.limits[0].decision, Decision::Fail);
        assert_eq!(fail.decision, Decision::Fail);
    }
}
