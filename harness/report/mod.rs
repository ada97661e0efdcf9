//! Reporters: one [`Reporter`] trait, one implementation per output —
//! `trials.csv` (a row flushed per finished trial), `summary.json`, console text.
//!
//! Reporters only format; every figure comes from the checker and the verdict.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use format::{ms, ms_cell, pct, time_cell};

pub mod charts;
pub mod format;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod view;

pub use html::HtmlReporter;
pub use junit::JunitReporter;
pub use markdown::MarkdownReporter;

use crate::checker::TrialResult;
use crate::stats::Decision;
use crate::verdict::Verdict;

/// Errors writing a report.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}", path = path.display())]
pub struct ReportError {
    /// The output file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Everything known about a run at its end; `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Run id.
    pub run_id: String,
    /// Schedule seed.
    pub seed: u64,
    /// Trials the run was asked for.
    pub trials_planned: u32,
    /// Overall decision: `pass`, `fail`, `inconclusive` (`verdict` in summary.json).
    #[serde(rename = "verdict")]
    pub decision: Decision,
    /// The process exit code this run ends with.
    pub exit_code: u8,
    /// Ctrl-C ended the run.
    pub interrupted: bool,
    /// Why the run stopped before its planned trials, if it did.
    pub stopped_early: Option<String>,
    /// Sequential mode: the run stopped once the success rate was decided.
    #[serde(default)]
    pub sequential: bool,
    /// Required success rate.
    pub target_success_rate: f64,
    /// Confidence of the decisions.
    pub confidence: f64,
    /// Per-trial recovery deadline.
    pub recover_within_ms: f64,
    /// Statistics and decisions per objective (`details` in summary.json).
    #[serde(rename = "details")]
    pub verdict: Verdict,
    /// How each probe really paced its attempts over the run.
    #[serde(default)]
    pub probes: Vec<ProbePacing>,
    /// The design's operating characteristic: how often a run of this many trials
    /// (fixed or sequential) passes a stack with a given true failure rate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operating: Vec<OcPoint>,
    /// The evidence ledger the success rate was decided on (`--evidence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceView>,
    /// Each fault's (kind and target) own figures and decisions, when the run had
    /// more than one (`per_fault` in summary.json).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_fault: Vec<crate::verdict::FaultVerdict>,
    /// `[slo] per-fault = true`: the verdict is the worst of the faults' decisions.
    #[serde(default)]
    pub decided_per_fault: bool,
    /// Where the run directory is (printed, not stored: a run directory can move).
    #[serde(skip)]
    pub run_dir: PathBuf,
}

/// One point of an operating characteristic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcPoint {
    /// True failure rate of the stack.
    pub failure_rate: f64,
    /// Chance that the design ends PASS.
    pub pass_probability: f64,
}

/// The pooled evidence of a ledger's runs of one scenario, this run included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceView {
    /// The ledger.
    pub file: PathBuf,
    /// Runs pooled (this one included).
    pub runs: u64,
    /// Their passed trials.
    pub successes: u64,
    /// Their trials.
    pub trials: u64,
    /// Ledger lines not counted: other scenarios or versions, runs counted already.
    pub ignored: u64,
}

/// A probe's configured period next to what its attempts really did over a run:
/// the recovery brackets are about `effective_period_ms + latency_p50_ms` wide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbePacing {
    /// Probe name.
    pub name: String,
    /// The configured period.
    pub period_ms: f64,
    /// Median time between attempt starts, over the run's trials (the median of the
    /// trials' medians).
    pub effective_period_ms: Option<f64>,
    /// Median latency of successful attempts, the same way.
    pub latency_p50_ms: Option<f64>,
    /// The largest time between two consecutive attempt starts in any trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_max_ms: Option<f64>,
    /// The trial in which that gap was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_trial: Option<u32>,
}

/// A gap between two attempt starts above this many periods is reported: a dead
/// spell that short could have gone unseen.
pub const GAP_WARN_PERIODS: f64 = 2.0;

impl ProbePacing {
    /// Attempts came noticeably slower than configured, each took longer than a
    /// period, or two attempts were more than [`GAP_WARN_PERIODS`] periods apart:
    /// the console and the report say so.
    pub fn is_notable(&self) -> bool {
        self.effective_period_ms
            .is_some_and(|e| e > self.period_ms * 1.5)
            || self.latency_p50_ms.is_some_and(|l| l > self.period_ms)
            || self.gap_is_notable()
    }

    /// Two attempts were more than [`GAP_WARN_PERIODS`] periods apart.
    pub fn gap_is_notable(&self) -> bool {
        self.gap_max_ms
            .is_some_and(|g| g > self.period_ms * GAP_WARN_PERIODS)
    }

