//! Baseline comparison, criterion's rule: a figure changed only when the change is
//! statistically significant AND beyond a noise threshold. Success rates are
//! compared with Fisher's exact test, recovery medians and p95s with a bootstrap
//! confidence interval of their relative change. Pure: two trial lists in, a table out.

use crate::checker::recoveries;
use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use statrs::distribution::{DiscreteCDF, Hypergeometric};

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
    /// p-value of "the run is worse" (success rate only).
    pub p_worse: Option<f64>,
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
            verdict,
        });
    }
    let regressed = figures.iter().any(|f| f.verdict == Change::Regressed);
    Comparison { figures, regressed }
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
        let detail = match (f.interval, f.p_worse, f.change) {
            (Some((lo, hi)), _, Some(ch)) => format!(
                "change {:+.1}% [{:+.1}%, {:+.1}%]",
                ch * 100.0,
                lo * 100.0,
                hi * 100.0
            ),
            (_, Some(p), _) => format!("Fisher p(worse) = {p:.3}"),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "  {:<16} {:>10} → {:<10} {:<36} {}",
            f.figure,
            b,
            r,
            detail,
            f.verdict.words()
        );
    }
    let _ = writeln!(
        o,
        "  verdict          {}",
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
