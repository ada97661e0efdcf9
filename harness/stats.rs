//! Statistics for verdicts: exact (Clopper–Pearson) bounds on a success rate,
//! nearest-rank quantiles and their distribution-free order-statistic bounds.
//!
//! Pure functions, no I/O. Decisions use one-sided bounds at the stated confidence:
//! with n trials and k successes the lower bound solves P(X ≥ k | p) = 1 − c, so
//! n = k = 299 is the first all-success run that proves p ≥ 0.99 at c = 0.95.

use statrs::distribution::{Beta, Binomial, ContinuousCDF, DiscreteCDF};

/// Three-valued decision of an objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The objective holds at the stated confidence.
    Pass,
    /// The objective is violated at the stated confidence.
    Fail,
    /// The data cannot tell yet.
    Inconclusive,
}

impl Decision {
    /// Merges decisions: Fail > Inconclusive > Pass.
    pub fn merge(self, other: Decision) -> Decision {
        use Decision::*;
        match (self, other) {
            (Fail, _) | (_, Fail) => Fail,
            (Inconclusive, _) | (_, Inconclusive) => Inconclusive,
            _ => Pass,
        }
    }

    /// The exit status a run with this decision ends with (0, 1 or 2).
    pub fn exit_status(self) -> crate::exit::ExitStatus {
        use crate::exit::ExitStatus;
        match self {
            Decision::Pass => ExitStatus::SloMet,
            Decision::Fail => ExitStatus::SloViolated,
            Decision::Inconclusive => ExitStatus::Inconclusive,
        }
    }

    /// Upper-case word for people.
    pub fn word(self) -> &'static str {
        match self {
            Decision::Pass => "PASS",
            Decision::Fail => "FAIL",
            Decision::Inconclusive => "INCONCLUSIVE",
        }
    }
}

fn beta_quantile(a: f64, b: f64, p: f64) -> f64 {
    // a, b > 0 by construction at every call site; fall back to the safe end otherwise.
    Beta::new(a, b)
        .map(|d| d.inverse_cdf(p))
        .unwrap_or(if p < 0.5 { 0.0 } else { 1.0 })
}

/// One-sided lower Clopper–Pearson bound at confidence `c` for k successes of n.
pub fn rate_lower_bound(k: u64, n: u64, c: f64) -> f64 {
    if n == 0 || k == 0 {
        return 0.0;
    }
    if k == n {
        // Closed form of Beta(n, 1): exact and free of numerical error.
        return (1.0 - c).powf(1.0 / n as f64);
    }
    beta_quantile(k as f64, (n - k + 1) as f64, 1.0 - c)
}

/// One-sided upper Clopper–Pearson bound at confidence `c` for k successes of n.
pub fn rate_upper_bound(k: u64, n: u64, c: f64) -> f64 {
    if n == 0 || k == n {
        return 1.0;
    }
    if k == 0 {
        return 1.0 - (1.0 - c).powf(1.0 / n as f64);
    }
    beta_quantile((k + 1) as f64, (n - k) as f64, c)
}

/// Two-sided Clopper–Pearson interval at confidence `c` (each tail (1 − c)/2).
pub fn rate_interval(k: u64, n: u64, c: f64) -> (f64, f64) {
    let tail_c = 1.0 - (1.0 - c) / 2.0;
    (
        rate_lower_bound(k, n, tail_c),
        rate_upper_bound(k, n, tail_c),
    )
}

/// A decided success-rate objective.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RateDecision {
    /// Successes.
    pub successes: u64,
    /// Trials.
    pub trials: u64,
    /// Required rate.
    pub target: f64,
    /// Confidence.
    pub confidence: f64,
    /// Observed rate (0 when there are no trials).
    pub observed: f64,
    /// One-sided lower bound.
    pub lower: f64,
    /// One-sided upper bound.
    pub upper: f64,
    /// The decision.
    pub decision: Decision,
    /// When inconclusive: how many more consecutive successes would make it PASS.
    pub more_successes_to_pass: Option<u64>,
}

