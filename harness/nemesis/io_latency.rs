//! `io-latency-for`: for a while, chosen operations on the data of services on
//! rebound's power-loss layer each wait a delay before they are done, as a slow
//! or overloaded disk; then they are fast again. Shares its plan and undo with
//! [`super::io_error`].

use std::time::Duration;

use serde::Deserialize;

use super::io_error::{ops, path, IoFor, MAX_DELAY};
use super::{FaultPlan, PlanCtx, RawKind, ALL_SERVICES};
use crate::durable::{IoFault, IoOp};
use crate::field::{nonzero, FieldError};

/// `kind = "io-latency-for"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawIoLatencyFor {
    /// Service name; default every service on the power-loss layer (one disk).
    #[serde(default)]
    pub target: Option<String>,
    /// How long each matching operation waits (at most 10 s).
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Which operations wait: `read`, `write`, `fsync`, `open`, `namespace`
    /// (default `["read", "write", "fsync"]`).
    #[serde(default)]
    pub ops: Option<Vec<String>>,
    /// Only paths under this one, relative to the service's durable directory;
    /// default every path.
    #[serde(default)]
    pub path: Option<String>,
    /// How long the disk stays slow.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

impl RawKind for RawIoLatencyFor {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        let delay = nonzero("delay", self.delay)?;
        if delay > MAX_DELAY {
            return Err(FieldError::at(
                "delay",
                &humantime::format_duration(delay).to_string(),
                format!("at most {MAX_DELAY:?} per operation (a longer one is an outage: use io-error-for)"),
            ));
        }
        let fault = IoFault {
            ops: ops(self.ops, &[IoOp::Read, IoOp::Write, IoOp::Fsync])?,
            path: path(self.path)?,
            error: None,
            delay,
        };
        Ok(FaultPlan::new(
            self.target.unwrap_or_else(|| ALL_SERVICES.to_string()),
            IoFor {
                kind: "io-latency-for",
                fault,
                duration,
            },
        ))
    }
}
