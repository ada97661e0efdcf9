//! Scenario files: read TOML into [`raw::ScenarioFile`], validate it into a [`Plan`].
//!
//! Boundary: no I/O besides reading the file; nothing here starts processes or
//! checks that commands exist (that is the stack's job, exit code 4). Every error
//! names the file, the line where it can be found, and the key.

mod fault;
mod probe;
pub mod raw;
mod workload;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::nemesis::{DbRestartMode, FaultPlan, ALL_SERVICES};
pub use crate::probe::{ProbePlan, MIN_PROBE_PERIOD};
use crate::stack::plan::check_placeholders;
pub use crate::stack::plan::{
    compose_services, expand, DockerSource, RestartPolicy, ServicePlan, StackPlan, PLACEHOLDERS,
};
pub use crate::stack::StackRestartMode;
pub use crate::workload::WorkloadPlan;
pub use raw::FaultOrder;
use raw::{RawStack, ScenarioFile};

/// A scenario that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read scenario: {source}", path = path.display())]
    Read {
        /// The scenario path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the scenario schema.
    #[error("{path}:{line}:{column}: {key}: {message}", path = path.display())]
    Parse {
        /// The scenario path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted key path, e.g. `run.trials`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The file parses but a value is not acceptable.
    #[error("{path}{at}: {key}: {message}", path = path.display(), at = line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The scenario path.
        path: PathBuf,
        /// 1-based line, when the value could be located.
        line: Option<usize>,
        /// Dotted key path, e.g. `fault[1].target`.
        key: String,
        /// What is wrong and what is accepted.
        message: String,
    },
}

/// A validated scenario: every default filled in, every reference resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scenario name (safe as a directory name).
    pub name: String,
    /// What the scenario tests.
    pub description: String,
    /// The field report it reproduces, if any.
    pub story: Option<String>,
    /// Where the file was read from.
    pub source_path: PathBuf,
    /// The exact file text (copied into every run directory).
    pub source_text: String,
    /// Directory of the scenario file: relative paths resolve against it.
    pub base_dir: PathBuf,
    /// The stack under test.
    pub stack: StackPlan,
    /// Faults, at least one.
    pub faults: Vec<FaultPlan>,
    /// Probes, at least one.
    pub probes: Vec<ProbePlan>,
    /// Client traffic during every trial.
    pub workloads: Vec<WorkloadPlan>,
    /// The objective.
    pub slo: Slo,
    /// Trial mechanics.
    pub run: RunPlan,
}

/// A recovery-time quantile an SLO can limit.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantile {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// Largest observed value.
    Max,
}

impl Quantile {
    /// The probability level (1.0 for max).
    pub fn level(self) -> f64 {
        match self {
            Quantile::P50 => 0.50,
            Quantile::P90 => 0.90,
            Quantile::P95 => 0.95,
            Quantile::P99 => 0.99,
            Quantile::Max => 1.0,
        }
    }

    /// Lower-case label, as in the file.
    pub fn label(self) -> &'static str {
        match self {
            Quantile::P50 => "p50",
            Quantile::P90 => "p90",
            Quantile::P95 => "p95",
            Quantile::P99 => "p99",
            Quantile::Max => "max",
        }
    }
}

/// The validated objective.
#[derive(Debug, Clone)]
pub struct Slo {
    /// Required success rate in (0, 1).
    pub success_rate: f64,
    /// Confidence of decisions in (0, 1).
    pub confidence: f64,
    /// Per-trial recovery deadline.
    pub recover_within: Duration,
    /// Limits on recovery quantiles.
    pub limits: Vec<(Quantile, Duration)>,
    /// Acknowledged writes a trial may lose.
    pub max_lost_writes: u64,
}

/// Validated trial mechanics.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Number of trials.
    pub trials: u32,
    /// Steady state before each injection.
    pub warm_up: Duration,
    /// Random extra warm-up bound.
    pub jitter: Duration,
    /// Pause between trials.
    pub settle: Duration,
    /// Consecutive successes that make "recovered".
    pub stable_for: u32,
    /// Recovery watch window after the fault.
    pub observe_for: Duration,
    /// Bring-up timeout.
    pub startup_timeout: Duration,
    /// Steady-state timeout after heal.
    pub heal_timeout: Duration,
    /// Fault order.
    pub order: FaultOrder,
    /// Fixed seed, if the file gives one.
    pub seed: Option<u64>,
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Plan, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates scenario text; `path` is used for messages and relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Plan, ScenarioError> {
    let raw = parse_raw(path, text)?;
    validate(raw, path, text)
}

/// Reads the scenario copy of a run directory (`RUN_DIR/scenario.toml`) for offline
/// analysis: files it refers to (the compose file) are not needed and not read.
pub fn load_recorded(path: &Path) -> Result<Plan, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = parse_raw(path, &text)?;
    validate_as(raw, path, &text, true)
}

fn parse_raw(path: &Path, text: &str) -> Result<ScenarioFile, ScenarioError> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| toml_error(path, text, String::new(), &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        toml_error(path, text, key, e.inner())
    })
}

