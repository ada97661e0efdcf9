//! `rebound plan`: how many trials a scenario's SLO needs under the fixed and the
//! sequential design, what its planned trial count can and cannot prove, and the
//! wall time a pilot run's trial durations predict. Pure arithmetic on the plan
//! (and the pilot's trials); nothing is run.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::checker::{Outcome, TrialResult};
use crate::report::format::pct_short as pct;
use crate::scenario::{Plan, Quantile};
use crate::stats;

/// The trial counts one success-rate objective needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RatePlan {
    /// Required success rate.
    pub target: f64,
    /// Confidence.
    pub confidence: f64,
    /// `(failures, fixed, sequential)`: trials to PASS with that many failures
    /// among them (fixed: None beyond a million).
    pub to_pass: Vec<(u64, Option<u64>, u64)>,
    /// The scenario's `[run] trials` (per fault with `[slo] per-fault`: its share).
    pub planned: u64,
    /// Most failures a PASS of the planned fixed run allows (None: it cannot pass).
    pub planned_failures_allowed: Option<u64>,
    /// The sequential design's cap (`--max-trials`).
    pub max_trials: u64,
    /// Behaviour at a few true failure rates.
    pub rows: Vec<RateRow>,
}

/// Both designs at one true failure rate.
#[derive(Debug, Clone, PartialEq)]
pub struct RateRow {
    /// True failure rate of the stack.
    pub failure_rate: f64,
    /// What it is, in words (`clean`, `as allowed`, …).
    pub what: &'static str,
    /// P(PASS) of the planned fixed run.
    pub fixed_pass: f64,
    /// The sequential design up to `max_trials`.
    pub sequential: stats::SequentialOc,
}

/// A recovery-quantile limit and the trials before it can pass.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitPlan {
    /// Which quantile.
    pub quantile: Quantile,
    /// The limit.
    pub limit_ms: f64,
    /// Trials before its upper confidence bound exists (None for `max`: the
    /// largest observation is decided as it is).
    pub min_trials: Option<u64>,
}

/// What a pilot run says about trial durations.
#[derive(Debug, Clone, PartialEq)]
pub struct Pilot {
    /// Its run directory.
    pub run_dir: PathBuf,
    /// Its run id.
    pub run_id: String,
    /// Trials it finished.
    pub trials: u64,
    /// Of which passed.
    pub passed: u64,
    /// Mean time per trial (the trial itself plus `[run] settle`).
    pub mean_trial_ms: f64,
    /// 95th percentile of the same.
    pub p95_trial_ms: f64,
    /// False when the pilot ran another version of the scenario text.
    pub same_scenario: bool,
}

/// The whole plan of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialPlan {
    /// Scenario name.
    pub scenario: String,
    /// Per-trial recovery deadline.
    pub recover_within_ms: f64,
    /// The success-rate objective.
    pub rate: RatePlan,
    /// Quantile limits.
    pub limits: Vec<LimitPlan>,
    /// `[slo] per-fault`: how many faults each need the counts above.
    pub per_fault: Option<usize>,
    /// The pilot, if one was given.
    pub pilot: Option<Pilot>,
}

