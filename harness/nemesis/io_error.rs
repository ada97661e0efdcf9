//! `io-error-for`: for a while, chosen operations on the data of services on
//! rebound's power-loss layer fail with EIO, ENOSPC or EROFS, as a failing disk,
//! a full one or a filesystem remounted read-only answers; then they work again.
//! The failed operations never reach the disk: a failed fsync makes nothing
//! durable (a power cut after it loses what it did not sync).

use std::any::Any;
use std::path::{Component, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind, UndoRecord, UndoStep, ALL_SERVICES,
};
use crate::durable::{IoError, IoFault, IoOp};
use crate::field::{nonzero, FieldError};
use crate::stack::{Capability, Stack, StackError};

/// `kind = "io-error-for"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawIoErrorFor {
    /// Service name; default every service on the power-loss layer (one disk).
    #[serde(default)]
    pub target: Option<String>,
    /// `EIO` (default), `ENOSPC` or `EROFS`.
    #[serde(default)]
    pub error: Option<String>,
    /// Which operations fail: `read`, `write`, `fsync`, `open`, `namespace`
    /// (default `["write", "fsync"]`).
    #[serde(default)]
    pub ops: Option<Vec<String>>,
    /// Only paths under this one, relative to the service's durable directory
    /// (e.g. `pg_wal`); default every path.
    #[serde(default)]
    pub path: Option<String>,
    /// How long the operations fail.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// The disk fault of an `io-error-for` or `io-latency-for`, for `duration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoFor {
    /// The kind's name.
    pub kind: &'static str,
    /// What fails or waits, where.
    pub fault: IoFault,
    /// How long.
    pub duration: Duration,
}

/// The longest delay `io-latency-for` accepts per operation.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// `ops`: the operation classes, or `default` when not given.
pub(super) fn ops(raw: Option<Vec<String>>, default: &[IoOp]) -> Result<Vec<IoOp>, FieldError> {
    let Some(names) = raw else {
        return Ok(default.to_vec());
    };
    if names.is_empty() {
        return Err(FieldError::new(
            "ops",
            "name at least one class of operations",
        ));
    }
    let known = || {
        IoOp::ALL
            .iter()
            .map(|o| o.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    for n in &names {
        let op = IoOp::parse(n).ok_or_else(|| {
            FieldError::at(
                "ops",
                n,
                format!("unknown operation class `{n}`; classes are: {}", known()),
            )
        })?;
        if !out.contains(&op) {
            out.push(op);
        }
    }
    Ok(out)
}

/// `path`: relative to the durable directory, no `..`.
pub(super) fn path(raw: Option<String>) -> Result<Option<PathBuf>, FieldError> {
    let Some(p) = raw else {
        return Ok(None);
    };
    let path = PathBuf::from(&p);
    let ok = !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok {
        return Err(FieldError::at(
            "path",
            &p,
            "a path relative to the service's durable directory, without `..` (e.g. \"pg_wal\")",
        ));
    }
    let clean: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

impl RawKind for RawIoErrorFor {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        let error = match self.error.as_deref() {
            None => IoError::Eio,
            Some(e) => IoError::parse(e).ok_or_else(|| {
                FieldError::at(
                    "error",
                    e,
                    format!("unknown error `{e}`; one of EIO, ENOSPC, EROFS"),
                )
            })?,
        };
        let fault = IoFault {
            ops: ops(self.ops, &[IoOp::Write, IoOp::Fsync])?,
            path: path(self.path)?,
            error: Some(error),
            delay: Duration::ZERO,
        };
        Ok(FaultPlan::new(
            self.target.unwrap_or_else(|| ALL_SERVICES.to_string()),
            IoFor {
                kind: "io-error-for",
                fault,
                duration,
            },
        ))
    }
}

#[async_trait]
impl Fault for IoFor {
    fn name(&self) -> &'static str {
        self.kind
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::PowerLoss]
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        let services = super::power_cut::victims(target, stack)?;
        stack.set_io(&services, Some(&self.fault)).await?;
        Ok(Injected::new(
            format!(
                "{}: {} for {:?}",
                services.join(", "),
                self.fault.describe(),
                self.duration
            ),
            LiftAfter {
                services,
                duration: self.duration,
            },
        ))
    }

    fn undo(&self, target: &str) -> UndoRecord {
        UndoRecord {
            fault: self.name().into(),
            target: target.into(),
            steps: vec![UndoStep::ClearIo {
                service: target.into(),
            }],
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of a disk fault: lifted after the duration, saying what it matched.
struct LiftAfter {
    services: Vec<String>,
    duration: Duration,
}

#[async_trait]
impl Effect for LiftAfter {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        tokio::time::sleep(self.duration).await;
        let lines = stack.set_io(&self.services, None).await?;
        Ok(lifted(self.duration, &lines))
    }
}

/// The fault-end line: what each layer's fault matched, and a warning when none
/// matched anything (a fault that touched nothing proves nothing).
fn lifted(duration: Duration, lines: &[String]) -> String {
    if lines.is_empty() {
        return format!("lifted after {duration:?}");
    }
    let mut out = format!("lifted after {duration:?}: {}", lines.join("; "));
    if lines
        .iter()
        .all(|l| l.ends_with(crate::durable::IoHits::NONE))
    {
        out.push_str(
            " — the fault touched nothing (are `ops` and `path` right? \
             `path` is relative to the durable directory)",
        );
    }
    out
}

/// Heal's step: lift a disk fault still in force (idempotent).
pub(super) async fn heal(service: &str, stack: &dyn Stack) -> Result<Option<String>, StackError> {
    let services = super::power_cut::victims(service, stack)?;
    let lines = stack.set_io(&services, None).await?;
    Ok((!lines.is_empty()).then(|| format!("lifted the disk fault: {}", lines.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_fault_that_touched_nothing_says_so() {
        let d = Duration::from_secs(3);
        let none = format!(
            "db /data: fsync operations fail with EIO: {}",
            crate::durable::IoHits::NONE
        );
        let some = "app /var: fsync operations fail with EIO: 2 operation(s) matched (first: fsync a, fsync b)";
        assert!(lifted(d, std::slice::from_ref(&none)).contains("touched nothing"));
        assert!(!lifted(d, &[none, some.to_string()]).contains("touched nothing"));
        assert_eq!(lifted(d, &[]), "lifted after 3s");
    }
}
