//! Merging runs of one scenario (e.g. shards run on several CI machines with
//! `--shard i/n`) into one run directory: the histories are concatenated with
//! trials renumbered and the clocks offset, then everything is re-checked and
//! re-rendered from the merged history, so `check` and `report` work on it too.

use std::path::{Path, PathBuf};

use crate::analysis::{self, AnalysisError, RunFacts};
use crate::checker::TrialResult;
use crate::history::{self, Event, History, Record};
use crate::report::{self, ReportError, Summary};
use crate::run_dir::{RunDir, RunDirError};
use crate::scenario;

/// Why runs could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Fewer than two runs were given.
    #[error("merge needs at least two run directories")]
    TooFew,
    /// A run belongs to another scenario.
    #[error("{dir} is a run of `{found}`, not of `{expected}`", dir = dir.display())]
    OtherScenario {
        /// The run directory.
        dir: PathBuf,
        /// Its scenario.
        found: String,
        /// The first run's scenario.
        expected: String,
    },
    /// A run was made from another version of the scenario's text.
    #[error(
        "{dir} ran another version of scenario `{name}` (its scenario.toml differs from {first}'s); merge only runs of the same text",
        dir = dir.display(),
        first = first.display()
    )]
    OtherVersion {
        /// The run directory.
        dir: PathBuf,
        /// The first run directory.
        first: PathBuf,
        /// The scenario.
        name: String,
    },
    /// A run was made by another rebound version.
    #[error(
        "{dir} was run by rebound {found}, {first} by rebound {expected}; merge only runs of one rebound version",
        dir = dir.display(),
        first = first.display()
    )]
    OtherRebound {
        /// The run directory.
        dir: PathBuf,
        /// Its rebound version.
        found: String,
        /// The first run directory.
        first: PathBuf,
        /// The first run's rebound version.
        expected: String,
    },
    /// `--evidence` with a scenario decided per fault.
    #[error("{}", crate::runner::PER_FAULT_EVIDENCE)]
    PerFaultEvidence,
    /// The evidence ledger could not be read or written.
    #[error(transparent)]
    Evidence(#[from] crate::evidence::EvidenceError),
    /// The output directory cannot hold the merged run.
    #[error(transparent)]
    Out(#[from] RunDirError),
    /// A run could not be read.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// Rendering the reports failed.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// A version for a message (histories before versions were kept have none).
fn shown_version(v: &str) -> String {
    if v.is_empty() {
        "(unrecorded, before 0.1.0)".into()
    } else {
        v.to_string()
    }
}

/// One input run.
struct Run {
    dir: PathBuf,
    plan: scenario::Plan,
    records: Vec<Record>,
    facts: RunFacts,
}

fn load(dir: &Path) -> Result<Run, MergeError> {
    let rd = RunDir::open(dir).map_err(AnalysisError::from)?;
    let plan = scenario::load_recorded(&rd.scenario()).map_err(AnalysisError::from)?;
    let records = history::load(&rd.history()).map_err(AnalysisError::from)?;
    let facts = RunFacts::from_records(&records);
    Ok(Run {
        dir: dir.to_path_buf(),
        plan,
        records,
        facts,
    })
}

/// Merges `dirs` into `out` and returns the merged verdict. With an evidence
/// ledger (`merge --evidence FILE`), the success rate is decided on the ledger's
/// earlier runs plus the merged trials (the shards' own lines, if they wrote any,
/// are left out), and the merged run is added to the ledger with its shards as
/// its parts, so no trial is ever counted twice.
pub fn merge(
    dirs: &[PathBuf],
    out: &Path,
    evidence: Option<&Path>,
) -> Result<(Summary, Vec<TrialResult>), MergeError> {
    if dirs.len() < 2 {
        return Err(MergeError::TooFew);
    }
    merge_runs(dirs, out, evidence)
}

/// [`merge`] of any number of runs, one included (`rebound swarm run --shards 1`).
pub fn merge_runs(
    dirs: &[PathBuf],
    out: &Path,
    evidence: Option<&Path>,
) -> Result<(Summary, Vec<TrialResult>), MergeError> {
    if dirs.is_empty() {
        return Err(MergeError::TooFew);
    }
    let runs = dirs
        .iter()
        .map(|d| load(d))
        .collect::<Result<Vec<Run>, _>>()?;
    let expected = runs[0].plan.name.clone();
    if let Some(other) = runs.iter().find(|r| r.plan.name != expected) {
        return Err(MergeError::OtherScenario {
            dir: other.dir.clone(),
            found: other.plan.name.clone(),
            expected,
        });
    }
    let hash = crate::evidence::scenario_hash(&runs[0].plan.source_text);
    if let Some(other) = runs
        .iter()
        .find(|r| crate::evidence::scenario_hash(&r.plan.source_text) != hash)
    {
        return Err(MergeError::OtherVersion {
            dir: other.dir.clone(),
            first: runs[0].dir.clone(),
            name: expected,
        });
    }
    let version = &runs[0].facts.rebound;
    if let Some(other) = runs.iter().find(|r| &r.facts.rebound != version) {
        return Err(MergeError::OtherRebound {
            dir: other.dir.clone(),
            found: shown_version(&other.facts.rebound),
            first: runs[0].dir.clone(),
            expected: shown_version(version),
        });
    }
    if evidence.is_some() && runs[0].plan.slo.per_fault {
        return Err(MergeError::PerFaultEvidence);
    }
    // The leaves: a merged run among the inputs stands for the runs it was made of.
    let parts: Vec<String> = runs
        .iter()
        .flat_map(|r| crate::evidence::leaves(&r.facts.run_id))
        .collect();
    let prior = evidence
        .map(|file| crate::evidence::read(file, &expected, &hash, &parts))
        .transpose()?;
    let rd = RunDir::create(out, &runs[0].plan.source_text)?;
    rd.write_ports(&runs[0].plan.ports)?;
    if let Some(p) = &prior {
        crate::evidence::save_prior(rd.path(), p)?;
    }
    // The one history writer: the records keep their times, get new sequence numbers.
    let history = History::create(&rd.history()).map_err(AnalysisError::from)?;
    for r in merged_records(&runs) {
        history.replay(r);
    }
    if let Some(e) = history.take_write_error() {
        return Err(AnalysisError::from(e).into());
    }
    drop(history);
    let (summary, trials) = analysis::reanalyse(out)?;
    if let Some(file) = evidence {
        crate::evidence::append(
            file,
            &crate::evidence::Entry {
                scenario: expected,
                hash,
                run_id: summary.run_id.clone(),
                successes: summary.verdict.passed,
                trials: summary.verdict.trials,
                parts,
            },
        )?;
    }
    report::rewrite_all(out, &summary, &trials)?;
    Ok((summary, trials))
}

/// The merged history: one `run-start`, every finished trial of every run in order
/// (renumbered, clocks offset so they follow each other), one `run-end`.
fn merged_records(runs: &[Run]) -> Vec<Record> {
    let merged_id = format!(
        "merged-{}",
        runs.iter()
            .map(|r| r.facts.run_id.as_str())
            .collect::<Vec<_>>()
            .join("+")
    );
    let first_time = runs[0].records.first().map(|r| r.time).unwrap_or_default();
    let mut out = vec![Record {
        seq: 0,
        time: first_time,
        elapsed_ns: 0,
        trial: None,
        event: Event::RunStart {
            format: history::FORMAT_VERSION,
            scenario: runs[0].plan.name.clone(),
            run_id: merged_id,
            rebound: runs[0].facts.rebound.clone(),
            seed: runs[0].facts.seed,
            trials: runs.iter().map(|r| r.facts.trials_planned).sum(),
            sequential: false,
        },
    }];
    let (mut next_trial, mut clock_offset) = (0u32, 0u64);
    let mut reasons = Vec::new();
    for run in runs {
        let finished: Vec<u32> = history::finished_trials(&run.records)
            .iter()
            .map(|(n, _)| *n)
            .collect();
        for r in &run.records {
            if matches!(r.event, Event::RunStart { .. } | Event::RunEnd { .. }) {
                continue;
            }
            let trial = match r.trial {
                // Trials cut short by Ctrl-C are not part of any verdict.
                Some(t) => match finished.iter().position(|n| *n == t) {
                    Some(i) => Some(next_trial + i as u32 + 1),
                    None => continue,
                },
                None => None,
            };
            let mut rec = r.clone();
            rec.trial = trial;
            rec.elapsed_ns += clock_offset;
            if let Event::Probe { start_ns, .. } | Event::OpComplete { start_ns, .. } =
                &mut rec.event
            {
                *start_ns += clock_offset;
            }
            out.push(rec);
        }
        next_trial += finished.len() as u32;
        // Each run's monotonic clock starts at 0: shift the next one past this one.
        clock_offset = out.last().map_or(clock_offset, |r| r.elapsed_ns + 1);
        if let Some(why) = &run.facts.stopped_early {
            reasons.push(format!("{}: {why}", run.facts.run_id));
        }
    }
    let last_time = out.last().map_or(first_time, |r| r.time);
    out.push(Record {
        seq: 0,
        time: last_time,
        elapsed_ns: clock_offset,
        trial: None,
        event: Event::RunEnd {
            interrupted: false,
            stopped_early: (!reasons.is_empty()).then(|| reasons.join("; ")),
        },
    });
    out
}
