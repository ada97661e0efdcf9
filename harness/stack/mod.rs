//! The [`Stack`] trait: primitives on the services of the stack under test (start,
//! stop with grace, signal, pause, lifecycle counters, teardown) and its backends.
//!
//! Primitives, not scenarios: fault logic lives in `nemesis`, timing in `runner`.
//! A backend touches only the services of its own scenario.

pub mod docker;
#[cfg(test)]
pub mod fake;
pub mod logs;
pub mod plan;
pub mod power;
pub mod process;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::history::History;
use plan::{DockerSource, StackPlan};

/// Signals the nemesis can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGKILL (a crash: the restart policy applies).
    Kill,
    /// SIGTERM.
    Term,
    /// Any other signal, delivered as is.
    Other(nix::sys::signal::Signal),
}

/// Failures of stack primitives.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The scenario names a service the stack does not have.
    #[error("unknown service `{0}`")]
    UnknownService(String),
    /// A service's program could not be started.
    #[error("service `{service}`: cannot start `{program}`: {source}")]
    Spawn {
        /// Service.
        service: String,
        /// argv[0] after expansion.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A signal could not be delivered.
    #[error("service `{service}`: cannot send {signal}: {message}")]
    Signal {
        /// Service.
        service: String,
        /// Signal name.
        signal: String,
        /// OS error text.
        message: String,
    },
    /// The supervisor could not start the service again.
    #[error("service `{service}`: cannot start: {message}")]
    StartFailed {
        /// Service.
        service: String,
        /// The spawn error.
        message: String,
    },
    /// The service is not running, so the operation makes no sense.
    #[error("service `{0}` is not running")]
    NotRunning(String),
    /// Something did not happen in time.
    #[error("service `{service}`: {what} did not happen within {after:?}")]
    Timeout {
        /// Service.
        service: String,
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        after: Duration,
    },
    /// A Docker Engine call or the compose tool failed.
    #[error("{what}: {message}")]
    Docker {
        /// What was being done.
        what: String,
        /// The engine's or tool's message.
        message: String,
    },
    /// A command or request that a fault or probe ran failed (an exec's exit code,
    /// an HTTP status, unexpected output), on any backend.
    #[error("{what}: {message}")]
    Command {
        /// What was run.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// The backend has no such primitive (scenario validation prevents this).
    #[error("the {backend} backend cannot {op}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// The operation.
        op: &'static str,
    },
    /// Preparing the stack failed (log directory, …).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// An optional primitive of a backend, beyond signal/stop/start/pause that every
/// backend has. Faults and probes declare what they need; validation compares it
/// with [`plan::StackPlan::capabilities`], so an unsupported fault is a
/// scenario error (exit 3), never a failure halfway through a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Restart one service through the engine (`docker restart`).
    Restart,
    /// Restart every service of the stack at once.
    RestartAll,
    /// Run the compose tool on the project's own files (ordered and down-up restarts).
    Compose,
    /// Disconnect and reconnect a service's networks.
    Network,
    /// Run an argv inside a service.
    Exec,
    /// Report a service's healthcheck status.
    Health,
    /// Put faults on links through rebound's TCP proxy (`[[stack.link]]`).
    Link,
    /// Run a command in a service's network namespace from the host (iptables,
    /// tc): the kernel-level network faults.
    Netns,
    /// Cut the power of services whose data is under rebound's power-loss layer
    /// (`durable-dirs`).
    PowerLoss,
}

