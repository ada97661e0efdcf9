//! Scenario files: read TOML into [`raw::ScenarioFile`], validate it into a [`Plan`].
//!
//! Boundary: no I/O besides reading the file; nothing here starts processes or
//! checks that commands exist (that is the stack's job, exit code 4). Every error
//! names the file, the line where it can be found, and the key.

mod fault;
mod lint;
mod locate;
mod objective;
mod probe;
pub mod raw;
mod stack;
pub use stack::durable_variable;
mod workload;

pub use lint::lint;
use locate::{locate as locate_key, parse_raw, Validator};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::nemesis::{DbRestartMode, FaultPlan, ALL_SERVICES};
pub use crate::probe::{ProbePlan, MIN_PROBE_PERIOD};
use crate::stack::plan::check_placeholders;
pub use crate::stack::plan::{
    compose_services, expand, DockerSource, LinkPlan, LinkRoute, RestartPolicy, ServicePlan,
    StackPlan, PLACEHOLDERS,
};
pub use crate::stack::StackRestartMode;
pub use crate::workload::WorkloadPlan;
pub use raw::FaultOrder;
use raw::ScenarioFile;

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
    #[error("{path}:{line}:{column}: {key}: {message}", path = path.display(), key = tidy(key, KEY_LIMIT), message = tidy(message, MESSAGE_LIMIT))]
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
    #[error("{path}{at}: {key}: {message}", path = path.display(), at = line.map(|l| format!(":{l}")).unwrap_or_default(), key = tidy(key, KEY_LIMIT), message = tidy(message, MESSAGE_LIMIT))]
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
    /// The host ports the scenario takes (`${port:NAME}`) could not be taken.
    #[error("{path}: host ports: {source}", path = path.display())]
    Ports {
        /// The scenario path.
        path: PathBuf,
        /// What went wrong.
        source: crate::ports::PortError,
    },
}

/// The longest key a message echoes, in characters.
const KEY_LIMIT: usize = 80;
/// The longest message, in characters: a value pasted whole (a 100 000-character
/// key) must not become a 200 KB error.
const MESSAGE_LIMIT: usize = 400;