/// Plans `plan`, with an optional pilot run's trials (`same_scenario`: it ran the
/// same scenario text) and the sequential cap (`None`: five times the fixed
/// design's clean trials, at least the planned count).
pub fn plan(
    plan: &Plan,
    pilot: Option<(PathBuf, String, Vec<TrialResult>, bool)>,
    max_trials: Option<u64>,
) -> TrialPlan {
    let slo = &plan.slo;
    let (target, c) = (slo.success_rate, slo.confidence);
    let to_pass: Vec<(u64, Option<u64>, u64)> = (0..3)
        .map(|f| {
            let (fixed, seq) = stats::trials_to_pass(f, target, c);
            (f, fixed, seq)
        })
        .collect();
    // Per fault, each fault is decided on its share of the trials.
    let faults_n = {
        let mut keys: Vec<(&str, &str)> = plan
            .faults
            .iter()
            .map(|f| (f.kind.name(), f.target.as_str()))
            .collect();
        keys.sort();
        keys.dedup();
        keys.len().max(1) as u64
    };
    let share = if slo.per_fault { faults_n } else { 1 };
    let planned = u64::from(plan.run.trials) / share;
    let planned_failures_allowed = (0..=planned)
        .take_while(|&f| stats::rate_lower_bound(planned - f, planned, c) >= target)
        .last();
    let max_trials = max_trials.unwrap_or_else(|| {
        to_pass[0]
            .1
            .map_or(planned, |n| n.saturating_mul(5))
            .max(planned)
    });
    let theta0 = 1.0 - target;
    let rates: [(f64, &'static str); 5] = [
        (0.0, "clean"),
        (theta0 / 10.0, "a tenth of the allowed"),
        (theta0 / 2.0, "half the allowed"),
        (theta0, "as allowed"),
        ((3.0 * theta0).min(1.0), "three times the allowed"),
    ];
    let rows = rates
        .iter()
        .map(|&(theta, what)| RateRow {
            failure_rate: theta,
            what,
            fixed_pass: stats::pass_probability(planned, target, c, theta, false),
            sequential: stats::sequential_oc(max_trials, target, c, theta),
        })
        .collect();
    let limits = slo
        .limits
        .iter()
        .map(|&(q, d)| LimitPlan {
            quantile: q,
            limit_ms: d.as_secs_f64() * 1e3,
            min_trials: (q != Quantile::Max)
                .then(|| stats::trials_to_bound_quantile(q.level(), c))
                .flatten(),
        })
        .collect();
    let faults = faults_n as usize;
    let settle_ms = plan.run.settle.as_secs_f64() * 1e3;
    let pilot = pilot.map(|(run_dir, run_id, trials, same_scenario)| {
        let mut times: Vec<f64> = trials
            .iter()
            .filter_map(|t| t.trial_ms)
            .map(|t| t + settle_ms)
            .collect();
        times.sort_by(f64::total_cmp);
        Pilot {
            run_dir,
            run_id,
            trials: trials.len() as u64,
            passed: trials.iter().filter(|t| t.outcome == Outcome::Pass).count() as u64,
            mean_trial_ms: if times.is_empty() {
                0.0
            } else {
                times.iter().sum::<f64>() / times.len() as f64
            },
            p95_trial_ms: stats::quantile(&times, 0.95).unwrap_or(0.0),
            same_scenario,
        }
    });
    TrialPlan {
        scenario: plan.name.clone(),
        recover_within_ms: slo.recover_within.as_secs_f64() * 1e3,
        rate: RatePlan {
            target,
            confidence: c,
            to_pass,
            planned,
            planned_failures_allowed,
            max_trials,
            rows,
        },
        limits,
        per_fault: (slo.per_fault && faults > 1).then_some(faults),
        pilot,
    }
}

/// A duration for people: `850 ms`, `42 s`, `7 min 30 s`, `2 h 05 min`.
fn wall(ms: f64) -> String {
    let s = ms / 1e3;
    if s < 1.0 {
        format!("{ms:.0} ms")
    } else if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

fn count(n: Option<u64>) -> String {
    n.map_or("> 1 000 000".into(), |n| n.to_string())
}

/// The plan as the console prints it.
pub fn render(p: &TrialPlan) -> String {
    let mut o = String::new();
    let r = &p.rate;
    let _ = writeln!(o, "\nrebound plan · {}", p.scenario);
    let _ = writeln!(
        o,
        "\n  success rate ≥ {} at {} confidence (a trial succeeds when it recovers within {} ms)",
        pct(r.target),
        pct(r.confidence),
        p.recover_within_ms
    );
    let _ = writeln!(
        o,
        "    {:<28} {:>8}   {:>12}",
        "trials to PASS", "fixed", "sequential"
    );
    for (f, fixed, seq) in &r.to_pass {
        let what = match f {
            0 => "all clean".to_string(),
            1 => "with 1 failure".to_string(),
            f => format!("with {f} failures"),
        };
        let _ = writeln!(o, "    {:<28} {:>8}   {:>12}", what, count(*fixed), seq);
    }
    let _ = writeln!(
        o,
        "    (fixed: n ≥ ln(1 − c) / ln(target) = {:.1} when all are clean; sequential: --until-decided, e-values valid at every look)",
        (1.0 - r.confidence).ln() / r.target.ln()
    );
    let _ = match r.planned_failures_allowed {
        Some(f) => writeln!(
            o,
            "    this scenario's {} trials (fixed) PASS with at most {f} failure(s)",
            r.planned
        ),
        None => writeln!(
            o,
            "    this scenario's {} trials (fixed) can never PASS, whatever the stack: set [run] trials ≥ {} or use --until-decided",
            r.planned,
            count(r.to_pass[0].1)
        ),
    };
    let _ = writeln!(
        o,
        "\n    {:<34} {:>14}   {:>15} {:>8} {:>12}",
        "a stack that fails",
        format!("fixed {}: PASS", r.planned),
        format!("seq ≤ {}: PASS", r.max_trials),
        "FAIL",
        "mean trials"
    );
    for row in &r.rows {
        let s = &row.sequential;
        let _ = writeln!(
            o,
            "    {:<34} {:>14}   {:>15} {:>8} {:>12.0}",
            format!("{} ({})", pct(row.failure_rate), row.what),
            pct(row.fixed_pass),
            pct(s.pass),
            pct(s.fail),
            s.mean_trials
        );
    }
    if let Some(n) = p.per_fault {
        let _ = writeln!(
            o,
            "    [slo] per-fault = true: each of the {n} faults needs these trials on its own ({n}× in all); the fixed column is one fault's share of the planned trials"
        );
    }
    if !p.limits.is_empty() {
        let _ = writeln!(o, "\n  recovery limits");
    }
    for l in &p.limits {
        let _ = match l.min_trials {
            Some(n) => writeln!(
                o,
                "    {} ≤ {:.0} ms: its {} upper bound exists from {n} trials (n ≥ ln(1 − c) / ln q = {:.1}); fewer can never PASS it",
                l.quantile.label(),
                l.limit_ms,
                pct(r.confidence),
                (1.0 - r.confidence).ln() / l.quantile.level().ln()
            ),
            None => writeln!(
                o,
                "    {} ≤ {:.0} ms: decided on the largest recovery observed, from the first trial (a statement about this run, not a bound)",
                l.quantile.label(),
                l.limit_ms
            ),
        };
    }
    let Some(pilot) = &p.pilot else {
        let _ = writeln!(
            o,
            "\n  wall time: give a pilot run (--from RUN_DIR) to estimate it from its trial durations"
        );
        return o;
    };
    let _ = writeln!(
        o,
        "\n  wall time, from pilot run {} ({}: {}/{} passed): {} per trial on average, p95 {} (bring-up and teardown not included)",
        pilot.run_id,
        pilot.run_dir.display(),
        pilot.passed,
        pilot.trials,
        wall(pilot.mean_trial_ms),
        wall(pilot.p95_trial_ms)
    );
    if !pilot.same_scenario {
        let _ = writeln!(
            o,
            "    note: the pilot ran another version of this scenario; its durations may not carry over"
        );
    }
    let mut shown: Vec<(String, u64)> = vec![(format!("planned ({})", r.planned), r.planned)];
    if let Some(n) = r.to_pass[0].1 {
        shown.push(("fixed, all clean".into(), n));
    }
    shown.push(("sequential, all clean".into(), r.to_pass[0].2));
    // The sequential design at the pilot's own failure rate.
    if pilot.trials > pilot.passed {
        let theta = (pilot.trials - pilot.passed) as f64 / pilot.trials as f64;
        let oc = stats::sequential_oc(r.max_trials, r.target, r.confidence, theta);
        shown.push((
            format!(
                "sequential at the pilot's {} failures (mean; PASS {}, FAIL {})",
                pct(theta),
                pct(oc.pass),
                pct(oc.fail)
            ),
            oc.mean_trials.round() as u64,
        ));
    }
    let factor = p.per_fault.unwrap_or(1) as u64;
    for (what, n) in shown {
        // Per fault, every count is one fault's: the run needs it for each.
        let n = n * factor;
        let _ = writeln!(
            o,
            "    {:>6} trials  ≈ {:>12}   {what}",
            n,
            wall(n as f64 * pilot.mean_trial_ms)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(slo: &str, trials: u32) -> Plan {
        let text = format!(
            "name = \"p\"\n[stack]\nbackend = \"process\"\n[[stack.service]]\nname = \"app\"\ncommand = [\"true\"]\n\
             [[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\
             [[probe]]\nkind = \"tcp\"\naddress = \"127.0.0.1:9\"\n\
             [slo]\n{slo}\n[run]\ntrials = {trials}\n"
        );
        crate::scenario::parse(std::path::Path::new("p.toml"), &text).expect("valid")
    }

    #[test]
    fn a_99_percent_target_needs_299_fixed_and_says_what_20_trials_cannot_do() {
        let p = plan(
            &scenario(
                "success-rate = 0.99\nrecover-within = \"2m\"\np99 = \"30s\"",
                20,
            ),
            None,
            None,
        );
        assert_eq!(p.rate.to_pass[0], (0, Some(299), 332));
        assert_eq!(p.rate.to_pass[1].1, Some(473));
        assert_eq!(p.rate.planned_failures_allowed, None);
        assert_eq!(p.rate.max_trials, 5 * 299);
        assert_eq!(p.limits[0].min_trials, Some(299));
        let text = render(&p);
        assert!(
            text.contains("can never PASS, whatever the stack: set [run] trials ≥ 299"),
            "{text}"
        );
        assert!(text.contains("p99 ≤ 30000 ms: its 95 % upper bound exists from 299 trials"));
        assert!(text.contains("--from RUN_DIR"));
        // The clean row: the fixed 20 never pass, the sequential design always
        // does, after exactly 332 trials.
        let clean = &p.rate.rows[0];
        assert_eq!(clean.fixed_pass, 0.0);
        assert!((clean.sequential.mean_trials - 332.0).abs() < 1e-9);
    }

    #[test]
    fn a_pilot_turns_trial_counts_into_wall_time() {
        let s = scenario("success-rate = 0.9\nrecover-within = \"5s\"", 29);
        let mut trials: Vec<TrialResult> = Vec::new();
        for i in 1..=10u32 {
            trials.push(TrialResult {
                trial: i,
                outcome: if i == 10 {
                    Outcome::Fail
                } else {
                    Outcome::Pass
                },
                reason: String::new(),
                fault: "sigkill".into(),
                target: "app".into(),
                injected_at: None,
                recovered_at: None,
                recovery_ms: None,
                recovery_lower_ms: None,
                downtime_ms: None,
                probes_ok: 0,
                probes_failed: 0,
                restarts: 0,
                services: Vec::new(),
                clients: Default::default(),
                trial_ms: Some(2_000.0),
                timeline: Default::default(),
                pacing: Vec::new(),
            });
        }
        let p = plan(
            &s,
            Some((PathBuf::from("/r"), "r1".into(), trials, true)),
            None,
        );
        let pilot = p.pilot.as_ref().expect("pilot");
        assert_eq!((pilot.trials, pilot.passed), (10, 9));
        assert_eq!(pilot.mean_trial_ms, 2_000.0);
        let text = render(&p);
        // 29 fixed trials at 2 s = 58 s; 32 sequential clean = 64 s.
        assert!(
            text.contains("    29 trials  ≈         58 s   planned (29)"),
            "{text}"
        );
        assert!(
            text.contains("    32 trials  ≈   1 min 04 s   sequential, all clean"),
            "{text}"
        );
        assert!(
            text.contains("sequential at the pilot's 10 % failures"),
            "{text}"
        );
    }
}
