//! Fault injection: every fault kind is one file here, holding its raw table
//! (serde), its validation into a plan, the stack [`Capability`]s it needs, and its
//! three steps the runner records: `inject` (instant: `t_inject`), the returned
//! [`Effect`] (waits until the fault has taken effect and, for timed faults, lifts
//! it), and the [`UndoRecord`] that heal applies (idempotent: puts the target back
//! whatever happened before). The record is plain serialisable data, known before the
//! fault is injected, so that the run's fault journal keeps it for a later
//! `rebound heal`.
//!
//! Adding a kind: a file with a `Raw…` table that implements [`RawKind`] and a plan
//! that implements [`Fault`], plus one line in the `registry!` below.

pub mod db_restart;
pub mod disk_fill;
pub mod exec;
pub mod http;
pub mod io_error;
pub mod io_latency;
pub mod link;
pub mod loss;
pub mod netfilter;
pub mod network;
pub mod partition;
pub mod pause;
pub mod power_cut;
pub mod qdisc;
pub mod signal;
pub mod stack_restart;
pub mod stop;
pub mod undo;

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::field::FieldError;
use crate::stack::{Capabilities, Capability, Stack, StackError};
pub use db_restart::DbRestartMode;
pub use disk_fill::DISK_FILL_FILE;
pub use undo::{UndoRecord, UndoStep};

/// How long a killed process may take to be reaped before the fault counts as unconfirmed.
const DEATH_TIMEOUT: Duration = Duration::from_secs(10);

/// SIGTERM → SIGKILL grace when a fault's table does not give one.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Target of faults that act on every service (`stack-restart`); not a valid
/// compose service name, so it never collides with one.
pub const ALL_SERVICES: &str = "*";

/// What a kind's validation may consult about the scenario.
#[derive(Debug, Clone, Copy)]
pub struct PlanCtx {
    /// The backend's name (`process`, `docker`).
    pub backend: &'static str,
    /// What it can do.
    pub capabilities: Capabilities,
}

/// One validated fault: what is done to which service, and the faults that
/// follow it in the same trial (`[[fault.then]]`).
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// Target service ([`ALL_SERVICES`] for stack-wide faults).
    pub target: String,
    /// The kind and its parameters.
    pub kind: Arc<dyn Fault>,
    /// Faults injected later in the same trial, in order (never nested).
    pub then: Vec<FollowUp>,
}

impl FaultPlan {
    /// A plan for `target`.
    pub fn new(target: impl Into<String>, kind: impl Fault + 'static) -> Self {
        FaultPlan {
            target: target.into(),
            kind: Arc::new(kind),
            then: Vec::new(),
        }
    }

    /// The trial's faults in firing order: this one, then its follow-ups.
    pub fn steps(&self) -> impl Iterator<Item = &FaultPlan> {
        std::iter::once(self).chain(self.then.iter().map(|f| &f.fault))
    }
}

/// A `[[fault.then]]`: a fault injected `after` the previous fault of the trial
/// was injected, while that one may still be in effect (a kill during a black
/// hole, a restart while the database recovers).
#[derive(Debug, Clone)]
pub struct FollowUp {
    /// Delay after the previous fault's `fault-ok`, or after the `when` event.
    pub after: Duration,
    /// An event to wait for first (after the previous fault was invoked).
    pub when: Option<When>,
    /// The fault.
    pub fault: FaultPlan,
}

/// A follow-up's trigger: a service's lifecycle event (`when = "db healthy"`) or
/// a probe going down or coming back (`when = "probe ready down"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// The service, or for probe events the probe.
    pub service: String,
    /// What must happen to it.
    pub event: ServiceEvent,
    /// For [`ServiceEvent::Log`], the pattern a line must match.
    pub pattern: Option<LogPattern>,
}

/// A `when = "SERVICE log /pattern/"` pattern (compared by its text).
#[derive(Debug, Clone)]
pub struct LogPattern(pub regex::Regex);

impl PartialEq for LogPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for LogPattern {}

/// A lifecycle event a follow-up can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceEvent {
    /// A process or container of the service exited.
    Died,
    /// One started.
    Started,
    /// Its health check turned healthy.
    Healthy,
    /// A probe attempt failed.
    ProbeDown,
    /// A probe attempt succeeded after one had failed.
    ProbeUp,
    /// It logged a line matching the trigger's pattern.
    Log,
}

impl ServiceEvent {
    /// Whether this is a probe's event (the subject is a probe, not a service).
    pub fn is_probe(self) -> bool {
        matches!(self, ServiceEvent::ProbeDown | ServiceEvent::ProbeUp)
    }
}

