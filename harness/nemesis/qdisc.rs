//! The traffic-control faults on a service's interfaces: `bandwidth-for` (a `tbf`
//! root qdisc: what the target sends is shaped to a rate) and `latency-for` (a
//! `netem` delay, only where the kernel has netem — this one does not, and the
//! fault then fails with a message naming the user-space alternative,
//! `link-latency` through rebound's proxy).

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::netfilter::{clear_qdisc, set_qdisc};
use super::{Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind, UndoRecord, UndoStep};
use crate::field::{nonzero, FieldError};
use crate::stack::{Capability, Stack, StackError};

/// `kind = "bandwidth-for"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBandwidthFor {
    /// Service name.
    pub target: String,
    /// What the target may send, in bytes per second.
    pub bytes_per_sec: u64,
    /// How long.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// `kind = "latency-for"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLatencyFor {
    /// Service name.
    pub target: String,
    /// Delay added to what the target sends.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// How long.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// A root qdisc on every interface of the target for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QdiscFor {
    /// The kind name (`bandwidth-for`, `latency-for`).
    pub name: &'static str,
    /// The qdisc kind (`tbf`, `netem`).
    pub qdisc: &'static str,
    /// Its arguments after the kind.
    pub args: Vec<String>,
    /// How long.
    pub duration: Duration,
}

impl RawKind for RawBandwidthFor {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        if self.bytes_per_sec < 1000 {
            return Err(FieldError::new(
                "bytes-per-sec",
                "must be at least 1000 (tbf cannot shape below; use link-blackhole to stop all traffic)",
            ));
        }
        // A burst of a tenth of a second (at least 16 KiB), queueing at most 400 ms.
        let burst = (self.bytes_per_sec / 10).max(16 * 1024);
        Ok(FaultPlan::new(
            self.target,
            QdiscFor {
                name: "bandwidth-for",
                qdisc: "tbf",
                args: vec![
                    "rate".into(),
                    format!("{}bps", self.bytes_per_sec),
                    "burst".into(),
                    format!("{burst}b"),
                    "latency".into(),
                    "400ms".into(),
                ],
                duration,
            },
        ))
    }
}

impl RawKind for RawLatencyFor {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        let latency = nonzero("latency", self.latency)?;
        Ok(FaultPlan::new(
            self.target,
            QdiscFor {
                name: "latency-for",
                qdisc: "netem",
                args: vec!["delay".into(), format!("{}ms", latency.as_millis())],
                duration,
            },
        ))
    }
}

#[async_trait]
impl Fault for QdiscFor {
    fn name(&self) -> &'static str {
        self.name
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Netns]
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        let mut qdisc = vec![self.qdisc.to_string()];
        qdisc.extend(self.args.iter().cloned());
        match set_qdisc(stack, target, &qdisc).await {
            Err(StackError::Command { what, message })
                if message.contains("Specified qdisc kind is unknown") =>
            {
                return Err(StackError::Command {
                    what,
                    message: format!(
                        "this kernel has no `{}` qdisc ({}): {}",
                        self.qdisc,
                        message.trim(),
                        if self.qdisc == "netem" {
                            "add latency in user space instead: a [[stack.link]] in front of the dependency and `kind = \"link-latency\"` (rebound's proxy)"
                        } else {
                            "load its module (modprobe sch_tbf) or use link-bandwidth through rebound's proxy"
                        }
                    ),
                });
            }
            other => other?,
        }
        Ok(Injected::new(
            format!("{target}: {} for {:?}", qdisc.join(" "), self.duration),
            QdiscAfter {
                target: target.into(),
                qdisc: self.qdisc,
                duration: self.duration,
            },
        ))
    }

    fn undo(&self, target: &str) -> UndoRecord {
        UndoRecord {
            fault: self.name().into(),
            target: target.into(),
            steps: vec![UndoStep::ClearQdisc {
                service: target.into(),
                qdisc: self.qdisc.into(),
            }],
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of a qdisc fault: removed after the duration.
struct QdiscAfter {
    target: String,
    qdisc: &'static str,
    duration: Duration,
}

#[async_trait]
impl Effect for QdiscAfter {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        tokio::time::sleep(self.duration).await;
        clear_qdisc(stack, &self.target, self.qdisc).await?;
        Ok(format!(
            "{}: {} removed after {:?}",
            self.target, self.qdisc, self.duration
        ))
    }
}
