//! Baseline comparison, criterion's rule: a figure changed only when the change is
//! statistically significant AND beyond a noise threshold. Success rates are
//! compared with Fisher's exact test, recovery medians and p95s with a bootstrap
//! confidence interval of their relative change, and the whole recovery
//! distribution with Mann–Whitney's rank test and the Hodges–Lehmann shift with its
//! distribution-free (Moses) interval. Every figure also says the smallest change the
//! two runs could have detected (80 % of the time), so "No change" is never read as
//! "proven equal". Pure: two trial lists in, a table out.

use crate::checker::recoveries;
use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Hypergeometric, Normal};

use crate::checker::{Outcome, TrialResult};

/// How a figure moved from the baseline to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Better beyond noise, significantly.
    Improved,
    /// Worse beyond noise, significantly.
    Regressed,
    /// Within noise or not significant.
    NoChange,
    /// Not enough data to compare.
    NotComparable,
}

impl Change {
    /// Words for people.
    pub fn words(self) -> &'static str {
        match self {
            Change::Improved => "Improved",
            Change::Regressed => "Regressed",
            Change::NoChange => "No change",
            Change::NotComparable => "Not comparable",
        }
    }
}

/// Comparison settings.
#[derive(Debug, Clone, Copy)]
pub struct CompareConfig {
    /// Significance level (default 0.05).
    pub alpha: f64,
    /// Relative change of recovery figures below which nothing changed (default 0.05).
    pub noise: f64,
    /// Success-rate difference below which nothing changed (default 0.01).
    pub rate_noise: f64,
    /// Bootstrap resamples (default 10 000).
    pub resamples: usize,
    /// Bootstrap seed (fixed: the same inputs give the same report).
    pub seed: u64,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            alpha: 0.05,
            noise: 0.05,
            rate_noise: 0.01,
            resamples: 10_000,
            seed: 0x5eed,
        }
    }
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigureChange {
    /// Figure name.
    pub figure: String,
    /// Baseline value.
    pub baseline: Option<f64>,
    /// Run value.
    pub run: Option<f64>,
    /// Relative change (run / baseline − 1), or the rate difference for success rate.
    pub change: Option<f64>,
    /// Confidence interval of the change (bootstrap), when computed.
    pub interval: Option<(f64, f64)>,
    /// p-value of "the run is worse" (success rate: Fisher; recovery shift:
    /// Mann–Whitney, one-sided).
    pub p_worse: Option<f64>,
    /// The smallest change these two runs detect 80 % of the time, in the unit
    /// of `change` (relative for recovery figures; for the success rate, the drop in
    /// rate). None when it cannot be computed.
    #[serde(default)]
    pub detectable: Option<f64>,
    /// Recovery shift only: the Hodges–Lehmann shift and its interval, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_ms: Option<(f64, (f64, f64))>,
    /// The verdict.
    pub verdict: Change,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Per figure.
    pub figures: Vec<FigureChange>,
    /// Regressed if any figure regressed.
    pub regressed: bool,
}

fn successes(t: &[TrialResult]) -> (u64, u64) {
    (
        t.iter().filter(|x| x.outcome == Outcome::Pass).count() as u64,
        t.len() as u64,
    )
}

/// One-sided Fisher exact p-values (worse, better) of the run's success count
/// `k2/n2` against the baseline's `k1/n1`.
pub fn fisher_one_sided(k1: u64, n1: u64, k2: u64, n2: u64) -> (f64, f64) {
    // With all margins fixed, the run's successes follow Hypergeometric(N, K, n2).
    let Ok(h) = Hypergeometric::new(n1 + n2, k1 + k2, n2) else {
        return (1.0, 1.0);
    };
    let worse = h.cdf(k2);
    let better = if k2 == 0 { 1.0 } else { 1.0 - h.cdf(k2 - 1) };
    (worse.min(1.0), better.min(1.0))
}

fn nearest_rank(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    crate::stats::quantile(v, q).unwrap_or(f64::NAN)
}