impl Capability {
    /// What it lets rebound do, for messages ("the process backend cannot …").
    pub fn describe(self) -> &'static str {
        match self {
            Capability::Restart => "restart a container",
            Capability::RestartAll => "restart the whole stack",
            Capability::Compose => "run compose on the project's files",
            Capability::Network => "disconnect a network",
            Capability::Exec => "exec in a service",
            Capability::Health => "report health status",
            Capability::Link => "fault a link through rebound's proxy",
            Capability::Netns => "enter a service's network namespace",
            Capability::PowerLoss => "cut the power of a service on the power-loss layer",
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// A set of [`Capability`] values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities(u16);

impl Capabilities {
    /// Only the primitives every backend has.
    pub const BASIC: Capabilities = Capabilities(0);

    /// The set of the given capabilities.
    pub const fn of(caps: &[Capability]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < caps.len() {
            bits |= caps[i].bit();
            i += 1;
        }
        Capabilities(bits)
    }

    /// Whether `cap` is in the set.
    pub fn has(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// The first of `needed` that is not in the set.
    pub fn lacks(self, needed: &[Capability]) -> Option<Capability> {
        needed.iter().copied().find(|c| !self.has(*c))
    }
}

/// How `stack-restart` restarts every service of the stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StackRestartMode {
    /// Every container restarted at once, in no order (what `docker compose restart` does).
    #[default]
    Parallel,
    /// `compose stop` (reverse dependency order), then `compose up -d` (dependency
    /// order, waiting for `service_healthy` conditions).
    Ordered,
    /// `compose down` (containers and network removed, volumes kept), then `compose up -d`.
    DownUp,
}

impl StackRestartMode {
    /// The kebab-case name, as in files.
    pub fn name(self) -> &'static str {
        match self {
            StackRestartMode::Parallel => "parallel",
            StackRestartMode::Ordered => "ordered",
            StackRestartMode::DownUp => "down-up",
        }
    }
}

/// A service's healthcheck status, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Within the start period, or no result yet.
    Starting,
    /// The healthcheck passes.
    Healthy,
    /// The healthcheck fails.
    Unhealthy,
    /// A status this build does not know.
    Other(String),
}

impl Health {
    /// The word the Docker Engine uses (also in `health_status` events).
    pub const HEALTHY: &'static str = "healthy";

    /// Parses the engine's word.
    pub fn parse(word: &str) -> Self {
        match word {
            "starting" => Health::Starting,
            Health::HEALTHY => Health::Healthy,
            "unhealthy" => Health::Unhealthy,
            other => Health::Other(other.to_string()),
        }
    }

    /// The engine's word.
    pub fn word(&self) -> &str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => Health::HEALTHY,
            Health::Unhealthy => "unhealthy",
            Health::Other(w) => w,
        }
    }
}

/// Backend-independent view of a service's process state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStatus {
    /// A process is alive.
    pub running: bool,
    /// It is frozen.
    pub paused: bool,
    /// Processes started so far.
    pub starts: u64,
    /// Processes exited so far.
    pub exits: u64,
    /// A process is running or the backend will start one (restart pending).
    pub wanted: bool,
    /// Exit code of the latest exit.
    pub last_code: Option<i32>,
    /// Terminating signal of the latest exit.
    pub last_signal: Option<i32>,
}

/// Result of a command run inside a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code.
    pub code: i64,
    /// stdout and stderr, interleaved.
    pub output: String,
}