fn toml_error(path: &Path, text: &str, key: String, e: &toml::de::Error) -> ScenarioError {
    let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    // serde_path_to_error reports "." for the root; an unknown key names itself in the message.
    let key = if key.is_empty() || key == "." {
        key_at(text, line).unwrap_or_else(|| "(file)".into())
    } else {
        key
    };
    ScenarioError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        key,
        message: e.message().trim().to_string(),
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The key written at the start of a line (`key = ...`), if any.
fn key_at(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?.trim();
    let key = l.split('=').next()?.trim();
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// Finds the first line, at or after line `from`, on which `key = ...value...` is written.
fn locate(text: &str, key: &str, value: Option<&str>, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find_map(|(i, l)| {
            let (k, v) = l.split_once('=')?;
            let key_ok = k.trim().trim_matches('"') == key;
            let value_ok = value.is_none_or(|want| v.contains(want));
            (key_ok && value_ok).then_some(i + 1)
        })
}

/// Line of the n-th (0-based) occurrence of a table header like `[[fault]]`.
fn header_line(text: &str, header: &str, n: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim().starts_with(header))
        .nth(n)
        .map(|(i, _)| i + 1)
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    /// A run directory's copy: referenced files may not exist next to it.
    recorded: bool,
}

impl Validator<'_> {
    fn err(
        &self,
        key: impl Into<String>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> ScenarioError {
        ScenarioError::Invalid {
            path: self.path.to_path_buf(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }

    /// Error about `key = value` inside the n-th `header` table.
    fn err_in(
        &self,
        header: &str,
        n: usize,
        key: &str,
        value: Option<&str>,
        message: impl Into<String>,
    ) -> ScenarioError {
        let start = header_line(self.text, header, n).unwrap_or(1);
        let line = locate(self.text, key, value, start).or(Some(start));
        let table = header.trim_matches(|c| c == '[' || c == ']');
        self.err(format!("{table}[{}].{key}", n + 1), line, message)
    }
}

/// Turns a raw file into a [`Plan`], checking every reference and range.
pub fn validate(raw: ScenarioFile, path: &Path, text: &str) -> Result<Plan, ScenarioError> {
    validate_as(raw, path, text, false)
}

fn validate_as(
    raw: ScenarioFile,
    path: &Path,
    text: &str,
    recorded: bool,
) -> Result<Plan, ScenarioError> {
    let v = Validator {
        path,
        text,
        recorded,
    };
    let name_ok = !raw.name.is_empty()
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !raw.name.starts_with('.');
    if !name_ok {
        return Err(v.err(
            "name",
            locate(text, "name", None, 1),
            format!(
                "`{}` is not a valid name: use letters, digits, `-`, `_`, `.`",
                raw.name
            ),
        ));
    }

    let stack = match raw.stack {
        RawStack::Process { services } => {
            if services.is_empty() {
                return Err(v.err(
                    "stack.service",
                    header_line(text, "[stack]", 0),
                    "at least one [[stack.service]] is required",
                ));
            }
            let mut seen = HashSet::new();
            let mut plans = Vec::new();
            for (i, s) in services.into_iter().enumerate() {
                if !seen.insert(s.name.clone()) {
                    return Err(v.err_in(
                        "[[stack.service]]",
                        i,
                        "name",
                        Some(&s.name),
                        format!("duplicate service name `{}`", s.name),
                    ));
                }
                if s.command.is_empty() || s.command[0].is_empty() {
                    return Err(v.err_in(
                        "[[stack.service]]",
                        i,
                        "command",
                        None,
                        "command must name a program",
                    ));
                }
                for arg in s.command.iter().chain(s.env.values()) {
                    check_placeholders(arg)
                        .map_err(|m| v.err_in("[[stack.service]]", i, "command", None, m))?;
                }
                let backoff = s.restart_backoff.unwrap_or(Duration::from_millis(100));
                let max_backoff = s
                    .restart_max_backoff
                    .unwrap_or(Duration::from_secs(60))
                    .max(backoff);
                plans.push(ServicePlan {
                    name: s.name,
                    command: s.command,
                    env: s.env,
                    workdir: s.workdir,
                    restart: s.restart,
                    restart_backoff: backoff,
                    restart_max_backoff: max_backoff,
                    stop_grace: s.stop_grace.unwrap_or(crate::nemesis::DEFAULT_GRACE),
                });
            }
            StackPlan::Process { services: plans }
        }
        RawStack::Docker {
            compose,
            compose_overrides,
            attach,
            project,
        } => {
            let at = header_line(text, "[stack]", 0);
            let resolve = |f: PathBuf| {
                if f.is_absolute() {
                    f
                } else {
                    path.parent().unwrap_or(Path::new("")).join(f)
                }
            };
            let source = match (compose, attach) {
                (Some(file), None) => {
                    if let Some(p) = &project {
                        if p.is_empty() || !p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
                            return Err(v.err("stack.project", locate(text, "project", None, 1), "compose project names use lower-case letters, digits, `-` and `_`"));
                        }
                    }
                    DockerSource::Compose {
                        file: resolve(file),
                        overrides: compose_overrides.into_iter().map(resolve).collect(),
                        project,
                    }
                }
                (None, Some(project)) if compose_overrides.is_empty() => DockerSource::Attach { project },
                (None, Some(_)) => return Err(v.err("stack.compose-overrides", locate(text, "compose-overrides", None, 1), "overrides apply to `compose`, not to `attach`")),
                _ => return Err(v.err("stack", at, "backend \"docker\" needs exactly one of `compose = \"file\"` or `attach = \"project\"`")),
            };
            let services = match &source {
                DockerSource::Compose { .. } if v.recorded => None,
                DockerSource::Compose {
                    file, overrides, ..
                } => {
                    // Services of the merged project: the union over every file.
                    let mut names: Vec<String> = Vec::new();
                    for (key, f) in std::iter::once(("compose", file))
                        .chain(overrides.iter().map(|o| ("compose-overrides", o)))
                    {
                        let line = locate(text, key, None, 1);
                        let body = std::fs::read_to_string(f).map_err(|e| {
                            v.err(
                                format!("stack.{key}"),
                                line,
                                format!("cannot read {}: {e}", f.display()),
                            )
                        })?;
                        let found = compose_services(&body).map_err(|e| {
                            v.err(
                                format!("stack.{key}"),
                                line,
                                format!("{}: not a compose file: {e}", f.display()),
                            )
                        })?;
                        for n in found {
                            if !names.contains(&n) {
                                names.push(n);
                            }
                        }
                    }
                    Some(names)
                }
                DockerSource::Attach { .. } => None,
            };
            StackPlan::Docker { source, services }
        }
    };

    let faults = fault::validate(&v, raw.faults, &stack)?;

    let r = raw.run;
    let default_period = r.probe_period.unwrap_or(Duration::from_millis(50));
    if default_period < MIN_PROBE_PERIOD {
        return Err(v.err(
            "run.probe-period",
            locate(text, "probe-period", None, 1),
            "probe period must be at least 5ms",
        ));
    }

    let probes = probe::validate(&v, raw.probes, &stack, default_period)?;

    let workloads = workload::validate(&v, raw.workloads)?;

    let s = raw.slo;
    let success_rate = s.success_rate.unwrap_or(0.99);
    if !(success_rate > 0.0 && success_rate < 1.0) {
        return Err(v.err(
            "slo.success-rate",
            locate(text, "success-rate", None, 1),
            format!("{success_rate} must lie strictly between 0 and 1 (e.g. 0.99); no finite run can prove 1.0"),
        ));
    }
    let confidence = s.confidence.unwrap_or(0.95);
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(v.err(
            "slo.confidence",
            locate(text, "confidence", None, 1),
            format!("{confidence} must lie strictly between 0 and 1"),
        ));
    }
    if s.recover_within.is_zero() {
        return Err(v.err(
            "slo.recover-within",
            locate(text, "recover-within", None, 1),
            "must be greater than 0",
        ));
    }
    let limits: Vec<(Quantile, Duration)> = [
        (Quantile::P50, s.p50),
        (Quantile::P90, s.p90),
        (Quantile::P95, s.p95),
        (Quantile::P99, s.p99),
        (Quantile::Max, s.max),
    ]
    .into_iter()
    .filter_map(|(q, d)| d.map(|d| (q, d)))
    .collect();

    let trials = r.trials.unwrap_or(20);
    if trials == 0 {
        return Err(v.err(
            "run.trials",
            locate(text, "trials", None, 1),
            "at least 1 trial is required",
        ));
    }
    let stable_for = r.stable_for.unwrap_or(3);
    if stable_for == 0 {
        return Err(v.err(
            "run.stable-for",
            locate(text, "stable-for", None, 1),
            "must be at least 1",
        ));
    }
    let observe_for = r.observe_for.unwrap_or(s.recover_within * 2);
    if observe_for < s.recover_within {
        return Err(v.err(
            "run.observe-for",
            locate(text, "observe-for", None, 1),
            "must not be shorter than slo.recover-within, or no trial could pass",
        ));
    }

    Ok(Plan {
        name: raw.name,
        description: raw.description.trim().to_string(),
        story: raw.story.map(|s| s.trim().to_string()),
        source_path: path.to_path_buf(),
        source_text: text.to_string(),
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        stack,
        faults,
        probes,
        workloads,
        slo: Slo {
            success_rate,
            confidence,
            recover_within: s.recover_within,
            limits,
            max_lost_writes: s.max_lost_writes.unwrap_or(0),
        },
        run: RunPlan {
            trials,
            warm_up: r.warm_up.unwrap_or(Duration::from_secs(1)),
            jitter: r.jitter.unwrap_or(Duration::ZERO),
            settle: r.settle.unwrap_or(Duration::ZERO),
            stable_for,
            observe_for,
            startup_timeout: r.startup_timeout.unwrap_or(Duration::from_secs(60)),
            heal_timeout: r.heal_timeout.unwrap_or(Duration::from_secs(60)),
            order: r.order.unwrap_or_default(),
            seed: r.seed,
        },
    })
}

#[cfg(test)]
mod tests;
