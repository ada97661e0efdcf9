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
