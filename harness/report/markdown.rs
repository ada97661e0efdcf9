//! `summary.md`: the verdict and its figures in a few lines of Markdown, sized for
//! a CI job summary (e.g. appended to `$GITHUB_STEP_SUMMARY`).

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{ReportError, Reporter, Summary};
use crate::checker::{Outcome, TrialReport};
use crate::stats::Decision;

/// Writes `summary.md` at the end of the run.
pub struct MarkdownReporter {
    /// Output path.
    pub path: PathBuf,
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:.1} ms"))
}

/// The Markdown summary of a run.
pub fn render(s: &Summary, trials: &[TrialReport]) -> String {
    let v = &s.details;
    let icon = match s.verdict {
        Decision::Pass => "✅",
        Decision::Fail => "❌",
        Decision::Inconclusive => "⚠️",
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## {icon} rebound · `{}` · {}\n",
        s.scenario,
        s.verdict.word()
    );
    let sr = &v.success_rate;
    let _ = writeln!(o, "| objective | result | decision |\n|---|---|---|");
    let _ = writeln!(
        o,
        "| success rate ≥ {:.2}% ({:.0}% confidence) | {}/{} = {:.1}%, bounds [{:.1}%, {:.1}%] | {} |",
        sr.target * 100.0,
        s.confidence * 100.0,
        sr.successes,
        sr.trials,
        sr.observed * 100.0,
        sr.lower * 100.0,
        sr.upper * 100.0,
        sr.decision.word()
    );
    for l in &v.limits {
        let _ = writeln!(
            o,
            "| {} recovery ≤ {:.0} ms | estimate {}, upper bound {} | {} |",
            l.quantile.label(),
            l.limit_ms,
            ms(l.estimate_ms.filter(|x| x.is_finite())),
            ms(l.upper_ms.filter(|x| x.is_finite())),
            l.decision.word()
        );
    }
    let r = &v.recovery;
    let _ = writeln!(
        o,
        "\nRecovery over {} trials ({} pass, {} fail, {} unknown): p50 {} · p95 {} · p99 {} · max {}{}.",
        v.trials,
        v.passed,
        v.failed,
        v.unknown,
        ms(r.p50_ms),
        ms(r.p95_ms),
        ms(r.p99_ms),
        ms(r.max_ms),
        if r.not_recovered > 0 { format!(" · {} never recovered", r.not_recovered) } else { String::new() }
    );
    if v.lost_acked_writes > 0 {
        let _ = writeln!(
            o,
            "\n**{} acknowledged write(s) lost** in {} trial(s).",
            v.lost_acked_writes, v.trials_with_loss
        );
    }
    if let Some(m) = sr.more_successes_to_pass {
        let _ = writeln!(
            o,
            "\n{m} more consecutive successful trials would prove the success-rate target."
        );
    }
    if let Some(why) = &s.stopped_early {
        let _ = writeln!(o, "\nStopped early: {why}");
    }
    let bad: Vec<&TrialReport> = trials
        .iter()
        .filter(|t| t.outcome != Outcome::Pass)
        .take(10)
        .collect();
    if !bad.is_empty() {
        let _ = writeln!(
            o,
            "\n| trial | fault | outcome | reason |\n|---|---|---|---|"
        );
        for t in bad {
            let _ = writeln!(
                o,
                "| {} | {} → {} | {} | {} |",
                t.trial,
                t.fault,
                t.target,
                t.outcome.word(),
                t.reason.replace('|', "\\|")
            );
        }
    }
    let _ = writeln!(
        o,
        "\nExit code {} · run `{}` · seed {}",
        s.exit_code, s.run_id, s.seed
    );
    o
}

impl Reporter for MarkdownReporter {
    fn run_finished(
        &mut self,
        summary: &Summary,
        trials: &[TrialReport],
    ) -> Result<(), ReportError> {
        std::fs::write(&self.path, render(summary, trials)).map_err(|source| ReportError {
            path: self.path.clone(),
            source,
        })
    }
}