    /// `exec-1: period 10 ms configured; attempts started every 31.0 ms (p50) and
    /// succeeded in 85.2 ms (p50): recovery brackets are about 116.2 ms wide`.
    pub fn describe(&self) -> String {
        let f = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1} ms"));
        let width = self
            .effective_period_ms
            .zip(self.latency_p50_ms)
            .map(|(e, l)| format!(": recovery brackets are about {:.1} ms wide", e + l))
            .unwrap_or_default();
        let gap = match (self.gap_max_ms, self.gap_trial) {
            (Some(g), Some(t)) if self.gap_is_notable() => format!(
                "; two attempts were {g:.1} ms apart in trial {t}, more than {GAP_WARN_PERIODS}× the period (a shorter outage could go unseen)"
            ),
            _ => String::new(),
        };
        format!(
            "{}: period {} ms configured; attempts started every {} (p50) and succeeded in {} (p50){width}{gap}",
            self.name,
            self.period_ms,
            f(self.effective_period_ms),
            f(self.latency_p50_ms)
        )
    }
}

/// Reporters that write a row as each trial ends (`trials.csv`, `services.csv`).
pub fn trial_reporters(run_dir: &Path) -> Result<Vec<Box<dyn Reporter + Send>>, ReportError> {
    Ok(vec![
        Box::new(CsvReporter::create(
            &run_dir.join(crate::run_dir::TRIALS_CSV),
        )?),
        Box::new(ServicesCsvReporter::create(
            &run_dir.join(crate::run_dir::SERVICES_CSV),
        )?),
    ])
}

/// Reporters that write once the run is decided (`summary.json`, `junit.xml`, `summary.md`).
pub fn final_reporters(run_dir: &Path) -> Vec<Box<dyn Reporter + Send>> {
    vec![
        Box::new(JsonReporter {
            path: run_dir.join(crate::run_dir::SUMMARY_JSON),
        }),
        Box::new(JunitReporter {
            path: run_dir.join(crate::run_dir::JUNIT),
        }),
        Box::new(MarkdownReporter {
            path: run_dir.join(crate::run_dir::SUMMARY_MD),
        }),
        Box::new(HtmlReporter {
            run_dir: run_dir.to_path_buf(),
        }),
    ]
}

/// Rewrites every file output of a run from its summary and trials (`rebound report`).
pub fn rewrite_all(
    run_dir: &Path,
    summary: &Summary,
    trials: &[TrialResult],
) -> Result<(), ReportError> {
    for mut r in trial_reporters(run_dir)?
        .into_iter()
        .chain(final_reporters(run_dir))
    {
        for t in trials {
            r.trial_finished(t)?;
        }
        r.run_finished(summary, trials)?;
    }
    Ok(())
}

/// One output of a run. Adding an output is adding one implementation.
pub trait Reporter {
    /// Called as each trial finishes (before the next starts).
    fn trial_finished(&mut self, _trial: &TrialResult) -> Result<(), ReportError> {
        Ok(())
    }
    /// Called once at the end with every finished trial.
    fn run_finished(
        &mut self,
        _summary: &Summary,
        _trials: &[TrialResult],
    ) -> Result<(), ReportError> {
        Ok(())
    }
}

/// One row of `trials.csv`; its field names are the columns (with units), so the
/// header and the cells cannot drift apart.
#[derive(Debug, Default, Serialize)]
pub struct TrialRow {
    trial: u32,
    outcome: &'static str,
    reason: String,
    fault: String,
    target: String,
    injected_at: String,
    recovered_at: String,
    recovery_ms: String,
    recovery_lower_ms: String,
    downtime_ms: String,
    probes_ok: u64,
    probes_failed: u64,
    probe_gap_ms: String,
    restarts: u64,
    ops_ok: u64,
    ops_failed: u64,
    ops_info: u64,
    client_error_window_ms: String,
    client_recovered_ms: String,
    lost_acked_writes: u64,
    unverifiable_writes: u64,
    latency_during_p50_ms: String,
    latency_during_p99_ms: String,
    latency_after_p50_ms: String,
    latency_after_p99_ms: String,
    lost_ids: String,
}