impl When {
    /// Whether `record` is this event. `seen_down` carries, between calls, whether
    /// the probe of a `probe … up` trigger has failed yet (it must go down before
    /// it can come back); start it false where counting starts.
    pub fn matches(&self, record: &crate::history::Record, seen_down: &mut bool) -> bool {
        use crate::history::{Event, Lifecycle};
        if self.event.is_probe() {
            let Event::Probe {
                probe,
                ok,
                cancelled: false,
                ..
            } = &record.event
            else {
                return false;
            };
            if probe != &self.service {
                return false;
            }
            if !*ok {
                *seen_down = true;
            }
            return match self.event {
                ServiceEvent::ProbeDown => !*ok,
                _ => *ok && *seen_down,
            };
        }
        if self.event == ServiceEvent::Log {
            return match (&record.event, &self.pattern) {
                (Event::Log { service, line, .. }, Some(p)) => {
                    service == &self.service && p.0.is_match(line)
                }
                _ => false,
            };
        }
        let Event::Service {
            service,
            action,
            detail,
            ..
        } = &record.event
        else {
            return false;
        };
        service == &self.service
            && match self.event {
                ServiceEvent::Died => *action == Lifecycle::Exited,
                ServiceEvent::Started => *action == Lifecycle::Started,
                ServiceEvent::Healthy => {
                    *action == Lifecycle::Health
                        && detail.as_deref() == Some(crate::stack::Health::HEALTHY)
                }
                ServiceEvent::ProbeDown | ServiceEvent::ProbeUp | ServiceEvent::Log => false,
            }
    }
}

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let event = match self.event {
            ServiceEvent::Died => "died",
            ServiceEvent::Started => "started",
            ServiceEvent::Healthy => "healthy",
            ServiceEvent::ProbeDown => return write!(f, "probe {} down", self.service),
            ServiceEvent::ProbeUp => return write!(f, "probe {} up", self.service),
            ServiceEvent::Log => {
                let p = self.pattern.as_ref().map_or("", |p| p.0.as_str());
                return write!(f, "{} log /{p}/", self.service);
            }
        };
        write!(f, "{} {event}", self.service)
    }
}

/// `[[fault]]` as written: one fault kind's table and its `[[fault.then]]`
/// follow-ups.
#[derive(Debug, Clone)]
pub struct RawFaultTable {
    /// The fault.
    pub fault: RawFault,
    /// Faults that follow it in the same trial.
    pub then: Vec<RawFollowUp>,
}

/// A `[[fault.then]]` table: `after` and/or `when`, plus one fault kind's keys.
#[derive(Debug, Clone)]
pub struct RawFollowUp {
    /// Delay after the previous fault was injected, or after `when`.
    pub after: Duration,
    /// An event to wait for first (its service is checked during validation).
    pub when: Option<When>,
    /// The fault.
    pub fault: RawFault,
}

impl<'de> serde::Deserialize<'de> for RawFaultTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let then = match table.remove("then") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    follow_up(item).map_err(|m| D::Error::custom(format!("then[{i}]: {m}")))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(D::Error::custom(
                    "`then` is a list of [[fault.then]] tables",
                ))
            }
        };
        let fault = RawFault::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        Ok(RawFaultTable { fault, then })
    }
}

fn follow_up(item: toml::Value) -> Result<RawFollowUp, String> {
    let toml::Value::Table(mut table) = item else {
        return Err("a [[fault.then]] entry is a table".into());
    };
    if table.contains_key("then") {
        return Err("a follow-up cannot have follow-ups of its own: list them all under the first [[fault]]".into());
    }
    let when = match table.remove("when") {
        None => None,
        Some(toml::Value::String(w)) => Some(parse_when(&w)?),
        Some(_) => return Err("when: a string such as \"db healthy\"".into()),
    };
    let after = match table.remove("after") {
        Some(toml::Value::String(s)) => humantime::parse_duration(&s)
            .map_err(|e| format!("after: `{s}` is not a duration such as \"1s\": {e}"))?,
        Some(_) => return Err("after: a duration such as \"1s\"".into()),
        // After an event, at once unless told otherwise.
        None if when.is_some() => Duration::ZERO,
        None => {
            return Err("missing field `after` (how long after the previous fault, e.g. \"1s\") or `when` (an event, e.g. \"db healthy\")".into())
        }
    };
    let fault = <RawFault as serde::Deserialize>::deserialize(toml::Value::Table(table))
        .map_err(|e| e.to_string())?;
    Ok(RawFollowUp { after, when, fault })
}