/// Operations the nemesis and the runner perform on a stack.
#[async_trait]
pub trait Stack: Send + Sync {
    /// The backend's name as written in files (`process`, `docker`), for messages.
    fn backend(&self) -> &'static str;
    /// Service names, in start order.
    fn services(&self) -> Vec<String>;
    /// Starts every service; errors if one cannot be started at all.
    async fn up(&self) -> Result<(), StackError>;
    /// Current status of a service.
    fn status(&self, service: &str) -> Result<ServiceStatus, StackError>;
    /// Sends a signal to the service's process (group).
    async fn signal(&self, service: &str, sig: Sig) -> Result<(), StackError>;
    /// Marks the service as deliberately stopped: its next exit is not restarted.
    fn hold(&self, service: &str) -> Result<(), StackError>;
    /// Graceful stop: hold, SIGTERM, SIGKILL after `grace`; returns once it exited.
    async fn stop(&self, service: &str, grace: Duration) -> Result<(), StackError>;
    /// Starts a stopped service (no-op if running); returns once spawned.
    async fn start(&self, service: &str) -> Result<(), StackError>;
    /// Freezes the service.
    async fn pause(&self, service: &str) -> Result<(), StackError>;
    /// Resumes a frozen service (no-op if not paused).
    async fn unpause(&self, service: &str) -> Result<(), StackError>;
    /// Waits until the service's exit count exceeds `exits` (a process died).
    async fn wait_exit(
        &self,
        service: &str,
        exits: u64,
        timeout: Duration,
    ) -> Result<(), StackError>;
    /// Restarts the service (graceful stop with `grace`, then start).
    async fn restart(&self, _service: &str, _grace: Duration) -> Result<(), StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "restart a container",
        })
    }
    /// Restarts every service of the stack (`stack-restart`); returns what was done.
    async fn restart_all(
        &self,
        _mode: StackRestartMode,
        _grace: Duration,
    ) -> Result<String, StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "restart the whole stack",
        })
    }
    /// Brings back whatever a failed `stack-restart` left missing or stopped;
    /// returns the services it started.
    async fn ensure_up(&self) -> Result<Vec<String>, StackError> {
        Ok(Vec::new())
    }
    /// Cuts the service off its networks; returns them for [`Stack::connect`].
    async fn disconnect(&self, _service: &str) -> Result<Vec<String>, StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "disconnect a network",
        })
    }
    /// Reconnects the service to networks.
    async fn connect(&self, _service: &str, _networks: &[String]) -> Result<(), StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "connect a network",
        })
    }
    /// Reconnects the networks a fault cut the service off from; returns them.
    async fn reconnect(&self, _service: &str) -> Result<Vec<String>, StackError> {
        Ok(Vec::new())
    }
    /// Runs an argv inside the service.
    async fn exec(&self, _service: &str, _argv: &[String]) -> Result<ExecOutput, StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "exec in a service",
        })
    }
    /// Where `port` of the service is reached without any proxy in between: the
    /// container's own address on its network (docker), this host (process).
    async fn address(&self, _service: &str, port: u16) -> Result<std::net::SocketAddr, StackError> {
        Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }
    /// The service's own address behind a host address that a port proxy serves
    /// (docker: a published port), so a probe can tell the proxy accepting from the
    /// service listening; None when no proxy stands in between.
    async fn behind(
        &self,
        _host: std::net::SocketAddr,
    ) -> Result<Option<std::net::SocketAddr>, StackError> {
        Ok(None)
    }
    /// Every address the service has on its networks.
    async fn addresses(&self, _service: &str) -> Result<Vec<std::net::IpAddr>, StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "list a service's addresses",
        })
    }
    /// Runs an argv of the host (iptables, tc) inside the service's network
    /// namespace.
    async fn netns(&self, _service: &str, _argv: &[String]) -> Result<ExecOutput, StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "enter a service's network namespace",
        })
    }
    /// Sets (None: lifts) the fault on a link of rebound's proxy; returns the fault
    /// it replaced. A proxy outside rebound's process lifts the fault by itself
    /// after `lease` (a bound on how long it outlives a killed rebound).
    async fn set_link(
        &self,
        _link: &str,
        _fault: Option<crate::proxy::LinkFault>,
        _lease: Option<Duration>,
    ) -> Result<Option<crate::proxy::LinkFault>, StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "fault a link",
        })
    }
    /// The backend's own health status of the service, if it has one.
    async fn health(&self, _service: &str) -> Result<Option<Health>, StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "report health status",
        })
    }
    /// The first half of a power cut: every process of `services` frozen at
    /// once (nothing more is acknowledged), their power-loss layers' connections
    /// aborted (a request a layer already holds fails instead of completing),
    /// then SIGKILLed and held down. Returns what was done.
    async fn power_off(&self, _services: &[String]) -> Result<String, StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "cut the power of a service",
        })
    }
    /// The second half: once the processes are gone, every layer of `services`
    /// that is not mounted drops what was not durable and is mounted again, and
    /// the services are started. Idempotent (heal calls it). Returns what was lost.
    async fn power_on(&self, _services: &[String]) -> Result<String, StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "bring a service back after a power cut",
        })
    }
    /// Puts a disk fault in force on the power-loss layers of `services`
    /// (`None`: lifts it). Returns one line per layer whose fault was lifted or
    /// replaced, saying what it matched.
    async fn set_io(
        &self,
        _services: &[String],
        _fault: Option<&crate::durable::IoFault>,
    ) -> Result<Vec<String>, StackError> {
        Err(StackError::Unsupported {
            backend: self.backend(),
            op: "fail or delay a service's disk operations",
        })
    }
    /// Services with data on the power-loss layer (the default targets of a
    /// power cut).
    fn durable_services(&self) -> Vec<String> {
        Vec::new()
    }
    /// The stack reached steady state after bring-up: what it wrote setting
    /// itself up (an initdb, a first schema) counts as durable from here on, as on
    /// a host set up and synced before the test.
    fn settled(&self) {}
    /// Where `service`'s log lines can be read now (`None`: nowhere, or not yet).
    fn log_source(&self, _service: &str) -> Option<logs::LogSource> {
        None
    }
    /// Stops everything (resumes frozen processes first) and releases resources.
    async fn teardown(&self) -> Result<(), StackError>;
    /// Emergency: SIGKILL everything now, synchronously (second Ctrl-C); a stack
    /// rebound brought up (and does not keep) is removed with its networks and
    /// volumes as well.
    fn kill_now(&self);
}