impl TrialRow {
    /// The row of one trial.
    pub fn of(t: &TrialResult) -> Self {
        let c = &t.clients;
        TrialRow {
            trial: t.trial,
            outcome: t.outcome.word(),
            reason: t.reason.clone(),
            fault: t.fault.clone(),
            target: t.target.clone(),
            injected_at: time_cell(t.injected_at),
            recovered_at: time_cell(t.recovered_at),
            recovery_ms: ms_cell(t.recovery_ms),
            recovery_lower_ms: ms_cell(t.recovery_lower_ms),
            downtime_ms: ms_cell(t.downtime_ms),
            probes_ok: t.probes_ok,
            probes_failed: t.probes_failed,
            probe_gap_ms: ms_cell(t.probe_gap_ms()),
            restarts: t.restarts,
            ops_ok: c.ops_ok,
            ops_failed: c.ops_failed,
            ops_info: c.ops_info,
            client_error_window_ms: ms_cell(c.client_error_window_ms),
            client_recovered_ms: ms_cell(c.client_recovered_ms),
            lost_acked_writes: c.lost_acked_writes,
            unverifiable_writes: c.unverifiable_writes,
            latency_during_p50_ms: ms_cell(c.latency_during_p50_ms),
            latency_during_p99_ms: ms_cell(c.latency_during_p99_ms),
            latency_after_p50_ms: ms_cell(c.latency_after_p50_ms),
            latency_after_p99_ms: ms_cell(c.latency_after_p99_ms),
            lost_ids: c.lost_ids.join(" "),
        }
    }

    /// The column names, in order (the header is written before the first trial
    /// ends, so that an interrupted run still has one).
    pub fn header() -> Vec<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        // Serialising into memory cannot fail; an empty header would show in tests.
        let _ = w.serialize(TrialRow::default());
        let bytes = w.into_inner().unwrap_or_default();
        csv::Reader::from_reader(bytes.as_slice())
            .headers()
            .map(|h| h.iter().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

/// Writes `trials.csv`, flushing each row as its trial ends.
pub struct CsvReporter {
    path: PathBuf,
    out: csv::Writer<File>,
}

impl CsvReporter {
    /// Creates the file and writes the header.
    pub fn create(path: &Path) -> Result<Self, ReportError> {
        let err = |source| ReportError {
            path: path.to_path_buf(),
            source,
        };
        let mut out = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(File::create(path).map_err(err)?);
        out.write_record(TrialRow::header())
            .map_err(|e| err(e.into()))?;
        out.flush().map_err(err)?;
        Ok(CsvReporter {
            path: path.to_path_buf(),
            out,
        })
    }
}

impl Reporter for CsvReporter {
    fn trial_finished(&mut self, trial: &TrialResult) -> Result<(), ReportError> {
        let err = |source| ReportError {
            path: self.path.clone(),
            source,
        };
        self.out
            .serialize(TrialRow::of(trial))
            .map_err(|e| err(e.into()))?;
        self.out.flush().map_err(err)
    }
}

/// Column names of `services.csv`: one row per service that did something in a trial.
pub const SERVICES_CSV_HEADER: [&str; 7] = [
    "trial",
    "service",
    "died_ms",
    "exit_code",
    "started_ms",
    "healthy_ms",
    "starts",
];

/// Writes `services.csv`, flushing each trial's rows as it ends.
pub struct ServicesCsvReporter {
    path: PathBuf,
    out: csv::Writer<File>,
}

impl ServicesCsvReporter {
    /// Creates the file and writes the header.
    pub fn create(path: &Path) -> Result<Self, ReportError> {
        let err = |source| ReportError {
            path: path.to_path_buf(),
            source,
        };
        let mut out = csv::Writer::from_writer(File::create(path).map_err(err)?);
        out.write_record(SERVICES_CSV_HEADER)
            .map_err(|e| err(e.into()))?;
        out.flush().map_err(err)?;
        Ok(ServicesCsvReporter {
            path: path.to_path_buf(),
            out,
        })
    }
}

impl Reporter for ServicesCsvReporter {
    fn trial_finished(&mut self, trial: &TrialResult) -> Result<(), ReportError> {
        let err = |source| ReportError {
            path: self.path.clone(),
            source,
        };
        for s in &trial.services {
            let row = [
                trial.trial.to_string(),
                s.service.clone(),
                ms_cell(s.died_ms),
                s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                ms_cell(s.started_ms),
                ms_cell(s.healthy_ms),
                s.starts.to_string(),
            ];
            self.out.write_record(row).map_err(|e| err(e.into()))?;
        }
        self.out.flush().map_err(err)
    }
}

/// Writes `summary.json` at the end of the run.
pub struct JsonReporter {
    /// Output path.
    pub path: PathBuf,
}

impl Reporter for JsonReporter {
    fn run_finished(
        &mut self,
        summary: &Summary,
        _trials: &[TrialResult],
    ) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(summary).map_err(|e| ReportError {
            path: self.path.clone(),
            source: e.into(),
        })?;
        std::fs::write(&self.path, text + "\n").map_err(|source| ReportError {
            path: self.path.clone(),
            source,
        })
    }
}

/// Prints the human summary.
pub struct ConsoleReporter<W: Write> {
    /// Where to print.
    pub out: W,
}

impl<W: Write> Reporter for ConsoleReporter<W> {
    fn run_finished(
        &mut self,
        summary: &Summary,
        trials: &[TrialResult],
    ) -> Result<(), ReportError> {
        self.out
            .write_all(render_console(summary, trials).as_bytes())
            .map_err(|source| ReportError {
                path: PathBuf::from("<stdout>"),
                source,
            })
    }
}

/// The console summary: a trial table (up to 50 rows), the figures and the verdict.
pub fn render_console(s: &Summary, trials: &[TrialResult]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "\nrebound · {} · run {}", s.scenario, s.run_id);
    if !trials.is_empty() && trials.len() <= 50 {
        console_table(&mut o, trials);
    }
    console_figures(&mut o, s);
    console_footer(&mut o, s);
    o
}

