//! Raw scenario file types: exactly what serde reads from TOML, before validation.
//!
//! Every table denies unknown keys and every enum is tagged (`kind`, `backend`),
//! so a typo is an error naming the key and the line, never a silent default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::nemesis::{RawFault, RawFaultTable};
pub use crate::probe::RawProbe;
use crate::stack::plan::RestartPolicy;
pub use crate::workload::RawWorkload;

/// A scenario file as written by the user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScenarioFile {
    /// Short name; also the directory name under `reports/`.
    pub name: String,
    /// What story the scenario tests and why.
    #[serde(default)]
    pub description: String,
    /// The field report this scenario reproduces (e.g. "seed 002 — …"); `rebound list` shows it.
    pub story: Option<String>,
    /// The stack under test.
    pub stack: RawStack,
    /// Faults, injected one per trial (round-robin or random, see `[run] order`),
    /// each with the follow-ups of its trial (`[[fault.then]]`).
    #[serde(default, rename = "fault")]
    pub faults: Vec<RawFaultTable>,
    /// Readiness probes: the stack is up when all of them are.
    #[serde(default, rename = "probe")]
    pub probes: Vec<RawProbe>,
    /// Client traffic during every trial.
    #[serde(default, rename = "workload")]
    pub workloads: Vec<RawWorkload>,
    /// The service level objective the run decides.
    pub slo: RawSlo,
    /// How trials are run.
    #[serde(default)]
    pub run: RawRun,
    /// What `rebound explore` may draw from (default: everything the stack supports).
    #[serde(default)]
    pub explore: RawExplore,
}

/// `[explore]`: narrows the fault space `rebound explore` searches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawExplore {
    /// Fault kinds to draw (default: sigkill, sigterm, stop-for, pause-for, and on
    /// docker restart and disconnect-for).
    pub kinds: Option<Vec<String>>,
    /// Services to target (default: every service).
    pub targets: Option<Vec<String>>,
    /// Longest duration a timed fault is given (default: a quarter of recover-within).
    #[serde(default, with = "humantime_serde::option")]
    pub max_duration: Option<Duration>,
    /// Most faults in one schedule (default 3; `--max-faults` overrides).
    pub max_faults: Option<usize>,
}

/// `[stack]`: which backend runs the services.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    tag = "backend",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum RawStack {
    /// Local commands supervised by rebound.
    Process {
        /// `[[stack.service]]` entries.
        #[serde(rename = "service")]
        services: Vec<RawService>,
        /// `[[stack.link]]` entries: paths through rebound's fault proxy.
        #[serde(default, rename = "link")]
        links: Vec<RawLink>,
    },
    /// A compose project on the local Docker Engine.
    Docker {
        /// Compose file rebound brings up (and tears down unless `--keep`).
        compose: Option<PathBuf>,
        /// Name of an already running compose project to attach to (never torn down).
        attach: Option<String>,
        /// Containers started by someone else (a test's testcontainers), as
        /// `service = "container id or name"`; never torn down.
        containers: Option<BTreeMap<String, String>>,
        /// Extra compose files merged over `compose` (`-f` in order), e.g. a small disk.
        #[serde(default)]
        compose_overrides: Vec<PathBuf>,
        /// Project name for `compose` (default `rebound-<scenario>-<run>`).
        project: Option<String>,
        /// `[[stack.link]]` entries: links of a `rebound proxy` compose service.
        #[serde(default, rename = "link")]
        links: Vec<RawProxyLink>,
        /// Services whose data rebound puts on its power-loss layer: for each, a
        /// directory mounted through the layer before the containers start, given
        /// to compose as `REBOUND_DURABLE_<SERVICE>` (a compose override binds it
        /// over the service's data directory).
        #[serde(default)]
        durable: Vec<String>,
        /// The layer's crash model: `posix-strict` (default) or `ext4-like`.
        #[serde(default)]
        durability: Option<crate::durable::Model>,
    },
}

/// `[[stack.link]]` of the docker backend: a link served by a compose service that
/// runs `rebound proxy` (the `rebound/proxy` image); its listen and upstream
/// addresses are in that service's command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProxyLink {
    /// Link name, as in the proxy's `--link NAME=LISTEN=UPSTREAM`.
    pub name: String,
    /// The service that connects through it.
    pub from: Option<String>,
    /// The service it reaches.
    pub to: Option<String>,
    /// The compose service running `rebound proxy`.
    pub proxy: String,
    /// Its control API (default: the proxy container's address, port 8474).
    pub control: Option<String>,
}

/// `[[stack.link]]` of the process backend: rebound listens on `listen` and
/// forwards every connection to `upstream`, applying link faults on the way.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLink {
    /// Link name (the target of `link-*` faults).
    pub name: String,
    /// The service that connects through it.
    pub from: Option<String>,
    /// The service it reaches.
    pub to: Option<String>,
    /// `127.0.0.1:PORT` the proxy listens on (the service under test connects here).
    pub listen: String,
    /// `127.0.0.1:PORT` it forwards to.
    pub upstream: String,
}

