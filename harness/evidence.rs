//! The evidence ledger (`run --evidence FILE`): the success counts of earlier runs
//! of one scenario, one JSON line per run, whose sequential e-values multiply into
//! one anytime-valid success-rate verdict — nightly runs of 30 trials add up.
//!
//! The e-values of [`stats::log_e_values`](crate::stats::log_e_values) depend on
//! the totals (k, n) only, so the product over runs is the e-value of the pooled
//! counts. Only runs of the same scenario text count: editing the scenario (its
//! hash) starts a new ledger in the same file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file in a run directory recording the evidence a run started from, so that
/// `rebound check` and `rebound report` decide as the run did.
pub const PRIOR_FILE: &str = "evidence.json";

/// Largest ledger read (a line per run: millions of runs).
const MAX_LEDGER_BYTES: u64 = 64 << 20;

/// One run's line in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Scenario name.
    pub scenario: String,
    /// [`scenario_hash`] of the scenario's text.
    pub hash: String,
    /// The run.
    pub run_id: String,
    /// Trials that passed.
    pub successes: u64,
    /// Trials counted (pass, fail and unknown).
    pub trials: u64,
    /// For a merged run (`rebound merge --evidence`): the runs it is made of. Their
    /// own lines, if any, and this one are never both counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
}

/// What the ledger held for a scenario when a run started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prior {
    /// The ledger.
    pub file: PathBuf,
    /// Hash of the scenario text the counted runs share.
    pub hash: String,
    /// Earlier runs counted.
    pub runs: u64,
    /// Their passed trials.
    pub successes: u64,
    /// Their trials.
    pub trials: u64,
    /// Lines not counted: other scenarios, other versions of this one, and runs
    /// already counted (a merged run and its parts) or part of the current run.
    pub ignored: u64,
}

/// Errors reading or writing a ledger.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// I/O on the ledger or the run directory's copy.
    #[error("evidence ledger {path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not a ledger entry.
    #[error("evidence ledger {path}:{line}: not an entry: {source}", path = path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
    /// Not a regular file, or too large.
    #[error("evidence ledger {path}: {why}", path = path.display())]
    NotALedger {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// A stable hash of a scenario's text (FNV-1a, 64 bits, hex): the same bytes give
/// the same hash on every machine and Rust version.
pub fn scenario_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The evidence `file` holds for the scenario named `scenario` with text hash
/// `hash`, leaving out the runs in `exclude` (their trials are in the run being
/// decided: the shards of a merge); a missing file holds none. A run is counted
/// once: runs' own lines first, then a merged run's line only when none of its
/// parts was counted (a merge overlapping a counted run is skipped whole).
pub fn read(
    file: &Path,
    scenario: &str,
    hash: &str,
    exclude: &[String],
) -> Result<Prior, EvidenceError> {
    let io = |source| EvidenceError::Io {
        path: file.to_path_buf(),
        source,
    };
    let mut prior = Prior {
        file: file.to_path_buf(),
        hash: hash.to_string(),
        runs: 0,
        successes: 0,
        trials: 0,
        ignored: 0,
    };
    let meta = match std::fs::metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(prior),
        other => other.map_err(io)?,
    };
    let not = |why: String| EvidenceError::NotALedger {
        path: file.to_path_buf(),
        why,
    };
    if !meta.is_file() {
        return Err(not("not a regular file".into()));
    }
    if meta.len() > MAX_LEDGER_BYTES {
        return Err(not(format!("larger than {} MiB", MAX_LEDGER_BYTES >> 20)));
    }
    let text = std::fs::read_to_string(file).map_err(io)?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: Entry = serde_json::from_str(line).map_err(|source| EvidenceError::Corrupt {
            path: file.to_path_buf(),
            line: i + 1,
            source,
        })?;
        if e.scenario != scenario || e.hash != hash || e.successes > e.trials {
            prior.ignored += 1;
        } else {
            entries.push(e);
        }
    }
    // Every run counts once. Runs' own lines first (each run id once), then merged
    // lines whose runs are all still uncounted; a merge that shares a run with a
    // counted line is skipped whole (it may undercount, never overcount).
    let mut counted: std::collections::HashSet<String> = exclude.iter().cloned().collect();
    let (leaves, merges): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.parts.is_empty());
    for e in leaves.iter().chain(&merges) {
        let ids = || std::iter::once(&e.run_id).chain(&e.parts);
        if ids().any(|id| counted.contains(id)) {
            prior.ignored += 1;
            continue;
        }
        counted.extend(ids().cloned());
        prior.runs += 1;
        prior.successes = prior.successes.saturating_add(e.successes);
        prior.trials = prior.trials.saturating_add(e.trials);
    }
    Ok(prior)
}

