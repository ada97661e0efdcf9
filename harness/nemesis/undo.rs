//! Undo records: what must be done to take a fault back, as data. A fault states its
//! record before it is injected ([`super::Fault::undo`]); heal applies it after every
//! trial. It is plain serialisable data naming services and paths (no in-memory
//! handles), so a later process could apply it from a journal; none keeps it yet.

use serde::{Deserialize, Serialize};

use super::{argv, exec_ok, ALL_SERVICES};
use crate::stack::{Stack, StackError};

/// One idempotent step of an undo: doing it twice, or when nothing needs undoing, is
/// harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum UndoStep {
    /// Reconnect the service to the networks a fault cut it off from.
    Reconnect {
        /// Service.
        service: String,
    },
    /// Resume the service if it is frozen.
    Unpause {
        /// Service.
        service: String,
    },
    /// Start the service if it is down (its restart policy did not bring it back).
    Start {
        /// Service.
        service: String,
    },
    /// Remove a file inside the service (a disk filler).
    RemoveFile {
        /// Service.
        service: String,
        /// Absolute path inside the service.
        path: String,
    },
    /// Bring back every service that a stack-wide fault left missing or stopped.
    EnsureUp,
    /// Delete rebound's iptables chain (and the jumps to it) in a service's
    /// network namespace.
    ClearChain {
        /// Service.
        service: String,
        /// The chain.
        chain: String,
    },
    /// Delete a root qdisc of this kind rebound set on a service's interfaces.
    ClearQdisc {
        /// Service.
        service: String,
        /// `tbf` or `netem`.
        qdisc: String,
    },
    /// Lift whatever fault is on a link of rebound's proxy.
    ClearLink {
        /// The link.
        link: String,
    },
    /// Finish a power cut: roll back and remount the service's power-loss layers
    /// if they were cut, start it if it is down (`*`: every service on the layer).
    PowerOn {
        /// Service, or `*`.
        service: String,
    },
    /// Lift a disk fault (`io-error-for`, `io-latency-for`) from the service's
    /// power-loss layers (`*`: every service on the layer).
    ClearIo {
        /// Service, or `*`.
        service: String,
    },
}

/// Everything heal does for one fault, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoRecord {
    /// The fault kind.
    pub fault: String,
    /// Its target.
    pub target: String,
    /// The steps, applied in order.
    pub steps: Vec<UndoStep>,
}

impl UndoRecord {
    /// The record every fault needs at least: put the target back to running
    /// (reconnected, resumed, started), or every service for a stack-wide fault.
    pub fn restore(fault: &str, target: &str) -> Self {
        let service = target.to_string();
        let steps = if target == ALL_SERVICES {
            vec![UndoStep::EnsureUp]
        } else {
            vec![
                UndoStep::Reconnect {
                    service: service.clone(),
                },
                UndoStep::Unpause {
                    service: service.clone(),
                },
                UndoStep::Start { service },
            ]
        };
        UndoRecord {
            fault: fault.to_string(),
            target: target.to_string(),
            steps,
        }
    }

    /// The same record with one more step at the end.
    pub fn then(mut self, step: UndoStep) -> Self {
        self.steps.push(step);
        self
    }

    /// Applies every step; returns what was done ("nothing to heal" if nothing was).
    pub async fn apply(&self, stack: &dyn Stack) -> Result<String, StackError> {
        let mut done = Vec::new();
        let mut first_error = None;
        // Every step is tried: one that fails must not leave the others undone.
        for step in &self.steps {
            match step.apply(stack).await {
                Ok(Some(what)) => done.push(what),
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(if done.is_empty() {
            "nothing to heal".into()
        } else {
            done.join(", ")
        })
    }
}

impl UndoStep {
    /// Does the step if it is needed; returns what was done.
    async fn apply(&self, stack: &dyn Stack) -> Result<Option<String>, StackError> {
        Ok(match self {
            UndoStep::Reconnect { service } => {
                let nets = stack.reconnect(service).await?;
                (!nets.is_empty()).then(|| format!("reconnected {service} to {nets:?}"))
            }
            UndoStep::Unpause { service } => {
                if stack.status(service)?.paused {
                    stack.unpause(service).await?;
                    Some(format!("resumed {service}"))
                } else {
                    None
                }
            }
            UndoStep::Start { service } => {
                if stack.status(service)?.running {
                    None
                } else {
                    stack.start(service).await?;
                    Some(format!("started {service}"))
                }
            }
            UndoStep::RemoveFile { service, path } => {
                exec_ok(stack, service, &argv(&["rm", "-f", path])).await?;
                Some(format!("removed {path}"))
            }
            UndoStep::ClearChain { service, chain } => {
                super::netfilter::clear(stack, service, chain)
                    .await?
                    .then(|| format!("removed {chain} in {service}"))
            }
            UndoStep::ClearQdisc { service, qdisc } => {
                super::netfilter::clear_qdisc(stack, service, qdisc)
                    .await?
                    .then(|| format!("removed the {qdisc} qdisc of {service}"))
            }
            UndoStep::ClearLink { link } => stack
                .set_link(link, None, None)
                .await?
                .map(|f| format!("lifted {} on link {link}", f.describe())),
            UndoStep::PowerOn { service } => super::power_cut::heal(service, stack).await?,
            UndoStep::ClearIo { service } => super::io_error::heal(service, stack).await?,
            UndoStep::EnsureUp => {
                let started = stack.ensure_up().await?;
                Some(if started.is_empty() {
                    "every service is up".into()
                } else {
                    format!("started {}", started.join(", "))
                })
            }
        })
    }
}
