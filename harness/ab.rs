//! `rebound ab BASELINE CANDIDATE`: an interleaved A/B run. Baseline and candidate
//! trials alternate in one session in ABBA blocks (A B B A A B B A …), so drift in
//! the machine, the engine's restart back-off and warm caches hit both sides alike;
//! each side's blocks are merged into one run directory and the two are compared.
//!
//! Block j of a side runs shard j of M of that side's schedule (`--shard j/M`), so
//! the blocks together run every trial of the schedule once, and both sides share
//! the seed: block j of A and block j of B inject the same faults with the same
//! jitter.

use std::path::{Path, PathBuf};

use crate::compare::{self, CompareConfig, Comparison};
use crate::exit::ExitStatus;
use crate::merge::{self, MergeError};
use crate::runner::{self, RunError, RunOptions};
use crate::scenario::Plan;

/// Settings of an A/B run.
#[derive(Debug, Clone)]
pub struct AbOptions {
    /// Trials per side (default: the baseline scenario's `[run] trials`).
    pub trials: Option<u32>,
    /// Trials per block (default 1: the finest interleaving).
    pub block: u32,
    /// Output directory (holds `blocks/`, `baseline/`, `candidate/`, `compare.txt`).
    pub out: PathBuf,
    /// Schedule seed shared by both sides (default random).
    pub seed: Option<u64>,
    /// Comparison settings.
    pub compare: CompareConfig,
}

/// What an A/B run produced.
#[derive(Debug)]
pub struct AbOutcome {
    /// The merged baseline run directory.
    pub baseline: PathBuf,
    /// The merged candidate run directory.
    pub candidate: PathBuf,
    /// The comparison (None when the run was interrupted before both sides had
    /// two blocks).
    pub comparison: Option<Comparison>,
    /// The comparison as text (also in `compare.txt`).
    pub text: String,
    /// 0, 1 on a regression, 130 when interrupted, or a block's own failure code.
    pub exit: ExitStatus,
}

/// Why an A/B run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum AbError {
    /// A value is not acceptable (exit 3).
    #[error("{0}")]
    Usage(String),
    /// A block's run failed.
    #[error("{side} block {block}: {source}")]
    Block {
        /// `baseline` or `candidate`.
        side: &'static str,
        /// 1-based block.
        block: u32,
        /// The run's error.
        source: Box<RunError>,
    },
    /// Merging a side's blocks failed.
    #[error("merging the {side} blocks: {source}")]
    Merge {
        /// `baseline` or `candidate`.
        side: &'static str,
        /// Why.
        source: Box<MergeError>,
    },
    /// Writing the comparison failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl AbError {
    /// The documented exit status for this error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            AbError::Usage(_) | AbError::Merge { .. } | AbError::Io { .. } => ExitStatus::Invalid,
            AbError::Block { source, .. } => source.exit_status(),
        }
    }
}

/// The ABBA order of `blocks` blocks per side: `(side, block)` with side 0 the
/// baseline, 1 the candidate; odd blocks run A then B, even ones B then A.
pub fn abba(blocks: u32) -> Vec<(usize, u32)> {
    (1..=blocks)
        .flat_map(|j| {
            if j % 2 == 1 {
                [(0, j), (1, j)]
            } else {
                [(1, j), (0, j)]
            }
        })
        .collect()
}

const SIDES: [&str; 2] = ["baseline", "candidate"];

