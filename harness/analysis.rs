//! From records to verdict: the one path both a live run and `rebound check RUN_DIR`
//! take, so that re-analysing a run offline gives exactly the verdict it printed.

use std::path::Path;

use crate::checker::{self, CheckConfig, TrialResult};
use crate::exit::ExitStatus;
use crate::history::{self, Event, HistoryError, Record};
use crate::report::{ProbePacing, Summary};
use crate::scenario::{self, Plan, ScenarioError};
use crate::stats::{self, Decision};
use crate::verdict;

/// Facts about a run that are not per trial.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// Run id.
    pub run_id: String,
    /// The rebound version that ran it (empty for older histories).
    pub rebound: String,
    /// Schedule seed.
    pub seed: u64,
    /// Trials asked for.
    pub trials_planned: u32,
    /// Ctrl-C ended the run.
    pub interrupted: bool,
    /// Why the run stopped before its planned trials.
    pub stopped_early: Option<String>,
    /// Sequential mode (`--until-decided`).
    pub sequential: bool,
    /// The ledger's evidence the run started from (`--evidence`).
    pub evidence: Option<crate::evidence::Prior>,
}

impl RunFacts {
    /// Reads run-level facts from the `run-start` and `run-end` records.
    pub fn from_records(records: &[Record]) -> Self {
        let mut facts = RunFacts::default();
        for r in records {
            facts.observe(r);
        }
        facts
    }

    /// Takes in one record of the history (in order).
    pub fn observe(&mut self, r: &Record) {
        let facts = self;
        {
            match &r.event {
                Event::RunStart {
                    run_id,
                    rebound,
                    seed,
                    trials,
                    sequential,
                    ..
                } => {
                    facts.run_id.clone_from(run_id);
                    facts.rebound.clone_from(rebound);
                    facts.seed = *seed;
                    facts.trials_planned = *trials;
                    facts.sequential = *sequential;
                }
                Event::RunEnd {
                    interrupted,
                    stopped_early,
                } => {
                    facts.interrupted = *interrupted;
                    facts.stopped_early.clone_from(stopped_early);
                }
                _ => {}
            }
        }
    }
}

/// The checker configuration a plan implies.
pub fn check_config(plan: &Plan) -> CheckConfig {
    CheckConfig {
        probes: plan.probes.iter().map(|p| p.name.clone()).collect(),
        stable_for: plan.run.stable_for,
        recover_within_ms: plan.slo.recover_within.as_secs_f64() * 1e3,
        write_workloads: plan
            .workloads
            .iter()
            .filter(|w| w.client.writes())
            .map(|w| w.name.clone())
            .collect(),
        max_lost_writes: plan.slo.max_lost_writes,
    }
}

/// Exit status of a run: interrupted beats everything; a run that had to stop
/// because the stack could not be healed exits 4 unless its trials already prove
/// the SLO violated.
pub fn exit_status(decision: Decision, facts: &RunFacts) -> ExitStatus {
    if facts.interrupted {
        ExitStatus::Interrupted
    } else if facts.stopped_early.is_some() && decision != Decision::Fail {
        ExitStatus::StackFailure
    } else {
        decision.exit_status()
    }
}

/// Decides the verdict over finished trials and builds the summary.
pub fn summarize(plan: &Plan, facts: &RunFacts, trials: &[TrialResult], run_dir: &Path) -> Summary {
    let mut details = verdict::decide_with(trials, &plan.slo, facts.sequential);
    let evidence = facts.evidence.as_ref().map(|prior| {
        // The e-values of the ledger's runs and this one multiply: decide the
        // success rate on the pooled counts, anytime-valid.
        let (k, n) = (
            prior.successes + details.passed,
            prior.trials + details.trials,
        );
        details = verdict::with_pooled_rate(
            details.clone(),
            stats::decide_rate_sequential(k, n, plan.slo.success_rate, plan.slo.confidence),
        );
        crate::report::EvidenceView {
            file: prior.file.clone(),
            runs: prior.runs + 1,
            successes: k,
            trials: n,
            ignored: prior.ignored,
        }
    });
    let planned: Vec<(String, String)> = plan
        .faults
        .iter()
        .map(|f| (f.kind.name().to_string(), f.target.clone()))
        .collect();
    let per_fault = verdict::per_fault(trials, &plan.slo, facts.sequential, &planned);
    if plan.slo.per_fault {
        details = verdict::worst_of_faults(details, &per_fault);
    }
    let exit = exit_status(details.decision, facts);
    Summary {
        scenario: plan.name.clone(),
        run_id: facts.run_id.clone(),
        seed: facts.seed,
        trials_planned: facts.trials_planned,
        decision: details.decision,
        exit_code: exit.code(),
        interrupted: facts.interrupted,
        stopped_early: facts.stopped_early.clone(),
        sequential: facts.sequential,
        target_success_rate: plan.slo.success_rate,
        confidence: plan.slo.confidence,
        recover_within_ms: plan.slo.recover_within.as_secs_f64() * 1e3,
        verdict: details,
        probes: probe_pacing(plan, trials),
        operating: stats::oc_failure_rates(plan.slo.success_rate)
            .iter()
            .map(|&theta| crate::report::OcPoint {
                failure_rate: theta,
                pass_probability: stats::pass_probability(
                    u64::from(facts.trials_planned),
                    plan.slo.success_rate,
                    plan.slo.confidence,
                    theta,
                    facts.sequential,
                ),
            })
            .collect(),
        evidence,
        per_fault,
        decided_per_fault: plan.slo.per_fault,
        run_dir: run_dir.to_path_buf(),
    }
}

