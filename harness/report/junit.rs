//! `junit.xml`: one test case per trial and one per SLO objective, so a CI system
//! shows which trials failed and why, and which objective decided the verdict.

use std::path::PathBuf;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::format::ms;
use super::{ReportError, Reporter, Summary};
use crate::checker::{Outcome, TrialResult};
use crate::stats::Decision;

/// Writes `junit.xml` at the end of the run. Everything in it comes from the
/// history, so `rebound report` recreates it byte for byte.
pub struct JunitReporter {
    /// Output path.
    pub path: PathBuf,
}

fn status(failed: Option<(NonSuccessKind, &str, String)>) -> TestCaseStatus {
    match failed {
        None => TestCaseStatus::success(),
        Some((kind, ty, message)) => {
            let mut st = TestCaseStatus::non_success(kind);
            st.set_type(ty).set_message(message);
            st
        }
    }
}

fn decision_status(d: Decision, message: String) -> TestCaseStatus {
    match d {
        Decision::Pass => status(None),
        Decision::Fail => status(Some((NonSuccessKind::Failure, "SloViolated", message))),
        // Not proven is not passed: a CI gate must not read it as green.
        Decision::Inconclusive => status(Some((NonSuccessKind::Failure, "Inconclusive", message))),
    }
}

/// The JUnit document for a run.
pub fn render(
    summary: &Summary,
    trials: &[TrialResult],
) -> Result<String, quick_junit::SerializeError> {
    let v = &summary.verdict;
    let class = format!("rebound.{}", summary.scenario);
    let mut suite = TestSuite::new(format!("rebound: {}", summary.scenario));
    for t in trials {
        let failed = match t.outcome {
            Outcome::Pass => None,
            Outcome::Fail => Some((NonSuccessKind::Failure, "TrialFailed", t.reason.clone())),
            Outcome::Unknown => Some((NonSuccessKind::Error, "TrialUnknown", t.reason.clone())),
        };
        let mut case = TestCase::new(
            format!("trial {} ({} → {})", t.trial, t.fault, t.target),
            status(failed),
        );
        case.set_classname(format!("{class}.trials"));
        if let Some(ms) = t.trial_ms {
            case.set_time(Duration::from_secs_f64(ms / 1e3));
        }
        suite.add_test_case(case);
    }
    let sr = &v.success_rate;
    let mut rate = TestCase::new(
        format!(
            "success rate ≥ {:.2}% at {:.0}% confidence",
            sr.target * 100.0,
            sr.confidence * 100.0
        ),
        decision_status(
            sr.decision,
            format!(
                "{}/{} trials succeeded; one-sided bounds [{:.2}%, {:.2}%]{}",
                sr.successes,
                sr.trials,
                sr.lower * 100.0,
                sr.upper * 100.0,
                sr.more_successes_to_pass
                    .map(|m| format!("; {m} more consecutive successes would prove it"))
                    .unwrap_or_default()
            ),
        ),
    );
    rate.set_classname(format!("{class}.slo"));
    suite.add_test_case(rate);
    for l in &v.limits {
        let mut case = TestCase::new(
            format!("{} recovery ≤ {:.0} ms", l.quantile.label(), l.limit_ms),
            decision_status(
                l.decision,
                format!(
                    "estimate {}, bounds [{}, {}]",
                    ms(l.estimate_ms),
                    ms(l.lower_ms),
                    ms(l.upper_ms)
                ),
            ),
        );
        case.set_classname(format!("{class}.slo"));
        suite.add_test_case(case);
    }
    // `[slo] per-fault = true`: each fault's decision is part of the verdict, so
    // each is a case of its own.
    if summary.decided_per_fault {
        for f in &summary.per_fault {
            let fv = &f.verdict;
            let fr = &fv.success_rate;
            let mut case = TestCase::new(
                format!("SLO for {} alone", f.label()),
                decision_status(
                    fv.decision,
                    format!(
                        "{}/{} trials succeeded; one-sided bounds [{:.2}%, {:.2}%]; {}",
                        fr.successes,
                        fr.trials,
                        fr.lower * 100.0,
                        fr.upper * 100.0,
                        fv.limits
                            .iter()
                            .map(|l| format!(
                                "{} ≤ {:.0} ms {}",
                                l.quantile.label(),
                                l.limit_ms,
                                l.decision.word()
                            ))
                            .chain(std::iter::once(format!(
                                "success rate {}",
                                fr.decision.word()
                            )))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            );
            case.set_classname(format!("{class}.slo.per-fault"));
            suite.add_test_case(case);
        }
    }
    let mut report = Report::new("rebound");
    report.add_test_suite(suite);
    report.to_string()
}

impl Reporter for JunitReporter {
    fn run_finished(
        &mut self,
        summary: &Summary,
        trials: &[TrialResult],
    ) -> Result<(), ReportError> {
        let err = |source| ReportError {
            path: self.path.clone(),
            source,
        };
        let xml = render(summary, trials).map_err(|e| err(std::io::Error::other(e.to_string())))?;
        std::fs::write(&self.path, xml).map_err(err)
    }
}