/// Appends a run's entry to the ledger (creating it and its directory), synced.
pub fn append(file: &Path, entry: &Entry) -> Result<(), EvidenceError> {
    let io = |source| EvidenceError::Io {
        path: file.to_path_buf(),
        source,
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(io)?;
    let mut line = serde_json::to_string(entry).map_err(|e| io(std::io::Error::other(e)))?;
    line.push('\n');
    f.write_all(line.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// The runs a run id stands for: a merge (`merged-a+b`, nested `merged-merged-a+b+c`)
/// stands for its leaves, any other run for itself.
pub fn leaves(run_id: &str) -> Vec<String> {
    let mut rest = run_id;
    while let Some(r) = rest.strip_prefix("merged-") {
        rest = r;
    }
    if rest.len() == run_id.len() {
        return vec![run_id.to_string()];
    }
    rest.split('+').map(str::to_string).collect()
}

/// Records in `run_dir` the evidence a run started from.
pub fn save_prior(run_dir: &Path, prior: &Prior) -> Result<(), EvidenceError> {
    let path = run_dir.join(PRIOR_FILE);
    let text = serde_json::to_string_pretty(prior).map_err(|e| EvidenceError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, text).map_err(|source| EvidenceError::Io { path, source })
}

/// The evidence a run recorded in `run_dir` it started from, if it used a ledger.
pub fn load_prior(run_dir: &Path) -> Result<Option<Prior>, EvidenceError> {
    let path = run_dir.join(PRIOR_FILE);
    match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EvidenceError::Io { path, source }),
        Ok(text) => {
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|source| EvidenceError::Corrupt {
                    path,
                    line: 1,
                    source,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runs_of_the_same_scenario_text_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("nightly/evidence.jsonl");
        let h = scenario_hash("name = \"a\"\n");
        assert_eq!(h, scenario_hash("name = \"a\"\n"));
        assert_ne!(h, scenario_hash("name = \"a\" \n"));
        let empty = read(&file, "a", &h, &[]).expect("missing file");
        assert_eq!((empty.runs, empty.trials), (0, 0));
        let entry = |id: &str, hash: &str, k, n| Entry {
            scenario: "a".into(),
            hash: hash.into(),
            run_id: id.into(),
            successes: k,
            trials: n,
            parts: Vec::new(),
        };
        append(&file, &entry("r1", &h, 15, 15)).expect("append");
        append(&file, &entry("r2", &h, 14, 15)).expect("append");
        append(&file, &entry("r3", "other", 15, 15)).expect("append");
        // The same run's line twice (a ledger concatenated from two machines' copies).
        append(&file, &entry("r2", &h, 14, 15)).expect("append");
        let p = read(&file, "a", &h, &[]).expect("read");
        assert_eq!((p.runs, p.successes, p.trials, p.ignored), (2, 29, 30, 2));
        std::fs::write(&file, "{\"scenario\":1}\n").expect("write");
        let e = read(&file, "a", &h, &[]).expect_err("corrupt");
        assert!(
            e.to_string().contains("evidence.jsonl:1: not an entry"),
            "{e}"
        );
        let e = read(dir.path(), "a", &h, &[]).expect_err("a directory");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_merged_run_and_its_shards_are_counted_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("evidence.jsonl");
        let h = scenario_hash("x");
        let entry = |id: &str, k, n, parts: &[&str]| Entry {
            scenario: "a".into(),
            hash: h.clone(),
            run_id: id.into(),
            successes: k,
            trials: n,
            parts: parts.iter().map(|p| p.to_string()).collect(),
        };
        // Shard s1 recorded itself, then the merge of s1 and s2 was recorded.
        append(&file, &entry("s1", 10, 10, &[])).expect("append");
        append(&file, &entry("m", 20, 20, &["s1", "s2"])).expect("append");
        append(&file, &entry("s2", 10, 10, &[])).expect("append");
        append(&file, &entry("later", 5, 5, &[])).expect("append");
        let p = read(&file, "a", &h, &[]).expect("read");
        // The runs' own lines count (s1, s2, later); m shares s1 and is skipped.
        assert_eq!((p.runs, p.successes, p.trials, p.ignored), (3, 25, 25, 1));
        // A merge of a merge: listed by its leaves, it shares s1 and is skipped too.
        append(&file, &entry("m2", 30, 30, &["s1", "s2", "s3"])).expect("append");
        let p2 = read(&file, "a", &h, &[]).expect("read");
        assert_eq!((p2.runs, p2.trials), (3, 25));
        assert_eq!(leaves("merged-merged-a+b+c"), ["a", "b", "c"]);
        assert_eq!(leaves("20261202T1-ab"), ["20261202T1-ab"]);
        // Deciding a merge of s1 and s2: neither shard's own line counts.
        let p = read(&file, "a", &h, &["s1".into(), "s2".into()]).expect("read");
        assert_eq!((p.runs, p.successes, p.trials, p.ignored), (1, 5, 5, 4));
    }
}