/// Runs `baseline` and `candidate` interleaved and compares them.
pub async fn run(
    baseline: &Plan,
    candidate: &Plan,
    opts: &AbOptions,
) -> Result<AbOutcome, AbError> {
    let trials = opts.trials.unwrap_or(baseline.run.trials);
    if opts.block == 0 {
        return Err(AbError::Usage("--block must be at least 1".into()));
    }
    let blocks = trials.div_ceil(opts.block);
    if blocks < 2 {
        return Err(AbError::Usage(format!(
            "{trials} trial(s) per side in blocks of {} make {blocks} block(s); an interleaved run needs at least 2 per side (more trials or a smaller --block)",
            opts.block
        )));
    }
    if opts.out.exists() {
        return Err(AbError::Usage(format!(
            "{} exists; an A/B run writes a new directory",
            opts.out.display()
        )));
    }
    let seed = opts.seed.unwrap_or_else(rand::random);
    // Ctrl-C between blocks stops the session (during a block, the block's own run
    // heals, tears down and ends with 130).
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = crate::runner::interrupt_watcher(stop.clone());
    // dirs[side][block - 1]: the block's run directory once it finished whole.
    let mut dirs: [Vec<Option<PathBuf>>; 2] =
        [vec![None; blocks as usize], vec![None; blocks as usize]];
    let mut exit = ExitStatus::SloMet;
    let order = abba(blocks);
    for (i, &(side, block)) in order.iter().enumerate() {
        if stop.is_cancelled() {
            exit = ExitStatus::Interrupted;
            break;
        }
        let plan = if side == 0 { baseline } else { candidate };
        let out = opts
            .out
            .join("blocks")
            .join(format!("{:03}-{}-{block:03}", i + 1, SIDES[side]));
        let run_opts = RunOptions {
            trials: Some(trials),
            out: Some(out.clone()),
            seed: Some(seed),
            progress: false,
            print_summary: false,
            shard: Some((block, blocks)),
            ..RunOptions::default()
        };
        let o = runner::run(plan, &run_opts)
            .await
            .map_err(|source| AbError::Block {
                side: SIDES[side],
                block,
                source: Box::new(source),
            })?;
        let v = &o.summary.verdict;
        eprintln!(
            "[ab] block {}/{} {:<9} {} trial(s): {} pass, {} fail, {} unknown · p50 {}",
            i + 1,
            order.len(),
            SIDES[side],
            v.trials,
            v.passed,
            v.failed,
            v.unknown,
            crate::report::format::ms(v.recovery.p50_ms)
        );
        if o.exit == ExitStatus::Interrupted {
            // Its finished trials stay in its directory; it is not compared.
            exit = ExitStatus::Interrupted;
            break;
        }
        dirs[side][block as usize - 1] = Some(out);
        if o.exit == ExitStatus::StackFailure {
            // The stack did not come back: the other side's blocks would not be
            // comparable either.
            exit = ExitStatus::StackFailure;
            break;
        }
    }
    watcher.abort();
    let merged = |side: usize| opts.out.join(SIDES[side]);
    // Only whole pairs are compared: a block whose other side never ran would
    // bring back the drift the interleaving is there to cancel.
    let pairs: Vec<usize> = (0..blocks as usize)
        .filter(|&j| dirs[0][j].is_some() && dirs[1][j].is_some())
        .collect();
    let side_dirs = |side: usize| -> Vec<PathBuf> {
        pairs
            .iter()
            .filter_map(|&j| dirs[side][j].clone())
            .collect()
    };
    let dirs = [side_dirs(0), side_dirs(1)];
    if pairs.len() < 2 {
        let text = format!(
            "stopped after {} whole block pair(s): too few to compare (the blocks are in {})\n",
            pairs.len(),
            opts.out.join("blocks").display()
        );
        return Ok(AbOutcome {
            baseline: merged(0),
            candidate: merged(1),
            comparison: None,
            text,
            exit,
        });
    }
    let mut trials_of = Vec::new();
    for side in 0..2 {
        let (summary, t) =
            merge::merge(&dirs[side], &merged(side), None).map_err(|source| AbError::Merge {
                side: SIDES[side],
                source: Box::new(source),
            })?;
        trials_of.push((summary.run_id, t));
    }
    let c = compare::compare(&trials_of[0].1, &trials_of[1].1, &opts.compare);
    let stopped = if pairs.len() < blocks as usize {
        format!(
            "  stopped early ({}): compared the {} whole block pair(s) of {blocks}; exit {}\n",
            if exit == ExitStatus::Interrupted {
                "interrupted"
            } else {
                "a block's stack did not come back"
            },
            pairs.len(),
            exit.code()
        )
    } else {
        String::new()
    };
    let text = format!(
        "{}  interleaved ABBA: {} block(s) of {} trial(s) per side, seed {seed}; both sides ran the same schedule\n{stopped}",
        compare::render(
            &c,
            &format!("baseline {} ({} trials)", baseline.name, trials_of[0].1.len()),
            &format!("candidate {} ({} trials)", candidate.name, trials_of[1].1.len()),
        ),
        dirs[0].len(),
        opts.block
    );
    write(&opts.out.join("compare.txt"), &text)?;
    let json = serde_json::to_string_pretty(&c).unwrap_or_default();
    write(&opts.out.join("compare.json"), &json)?;
    if exit == ExitStatus::SloMet && c.regressed {
        exit = ExitStatus::SloViolated;
    }
    Ok(AbOutcome {
        baseline: merged(0),
        candidate: merged(1),
        comparison: Some(c),
        text,
        exit,
    })
}

fn write(path: &Path, text: &str) -> Result<(), AbError> {
    std::fs::write(path, text).map_err(|source| AbError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abba_alternates_which_side_goes_first() {
        assert_eq!(
            abba(4),
            [
                (0, 1),
                (1, 1),
                (1, 2),
                (0, 2),
                (0, 3),
                (1, 3),
                (1, 4),
                (0, 4)
            ]
        );
        // Every block of each side exactly once, and each side first equally often.
        let order = abba(6);
        for side in 0..2 {
            let mut blocks: Vec<u32> = order.iter().filter(|o| o.0 == side).map(|o| o.1).collect();
            blocks.sort_unstable();
            assert_eq!(blocks, (1..=6).collect::<Vec<_>>());
        }
        let firsts = order.chunks(2).filter(|c| c[0].0 == 0).count();
        assert_eq!(firsts, 3);
    }
}
