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
    let r = &s.verdict.recovery;
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
    let sr = &s.verdict.success_rate;
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