/// `when = "SERVICE EVENT"` (died, started or healthy), `"SERVICE log /PATTERN/"`
/// or `"probe NAME down|up"`.
fn parse_when(text: &str) -> Result<When, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.first() == Some(&"probe") && words.len() == 3 {
        let event = match words[2] {
            "down" => ServiceEvent::ProbeDown,
            "up" => ServiceEvent::ProbeUp,
            _ => {
                return Err(format!(
                    "when: `{text}`: expected \"probe NAME down\" or \"probe NAME up\""
                ))
            }
        };
        return Ok(When {
            service: words[1].to_string(),
            event,
            pattern: None,
        });
    }
    if words.get(1) == Some(&"log") {
        // "SERVICE log /pattern/": the pattern is everything between the slashes.
        let rest = text.trim_start()[words[0].len()..].trim_start()["log".len()..].trim();
        let pattern = rest
            .strip_prefix('/')
            .and_then(|r| r.strip_suffix('/'))
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                format!("when: `{text}`: expected SERVICE log /PATTERN/, e.g. \"db log /ready to accept/\"")
            })?;
        let re = regex::Regex::new(pattern).map_err(|e| {
            // The regex crate's message draws the pattern over lines: keep its last.
            let e = e.to_string();
            let why = e
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            format!("when: `{text}`: /{pattern}/ is not a regular expression ({why})")
        })?;
        return Ok(When {
            service: words[0].to_string(),
            event: ServiceEvent::Log,
            pattern: Some(LogPattern(re)),
        });
    }
    let event = match words.get(1).copied() {
        Some("died") => ServiceEvent::Died,
        Some("started") => ServiceEvent::Started,
        Some("healthy") => ServiceEvent::Healthy,
        _ => None.ok_or_else(|| {
            format!("when: `{text}`: expected SERVICE EVENT with EVENT died, started or healthy (e.g. \"db healthy\"), \"SERVICE log /PATTERN/\", or \"probe NAME down|up\"")
        })?,
    };
    if words.len() != 2 {
        return Err(format!(
            "when: `{text}`: expected SERVICE EVENT, e.g. \"db healthy\""
        ));
    }
    Ok(When {
        service: words[0].to_string(),
        event,
        pattern: None,
    })
}

/// A raw `[[fault]]` table of one kind, as serde reads it.
pub trait RawKind {
    /// Validates the kind's own keys into a plan.
    fn plan(self, ctx: &PlanCtx) -> Result<FaultPlan, FieldError>;
}

/// A validated fault kind with its parameters.
#[async_trait]
pub trait Fault: Debug + Send + Sync + Any {
    /// The kebab-case kind name used in files and reports.
    fn name(&self) -> &'static str;
    /// Stack primitives beyond the basic ones that the kind uses.
    fn needs(&self) -> &'static [Capability] {
        &[]
    }
    /// Services the fault acts on besides its target (validated to exist).
    fn services(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether `target` names a `[[stack.link]]` rather than a service.
    fn targets_link(&self) -> bool {
        false
    }
    /// Performs the instantaneous action; its success is `t_inject`. Returns what was
    /// done and the effect to await.
    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError>;
    /// What heal must do to take the fault back, known before it is injected.
    fn undo(&self, target: &str) -> UndoRecord {
        UndoRecord::restore(self.name(), target)
    }
    /// The plan as `Any`, for tests that look at a kind's parameters.
    fn as_any(&self) -> &dyn Any;
}

/// The result of a successful `inject`.
pub struct Injected {
    /// What was done (the `fault-ok` record's detail).
    pub detail: String,
    /// What to await before the recovery gate opens.
    pub effect: Box<dyn Effect>,
}

impl Injected {
    /// An injection whose effect is `effect`.
    pub fn new(detail: impl Into<String>, effect: impl Effect + 'static) -> Self {
        Injected {
            detail: detail.into(),
            effect: Box::new(effect),
        }
    }
}

/// The second step of a fault: completes when its effect is confirmed (the target
/// died) or, for timed faults, lifted. Its completion opens the recovery gate.
#[async_trait]
pub trait Effect: Send {
    /// Waits for the effect; returns what was observed.
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError>;
}

macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident => $raw:ty ),* $(,)?) => {
        /// `[[fault]]`: one fault kind and its parameters (each kind's keys are
        /// documented on its raw type).
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(tag = "kind", rename_all = "kebab-case")]
        pub enum RawFault {
            $( $(#[$doc])* $variant($raw), )*
        }

        impl RawFault {
            /// Validates the kind's own keys into a plan.
            pub fn plan(self, ctx: &PlanCtx) -> Result<FaultPlan, FieldError> {
                match self {
                    $( RawFault::$variant(raw) => raw.plan(ctx), )*
                }
            }
        }
    };
}

