//! Statistics for verdicts: exact (Clopper–Pearson) bounds on a success rate,
//! anytime-valid likelihood-ratio e-values for sequential runs, nearest-rank
//! quantiles and their distribution-free order-statistic bounds.
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

/// The alternatives of the two sequential tests for a target success rate:
/// `(q, q′)`, failure rates below and above θ0 = 1 − target. The PASS test bets on
/// q = θ0/10 (a stack ten times better than required: 32 clean trials prove 90 %,
/// 332 prove 99 %); the FAIL test on q′ = min(3θ0, (1 + θ0)/2) (three times worse).
pub fn sequential_alternatives(target: f64) -> (f64, f64) {
    let theta0 = 1.0 - target;
    (theta0 / 10.0, (3.0 * theta0).min((1.0 + theta0) / 2.0))
}

/// The logarithms of the two e-values after k successes of n trials, for a
/// target success rate (θ0 = 1 − target failure rate):
///
/// - PASS side, H0: θ ≥ θ0: E = (q/θ0)^f · ((1−q)/(1−θ0))^s
/// - FAIL side, H0′: θ ≤ θ0: E′ = (q′/θ0)^f · ((1−q′)/(1−θ0))^s
///
/// with s successes and f = n − s failures. Under its null each factor has mean at
/// most 1, so each product is a test supermartingale and, by Ville's inequality,
/// P(sup_n E_n ≥ 1/α) ≤ α: the test may be looked at after every trial, and the
/// evidence of independent runs multiplies (the state is just (k, n)).
pub fn log_e_values(k: u64, n: u64, target: f64) -> (f64, f64) {
    let theta0 = 1.0 - target;
    let (q, q2) = sequential_alternatives(target);
    let (s, f) = (k as f64, n.saturating_sub(k) as f64);
    let side = |q: f64| s * ((1.0 - q) / (1.0 - theta0)).ln() + f * (q / theta0).ln();
    (side(q), side(q2))
}

