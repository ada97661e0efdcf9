//! `summary.md`: the verdict and its figures in a few lines of Markdown, sized for
//! a CI job summary (e.g. appended to `$GITHUB_STEP_SUMMARY`).

use std::fmt::Write as _;
use std::path::PathBuf;

use super::format::ms;
use super::{view, ReportError, Reporter, Summary};
use crate::checker::{Outcome, TrialResult};
use crate::stats::Decision;

/// Writes `summary.md` at the end of the run.
pub struct MarkdownReporter {
    /// Output path.
    pub path: PathBuf,
}

/// The Markdown summary of a run.
pub fn render(s: &Summary, trials: &[TrialResult]) -> String {
    let v = &s.verdict;
    let icon = match s.decision {
        Decision::Pass => "✅",
        Decision::Fail => "❌",
        Decision::Inconclusive => "⚠️",
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## {icon} rebound · `{}` · {}\n",
        s.scenario,
        s.decision.word()
    );
    let sr = &v.success_rate;
    let _ = writeln!(o, "| objective | result | decision |\n|---|---|---|");
    let _ = writeln!(
        o,
        "| {} | {} | {} |",
        view::success_objective(s),
        view::success_result(s),
        sr.decision.word()
    );
    for l in &v.limits {
        let _ = writeln!(
            o,
            "| {} recovery ≤ {:.0} ms | estimate {}, upper bound {} | {} |",
            l.quantile.label(),
            l.limit_ms,
            ms(l.estimate_ms),
            ms(l.upper_ms),
            l.decision.word()
        );
    }
    let _ = writeln!(o, "\n{}. Recovery {}.", view::counts(s), view::recovery(s));
    let rows = view::per_fault(s);
    if !rows.is_empty() {
        let _ = writeln!(
            o,
            "\n| fault | trials | recovery | success rate | decision |\n|---|---|---|---|---|"
        );
        for r in &rows {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                r.label.replace('|', "\\|"),
                r.counts,
                r.recovery,
                r.success,
                r.decision.word()
            );
        }
        if let Some(note) = view::per_fault_note(s) {
            let _ = writeln!(o, "\nPer fault: {note}.");
        }
    }
    for p in s.probes.iter().filter(|p| p.is_notable()) {
        let _ = writeln!(o, "\nProbe {}.", p.describe());
    }
    if let Some(lost) = view::data_loss(s) {
        let _ = writeln!(o, "\n**{lost}**.");
    }
    if let Some(oc) = view::operating(s) {
        let _ = writeln!(o, "\nThis design: {oc}.");
    }
    if let Some(e) = view::evidence(s) {
        let _ = writeln!(o, "\n{e}.");
    }
    if let Some(m) = view::more_to_pass(s) {
        let _ = writeln!(o, "\n{m}.");
    }
    if let Some(why) = &s.stopped_early {
        let _ = writeln!(o, "\nStopped early: {why}");
    }
    let bad: Vec<&TrialResult> = trials
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
        trials: &[TrialResult],
    ) -> Result<(), ReportError> {
        std::fs::write(&self.path, render(summary, trials)).map_err(|source| ReportError {
            path: self.path.clone(),
            source,
        })
    }
}