/// Bootstrap interval (two-sided, 1 − alpha) of `stat(run) / stat(base) − 1`.
pub fn bootstrap_change(
    base: &[f64],
    run: &[f64],
    q: f64,
    cfg: &CompareConfig,
) -> Option<(f64, (f64, f64))> {
    if base.len() < 2 || run.len() < 2 {
        return None;
    }
    let point = nearest_rank(&mut run.to_vec(), q) / nearest_rank(&mut base.to_vec(), q) - 1.0;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut b = vec![0.0; base.len()];
    let mut r = vec![0.0; run.len()];
    let mut changes: Vec<f64> = (0..cfg.resamples)
        .map(|_| {
            for x in b.iter_mut() {
                *x = base[rng.random_range(0..base.len())];
            }
            for x in r.iter_mut() {
                *x = run[rng.random_range(0..run.len())];
            }
            nearest_rank(&mut r, q) / nearest_rank(&mut b, q) - 1.0
        })
        .filter(|c| c.is_finite())
        .collect();
    changes.sort_by(f64::total_cmp);
    let lo = crate::stats::quantile(&changes, cfg.alpha / 2.0)?;
    let hi = crate::stats::quantile(&changes, 1.0 - cfg.alpha / 2.0)?;
    Some((point, (lo, hi)))
}

fn z(p: f64) -> f64 {
    Normal::new(0.0, 1.0).map_or(1.96, |n| n.inverse_cdf(p))
}

/// Mann–Whitney's one-sided p-value that `run` is stochastically larger (slower)
/// than `base`: the normal approximation of U with the tie correction and a
/// continuity correction (infinite values, trials that never recovered, rank last).
pub fn mann_whitney_slower(base: &[f64], run: &[f64]) -> Option<f64> {
    let (n1, n2) = (base.len() as f64, run.len() as f64);
    if base.is_empty() || run.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = base
        .iter()
        .map(|&x| (x, false))
        .chain(run.iter().map(|&x| (x, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum_run, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let mean_rank = (i + j + 2) as f64 / 2.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_sum_run += all[i..=j].iter().filter(|x| x.1).count() as f64 * mean_rank;
        i = j + 1;
    }
    let u = rank_sum_run - n2 * (n2 + 1.0) / 2.0;
    let n = n1 + n2;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)).max(1.0));
    if var <= 0.0 {
        return Some(1.0);
    }
    let zu = (u - n1 * n2 / 2.0 - 0.5) / var.sqrt();
    Some(1.0 - Normal::new(0.0, 1.0).map_or(0.5, |d| d.cdf(zu)))
}

/// Most pairs the Hodges–Lehmann estimate sorts (beyond, both samples are thinned
/// evenly to fit).
const MAX_PAIRS: usize = 4_000_000;

