//! `report.html`: one self-contained file (charts inline as SVG, styles inline, no
//! external assets) that a person can open from a CI artifact; the charts are also
//! written to `charts/*.svg`.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::charts::{self, Chart};
use super::format::ms;
use super::{view, ReportError, Reporter, Summary};
use crate::checker::TrialResult;
use crate::stats::Decision;

/// Writes `report.html` and `charts/*.svg` at the end of the run.
pub struct HtmlReporter {
    /// The run directory.
    pub run_dir: PathBuf,
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report page.
pub fn render(s: &Summary, trials: &[TrialResult], charts: &[Chart]) -> String {
    let v = &s.verdict;
    let color = match s.decision {
        Decision::Pass => "#1a7f37",
        Decision::Fail => "#cf222e",
        Decision::Inconclusive => "#9a6700",
    };
    let meaning = view::meaning(s.decision);
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rebound · {name}</title>\n<style>\
body{{font-family:sans-serif;margin:24px;max-width:1000px;color:#1f2328}}h1{{font-size:22px}}\
.badge{{display:inline-block;padding:4px 10px;border-radius:6px;color:#fff;background:{color};font-weight:bold}}\
table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left;font-size:14px}}\
th{{background:#f6f8fa}}.fail{{color:#cf222e}}.unknown{{color:#9a6700}}figure{{margin:16px 0}}figcaption{{font-weight:bold;margin-bottom:4px}}\
</style></head><body>\n<h1>rebound · {name}</h1>\n<p><span class=\"badge\">{word}</span> {meaning} · exit {code} · run <code>{run}</code> · seed {seed}</p>\n",
        name = escape(&s.scenario),
        word = s.decision.word(),
        code = s.exit_code,
        run = escape(&s.run_id),
        seed = s.seed,
    );
    let sr = &v.success_rate;
    let _ = write!(
        o,
        "<table><tr><th>objective</th><th>result</th><th>decision</th></tr>\n<tr><td>{}</td><td>{}{}</td><td>{}</td></tr>\n",
        view::success_objective(s),
        view::success_result(s),
        view::more_to_pass(s)
            .map(|m| format!("; {m}"))
            .into_iter()
            .chain(view::evidence(s).map(|e| format!(". {}", escape(&e))))
            .collect::<String>(),
        sr.decision.word()
    );
    for l in &v.limits {
        let _ = writeln!(
            o,
            "<tr><td>{} recovery ≤ {:.0} ms</td><td>estimate {}, bounds [{}, {}]</td><td>{}</td></tr>",
            l.quantile.label(),
            l.limit_ms,
            ms(l.estimate_ms),
            ms(l.lower_ms),
            ms(l.upper_ms),
            l.decision.word()
        );
    }
    let _ = write!(
        o,
        "</table>\n<p>{}. Recovery {}.{}</p>\n",
        view::counts(s),
        view::recovery(s),
        view::data_loss(s)
            .map(|l| format!(" <strong class=\"fail\">{l}.</strong>"))
            .unwrap_or_default()
    );
    let rows = view::per_fault(s);
    if !rows.is_empty() {
        o.push_str("<h2>Per fault</h2>\n<table><tr><th>fault</th><th>trials</th><th>recovery</th><th>success rate</th><th>decision</th></tr>\n");
        for r in &rows {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.label),
                escape(&r.counts),
                escape(&r.recovery),
                escape(&r.success),
                r.decision.word()
            );
        }
        o.push_str("</table>\n");
        if let Some(note) = view::per_fault_note(s) {
            let _ = writeln!(o, "<p class=\"note\">Per fault: {}.</p>", escape(note));
        }
    }
    for p in s.probes.iter().filter(|p| p.is_notable()) {
        let _ = writeln!(o, "<p class=\"note\">Probe {}.</p>", escape(&p.describe()));
    }
    if let Some(oc) = view::operating(s) {
        let _ = writeln!(o, "<p class=\"note\">This design: {}.</p>", escape(&oc));
    }
    for c in charts {
        let _ = write!(
            o,
            "<figure><figcaption>{}</figcaption>\n{}\n</figure>\n",
            escape(c.title),
            c.svg
        );
    }
    o.push_str("<h2>Trials</h2>\n<table><tr><th>trial</th><th>fault</th><th>outcome</th><th>recovery</th><th>lower bound</th><th>downtime</th><th>ops ok / failed / info</th><th>lost</th><th>reason</th></tr>\n");
    for t in trials {
        let c = &t.clients;
        let _ = writeln!(
            o,
            "<tr class=\"{}\"><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {} / {}</td><td>{}</td><td>{}</td></tr>",
            t.outcome.word(),
            t.trial,
            escape(&t.fault),
            escape(&t.target),
            t.outcome.word(),
            ms(t.recovery_ms),
            ms(t.recovery_lower_ms),
            ms(t.downtime_ms),
            c.ops_ok,
            c.ops_failed,
            c.ops_info,
            c.lost_acked_writes,
            escape(&t.reason)
        );
    }
    o.push_str("</table>\n</body></html>\n");
    o
}

impl Reporter for HtmlReporter {
    fn run_finished(
        &mut self,
        summary: &Summary,
        trials: &[TrialResult],
    ) -> Result<(), ReportError> {
        let charts = charts::render_all(
            trials,
            summary.recover_within_ms,
            summary.target_success_rate,
            summary.confidence,
        );
        let dir = self.run_dir.join(crate::run_dir::CHARTS);
        let err = |path: PathBuf| move |source| ReportError { path, source };
        std::fs::create_dir_all(&dir).map_err(err(dir.clone()))?;
        for c in &charts {
            let path = dir.join(format!("{}.svg", c.name));
            std::fs::write(&path, &c.svg).map_err(err(path.clone()))?;
        }
        charts::write_pngs(
            &dir,
            trials,
            summary.recover_within_ms,
            summary.target_success_rate,
            summary.confidence,
        )
        .map_err(|e| ReportError {
            path: dir.clone(),
            source: std::io::Error::other(e),
        })?;
        let path = self.run_dir.join(crate::run_dir::REPORT_HTML);
        std::fs::write(&path, render(summary, trials, &charts)).map_err(err(path.clone()))
    }
}