fn console_table(o: &mut String, trials: &[TrialResult]) {
    let _ = writeln!(
        o,
        "  {:>5}  {:<14} {:<8} {:>12} {:>12} {:>12}  reason",
        "trial", "fault", "outcome", "recovery", "lower", "downtime"
    );
    for t in trials {
        let _ = writeln!(
            o,
            "  {:>5}  {:<14} {:<8} {:>12} {:>12} {:>12}  {}",
            t.trial,
            t.fault,
            t.outcome.word(),
            ms(t.recovery_ms),
            ms(t.recovery_lower_ms),
            ms(t.downtime_ms),
            t.reason
        );
    }
}

fn console_figures(o: &mut String, s: &Summary) {
    let v = &s.verdict;
    let _ = writeln!(
        o,
        "  trials      {} of {} planned: {} pass, {} fail, {} unknown",
        v.trials, s.trials_planned, v.passed, v.failed, v.unknown
    );
    let _ = writeln!(o, "  recovery    {}", view::recovery(s));
    let rows = view::per_fault(s);
    let width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0);
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            o,
            "  {:<11} {:<width$}  {} → {}",
            if i == 0 { "per fault" } else { "" },
            r.label,
            r.short,
            r.decision.word()
        );
    }
    if let Some(note) = view::per_fault_note(s) {
        let _ = writeln!(o, "              {note}");
    }
    for p in s.probes.iter().filter(|p| p.is_notable()) {
        let _ = writeln!(o, "  probe       {}", p.describe());
    }
    let sr = &v.success_rate;
    let _ = writeln!(
        o,
        "  success     {}/{} ({}) · {:.0}% bounds [{}, {}] vs target {} → {}",
        sr.successes,
        sr.trials,
        pct(sr.observed),
        s.confidence * 100.0,
        pct(sr.lower),
        pct(sr.upper),
        pct(sr.target),
        sr.decision.word()
    );
    if let Some(m) = view::more_to_pass(s) {
        let _ = writeln!(o, "              {m}");
    }
    for l in &v.limits {
        let _ = writeln!(
            o,
            "  {:<4} ≤ {:.0} ms  estimate {} · {:.0}% bounds [{}, {}] → {}",
            l.quantile.label(),
            l.limit_ms,
            ms(l.estimate_ms),
            s.confidence * 100.0,
            ms(l.lower_ms),
            l.upper_ms
                .filter(|x| x.is_finite())
                .map_or("unbounded: too few trials".into(), |x| ms(Some(x))),
            l.decision.word()
        );
    }
    if let Some(lost) = view::data_loss(s) {
        let _ = writeln!(o, "  data        {lost} — ids in trials.csv (lost_ids)");
    }
}

fn console_footer(o: &mut String, s: &Summary) {
    let v = &s.verdict;
    if let Some(oc) = view::operating(s) {
        let _ = writeln!(o, "  design      {oc}");
    }
    if let Some(e) = &s.evidence {
        let ignored = if e.ignored > 0 {
            format!(
                "; {} line(s) not counted (other scenarios or versions, or trials counted already)",
                e.ignored
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "  evidence    {} run(s) in {}: {}/{} trials passed — the success rate is decided on all of them (e-values multiply){ignored}",
            e.runs,
            e.file.display(),
            e.successes,
            e.trials
        );
    }
    if s.sequential && !s.interrupted && s.stopped_early.is_none() {
        let saved = u64::from(s.trials_planned).saturating_sub(v.trials);
        let _ = writeln!(
            o,
            "  sequential  decided after {} of at most {} trials ({saved} saved; anytime-valid e-values, valid at every look)",
            v.trials, s.trials_planned
        );
    }
    if let Some(why) = &s.stopped_early {
        let _ = writeln!(o, "  stopped     {why}");
    }
    if s.interrupted {
        let _ = writeln!(
            o,
            "  interrupted finished trials are kept; the verdict covers them only"
        );
    }
    let _ = writeln!(
        o,
        "  verdict     {} — {} (exit {})",
        s.decision.word(),
        view::meaning(s.decision),
        s.exit_code
    );
    let _ = writeln!(o, "  run dir     {}", s.run_dir.display());
}

#[cfg(test)]
mod tests;