fn thin(v: &[f64], keep: usize) -> Vec<f64> {
    if v.len() <= keep {
        return v.to_vec();
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (0..keep)
        .map(|i| s[(i * s.len()) / keep + s.len() / (2 * keep)])
        .collect()
}

/// The Hodges–Lehmann shift of `run` against `base` (the median of every pairwise
/// difference run − base) and its two-sided 1 − alpha interval (Moses: the
/// differences of ranks k and N − k + 1, k from Mann–Whitney's normal critical
/// value). Finite values only; None below two values on either side.
pub fn hodges_lehmann(base: &[f64], run: &[f64], alpha: f64) -> Option<(f64, (f64, f64))> {
    let base: Vec<f64> = base.iter().copied().filter(|x| x.is_finite()).collect();
    let run: Vec<f64> = run.iter().copied().filter(|x| x.is_finite()).collect();
    if base.len() < 2 || run.len() < 2 {
        return None;
    }
    let side = (MAX_PAIRS as f64).sqrt() as usize;
    let (base, run) = if base.len() * run.len() > MAX_PAIRS {
        (thin(&base, side), thin(&run, side))
    } else {
        (base, run)
    };
    let mut d: Vec<f64> = Vec::with_capacity(base.len() * run.len());
    for r in &run {
        for b in &base {
            d.push(r - b);
        }
    }
    d.sort_by(f64::total_cmp);
    let (n1, n2) = (base.len() as f64, run.len() as f64);
    let n = d.len();
    let point = crate::stats::quantile(&d, 0.5)?;
    let half = z(1.0 - alpha / 2.0) * (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    let k = ((n1 * n2 / 2.0 - half).floor().max(1.0) as usize).min(n);
    Some((point, (d[k - 1], d[n - k])))
}

/// The smallest relative change a figure's interval could have reported 80 % of
/// the time: the noise band plus (z₁₋α/₂ + z₀.₈) standard errors, the standard error
/// being read off the interval's half-width.
fn detectable_from_interval(interval: (f64, f64), noise: f64, alpha: f64) -> f64 {
    let za = z(1.0 - alpha / 2.0);
    let se = (interval.1 - interval.0) / (2.0 * za);
    noise + (za + z(0.8)) * se
}

/// The smallest drop in success rate the comparison detects 80 % of the time:
/// with the baseline's counts fixed, the run is called Regressed exactly when its
/// successes are at most some k*; this finds the true run rate at which that has
/// 80 % chance, and returns its distance below the baseline's rate.
fn detectable_drop(k1: u64, n1: u64, n2: u64, cfg: &CompareConfig) -> Option<f64> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let base = k1 as f64 / n1 as f64;
    let regressed = |k2: u64| {
        let (worse, _) = fisher_one_sided(k1, n1, k2, n2);
        worse < cfg.alpha && (k2 as f64 / n2 as f64) - base < -cfg.rate_noise
    };
    // Regressed is monotone in k2: fewer successes are never less of a regression.
    let k_star = (0..=n2).take_while(|&k| regressed(k)).last()?;
    let power = |p: f64| Binomial::new(p.clamp(0.0, 1.0), n2).map_or(0.0, |b| b.cdf(k_star));
    // power falls as the run's true rate p rises; find p with power 0.8.
    let (mut lo, mut hi) = (0.0f64, base);
    if power(hi) >= 0.8 {
        return Some(0.0);
    }
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if power(mid) >= 0.8 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(base - lo)
}

/// Compares a run against a baseline.
pub fn compare(baseline: &[TrialResult], run: &[TrialResult], cfg: &CompareConfig) -> Comparison {
    let mut figures = Vec::new();
    let ((k1, n1), (k2, n2)) = (successes(baseline), successes(run));
    let rate = |k: u64, n: u64| (n > 0).then(|| k as f64 / n as f64);
    let (p_worse, p_better) = fisher_one_sided(k1, n1, k2, n2);
    let diff = match (rate(k1, n1), rate(k2, n2)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let verdict = match diff {
        None => Change::NotComparable,
        Some(d) if p_worse < cfg.alpha && d < -cfg.rate_noise => Change::Regressed,
        Some(d) if p_better < cfg.alpha && d > cfg.rate_noise => Change::Improved,
        Some(_) => Change::NoChange,
    };
    figures.push(FigureChange {
        figure: "success rate".into(),
        baseline: rate(k1, n1),
        run: rate(k2, n2),
        change: diff,
        interval: None,
        p_worse: Some(p_worse),
        detectable: detectable_drop(k1, n1, n2, cfg),
        shift_ms: None,
        verdict,
    });
    let (rb, rr) = (recoveries(baseline), recoveries(run));
    for (name, q) in [("median recovery", 0.5), ("p95 recovery", 0.95)] {
        let stat = |v: &[f64]| (!v.is_empty()).then(|| nearest_rank(&mut v.to_vec(), q));
        let boot = bootstrap_change(&rb, &rr, q, cfg);
        // Slower recovery is worse: the whole interval beyond +noise is a regression.
        let verdict = match boot {
            None => Change::NotComparable,
            Some((_, (lo, _))) if lo > cfg.noise => Change::Regressed,
            Some((_, (_, hi))) if hi < -cfg.noise => Change::Improved,
            Some(_) => Change::NoChange,
        };
        figures.push(FigureChange {
            figure: name.into(),
            baseline: stat(&rb),
            run: stat(&rr),
            change: boot.map(|b| b.0),
            interval: boot.map(|b| b.1),
            p_worse: None,
            detectable: boot.map(|b| detectable_from_interval(b.1, cfg.noise, cfg.alpha)),
            shift_ms: None,
            verdict,
        });
    }
    figures.push(shift_figure(
        "recovery shift",
        &with_never(baseline),
        &with_never(run),
        cfg,
    ));
    // With several faults, each fault's distribution on its own (a mixture of a
    // fast and a slow fault hides a change in one of them).
    let (gb, gr) = (
        crate::verdict::by_fault(baseline),
        crate::verdict::by_fault(run),
    );
    if gb.len() > 1 {
        for ((fault, target), tb) in &gb {
            if let Some((_, tr)) = gr.iter().find(|(k, _)| k.0 == *fault && k.1 == *target) {
                figures.push(shift_figure(
                    &format!("  {}", crate::verdict::fault_label(fault, target)),
                    &with_never(tb),
                    &with_never(tr),
                    cfg,
                ));
            }
        }
    }
    // The per-fault rows (indented) are for reading: with k faults, letting each
    // gate would make a false "Regressed" about k + 1 times as likely.
    let regressed = figures
        .iter()
        .any(|f| f.verdict == Change::Regressed && !f.figure.starts_with(' '));
    Comparison { figures, regressed }
}

/// Recovery times of decided trials, a trial that never recovered as +∞ (it ranks
/// last in Mann–Whitney); unknown trials are left out.
fn with_never(trials: &[TrialResult]) -> Vec<f64> {
    trials
        .iter()
        .filter(|t| t.outcome != Outcome::Unknown)
        .map(|t| {
            t.recovery_ms
                .filter(|v| v.is_finite())
                .unwrap_or(f64::INFINITY)
        })
        .collect()
}

/// The whole distribution: Mann–Whitney and the Hodges–Lehmann shift, decided like
/// the other figures on the shift's interval against the noise band (relative to the
/// baseline's median).
fn shift_figure(name: &str, rb: &[f64], rr: &[f64], cfg: &CompareConfig) -> FigureChange {
    let finite = |v: &[f64]| -> Vec<f64> { v.iter().copied().filter(|x| x.is_finite()).collect() };
    let (fb, fr) = (finite(rb), finite(rr));
    let base_median = (!fb.is_empty()).then(|| nearest_rank(&mut fb.clone(), 0.5));
    let hl = hodges_lehmann(rb, rr, cfg.alpha);
    let p_slower = mann_whitney_slower(rb, rr);
    let relative = |x: f64| base_median.filter(|m| *m > 0.0).map(|m| x / m);
    let verdict = match (hl, base_median.filter(|m| *m > 0.0)) {
        (Some((_, (lo, hi))), Some(m)) => {
            if lo > cfg.noise * m {
                Change::Regressed
            } else if hi < -cfg.noise * m {
                Change::Improved
            } else {
                Change::NoChange
            }
        }
        _ => Change::NotComparable,
    };
    FigureChange {
        figure: name.into(),
        baseline: base_median,
        run: (!fr.is_empty()).then(|| nearest_rank(&mut fr.clone(), 0.5)),
        change: hl.and_then(|h| relative(h.0)),
        interval: hl.and_then(|h| Some((relative(h.1 .0)?, relative(h.1 .1)?))),
        p_worse: p_slower,
        detectable: hl.and_then(|h| {
            Some(detectable_from_interval(
                (relative(h.1 .0)?, relative(h.1 .1)?),
                cfg.noise,
                cfg.alpha,
            ))
        }),
        shift_ms: hl,
        verdict,
    }
}

/// The comparison as console text.
pub fn render(c: &Comparison, baseline_label: &str, run_label: &str) -> String {
    let mut o = format!("\nrebound compare · {baseline_label} → {run_label}\n");
    for f in &c.figures {
        let (b, r) = if f.figure == "success rate" {
            let pct = |v: Option<f64>| v.map_or("—".into(), |x| format!("{:.1}%", x * 100.0));
            (pct(f.baseline), pct(f.run))
        } else {
            let ms = |v: Option<f64>| v.map_or("—".into(), |x| format!("{x:.1} ms"));
            (ms(f.baseline), ms(f.run))
        };
        let detail = match (f.shift_ms, f.interval, f.p_worse, f.change) {
            (Some((sh, (lo, hi))), _, p, _) => format!(
                "HL shift {sh:+.1} ms [{lo:+.1}, {hi:+.1}]{}",
                p.map_or(String::new(), |p| format!(", MW p = {p:.3}"))
            ),
            (None, Some((lo, hi)), _, Some(ch)) => format!(
                "change {:+.1}% [{:+.1}%, {:+.1}%]",
                ch * 100.0,
                lo * 100.0,
                hi * 100.0
            ),
            (None, _, Some(p), _) if f.figure == "success rate" => {
                format!("Fisher p(worse) = {p:.3}")
            }
            (None, _, Some(p), _) => format!("MW p = {p:.3}"),
            _ => String::new(),
        };
        // Next to every "No change": what these runs could have seen.
        let could = match (f.verdict, f.detectable) {
            (Change::NoChange, Some(d)) if f.figure == "success rate" => {
                format!(
                    " (detects a drop of {:.1} points 80% of the time)",
                    d * 100.0
                )
            }
            (Change::NoChange, Some(d)) => {
                format!(" (detects ±{:.1}% 80% of the time)", d * 100.0)
            }
            (Change::NoChange, None) => " (too few trials to detect any change)".to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "  {:<18} {:>10} → {:<10} {:<51} {}{could}",
            f.figure,
            b,
            r,
            detail,
            f.verdict.words()
        );
    }
    let _ = writeln!(
        o,
        "  verdict            {}",
        if c.regressed {
            "Regressed (exit 1)"
        } else {
            "no regression (exit 0)"
        }
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trials(recoveries: &[f64], failures: usize) -> Vec<TrialResult> {
        let mut v: Vec<TrialResult> = recoveries
            .iter()
            .enumerate()
            .map(|(i, r)| TrialResult {
                trial: i as u32 + 1,
                outcome: Outcome::Pass,
                reason: String::new(),
                fault: "sigkill".into(),
                target: "app".into(),
                injected_at: None,
                recovered_at: None,
                recovery_ms: Some(*r),
                recovery_lower_ms: None,
                downtime_ms: None,
                probes_ok: 0,
                probes_failed: 0,
                restarts: 0,
                trial_ms: None,
                timeline: Default::default(),
                pacing: Vec::new(),
                services: Vec::new(),
                clients: Default::default(),
            })
            .collect();
        for t in v.iter_mut().take(failures) {
            t.outcome = Outcome::Fail;
        }
        v
    }

    fn noisy(center: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| center * (1.0 + rng.random_range(-0.03..0.03)))
            .collect()
    }

    #[test]
    fn fisher_matches_known_values() {
        // Baseline 10/10, run 5/10: P(X ≤ 5) for Hypergeometric(20, 15, 10) = 0.01625.
        let (worse, better) = fisher_one_sided(10, 10, 5, 10);
        assert!((worse - 0.016_25).abs() < 1e-4, "{worse}");
        assert!((better - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_a_comparison_says_no_change() {
        let c = compare(
            &trials(&noisy(300.0, 20, 1), 0),
            &trials(&noisy(300.0, 20, 2), 0),
            &CompareConfig::default(),
        );
        assert!(
            c.figures.iter().all(|f| f.verdict == Change::NoChange),
            "{c:?}"
        );
        assert!(!c.regressed);
    }

    #[test]
    fn twice_slower_recovery_regresses_and_faster_improves() {
        let base = trials(&noisy(300.0, 20, 1), 0);
        let slow = trials(&noisy(600.0, 20, 2), 0);
        let c = compare(&base, &slow, &CompareConfig::default());
        assert_eq!(c.figures[1].verdict, Change::Regressed);
        assert!(c.regressed);
        let c = compare(&slow, &base, &CompareConfig::default());
        assert_eq!(c.figures[1].verdict, Change::Improved);
        assert!(!c.regressed);
    }

    #[test]
    fn mann_whitney_and_hodges_lehmann_match_hand_computed_values() {
        // Every run value above every baseline value: U = 9 of 9, exact p = 1/20.
        let p = mann_whitney_slower(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).expect("p");
        assert!((0.03..0.06).contains(&p), "{p}");
        let q = mann_whitney_slower(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]).expect("p");
        assert!(q > 0.95, "{q}");
        // Identical samples: no evidence either way.
        let same = mann_whitney_slower(&[5.0; 10], &[5.0; 10]).expect("p");
        assert!((same - 0.5).abs() < 0.2 || same == 1.0, "{same}");
        // A pure shift of 100: the estimate is exactly 100, inside its interval.
        let base: Vec<f64> = (0..20).map(f64::from).collect();
        let run: Vec<f64> = base.iter().map(|x| x + 100.0).collect();
        let (shift, (lo, hi)) = hodges_lehmann(&base, &run, 0.05).expect("hl");
        assert_eq!(shift, 100.0);
        assert!(
            lo < 100.0 && hi > 100.0 && lo > 90.0 && hi < 110.0,
            "[{lo}, {hi}]"
        );
        // Never-recovered trials (∞) are left out of the shift, ranked last in MW.
        assert!(hodges_lehmann(&[1.0, f64::INFINITY], &[2.0, 3.0], 0.05).is_none());
    }

    #[test]
    fn every_no_change_says_what_it_could_have_detected() {
        let c = compare(
            &trials(&noisy(300.0, 20, 1), 0),
            &trials(&noisy(300.0, 20, 2), 0),
            &CompareConfig::default(),
        );
        let shift = c
            .figures
            .iter()
            .find(|f| f.figure == "recovery shift")
            .expect("shift");
        assert_eq!(shift.verdict, Change::NoChange);
        let d = shift.detectable.expect("detectable");
        // ±3 % noise around 300 ms and the 5 % band: a change near 6-8 % is visible.
        assert!((0.05..0.12).contains(&d), "{d}");
        // 20 clean against 20 clean: a drop to ~75 % is the smallest seen 4 times in 5.
        let drop = c.figures[0].detectable.expect("drop");
        assert!((0.15..0.40).contains(&drop), "{drop}");
        let text = render(&c, "a", "b");
        assert!(text.contains("No change (detects ±"), "{text}");
        assert!(text.contains("No change (detects a drop of"), "{text}");
        // More trials detect smaller changes.
        let big = compare(
            &trials(&noisy(300.0, 200, 3), 0),
            &trials(&noisy(300.0, 200, 4), 0),
            &CompareConfig::default(),
        );
        let big_d = big.figures[3].detectable.expect("detectable");
        assert!(big_d < d, "{big_d} vs {d}");
        // Twice slower: the shift regresses too.
        let slow = compare(
            &trials(&noisy(300.0, 20, 1), 0),
            &trials(&noisy(600.0, 20, 2), 0),
            &CompareConfig::default(),
        );
        assert_eq!(slow.figures[3].verdict, Change::Regressed);
    }

    #[test]
    fn losing_successes_regresses_only_when_significant() {
        let base = trials(&noisy(300.0, 20, 1), 0);
        assert_eq!(
            compare(
                &base,
                &trials(&noisy(300.0, 20, 2), 1),
                &CompareConfig::default()
            )
            .figures[0]
                .verdict,
            Change::NoChange
        );
        assert_eq!(
            compare(
                &base,
                &trials(&noisy(300.0, 20, 2), 10),
                &CompareConfig::default()
            )
            .figures[0]
                .verdict,
            Change::Regressed
        );
    }
}