/// `[[stack.service]]` of the process backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawService {
    /// Service name, used as fault target.
    pub name: String,
    /// argv; `${rebound}`, `${run_dir}` and `${scenario_dir}` are expanded.
    pub command: Vec<String>,
    /// Extra environment variables (placeholders expanded).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the scenario file's directory).
    pub workdir: Option<PathBuf>,
    /// Restart policy, as Docker's: `never` (default), `on-failure`, `always`.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// First restart delay; doubles on each consecutive restart (Docker: 100ms).
    #[serde(default, with = "humantime_serde::option")]
    pub restart_backoff: Option<Duration>,
    /// Upper bound of the restart delay (Docker: 1m).
    #[serde(default, with = "humantime_serde::option")]
    pub restart_max_backoff: Option<Duration>,
    /// Grace period between SIGTERM and SIGKILL when rebound stops the service.
    #[serde(default, with = "humantime_serde::option")]
    pub stop_grace: Option<Duration>,
    /// Data directories rebound mounts its power-loss layer on for the run
    /// (placeholders expanded; created when missing).
    #[serde(default)]
    pub durable_dirs: Vec<PathBuf>,
    /// The layer's crash model: `posix-strict` (default) or `ext4-like`.
    #[serde(default)]
    pub durability: Option<crate::durable::Model>,
}

/// `[slo]`: what must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSlo {
    /// Required fraction of successful trials (default 0.99).
    pub success_rate: Option<f64>,
    /// Confidence of the decision (default 0.95).
    pub confidence: Option<f64>,
    /// A trial succeeds only if the stack recovers within this time.
    #[serde(with = "humantime_serde")]
    pub recover_within: Duration,
    /// Limit on the median recovery time.
    #[serde(default, with = "humantime_serde::option")]
    pub p50: Option<Duration>,
    /// Limit on the 90th percentile recovery time.
    #[serde(default, with = "humantime_serde::option")]
    pub p90: Option<Duration>,
    /// Limit on the 95th percentile recovery time.
    #[serde(default, with = "humantime_serde::option")]
    pub p95: Option<Duration>,
    /// Limit on the 99th percentile recovery time.
    #[serde(default, with = "humantime_serde::option")]
    pub p99: Option<Duration>,
    /// Limit on the largest observed recovery time.
    #[serde(default, with = "humantime_serde::option")]
    pub max: Option<Duration>,
    /// Acknowledged writes a trial may lose and still succeed (default 0).
    pub max_lost_writes: Option<u64>,
    /// Decide the SLO for each fault (kind and target) on its own trials; the
    /// run's verdict is the worst of them (default false).
    pub per_fault: Option<bool>,
}

/// `[run]`: trial mechanics. Every key has a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRun {
    /// Number of trials (default 20).
    pub trials: Option<std::num::NonZeroU32>,
    /// Steady-state time before each injection (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub warm_up: Option<Duration>,
    /// Random extra warm-up in [0, jitter), so faults do not phase-lock with probes.
    #[serde(default, with = "humantime_serde::option")]
    pub jitter: Option<Duration>,
    /// Pause after a trial has healed, before the next one (default 0s).
    #[serde(default, with = "humantime_serde::option")]
    pub settle: Option<Duration>,
    /// Consecutive successful probes that make "recovered" (default 3).
    pub stable_for: Option<std::num::NonZeroU32>,
    /// Default probe period (default 50ms, at least 5ms).
    #[serde(default, with = "humantime_serde::option")]
    pub probe_period: Option<Duration>,
    /// How long to watch for recovery after the fault (default 2 × recover-within).
    #[serde(default, with = "humantime_serde::option")]
    pub observe_for: Option<Duration>,
    /// Time allowed for the first bring-up to reach steady state (default 60s).
    #[serde(default, with = "humantime_serde::option")]
    pub startup_timeout: Option<Duration>,
    /// Time allowed to regain steady state after heal (default 60s).
    #[serde(default, with = "humantime_serde::option")]
    pub heal_timeout: Option<Duration>,
    /// Which fault each trial uses: `round-robin` (default) or `random` (seeded).
    pub order: Option<FaultOrder>,
    /// Seed for random order and jitter (default: random, printed and recorded).
    pub seed: Option<u64>,
    /// Per service, a regular expression: the service's log lines that match it
    /// are recorded in the history (`{ db = "PANIC|redo starts" }`).
    #[serde(default)]
    pub record_log: std::collections::BTreeMap<String, String>,
}

/// How trials pick among several faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultOrder {
    /// Trial i uses fault i mod n.
    #[default]
    RoundRobin,
    /// Uniform seeded choice per trial.
    Random,
}