/// Sequential (anytime-valid) decision after k successes of n trials: PASS when
/// the PASS-side e-value reaches 1/α (α = 1 − c), FAIL when the FAIL-side one does
/// ([`log_e_values`]). The bounds are the confidence sequence the same tests give:
/// every target rate the data rejects, either way. `more_successes_to_pass`: the
/// clean trials still needed.
pub fn decide_rate_sequential(k: u64, n: u64, target: f64, c: f64) -> RateDecision {
    let threshold = (1.0 / (1.0 - c)).ln();
    let (pass, fail) = log_e_values(k, n, target);
    let decision = if n > 0 && pass >= threshold {
        Decision::Pass
    } else if n > 0 && fail >= threshold {
        Decision::Fail
    } else {
        Decision::Inconclusive
    };
    // Each clean trial multiplies the PASS e-value by (1 − q)/(1 − θ0).
    let (q, _) = sequential_alternatives(target);
    let per_success = ((1.0 - q) / target).ln();
    let more = (decision == Decision::Inconclusive && per_success > 0.0)
        .then(|| ((threshold - pass) / per_success).ceil().max(1.0) as u64);
    // The PASS e-value grows with the target's failure rate θ0, the FAIL one
    // shrinks: bisect for the boundary targets.
    let rejects = |t: f64, pass_side: bool| {
        let (p, f) = log_e_values(k, n, t);
        if pass_side {
            p >= threshold
        } else {
            f >= threshold
        }
    };
    let bisect = |pass_side: bool| {
        // Targets below `lo` are rejected on the PASS side (proven), above `hi`
        // on the FAIL side; start from the whole open interval.
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            // PASS side: a lower target is easier to prove.
            if rejects(mid, pass_side) == pass_side {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        if pass_side {
            lo
        } else {
            hi
        }
    };
    let lower = if n == 0 { 0.0 } else { bisect(true) };
    let upper = if n == 0 { 1.0 } else { bisect(false) };
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

/// The design's operating characteristic at true failure rate `theta`: the
/// chance that a run of `n` trials (fixed design; `sequential`: at most `n`,
/// stopping as soon as it is decided) ends PASS for a `target` at confidence `c`.
///
/// Fixed design: a binomial tail up to the most failures a PASS allows (found by
/// bisection). Sequential design: a dynamic programme over the undecided states
/// (failures so far), which form a band; states holding less than 10⁻¹⁸ are
/// dropped, so the band is O(√n) wide. It stops early once the undecided mass is
/// gone, or once a bound on every later PASS falls below 10⁻¹²: when the PASS
/// e-value drifts down under `theta`, exp(λ·log E) is a supermartingale for the λ > 0
/// that solves (1−θ)·e^{λa} + θ·e^{λb} = 1 (a, b its per-trial steps), so a state
/// with log E = L passes later with probability at most e^{λ(L − ln 1/α)}.
/// The result is accurate to about 10⁻⁹ for any `n`; a million trials take at most
/// a few hundred milliseconds (release build).
pub fn pass_probability(n: u64, target: f64, c: f64, theta: f64, sequential: bool) -> f64 {
    let theta = theta.clamp(0.0, 1.0);
    if n == 0 {
        return 0.0;
    }
    if !sequential {
        // The most failures a PASS allows: the lower bound falls with each one.
        let passes = |f: u64| rate_lower_bound(n - f, n, c) >= target;
        if !passes(0) {
            return 0.0;
        }
        let (mut lo, mut hi) = (0u64, n); // passes(lo) holds; find the last f that does
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if passes(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return Binomial::new(theta, n).map_or(0.0, |b| b.cdf(lo));
    }
    let mut band = Band::new(target, c);
    let (a_pass, b_pass) = (band.a_pass, band.b_pass);
    let drift = (1.0 - theta) * a_pass + theta * b_pass;
    let lambda = (drift < 0.0 && theta > 0.0).then(|| {
        let g = |l: f64| (1.0 - theta) * (l * a_pass).exp() + theta * (l * b_pass).exp() - 1.0;
        let mut hi = 1.0f64;
        while g(hi) <= 0.0 && hi < 1e6 {
            hi *= 2.0;
        }
        let mut lo = 0.0f64;
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if g(mid) <= 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo.max(f64::MIN_POSITIVE)
    });
    let mut passed = 0.0;
    for trials in 1..=n {
        let (pass, _) = band.step(trials, theta);
        passed += pass;
        if band.live() < 1e-15 {
            break;
        }
        if let Some(lambda) = lambda.filter(|_| trials % 32 == 0) {
            let later: f64 = band
                .states()
                .map(|(f, p)| {
                    let l = (trials as f64 - f) * a_pass + f * b_pass;
                    p * (lambda * (l - band.threshold)).exp()
                })
                .sum();
            if later < 1e-12 {
                break;
            }
        }
    }
    passed
}

/// The undecided states of a sequential run as a band of failure counts: after
/// each trial, the probability of every count of failures with no decision yet.
/// States under 10⁻¹⁸ are dropped, so the band stays O(√n) wide.
struct Band {
    /// `states[i]`: probability of `first + i` failures, undecided.
    states: Vec<f64>,
    first: u64,
    next: Vec<f64>,
    threshold: f64,
    /// log E after s successes and f failures is s·a + f·b on each side.
    a_pass: f64,
    b_pass: f64,
    a_fail: f64,
    b_fail: f64,
}

impl Band {
    fn new(target: f64, c: f64) -> Self {
        let (a_pass, a_fail) = log_e_values(1, 1, target);
        let (b_pass, b_fail) = log_e_values(0, 1, target);
        Band {
            states: vec![1.0],
            first: 0,
            next: Vec::new(),
            threshold: (1.0 / (1.0 - c)).ln(),
            a_pass,
            b_pass,
            a_fail,
            b_fail,
        }
    }

    /// Probability that no decision has been reached.
    fn live(&self) -> f64 {
        self.states.iter().sum()
    }

    /// `(failures, probability)` of every undecided state.
    fn states(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.states
            .iter()
            .enumerate()
            .map(|(i, p)| ((self.first + i as u64) as f64, *p))
    }

    /// Runs trial number `trials` at failure rate `theta`; returns the probability
    /// that it decided PASS and FAIL.
    fn step(&mut self, trials: u64, theta: f64) -> (f64, f64) {
        self.next.clear();
        self.next.resize(self.states.len() + 1, 0.0);
        for (i, p) in self.states.iter().enumerate() {
            self.next[i] += p * (1.0 - theta);
            self.next[i + 1] += p * theta;
        }
        let (mut pass, mut fail) = (0.0, 0.0);
        for (i, p) in self.next.iter_mut().enumerate() {
            let f = (self.first + i as u64) as f64;
            let s = trials as f64 - f;
            if s * self.a_pass + f * self.b_pass >= self.threshold {
                pass += *p;
                *p = 0.0;
            } else if s * self.a_fail + f * self.b_fail >= self.threshold {
                fail += *p;
                *p = 0.0;
            } else if *p < 1e-18 {
                *p = 0.0;
            }
        }
        // Trim dead states at both ends of the band.
        let start = self
            .next
            .iter()
            .position(|p| *p > 0.0)
            .unwrap_or(self.next.len());
        let end = self
            .next
            .iter()
            .rposition(|p| *p > 0.0)
            .map_or(start, |e| e + 1);
        std::mem::swap(&mut self.states, &mut self.next);
        self.states.truncate(end);
        self.states.drain(..start);
        self.first += start as u64;
        (pass, fail)
    }
}

/// A sequential design's behaviour at one true failure rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SequentialOc {
    /// Chance it ends PASS within its trials.
    pub pass: f64,
    /// Chance it ends FAIL within its trials.
    pub fail: f64,
    /// Expected number of trials it runs (undecided runs run all of them).
    pub mean_trials: f64,
}

/// The sequential design with at most `n` trials at true failure rate `theta`:
/// the chances of PASS and FAIL and the expected trial count, from the same
/// banded dynamic programme as [`pass_probability`] (states under 10⁻¹⁸ dropped)
/// but run to the end, since every undecided run costs all `n` trials.
pub fn sequential_oc(n: u64, target: f64, c: f64, theta: f64) -> SequentialOc {
    let theta = theta.clamp(0.0, 1.0);
    let mut band = Band::new(target, c);
    let (mut pass, mut fail, mut mean) = (0.0, 0.0, 0.0);
    for trials in 1..=n {
        // Every run still undecided runs this trial.
        let live = band.live();
        if live < 1e-15 {
            break;
        }
        mean += live;
        let (p, f) = band.step(trials, theta);
        pass += p;
        fail += f;
    }
    SequentialOc {
        pass,
        fail,
        mean_trials: mean,
    }
}

/// Trials a design needs to PASS with `failures` failed trials among them:
/// `(fixed, sequential)`; the fixed count is None beyond a million trials.
pub fn trials_to_pass(failures: u64, target: f64, c: f64) -> (Option<u64>, u64) {
    let fixed = successes_needed(0, failures, target, c).map(|m| m + failures);
    let threshold = (1.0 / (1.0 - c)).ln();
    let (a, _) = log_e_values(1, 1, target);
    let (b, _) = log_e_values(0, 1, target);
    // (n − f)·a + f·b ≥ ln(1/α).
    let successes = ((threshold - failures as f64 * b) / a).ceil().max(0.0) as u64;
    (fixed, successes + failures)
}

/// Trials before the one-sided upper confidence bound of the q-quantile exists
/// (the quantile limit can PASS): the smallest n with 1 − qⁿ ≥ c, i.e.
/// n ≥ ln(1 − c) / ln q (p99 at 95 %: 299).
pub fn trials_to_bound_quantile(q: f64, c: f64) -> Option<u64> {
    if !(0.0..1.0).contains(&q) || !(0.0..1.0).contains(&c) {
        return None;
    }
    if q == 0.0 {
        return Some(1);
    }
    Some(((1.0 - c).ln() / q.ln()).ceil().max(1.0) as u64)
}

/// The failure rates an operating characteristic is shown at for a target:
/// a tenth, a fifth and half of the allowed rate, and the allowed rate itself.
pub fn oc_failure_rates(target: f64) -> [f64; 4] {
    let theta0 = 1.0 - target;
    [theta0 / 10.0, theta0 / 5.0, theta0 / 2.0, theta0]
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

    /// Continuous monitoring of `runs` simulated runs of at most `max_n` trials
    /// with true success rate `p`: how many ended PASS and FAIL, and the trial
    /// counts at which they decided. Decisions depend on (k, n) only.
    fn monitor(
        p: f64,
        target: f64,
        c: f64,
        max_n: u64,
        runs: u32,
        seed: u64,
    ) -> (u32, u32, Vec<u64>) {
        let threshold = (1.0 / (1.0 - c)).ln();
        let (q, q2) = sequential_alternatives(target);
        let theta0 = 1.0 - target;
        let steps = |q: f64| [(q / theta0).ln(), ((1.0 - q) / (1.0 - theta0)).ln()];
        let (pass_steps, fail_steps) = (steps(q), steps(q2));
        // SplitMix64 against an integer threshold: 120 million draws in seconds
        // even in a debug build.
        let mut state = seed;
        let mut next_u64 = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let cut = (p * 2f64.powi(64)).min(u64::MAX as f64) as u64;
        let (mut passed, mut failed, mut at) = (0, 0, Vec::new());
        for _ in 0..runs {
            let (mut e_pass, mut e_fail) = (0.0, 0.0);
            for n in 1..=max_n {
                let ok = usize::from(next_u64() < cut);
                e_pass += pass_steps[ok];
                e_fail += fail_steps[ok];
                if e_pass >= threshold {
                    passed += 1;
                    at.push(n);
                    break;
                }
                if e_fail >= threshold {
                    failed += 1;
                    at.push(n);
                    break;
                }
            }
        }
        (passed, failed, at)
    }

    /// At a true rate exactly at the target, a run watched after every trial (up
    /// to 2 000 trials; 40 000 runs per case) ends PASS in at most α of them; a
    /// little above the target it ends FAIL in at most α — up to the simulation's
    /// own error (three standard errors, 0.003 at α = 0.05).
    #[test]
    fn sequential_verdicts_keep_both_errors_below_alpha_under_continuous_monitoring() {
        const RUNS: u32 = 40_000;
        for (target, c) in [(0.9, 0.95), (0.95, 0.95), (0.99, 0.9)] {
            let alpha: f64 = 1.0 - c;
            let allowed = alpha + 3.0 * (alpha * (1.0 - alpha) / f64::from(RUNS)).sqrt();
            let (false_pass, _, _) = monitor(target, target, c, 2000, RUNS, 7);
            let rate = f64::from(false_pass) / f64::from(RUNS);
            eprintln!("target {target}, confidence {c}: false PASS {rate}");
            assert!(rate <= allowed, "target {target}: false PASS rate {rate}");
            let above = target + (1.0 - target) * 0.2;
            let (_, false_fail, _) = monitor(above, target, c, 2000, RUNS, 8);
            let rate = f64::from(false_fail) / f64::from(RUNS);
            eprintln!("target {target}, true {above}: false FAIL {rate}");
            assert!(
                rate <= allowed,
                "target {target}, true {above}: false FAIL rate {rate}"
            );
        }
        // The same per-trial check on the fixed-size bounds is not safe: it passes
        // far more often at the boundary (why sequential mode needs its own rule).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let naive_table: Vec<Vec<bool>> = (1..=300u64)
            .map(|n| {
                (0..=n)
                    .map(|k| rate_lower_bound(k, n, 0.95) >= 0.9)
                    .collect()
            })
            .collect();
        let mut naive = 0;
        for _ in 0..4000 {
            let mut k = 0;
            for n in 1..=300u64 {
                k += u64::from(rng.random_bool(0.9));
                if naive_table[(n - 1) as usize][k as usize] {
                    naive += 1;
                    break;
                }
            }
        }
        assert!(f64::from(naive) / 4000.0 > 0.05, "naive {naive} of 4000");
    }

    #[test]
    fn clean_trials_to_pass_come_close_to_the_fixed_floor() {
        let clean = |target: f64| {
            (1..=5000u64)
                .find(|&n| decide_rate_sequential(n, n, target, 0.95).decision == Decision::Pass)
                .expect("decides")
        };
        // Fixed designs need 29 / 59 / 299 (no valid rule can do better).
        assert_eq!(clean(0.9), 32);
        assert_eq!(clean(0.95), 65);
        assert_eq!(clean(0.99), 332);
        assert_eq!(successes_needed(0, 0, 0.9, 0.95), Some(29));
        let d = decide_rate_sequential(10, 10, 0.9, 0.95);
        assert_eq!(d.more_successes_to_pass, Some(32 - 10));
        // A failure costs clean trials, but the run can still pass.
        let one = (1..=5000u64)
            .find(|&n| decide_rate_sequential(n, n + 1, 0.9, 0.95).decision == Decision::Pass)
            .expect("decides");
        assert_eq!(one, 56, "clean trials to pass with one failure");
    }

    #[test]
    fn a_bad_stack_fails_early() {
        // True 70 % against a 90 % target: the median run decides FAIL within 25.
        let (passed, failed, mut at) = monitor(0.7, 0.9, 0.95, 2000, 10_000, 9);
        assert!(
            passed <= 5 && passed + failed == 10_000,
            "{passed} PASS, {failed} FAIL"
        );
        at.sort_unstable();
        let median = at[at.len() / 2];
        eprintln!("median trials to FAIL at 70 % vs 90 %: {median}");
        assert!(median <= 25, "median trials to FAIL {median}");
        // Three failures in a row are enough evidence against 90 %.
        assert_eq!(
            decide_rate_sequential(0, 3, 0.9, 0.95).decision,
            Decision::Fail
        );
        assert_eq!(
            decide_rate_sequential(0, 2, 0.9, 0.95).decision,
            Decision::Inconclusive
        );
    }

    #[test]
    fn operating_characteristics_match_the_published_figures() {
        // 299 clean trials for 99 %: passes a 0.1 % stack 74 % of the time, a 1 % one 5 %.
        let oc = |theta| pass_probability(299, 0.99, 0.95, theta, false);
        assert!((oc(0.001) - 0.741).abs() < 0.002, "{}", oc(0.001));
        assert!((oc(0.002) - 0.549).abs() < 0.002, "{}", oc(0.002));
        assert!((oc(0.01) - 0.0495).abs() < 0.001, "{}", oc(0.01));
        // 473 trials allow one failure.
        assert!((pass_probability(473, 0.99, 0.95, 0.001, false) - 0.918).abs() < 0.003);
        // Sequential, at the target itself: a false PASS at most α.
        let at_target = pass_probability(2000, 0.9, 0.95, 0.1, true);
        assert!(at_target <= 0.05, "{at_target}");
        // A clean stack always passes within 32 trials; a 70 % one almost never.
        assert!((pass_probability(32, 0.9, 0.95, 0.0, true) - 1.0).abs() < 1e-12);
        assert!(pass_probability(31, 0.9, 0.95, 0.0, true) < 1e-12);
        assert!(pass_probability(2000, 0.9, 0.95, 0.3, true) < 1e-3);
    }

    /// The plain dynamic programme over every state, with no pruning or early stop.
    fn pass_probability_by_every_state(n: u64, target: f64, c: f64, theta: f64) -> f64 {
        let threshold = (1.0 / (1.0 - c)).ln();
        let mut undecided = vec![1.0f64];
        let mut passed = 0.0;
        for trials in 1..=n {
            let mut next = vec![0.0; undecided.len() + 1];
            for (f, p) in undecided.iter().enumerate() {
                next[f] += p * (1.0 - theta);
                next[f + 1] += p * theta;
            }
            for (f, p) in next.iter_mut().enumerate() {
                let (e_pass, e_fail) = log_e_values(trials - f as u64, trials, target);
                if e_pass >= threshold {
                    passed += *p;
                    *p = 0.0;
                } else if e_fail >= threshold {
                    *p = 0.0;
                }
            }
            undecided = next;
        }
        passed
    }

    #[test]
    fn the_pruned_operating_characteristic_equals_the_full_one_and_scales_to_a_million_trials() {
        for target in [0.9, 0.99] {
            for theta in oc_failure_rates(target).into_iter().chain([
                0.0,
                0.3 * (1.0 - target),
                2.0 * (1.0 - target),
            ]) {
                let full = pass_probability_by_every_state(1500, target, 0.95, theta);
                let fast = pass_probability(1500, target, 0.95, theta, true);
                assert!(
                    (full - fast).abs() < 1e-9,
                    "{target} {theta}: {full} vs {fast}"
                );
                // A million trials: the sequential value has converged; the fixed
                // one is a single binomial tail.
                let million = pass_probability(1_000_000, target, 0.95, theta, true);
                let long = pass_probability(100_000, target, 0.95, theta, true);
                assert!(
                    (million - long).abs() < 1e-6,
                    "{target} {theta}: {million} vs {long}"
                );
                let fixed = pass_probability(1_000_000, target, 0.95, theta, false);
                assert!((0.0..=1.0).contains(&fixed));
                // Far better than required passes a million-trial fixed design;
                // exactly at the target almost never.
                if theta <= (1.0 - target) / 2.0 {
                    assert!(fixed > 0.999, "{target} {theta}: {fixed}");
                } else if theta >= 1.0 - target {
                    assert!(fixed < 0.05, "{target} {theta}: {fixed}");
                }
            }
        }
    }

    #[test]
    fn trial_counts_for_planning() {
        // Fixed: 299 clean prove 99 %, 473 with one failure; 29 clean prove 90 %.
        assert_eq!(trials_to_pass(0, 0.99, 0.95).0, Some(299));
        assert_eq!(trials_to_pass(1, 0.99, 0.95).0, Some(473));
        assert_eq!(trials_to_pass(0, 0.9, 0.95).0, Some(29));
        // Sequential: 32 clean for 90 %; each count agrees with the decision rule.
        for target in [0.8, 0.9, 0.99] {
            for f in 0..3 {
                let (_, n) = trials_to_pass(f, target, 0.95);
                let d = |n: u64| decide_rate_sequential(n - f, n, target, 0.95).decision;
                assert_eq!(d(n), Decision::Pass, "{target} {f}");
                assert_ne!(d(n - 1), Decision::Pass, "{target} {f}");
            }
        }
        assert_eq!(trials_to_pass(0, 0.9, 0.95).1, 32);
        assert_eq!(trials_to_bound_quantile(0.99, 0.95), Some(299));
        assert_eq!(trials_to_bound_quantile(0.5, 0.95), Some(5));
        assert_eq!(quantile_bound_ranks(5, 0.5, 0.95).1, Some(5));
        assert_eq!(quantile_bound_ranks(4, 0.5, 0.95).1, None);
        // The expected trial count: a clean stack always stops at 32; the PASS
        // chance agrees with `pass_probability`.
        let clean = sequential_oc(500, 0.9, 0.95, 0.0);
        assert!((clean.mean_trials - 32.0).abs() < 1e-9 && (clean.pass - 1.0).abs() < 1e-12);
        for theta in [0.01, 0.05, 0.1, 0.3] {
            let oc = sequential_oc(500, 0.9, 0.95, theta);
            assert!((oc.pass - pass_probability(500, 0.9, 0.95, theta, true)).abs() < 1e-9);
            assert!(oc.pass + oc.fail <= 1.0 + 1e-12);
            assert!((1.0..=500.0).contains(&oc.mean_trials), "{theta}: {oc:?}");
        }
        // A 70 % stack against 90 %: FAILs, on average within the median of ~17.
        let bad = sequential_oc(500, 0.9, 0.95, 0.3);
        assert!(bad.fail > 0.99 && bad.mean_trials < 25.0, "{bad:?}");
    }

    proptest! {
        /// The bounds are the confidence sequence of the two tests: PASS exactly
        /// when the lower bound reaches the target, FAIL when the upper is below.
        #[test]
        fn sequential_bounds_agree_with_the_decision(n in 1u64..600, k_frac in 0.0f64..=1.0, target in 0.5f64..0.999) {
            let k = ((n as f64) * k_frac).round() as u64;
            let d = decide_rate_sequential(k, n, target, 0.95);
            prop_assert!(d.lower <= d.upper, "{d:?}");
            prop_assert_eq!(d.decision == Decision::Pass, d.lower >= target - 1e-12, "{:?}", d);
            prop_assert_eq!(d.decision == Decision::Fail, d.upper < target + 1e-12 && d.decision != Decision::Pass, "{:?}", d);
        }
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