registry! {
    /// SIGKILL the target; its restart policy brings it back.
    Sigkill => signal::RawSigkill,
    /// Graceful restart: SIGTERM, SIGKILL after `grace`, then rebound starts it.
    Sigterm => signal::RawSigterm,
    /// Deliver any signal (e.g. SIGHUP for a config reload) to the target.
    Signal => signal::RawSignal,
    /// Stop the target (gracefully), keep it stopped for `duration`, start it.
    StopFor => stop::RawStopFor,
    /// docker: `docker restart` (SIGTERM, SIGKILL after `grace`, start).
    Restart => stop::RawRestart,
    /// Freeze the target (SIGSTOP / docker pause) for `duration`, then resume it.
    PauseFor => pause::RawPauseFor,
    /// docker: cut the target off every network for `duration`, then reconnect it.
    DisconnectFor => network::RawDisconnectFor,
    /// docker: `pg_ctl stop -m fast|immediate` inside a PostgreSQL container.
    DbRestart => db_restart::RawDbRestart,
    /// docker: fill the filesystem holding `path` until `leave-bytes` remain.
    DiskFill => disk_fill::RawDiskFill,
    /// Call an HTTP endpoint (e.g. one that triggers a restore).
    Http => http::RawHttp,
    /// docker: run an argv inside the target; exit 0 is a successful injection.
    Exec => exec::RawExec,
    /// docker: restart every service of the stack (no `target`).
    StackRestart => stack_restart::RawStackRestart,
    /// docker: split the stack into groups that cannot reach each other (iptables
    /// in each service's network namespace), then join them.
    PartitionFor => partition::RawPartitionFor,
    /// docker: drop a random share of the target's packets (iptables statistic).
    LossFor => loss::RawLossFor,
    /// docker: shape what the target sends to a rate (tc tbf).
    BandwidthFor => qdisc::RawBandwidthFor,
    /// docker: delay what the target sends (tc netem, where the kernel has it).
    LatencyFor => qdisc::RawLatencyFor,
    /// Delay everything on a link of rebound's proxy (`[[stack.link]]`).
    LinkLatency => link::latency::RawLinkLatency,
    /// Cap a link's rate.
    LinkBandwidth => link::bandwidth::RawLinkBandwidth,
    /// Accept connections on a link and answer nothing.
    LinkBlackhole => link::blackhole::RawLinkBlackhole,
    /// Reset every connection on a link.
    LinkReset => link::reset::RawLinkReset,
    /// process: a power cut of the services on the power-loss layer (`durable-dirs`):
    /// frozen, SIGKILLed, what was not made durable dropped, started again.
    PowerCut => power_cut::RawPowerCut,
    /// Operations on the data of services on the power-loss layer fail with EIO,
    /// ENOSPC or EROFS for `duration`.
    IoErrorFor => io_error::RawIoErrorFor,
    /// Operations on the data of services on the power-loss layer each wait
    /// `delay` for `duration`.
    IoLatencyFor => io_latency::RawIoLatencyFor,
}

/// Performs the fault's instantaneous action; its success is `t_inject`.
pub async fn inject(fault: &FaultPlan, stack: &dyn Stack) -> Result<Injected, StackError> {
    fault.kind.inject(&fault.target, stack).await
}

/// Restores the target whatever state the trial left it in, by applying the fault's
/// undo record: reconnects cut networks, resumes it if frozen, frees a filled disk,
/// starts it if it is down and its restart policy did not bring it back.
pub async fn heal(fault: &FaultPlan, stack: &dyn Stack) -> Result<String, StackError> {
    fault.kind.undo(&fault.target).apply(stack).await
}

/// Runs an argv in the target and turns a non-zero exit into an error.
async fn exec_ok(stack: &dyn Stack, target: &str, argv: &[String]) -> Result<String, StackError> {
    let out = stack.exec(target, argv).await?;
    if out.code == 0 {
        Ok(out.output)
    } else {
        Err(StackError::Command {
            what: format!("`{}` in {target}", argv.join(" ")),
            message: format!("exit code {}: {}", out.code, out.output.trim()),
        })
    }
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// The exit count of `target` before a fault, so that its death can be awaited.
fn exits_of(stack: &dyn Stack, target: &str) -> Result<u64, StackError> {
    Ok(stack.status(target)?.exits)
}

/// Effect: the target's process died (its exit count passed `exits`).
struct Death {
    target: String,
    exits: u64,
}

#[async_trait]
impl Effect for Death {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        stack
            .wait_exit(&self.target, self.exits, DEATH_TIMEOUT)
            .await?;
        Ok(format!("{} died", self.target))
    }
}

/// Effect: nothing to await (the injection itself was the whole fault).
struct Done(String);

#[async_trait]
impl Effect for Done {
    async fn wait(self: Box<Self>, _stack: &dyn Stack) -> Result<String, StackError> {
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests;