/// What building a backend needs besides its plan.
#[derive(Clone)]
pub struct BuildCtx {
    /// The run's id (labels, project names).
    pub run_id: String,
    /// The scenario's name (default compose project name).
    pub scenario: String,
    /// The run directory (logs, `${run_dir}`).
    pub run_dir: PathBuf,
    /// The scenario file's directory, absolute (`${scenario_dir}`).
    pub scenario_dir: PathBuf,
    /// docker: leave a stack rebound brought up running after the run.
    pub keep: bool,
    /// Where the backend records lifecycle events.
    pub history: Arc<History>,
    /// The run's fault journal (docker records cut networks in it before cutting).
    pub journal: Option<Arc<crate::journal::Journal>>,
    /// The run's host ports (docker: given to compose as `REBOUND_PORT_*`).
    pub ports: crate::ports::Ports,
}

/// `rebound-<scenario>-<run suffix>`, in the characters compose accepts.
pub fn compose_project_name(scenario: &str, run_id: &str) -> String {
    let clean: String = scenario
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let suffix = run_id.rsplit('-').next().unwrap_or("run");
    format!("rebound-{clean}-{suffix}")
}

/// Builds the backend a plan names; starts nothing yet (see [`Stack::up`]).
pub async fn build(plan: &StackPlan, ctx: BuildCtx) -> Result<Arc<dyn Stack>, StackError> {
    Ok(match plan {
        StackPlan::Process { services, links } => {
            let expand = process::ExpandContext {
                rebound: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rebound")),
                run_dir: ctx.run_dir,
                scenario_dir: ctx.scenario_dir,
            };
            Arc::new(
                process::ProcessStack::new(services, &expand, ctx.history)?
                    .with_run(&ctx.run_id, ctx.journal)
                    .with_links(links.clone()),
            )
        }
        StackPlan::Docker {
            source,
            links,
            durable,
            durability,
            ..
        } => {
            let (project, source) = match source {
                DockerSource::Compose {
                    file,
                    overrides,
                    project,
                } => (
                    project
                        .clone()
                        .unwrap_or_else(|| compose_project_name(&ctx.scenario, &ctx.run_id)),
                    docker::Source::Compose {
                        files: std::iter::once(file.clone())
                            .chain(overrides.iter().cloned())
                            .collect(),
                        keep: ctx.keep,
                    },
                ),
                DockerSource::Attach { project } => (project.clone(), docker::Source::Attach),
                DockerSource::Containers { containers } => (
                    compose_project_name(&ctx.scenario, &ctx.run_id),
                    docker::Source::Containers(containers.clone()),
                ),
            };
            Arc::new(
                docker::DockerStack::new(project, source, ctx.run_id, ctx.history, ctx.journal)
                    .await?
                    .with_links(links.clone())
                    .with_ports(ctx.ports)
                    .with_durable(durable, *durability, &ctx.run_dir.join("durable")),
            )
        }
    })
}