/// Each probe's period next to its attempts' real pacing over `trials`.
pub fn probe_pacing(plan: &Plan, trials: &[TrialResult]) -> Vec<ProbePacing> {
    plan.probes
        .iter()
        .map(|p| {
            let of = |f: fn(&checker::Pacing) -> Option<f64>| {
                let mut ns: Vec<u64> = trials
                    .iter()
                    .flat_map(|t| t.pacing.iter().filter(|x| x.probe == p.name))
                    .filter_map(f)
                    .map(|ms| (ms * 1e6).round() as u64)
                    .collect();
                checker::median_ms(&mut ns)
            };
            let gap = trials
                .iter()
                .flat_map(|t| {
                    t.pacing
                        .iter()
                        .filter(|x| x.probe == p.name)
                        .filter_map(move |x| Some((x.gap_max_ms?, t.trial)))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            ProbePacing {
                name: p.name.clone(),
                period_ms: p.period.as_secs_f64() * 1e3,
                effective_period_ms: of(|x| x.interval_p50_ms),
                latency_p50_ms: of(|x| x.latency_p50_ms),
                gap_max_ms: gap.map(|g| g.0),
                gap_trial: gap.map(|g| g.1),
            }
        })
        .collect()
}

/// Why a run directory could not be re-analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The directory is not a run directory.
    #[error(transparent)]
    RunDir(#[from] crate::run_dir::RunDirError),
    /// The scenario copy is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The history cannot be read.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The run's record of its evidence cannot be read.
    #[error(transparent)]
    Evidence(#[from] crate::evidence::EvidenceError),
}

/// Re-checks every finished trial of a run directory from `scenario.toml` and
/// `history.jsonl` alone (no stack needed).
pub fn reanalyse(run_dir: &Path) -> Result<(Summary, Vec<TrialResult>), AnalysisError> {
    let rd = crate::run_dir::RunDir::open(run_dir)?;
    let plan = scenario::load_recorded(&rd.scenario())?;
    let cfg = check_config(&plan);
    // Streamed: a trial's records go into a bounded capture, as during the run, so
    // a re-check of hour-long trials needs no more memory than the run did and
    // computes the same figures.
    let mut facts = RunFacts::default();
    let mut trials: Vec<TrialResult> = Vec::new();
    // The trial being read: its number, capture, and whether it finished.
    let mut open: Option<(u32, checker::Capture, bool)> = None;
    let close = |open: Option<(u32, checker::Capture, bool)>, trials: &mut Vec<TrialResult>| {
        if let Some((n, capture, true)) = open {
            trials.push(checker::check_capture(n, &capture, &cfg));
        }
    };
    history::read(&rd.history(), |r| {
        facts.observe(&r);
        let Some(t) = r.trial else { return };
        if open.as_ref().is_none_or(|(n, _, _)| *n != t) {
            close(open.take(), &mut trials);
            open = Some((t, checker::Capture::new(&cfg.probes, cfg.stable_for), false));
        }
        if let Some((_, capture, finished)) = open.as_mut() {
            capture.push(&r);
            *finished |= matches!(r.event, Event::TrialEnd { interrupted: false });
        }
    })?;
    close(open.take(), &mut trials);
    facts.evidence = crate::evidence::load_prior(run_dir)?;
    let summary = summarize(&plan, &facts, &trials, run_dir);
    Ok((summary, trials))
}
