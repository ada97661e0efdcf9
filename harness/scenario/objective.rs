//! Validation of the objective (`[slo]`) and the trial mechanics (`[run]`): ranges,
//! defaults, and the rules that tie them together (an observe window no shorter
//! than the recovery deadline).

use std::time::Duration;

use super::locate::{locate, Validator};
use super::raw::{RawRun, RawSlo};
use super::{Quantile, RunPlan, ScenarioError, Slo, MIN_PROBE_PERIOD};

/// `[run] probe-period`: the default period of every probe.
pub(super) fn probe_period(
    v: &Validator<'_>,
    period: Option<Duration>,
) -> Result<Duration, ScenarioError> {
    let text = v.text;
    let default_period = period.unwrap_or(Duration::from_millis(50));
    if default_period < MIN_PROBE_PERIOD {
        return Err(v.err(
            "run.probe-period",
            locate(text, "probe-period", None, 1),
            "probe period must be at least 5ms",
        ));
    }
    Ok(default_period)
}

/// `[slo]`.
pub(super) fn slo(v: &Validator<'_>, s: RawSlo) -> Result<Slo, ScenarioError> {
    let text = v.text;
    let success_rate = s.success_rate.unwrap_or(0.99);
    if !(success_rate > 0.0 && success_rate < 1.0) {
        return Err(v.err(
            "slo.success-rate",
            locate(text, "success-rate", None, 1),
            format!("{success_rate} must lie strictly between 0 and 1 (e.g. 0.99); no finite run can prove 1.0"),
        ));
    }
    let confidence = s.confidence.unwrap_or(0.95);
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(v.err(
            "slo.confidence",
            locate(text, "confidence", None, 1),
            format!("{confidence} must lie strictly between 0 and 1"),
        ));
    }
    if s.recover_within.is_zero() {
        return Err(v.err(
            "slo.recover-within",
            locate(text, "recover-within", None, 1),
            "must be greater than 0",
        ));
    }
    let limits: Vec<(Quantile, Duration)> = [
        (Quantile::P50, s.p50),
        (Quantile::P90, s.p90),
        (Quantile::P95, s.p95),
        (Quantile::P99, s.p99),
        (Quantile::Max, s.max),
    ]
    .into_iter()
    .filter_map(|(q, d)| d.map(|d| (q, d)))
    .collect();

    Ok(Slo {
        success_rate,
        confidence,
        recover_within: s.recover_within,
        limits,
        max_lost_writes: s.max_lost_writes.unwrap_or(0),
        per_fault: s.per_fault.unwrap_or(false),
    })
}

/// `[run]`, given the objective it serves.
pub(super) fn run(v: &Validator<'_>, r: RawRun, slo: &Slo) -> Result<RunPlan, ScenarioError> {
    let text = v.text;
    let observe_for = r.observe_for.unwrap_or(slo.recover_within * 2);
    if observe_for < slo.recover_within {
        return Err(v.err(
            "run.observe-for",
            locate(text, "observe-for", None, 1),
            "must not be shorter than slo.recover-within, or no trial could pass",
        ));
    }

    let mut record_log = Vec::new();
    for (service, pattern) in r.record_log {
        let re = regex::Regex::new(&pattern).map_err(|e| {
            v.err(
                "run.record-log",
                locate(text, "record-log", Some(&pattern), 1),
                format!("`{service}`: not a regular expression: {e}"),
            )
        })?;
        record_log.push((service, re));
    }

    Ok(RunPlan {
        record_log,
        trials: r.trials.map_or(20, |n| n.get()),
        warm_up: r.warm_up.unwrap_or(Duration::from_secs(1)),
        jitter: r.jitter.unwrap_or(Duration::ZERO),
        settle: r.settle.unwrap_or(Duration::ZERO),
        stable_for: r.stable_for.map_or(3, |n| n.get()),
        observe_for,
        startup_timeout: r.startup_timeout.unwrap_or(Duration::from_secs(60)),
        heal_timeout: r.heal_timeout.unwrap_or(Duration::from_secs(60)),
        order: r.order.unwrap_or_default(),
        seed: r.seed,
    })
}
