//! Merging runs of one scenario (e.g. shards run on several CI machines with
//! `--shard i/n`) into one run directory: the histories are concatenated with
//! trials renumbered and the clocks offset, then everything is re-checked and
//! re-rendered from the merged history, so `check` and `report` work on it too.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::analysis::{self, AnalysisError, RunFacts};
use crate::checker::TrialReport;
use crate::history::{self, Event, Record};
use crate::report::{self, ReportError, Summary};
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
    /// The output directory already holds a run.
    #[error("{} already holds a run; choose another --out", .dir.display())]
    OutExists {
        /// The output directory.
        dir: PathBuf,
    },
    /// A run could not be read.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// Writing the merged run failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Rendering the reports failed.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Merges `dirs` into `out` and returns the merged verdict.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<(Summary, Vec<TrialReport>), MergeError> {
    if dirs.len() < 2 {
        return Err(MergeError::TooFew);
    }
    let mut runs = Vec::new();
    for dir in dirs {
        for file in ["scenario.toml", "history.jsonl"] {
            if !dir.join(file).is_file() {
                return Err(AnalysisError::NotARun {
                    dir: dir.clone(),
                    file,
                }
                .into());
            }
        }
        let plan =
            scenario::load_recorded(&dir.join("scenario.toml")).map_err(AnalysisError::from)?;
        let records = history::load(&dir.join("history.jsonl")).map_err(AnalysisError::from)?;
        runs.push((dir, plan, records));
    }
    let expected = runs[0].1.name.clone();
    if let Some((dir, plan, _)) = runs.iter().find(|(_, p, _)| p.name != expected) {
        return Err(MergeError::OtherScenario {
            dir: (*dir).clone(),
            found: plan.name.clone(),
            expected,
        });
    }
    if out.join("history.jsonl").exists() {
        return Err(MergeError::OutExists {
            dir: out.to_path_buf(),
        });
    }
    let io = |path: PathBuf| move |source| MergeError::Io { path, source };
    std::fs::create_dir_all(out).map_err(io(out.to_path_buf()))?;
    std::fs::write(out.join("scenario.toml"), &runs[0].1.source_text)
        .map_err(io(out.join("scenario.toml")))?;

    let facts: Vec<RunFacts> = runs
        .iter()
        .map(|(_, _, r)| RunFacts::from_records(r))
        .collect();
    let merged_id = format!(
        "merged-{}",
        facts
            .iter()
            .map(|f| f.run_id.as_str())
            .collect::<Vec<_>>()
            .join("+")
    );
    let mut out_records: Vec<Record> = Vec::new();
    let push = |mut r: Record, out_records: &mut Vec<Record>| {
        r.seq = out_records.len() as u64 + 1;
        out_records.push(r);
    };
    let first_time = runs[0].2.first().map(|r| r.time).unwrap_or_default();
    push(
        Record {
            seq: 0,
            time: first_time,
            elapsed_ns: 0,
            trial: None,
            event: Event::RunStart {
                scenario: expected.clone(),
                run_id: merged_id,
                seed: facts[0].seed,
                trials: facts.iter().map(|f| f.trials_planned).sum(),
                sequential: false,
            },
        },
        &mut out_records,
    );
    let (mut next_trial, mut clock_offset) = (0u32, 0u64);
    let mut reasons = Vec::new();
    for ((_, _, records), f) in runs.iter().zip(&facts) {
        let finished: Vec<u32> = history::finished_trials(records)
            .iter()
            .map(|(n, _)| *n)
            .collect();
        for r in records {
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
            push(rec, &mut out_records);
        }
        next_trial += finished.len() as u32;
        // Each run's monotonic clock starts at 0: shift the next one past this one.
        clock_offset = out_records
            .last()
            .map_or(clock_offset, |r| r.elapsed_ns + 1);
        if let Some(why) = &f.stopped_early {
            reasons.push(format!("{}: {why}", f.run_id));
        }
    }
    let last_time = out_records.last().map_or(first_time, |r| r.time);
    push(
        Record {
            seq: 0,
            time: last_time,
            elapsed_ns: clock_offset,
            trial: None,
            event: Event::RunEnd {
                interrupted: false,
                stopped_early: (!reasons.is_empty()).then(|| reasons.join("; ")),
            },
        },
        &mut out_records,
    );
    let path = out.join("history.jsonl");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io(path.clone()))?);
    for r in &out_records {
        serde_json::to_writer(&mut w, r).map_err(|e| MergeError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        w.write_all(b"\n").map_err(io(path.clone()))?;
    }
    w.flush().map_err(io(path.clone()))?;
    drop(w);

    let (summary, trials) = analysis::reanalyse(out)?;
    report::rewrite_all(out, &summary, &trials)?;
    Ok((summary, trials))
}