/// Decides "success rate ≥ target" at confidence `c`: PASS when the lower bound
/// reaches the target, FAIL when the upper bound is below it, else INCONCLUSIVE.
pub fn decide_rate(k: u64, n: u64, target: f64, c: f64) -> RateDecision {
    let lower = rate_lower_bound(k, n, c);
    let upper = rate_upper_bound(k, n, c);
    let decision = if n > 0 && lower >= target {
        Decision::Pass
    } else if n > 0 && upper < target {
        Decision::Fail
    } else {
        Decision::Inconclusive
    };
    let more = (decision == Decision::Inconclusive)
        .then(|| successes_needed(k, n, target, c))
        .flatten();
    RateDecision {
        successes: k,
        trials: n,
        target,
        confidence: c,
        observed: if n == 0 { 0.0 } else { k as f64 / n as f64 },
        lower,
        upper,
        decision,
        more_successes_to_pass: more,
    }
}

/// Smallest m such that k + m successes of n + m trials pass; None beyond a million.
pub fn successes_needed(k: u64, n: u64, target: f64, c: f64) -> Option<u64> {
    const CAP: u64 = 1_000_000;
    let passes = |m: u64| rate_lower_bound(k + m, n + m, c) >= target;
    if passes(0) {
        return Some(0);
    }
    // The lower bound grows with every added success. Search by doubling first: Beta
    // quantiles with huge parameters are slow, so never evaluate far beyond the answer.
    let mut hi = 1u64;
    while !passes(hi) {
        if hi >= CAP {
            return None;
        }
        hi = (hi * 2).min(CAP);
    }
    let mut lo = hi / 2 + 1;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if passes(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(hi)
}

/// Error budget of look `n` (from 1) in sequential mode: α·6/(π²n²). The budgets of
/// all looks sum to α, so by the union bound the chance that *any* look decides
/// wrongly stays below α, however many looks a run takes (optional stopping is safe).
pub fn sequential_alpha(alpha: f64, look: u64) -> f64 {
    alpha * 6.0 / (std::f64::consts::PI.powi(2) * (look.max(1) as f64).powi(2))
}

/// Sequential decision after look `n`: [`decide_rate`] at confidence 1 − α_n.
/// `confidence` in the result stays the nominal one.
pub fn decide_rate_sequential(k: u64, n: u64, target: f64, c: f64) -> RateDecision {
    let look_c = |n: u64| 1.0 - sequential_alpha(1.0 - c, n);
    let mut d = decide_rate(k, n, target, look_c(n));
    d.confidence = c;
    d.more_successes_to_pass = (d.decision == Decision::Inconclusive)
        .then(|| {
            // Bounds at later looks are stricter: search the first clean run that passes.
            let passes = |m: u64| rate_lower_bound(k + m, n + m, look_c(n + m)) >= target;
            let mut hi = 1u64;
            while !passes(hi) {
                if hi >= 1_000_000 {
                    return None;
                }
                hi *= 2;
            }
            let mut lo = hi / 2 + 1;
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if passes(mid) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            Some(hi)
        })
        .flatten();
    d
}

/// Nearest-rank quantile of sorted data: the ⌈q·n⌉-th smallest (q = 1 is the max).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Ranks (1-based) of the order statistics that bound the q-quantile one-sidedly at
/// confidence c: `(lower, upper)` with P(X₍ₗ₎ ≤ ξ_q) ≥ c and P(X₍ᵤ₎ ≥ ξ_q) ≥ c.
/// None means no order statistic of n samples is enough.
pub fn quantile_bound_ranks(n: u64, q: f64, c: f64) -> (Option<u64>, Option<u64>) {
    if n == 0 || !(0.0..1.0).contains(&q) {
        return (None, None);
    }
    let Ok(bin) = Binomial::new(q, n) else {
        return (None, None);
    };
    // P(X₍ᵤ₎ ≥ ξ_q) = P(Bin(n, q) ≤ u − 1): the smallest u reaching c.
    let upper = (1..=n).find(|&u| bin.cdf(u - 1) >= c);
    // P(X₍ₗ₎ ≤ ξ_q) = P(Bin(n, q) ≥ l) = 1 − cdf(l − 1): the largest l reaching c.
    let lower = (1..=n).rev().find(|&l| 1.0 - bin.cdf(l - 1) >= c);
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn two_sided_interval_matches_known_values() {
        let (lo, hi) = rate_interval(0, 30, 0.95);
        assert_eq!(lo, 0.0);
        assert!(close(hi, 0.1157, 1e-4), "{hi}");
        let (lo, hi) = rate_interval(3, 100, 0.95);
        assert!(close(lo, 0.0062, 1e-4), "{lo}");
        assert!(close(hi, 0.0852, 1e-4), "{hi}");
    }

    #[test]
    fn clean_run_of_299_passes_99_percent_and_298_does_not() {
        assert_eq!(decide_rate(299, 299, 0.99, 0.95).decision, Decision::Pass);
        let d = decide_rate(298, 298, 0.99, 0.95);
        assert_eq!(d.decision, Decision::Inconclusive);
        assert_eq!(d.more_successes_to_pass, Some(1));
        assert_eq!(successes_needed(0, 0, 0.99, 0.95), Some(299));
    }

    #[test]
    fn one_failure_in_few_trials_fails_a_99_percent_target() {
        let d = decide_rate(0, 1, 0.99, 0.95);
        assert_eq!(d.decision, Decision::Fail);
        assert!(close(d.upper, 0.95, 1e-12));
        // 19/20: observed 95% cannot exclude 99%.
        assert_eq!(
            decide_rate(19, 20, 0.99, 0.95).decision,
            Decision::Inconclusive
        );
    }

    #[test]
    fn one_failure_needs_more_clean_trials_than_none() {
        let clean = successes_needed(0, 0, 0.99, 0.95).expect("finite");
        let dirty = successes_needed(0, 1, 0.99, 0.95).expect("finite");
        assert!(dirty > clean + 100, "{dirty} vs {clean}");
        assert!(rate_lower_bound(dirty, dirty + 1, 0.95) >= 0.99);
        assert!(rate_lower_bound(dirty - 1, dirty, 0.95) < 0.99);
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(10.0));
        assert_eq!(quantile(&v, 0.95), Some(19.0));
        assert_eq!(quantile(&v, 0.99), Some(20.0));
        assert_eq!(quantile(&v, 1.0), Some(20.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn quantile_bounds_need_enough_samples() {
        // 20 samples cannot bound p95 from above at 95%: 1 − 0.95^20 ≈ 0.64.
        assert_eq!(quantile_bound_ranks(20, 0.95, 0.95).1, None);
        // 59 samples can: the max bounds p95 (1 − 0.95^59 ≈ 0.952).
        assert_eq!(quantile_bound_ranks(59, 0.95, 0.95).1, Some(59));
        // The median of 20 is bounded by the 15th order statistic.
        assert_eq!(quantile_bound_ranks(20, 0.5, 0.95), (Some(6), Some(15)));
    }

    #[test]
    fn sequential_budgets_sum_to_alpha() {
        let total: f64 = (1..200_000).map(|n| sequential_alpha(0.05, n)).sum();
        assert!((total - 0.05).abs() < 1e-5, "{total}");
    }

    /// Simulated runs whose true success rate equals the target: the sequential rule
    /// may declare PASS in at most 1 − confidence of them (union bound), whatever
    /// the stopping time.
    #[test]
    fn sequential_rule_keeps_false_pass_rate_below_alpha_at_the_boundary() {
        use rand::{Rng, SeedableRng};
        let (target, c, max_n) = (0.9, 0.95, 300u64);
        // Decisions depend on (k, n) only: tabulate them once.
        let table: Vec<Vec<Decision>> = (1..=max_n)
            .map(|n| {
                (0..=n)
                    .map(|k| decide_rate_sequential(k, n, target, c).decision)
                    .collect()
            })
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let runs = 4000;
        let mut false_pass = 0;
        for _ in 0..runs {
            let mut k = 0;
            for n in 1..=max_n {
                k += u64::from(rng.random_bool(target));
                match table[(n - 1) as usize][k as usize] {
                    Decision::Pass => {
                        false_pass += 1;
                        break;
                    }
                    Decision::Fail => break,
                    Decision::Inconclusive => {}
                }
            }
        }
        let rate = f64::from(false_pass) / f64::from(runs);
        assert!(rate <= 1.0 - c, "false PASS rate {rate}");
        // The naive rule (fixed-n bounds re-checked after every trial) is not safe:
        // it passes far more often, which is why sequential mode needs its own rule.
        let mut naive = 0;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let naive_table: Vec<Vec<bool>> = (1..=max_n)
            .map(|n| {
                (0..=n)
                    .map(|k| rate_lower_bound(k, n, c) >= target)
                    .collect()
            })
            .collect();
        for _ in 0..runs {
            let mut k = 0;
            for n in 1..=max_n {
                k += u64::from(rng.random_bool(target));
                if naive_table[(n - 1) as usize][k as usize] {
                    naive += 1;
                    break;
                }
            }
        }
        assert!(
            naive > false_pass,
            "naive {naive} vs sequential {false_pass}"
        );
    }

    #[test]
    fn a_clearly_good_stack_is_decided_early() {
        let n = (1..=2000u64)
            .find(|&n| decide_rate_sequential(n, n, 0.9, 0.95).decision == Decision::Pass)
            .expect("decides");
        // The price of looking after every trial: 125 clean trials instead of the
        // 29 a fixed-size run needs — still far fewer than a fixed 300-trial budget.
        assert_eq!(n, 125, "clean trials needed to prove 90% sequentially");
        assert_eq!(successes_needed(0, 0, 0.9, 0.95), Some(29));
        let d = decide_rate_sequential(10, 10, 0.9, 0.95);
        assert_eq!(d.more_successes_to_pass, Some(n - 10));
    }

    proptest! {
        #[test]
        fn bounds_bracket_the_observed_rate(n in 1u64..400, k_frac in 0.0f64..=1.0, c in 0.5f64..0.999) {
            let k = ((n as f64) * k_frac).round() as u64;
            let (lo, hi) = (rate_lower_bound(k, n, c), rate_upper_bound(k, n, c));
            let p = k as f64 / n as f64;
            prop_assert!(lo <= p + 1e-12 && p <= hi + 1e-12, "{lo} {p} {hi}");
            prop_assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
        }

        #[test]
        fn pass_and_fail_exclude_each_other(n in 1u64..300, k_frac in 0.0f64..=1.0, target in 0.5f64..0.999) {
            let k = ((n as f64) * k_frac).round() as u64;
            let d = decide_rate(k, n, target, 0.95);
            prop_assert!(!(d.lower >= target && d.upper < target));
            if d.decision == Decision::Inconclusive {
                let m = d.more_successes_to_pass.expect("target < 1 is always reachable");
                prop_assert_eq!(decide_rate(k + m, n + m, target, 0.95).decision, Decision::Pass);
            }
        }

        #[test]
        fn quantile_upper_rank_has_the_promised_coverage(n in 1u64..200, q in 0.05f64..0.99) {
            if let (_, Some(u)) = quantile_bound_ranks(n, q, 0.9) {
                let bin = Binomial::new(q, n).expect("valid");
                prop_assert!(bin.cdf(u - 1) >= 0.9);
                if u > 1 { prop_assert!(bin.cdf(u - 2) < 0.9); }
            }
        }
    }
}
