//! The run directory's layout — `reports/<scenario>/<run-id>/` with its file names —
//! in one place: creating a new one, opening a recorded one, the `latest` link, and
//! the copy of a run kept as a baseline.

use std::path::{Path, PathBuf};

/// The exact scenario file of the run.
pub const SCENARIO: &str = "scenario.toml";
/// The host ports the run took (`{"REBOUND_PORT_HTTP": 23456}`), when it took any.
pub const PORTS: &str = "ports.json";
/// The append-only event log.
pub const HISTORY: &str = "history.jsonl";
/// One row per finished trial.
pub const TRIALS_CSV: &str = "trials.csv";
/// Lifecycle of every service per trial.
pub const SERVICES_CSV: &str = "services.csv";
/// The verdict and its figures.
pub const SUMMARY_JSON: &str = "summary.json";
/// One case per trial and per objective.
pub const JUNIT: &str = "junit.xml";
/// The summary for a CI job page.
pub const SUMMARY_MD: &str = "summary.md";
/// The self-contained report.
pub const REPORT_HTML: &str = "report.html";
/// SVG and PNG charts.
pub const CHARTS: &str = "charts";
/// Service logs (process backend).
pub const LOGS: &str = "logs";
/// `reports/<scenario>/latest` → the newest run.
pub const LATEST: &str = "latest";

/// The files that describe a run without its logs or service data: what a
/// baseline keeps.
pub const DESCRIBING: &[&str] = &[
    SCENARIO,
    PORTS,
    HISTORY,
    TRIALS_CSV,
    SERVICES_CSV,
    SUMMARY_JSON,
    JUNIT,
    SUMMARY_MD,
];

/// Why a directory cannot serve as a run directory.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// A new run would overwrite a recorded one.
    #[error("{dir}: already holds a run; choose another --out", dir = dir.display())]
    Occupied {
        /// The directory.
        dir: PathBuf,
    },
    /// A recorded run lacks one of its files.
    #[error("{dir} is not a run directory: {file} is missing", dir = dir.display())]
    NotARun {
        /// The directory.
        dir: PathBuf,
        /// The missing file.
        file: &'static str,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A run directory (absolute for new runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RunDir {
    /// Creates `dir` for a new run and writes the scenario text into it; refuses a
    /// directory that already holds a run.
    pub fn create(dir: &Path, scenario_text: &str) -> Result<Self, RunDirError> {
        if dir.join(HISTORY).exists() {
            return Err(RunDirError::Occupied {
                dir: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let root = std::path::absolute(dir).map_err(io(dir))?;
        let me = RunDir { root };
        std::fs::write(me.scenario(), scenario_text).map_err(io(&me.scenario()))?;
        Ok(me)
    }

    /// Writes the host ports the run took (nothing when it took none).
    pub fn write_ports(&self, ports: &crate::ports::Ports) -> Result<(), RunDirError> {
        if ports.is_empty() {
            return Ok(());
        }
        let path = self.file(PORTS);
        let text = serde_json::to_string_pretty(ports).unwrap_or_default();
        std::fs::write(&path, text).map_err(io(&path))
    }

    /// A recorded run: its scenario copy and history must exist.
    pub fn open(dir: &Path) -> Result<Self, RunDirError> {
        for file in [SCENARIO, HISTORY] {
            if !dir.join(file).is_file() {
                return Err(RunDirError::NotARun {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        Ok(RunDir {
            root: dir.to_path_buf(),
        })
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A file of the run by its name (one of this module's constants).
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `scenario.toml`.
    pub fn scenario(&self) -> PathBuf {
        self.file(SCENARIO)
    }

    /// `history.jsonl`.
    pub fn history(&self) -> PathBuf {
        self.file(HISTORY)
    }

    /// The log file of a process service.
    pub fn service_log(&self, service: &str) -> PathBuf {
        self.root.join(LOGS).join(format!("{service}.log"))
    }

    /// Points `<reports_root>/<scenario>/latest` at run `run_id`; best effort, a
    /// missing link is harmless.
    pub fn link_latest(reports_root: &Path, scenario: &str, run_id: &str) {
        let link = reports_root.join(scenario).join(LATEST);
        let _ = std::fs::remove_file(&link);
        let _ = std::os::unix::fs::symlink(run_id, &link);
    }

    /// Copies the files that describe the run into `dest` (replacing it).
    pub fn copy_describing(&self, dest: &Path) -> Result<(), RunDirError> {
        if dest.exists() {
            std::fs::remove_dir_all(dest).map_err(io(dest))?;
        }
        std::fs::create_dir_all(dest).map_err(io(dest))?;
        for f in DESCRIBING {
            let (from, to) = (self.file(f), dest.join(f));
            std::fs::copy(&from, &to).map_err(|source| RunDirError::Io {
                path: from.clone(),
                source: std::io::Error::new(
                    source.kind(),
                    format!("copying to {}: {source}", to.display()),
                ),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_dir_holds_its_scenario_and_refuses_a_second_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("r");
        let rd = RunDir::create(&dir, "name = \"x\"").expect("create");
        assert!(rd.path().is_absolute());
        assert_eq!(
            std::fs::read_to_string(rd.scenario()).expect("read"),
            "name = \"x\""
        );
        assert!(matches!(
            RunDir::open(&dir),
            Err(RunDirError::NotARun { file: HISTORY, .. })
        ));
        std::fs::write(rd.history(), "").expect("history");
        assert!(RunDir::open(&dir).is_ok());
        assert!(matches!(
            RunDir::create(&dir, ""),
            Err(RunDirError::Occupied { .. })
        ));
    }
}