/// `s` as echoed to a terminal: control characters and bidirectional or
/// zero-width marks escaped (a value cannot move the cursor, clear the screen or
/// reorder what is shown), at most `limit` characters, `…` where cut.
pub fn tidy(s: &str, limit: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for c in s.chars() {
        // Control characters, and the invisible ones that reorder or hide text.
        let hidden = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        let piece: String = if c.is_control() || hidden {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        count += piece.chars().count();
        if count > limit {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
    }
    out
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
    /// The exact file text (copied into every run directory), placeholders and all.
    pub source_text: String,
    /// The host ports of this run: `${port:NAME}` of the text and the
    /// `REBOUND_PORT_*` variables of its compose files (see [`crate::ports`]).
    pub ports: crate::ports::Ports,
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
    /// What `rebound explore` draws from (`[explore]`).
    pub explore: ExplorePlan,
}

/// Validated `[explore]`: the fault space of `rebound explore`.
#[derive(Debug, Clone)]
pub struct ExplorePlan {
    /// Fault kinds to draw, each one of [`crate::explore::KINDS`].
    pub kinds: Vec<String>,
    /// Services to target.
    pub targets: Vec<String>,
    /// Longest duration of a timed fault.
    pub max_duration: Duration,
    /// Most faults in one schedule.
    pub max_faults: usize,
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
    /// `per-fault = true`: each fault (kind and target) is decided on its own
    /// trials and the run's verdict is the worst of them.
    pub per_fault: bool,
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
    /// `record-log`: per service, the pattern of the log lines recorded.
    pub record_log: Vec<(String, regex::Regex)>,
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Plan, ScenarioError> {
    let text = crate::field::read_small_file(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates scenario text; `path` is used for messages and relative
/// paths. Host ports (`${port:NAME}`, compose `REBOUND_PORT_*`) are taken for it.
pub fn parse(path: &Path, text: &str) -> Result<Plan, ScenarioError> {
    parse_with(path, text, crate::ports::Ports::default())
}

/// [`parse`] with host ports already held (another text of the same run, e.g. an
/// explore schedule): only the names `ports` lacks are taken.
pub fn parse_with(
    path: &Path,
    text: &str,
    mut ports: crate::ports::Ports,
) -> Result<Plan, ScenarioError> {
    let port_err = |source| ScenarioError::Ports {
        path: path.to_path_buf(),
        source,
    };
    let vars: Vec<String> = crate::ports::placeholders(text)
        .map_err(port_err)?
        .iter()
        .map(|n| crate::ports::env_var(n))
        .collect();
    ports.take(&vars).map_err(port_err)?;
    let expanded = ports.expand(text);
    let raw = parse_raw(path, &expanded)?;
    let mut plan = validate(raw, path, &expanded)?;
    if let StackPlan::Docker {
        source: DockerSource::Compose {
            file, overrides, ..
        },
        ..
    } = &plan.stack
    {
        let vars: Vec<String> = std::iter::once(file)
            .chain(overrides)
            .filter_map(|f| crate::field::read_small_file(f).ok())
            .flat_map(|t| crate::ports::compose_variables(&t))
            .collect();
        ports.take(&vars).map_err(port_err)?;
    }
    plan.source_text = text.to_string();
    plan.ports = ports;
    Ok(plan)
}

/// Reads the scenario copy of a run directory (`RUN_DIR/scenario.toml`) for offline
/// analysis: files it refers to (the compose file) are not needed and not read;
/// host ports are the run's own (`RUN_DIR/ports.json`).
pub fn load_recorded(path: &Path) -> Result<Plan, ScenarioError> {
    let text = crate::field::read_small_file(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut ports = recorded_ports(path);
    // A copy without its ports.json still reads: offline analysis never opens a port.
    for name in crate::ports::placeholders(&text).unwrap_or_default() {
        ports.0.entry(crate::ports::env_var(&name)).or_insert(0);
    }
    let expanded = ports.expand(&text);
    let raw = parse_raw(path, &expanded)?;
    let mut plan = validate_as(raw, path, &expanded, true)?;
    plan.source_text = text;
    plan.ports = ports;
    Ok(plan)
}

/// The host ports a run directory recorded beside its scenario copy (none if absent).
fn recorded_ports(scenario_copy: &Path) -> crate::ports::Ports {
    scenario_copy
        .parent()
        .map(|d| d.join(crate::run_dir::PORTS))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The rule for names that become directory names (scenarios, baselines): letters,
/// digits, `-`, `_`, `.`, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use letters, digits, `-`, `_`, `.`"
        ))
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
    check_name(&raw.name).map_err(|m| v.err("name", locate_key(text, "name", None, 1), m))?;

    let stack = stack::validate(&v, raw.stack)?;

    let faults = fault::validate(&v, raw.faults, &stack)?;

    let default_period = objective::probe_period(&v, raw.run.probe_period)?;
    let probes = probe::validate(&v, raw.probes, &stack, default_period)?;

    let workloads = workload::validate(&v, raw.workloads)?;

    let slo = objective::slo(&v, raw.slo)?;
    let run = objective::run(&v, raw.run, &slo)?;
    if let Some(known) = stack.service_names() {
        if let Some((service, _)) = run.record_log.iter().find(|(s, _)| !known.contains(s)) {
            return Err(v.err(
                "run.record-log",
                locate_key(text, "record-log", Some(service), 1),
                format!(
                    "unknown service `{service}`; services are: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    let explore = explore_plan(&v, raw.explore, &stack, &slo)?;
    // `when = "probe NAME …"` names a probe of the file.
    let mut then_index = 0;
    for f in &faults {
        for t in &f.then {
            if let Some(w) = t.when.as_ref().filter(|w| w.event.is_probe()) {
                if !probes.iter().any(|p| p.name == w.service) {
                    let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
                    return Err(v.err_in(
                        "[[fault.then]]",
                        then_index,
                        "when",
                        None,
                        format!(
                            "`{w}`: unknown probe `{}`; probes are: {}",
                            w.service,
                            names.join(", ")
                        ),
                    ));
                }
            }
            then_index += 1;
        }
    }
    // Follow-ups on a timer must all fire within the observation window (one on
    // an event may still miss it: the trial then says so and is unknown).
    for (i, f) in faults.iter().enumerate() {
        let timed: Duration = f
            .then
            .iter()
            .take_while(|t| t.when.is_none())
            .map(|t| t.after)
            .sum();
        let longest = f.then.iter().map(|t| t.after).max().unwrap_or_default();
        if !f.then.is_empty() && timed.max(longest) >= run.observe_for {
            return Err(v.err_in(
                "[[fault]]",
                i,
                "kind",
                None,
                format!(
                    "its follow-ups fire {:?} after it (or after their event), but a trial is observed for {:?} only ([run] observe-for, default twice recover-within): shorten the `after`s or observe longer",
                    timed.max(longest),
                    run.observe_for
                ),
            ));
        }
    }

    Ok(Plan {
        name: raw.name,
        description: raw.description.trim().to_string(),
        story: raw.story.map(|s| s.trim().to_string()),
        source_path: path.to_path_buf(),
        source_text: text.to_string(),
        ports: crate::ports::Ports::default(),
        // `x.toml` has the parent "": the current directory, not an empty path.
        base_dir: match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
        stack,
        faults,
        probes,
        workloads,
        slo,
        run,
        explore,
    })
}

/// `[explore]` checked against the stack: known kinds, existing services.
fn explore_plan(
    v: &Validator<'_>,
    raw: raw::RawExplore,
    stack: &StackPlan,
    slo: &Slo,
) -> Result<ExplorePlan, ScenarioError> {
    let docker = stack.backend() == "docker";
    let kinds = match raw.kinds {
        Some(kinds) => {
            for k in &kinds {
                if !crate::explore::KINDS.contains(&k.as_str()) {
                    return Err(v.err(
                        "explore.kinds",
                        locate_key(v.text, "kinds", None, 1),
                        format!(
                            "`{k}`: explore draws from {}",
                            crate::explore::KINDS.join(", ")
                        ),
                    ));
                }
            }
            if kinds.is_empty() {
                return Err(v.err(
                    "explore.kinds",
                    locate_key(v.text, "kinds", None, 1),
                    "at least one kind",
                ));
            }
            kinds
        }
        None => crate::explore::default_kinds(docker)
            .iter()
            .map(|k| k.to_string())
            .collect(),
    };
    let services = stack.service_names().unwrap_or_default();
    let targets = match raw.targets {
        Some(t) => {
            for name in &t {
                if !services.is_empty() && !services.contains(name) {
                    return Err(v.err(
                        "explore.targets",
                        locate_key(v.text, "targets", None, 1),
                        format!(
                            "`{name}`: unknown service; services are: {}",
                            services.join(", ")
                        ),
                    ));
                }
            }
            if t.is_empty() {
                return Err(v.err(
                    "explore.targets",
                    locate_key(v.text, "targets", None, 1),
                    "at least one service",
                ));
            }
            t
        }
        None => services,
    };
    let max_faults = raw.max_faults.unwrap_or(3);
    if !(1..=8).contains(&max_faults) {
        return Err(v.err(
            "explore.max-faults",
            locate_key(v.text, "max-faults", None, 1),
            format!("{max_faults}: between 1 and 8"),
        ));
    }
    let max_duration = match raw.max_duration {
        Some(d) if d < Duration::from_millis(100) => {
            return Err(v.err(
                "explore.max-duration",
                locate_key(v.text, "max-duration", None, 1),
                format!("{d:?}: at least 100ms"),
            ))
        }
        Some(d) => d,
        // A quarter of the deadline, and never below explore's shortest fault.
        None => Duration::from_secs_f64(slo.recover_within.as_secs_f64() / 4.0)
            .max(Duration::from_millis(250)),
    };
    Ok(ExplorePlan {
        kinds,
        targets,
        max_duration,
        max_faults,
    })
}

#[cfg(test)]
mod tests;
