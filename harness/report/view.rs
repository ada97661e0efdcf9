//! The summary as sentences, shared by the console, HTML and Markdown reports: each
//! renders the same view in its own markup, so their wording cannot drift apart.

use super::format::{ms, pct};
use super::Summary;
use crate::stats::Decision;

/// What a decision means, in words.
pub fn meaning(d: Decision) -> &'static str {
    match d {
        Decision::Pass => "SLO met",
        Decision::Fail => "SLO violated",
        Decision::Inconclusive => "not enough evidence either way",
    }
}

/// The recovery quantiles: `p50 … · p95 … · p99 … · max …`, with the trials that
/// never recovered counted as ∞.
pub fn recovery(s: &Summary) -> String {
    recovery_of(&s.verdict.recovery)
}

/// [`recovery`] of any group of trials.
pub fn recovery_of(r: &crate::verdict::RecoveryStats) -> String {
    let never = if r.not_recovered > 0 {
        format!(" ({} never recovered: counted as ∞)", r.not_recovered)
    } else {
        String::new()
    };
    format!(
        "p50 {} · p95 {} · p99 {} · max {}{never}",
        ms(r.p50_ms),
        ms(r.p95_ms),
        ms(r.p99_ms),
        ms(r.max_ms)
    )
}

/// One fault's line of the per-fault breakdown.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRow {
    /// `sigkill → app`.
    pub label: String,
    /// `10 trials: 10 pass, 0 fail, 0 unknown`.
    pub counts: String,
    /// Its recovery quantiles.
    pub recovery: String,
    /// `10/10 = 100.0%, bounds [74.1%, 100.0%]`.
    pub success: String,
    /// The same on one console line: `10/10 pass · p50 … · p95 … · max … · bounds […]`.
    pub short: String,
    /// Its decision on its own trials (success rate and quantile limits).
    pub decision: Decision,
}

/// The per-fault breakdown, when the run had more than one fault.
pub fn per_fault(s: &Summary) -> Vec<FaultRow> {
    s.per_fault
        .iter()
        .map(|f| {
            let v = &f.verdict;
            let sr = &v.success_rate;
            FaultRow {
                label: f.label(),
                counts: format!(
                    "{} trials: {} pass, {} fail, {} unknown",
                    v.trials, v.passed, v.failed, v.unknown
                ),
                recovery: recovery_of(&v.recovery),
                success: rate_result(sr),
                short: {
                    let r = &v.recovery;
                    let mut others = String::new();
                    if v.failed > 0 {
                        others += &format!(", {} fail", v.failed);
                    }
                    if v.unknown > 0 {
                        others += &format!(", {} unknown", v.unknown);
                    }
                    format!(
                        "{}/{} pass{others} · p50 {} · p95 {} · max {} · bounds [{}, {}]",
                        v.passed,
                        v.trials,
                        ms(r.p50_ms),
                        ms(r.p95_ms),
                        ms(r.max_ms),
                        pct(sr.lower),
                        pct(sr.upper)
                    )
                },
                decision: v.decision,
            }
        })
        .collect()
}

/// What the per-fault decisions mean for the verdict.
pub fn per_fault_note(s: &Summary) -> Option<&'static str> {
    (!s.per_fault.is_empty()).then_some(if s.decided_per_fault {
        "each fault is decided on its own trials and the verdict is the worst of them (`[slo] per-fault = true`)"
    } else {
        "each fault's decision on its own trials is shown for reading; the verdict is decided on all trials together (`[slo] per-fault = true` decides per fault)"
    })
}

/// The trial counts: `20 trials: 20 pass, 0 fail, 0 unknown`.
pub fn counts(s: &Summary) -> String {
    let v = &s.verdict;
    format!(
        "{} trials: {} pass, {} fail, {} unknown",
        v.trials, v.passed, v.failed, v.unknown
    )
}

/// The success-rate objective: `success rate ≥ 80.00% (95% confidence)`.
pub fn success_objective(s: &Summary) -> String {
    let sr = &s.verdict.success_rate;
    format!(
        "success rate ≥ {:.2}% ({:.0}% confidence)",
        sr.target * 100.0,
        s.confidence * 100.0
    )
}

/// Its result: `20/20 = 100.0%, bounds [86.1%, 100.0%]`.
pub fn success_result(s: &Summary) -> String {
    rate_result(&s.verdict.success_rate)
}

/// [`success_result`] of any rate decision.
pub fn rate_result(sr: &crate::stats::RateDecision) -> String {
    format!(
        "{}/{} = {}, bounds [{}, {}]",
        sr.successes,
        sr.trials,
        pct(sr.observed),
        pct(sr.lower),
        pct(sr.upper)
    )
}

/// How many more clean trials would prove the target, if that is the way to decide.
pub fn more_to_pass(s: &Summary) -> Option<String> {
    s.verdict
        .success_rate
        .more_successes_to_pass
        .map(|m| format!("{m} more consecutive successful trials would prove the target"))
}

/// The operating characteristic in words: how often this design passes stacks
/// that fail a little, and one that fails exactly as often as allowed.
pub fn operating(s: &Summary) -> Option<String> {
    let pct = super::format::pct_short;
    let (last, rest) = s.operating.split_last()?;
    if s.operating.iter().all(|p| p.pass_probability < 1e-9) {
        let needed = if s.sequential {
            (1..=1_000_000u64).find(|&n| {
                crate::stats::decide_rate_sequential(n, n, s.target_success_rate, s.confidence)
                    .decision
                    == crate::stats::Decision::Pass
            })
        } else {
            crate::stats::successes_needed(0, 0, s.target_success_rate, s.confidence)
        };
        return Some(format!(
            "{} trials can never pass, whatever the stack: proving {} at {} confidence takes {} clean trials",
            s.trials_planned,
            pct(s.target_success_rate),
            pct(s.confidence),
            needed.map_or("more than a million".into(), |n| n.to_string())
        ));
    }
    let mut parts: Vec<String> = Vec::new();
    for (i, p) in rest.iter().enumerate() {
        parts.push(if i == 0 {
            format!(
                "{} of trials {} of the time",
                pct(p.failure_rate),
                pct(p.pass_probability)
            )
        } else {
            format!("{}: {}", pct(p.failure_rate), pct(p.pass_probability))
        });
    }
    parts.push(format!(
        "{} (as often as allowed): {}",
        pct(last.failure_rate),
        pct(last.pass_probability)
    ));
    Some(format!(
        "{} trials ({}) pass a stack that fails {}",
        s.trials_planned,
        if s.sequential {
            "at most; sequential"
        } else {
            "fixed"
        },
        parts.join("; ")
    ))
}

/// The evidence ledger the success rate was decided on, if the run used one.
pub fn evidence(s: &Summary) -> Option<String> {
    s.evidence.as_ref().map(|e| {
        format!(
            "Success rate decided on the evidence of {} run(s) in `{}`: {} of {} trials passed (anytime-valid e-values, which multiply across runs)",
            e.runs,
            e.file.display(),
            e.successes,
            e.trials
        )
    })
}

/// Lost acknowledged writes, if any.
pub fn data_loss(s: &Summary) -> Option<String> {
    let v = &s.verdict;
    (v.lost_acked_writes > 0).then(|| {
        format!(
            "{} acknowledged write(s) lost in {} trial(s)",
            v.lost_acked_writes, v.trials_with_loss
        )
    })
}
