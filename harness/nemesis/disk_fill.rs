//! `disk-fill`: the filesystem holding a path in the target is filled with one
//! filler file until at most `leave-bytes` are free, for a while; the filler is
//! removed when the duration ends and again by heal.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{argv, exec_ok, Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind, UndoRecord};
use crate::field::{nonzero, FieldError};
use crate::nemesis::UndoStep;
use crate::stack::{Capability, Stack, StackError};

/// Name of the file `disk-fill` creates (and heal removes) in the filled directory.
pub const DISK_FILL_FILE: &str = ".rebound-disk-fill";

/// `kind = "disk-fill"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDiskFill {
    /// Service name.
    pub target: String,
    /// A directory inside the container, on the filesystem to fill.
    pub path: String,
    /// Bytes left free (default 0).
    pub leave_bytes: Option<u64>,
    /// How long the disk stays full.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// Filesystem filled for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFill {
    /// Directory on the filesystem to fill.
    pub path: String,
    /// Bytes left free.
    pub leave_bytes: u64,
    /// How long.
    pub duration: Duration,
}

impl DiskFill {
    fn file(&self) -> String {
        format!("{}/{DISK_FILL_FILE}", self.path.trim_end_matches('/'))
    }
}

impl RawKind for RawDiskFill {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        if !self.path.starts_with('/') {
            return Err(FieldError::at(
                "path",
                &self.path,
                "path must be absolute inside the container",
            ));
        }
        let plan = DiskFill {
            path: self.path,
            leave_bytes: self.leave_bytes.unwrap_or(0),
            duration: nonzero("duration", self.duration)?,
        };
        Ok(FaultPlan::new(self.target, plan))
    }
}

#[async_trait]
impl Fault for DiskFill {
    fn name(&self) -> &'static str {
        "disk-fill"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Exec]
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        let (filled, free) =
            fill(stack, target, &self.path, &self.file(), self.leave_bytes).await?;
        Ok(Injected::new(
            format!(
                "filled {filled} bytes under {} in {target}, {free} left free, for {:?}",
                self.path, self.duration
            ),
            FreeAfter {
                target: target.into(),
                plan: self.clone(),
            },
        ))
    }

    fn undo(&self, target: &str) -> UndoRecord {
        UndoRecord::restore(self.name(), target).then(UndoStep::RemoveFile {
            service: target.into(),
            path: self.file(),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of `disk-fill`: the filler removed after the duration.
struct FreeAfter {
    target: String,
    plan: DiskFill,
}

#[async_trait]
impl Effect for FreeAfter {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        let DiskFill { path, duration, .. } = &self.plan;
        tokio::time::sleep(*duration).await;
        exec_ok(stack, &self.target, &argv(&["rm", "-f", &self.plan.file()])).await?;
        Ok(format!(
            "freed {path} in {} after {duration:?}",
            self.target
        ))
    }
}

async fn free_bytes(stack: &dyn Stack, target: &str, path: &str) -> Result<u64, StackError> {
    let df = exec_ok(stack, target, &argv(&["df", "-B1", "--output=avail", path])).await?;
    df.lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .ok_or_else(|| StackError::Command {
            what: format!("reading free space of {path} in {target}"),
            message: format!("unexpected df output: {}", df.trim()),
        })
}

/// Grows one filler file with `fallocate` until at most `leave` bytes are free.
/// The service keeps writing meanwhile, so a request for all free space can fail:
/// halve it and measure again, a bounded number of times.
async fn fill(
    stack: &dyn Stack,
    target: &str,
    path: &str,
    file: &str,
    leave: u64,
) -> Result<(u64, u64), StackError> {
    const ATTEMPTS: usize = 16;
    let mut filled: u64 = 0;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let free = free_bytes(stack, target, path).await?;
        let mut want = free.saturating_sub(leave);
        if want < 4096 {
            return Ok((filled, free));
        }
        while want >= 4096 {
            let cmd = argv(&[
                "fallocate",
                "-o",
                &filled.to_string(),
                "-l",
                &want.to_string(),
                file,
            ]);
            match exec_ok(stack, target, &cmd).await {
                Ok(_) => {
                    filled += want;
                    break;
                }
                Err(e) => {
                    last_error = Some(e);
                    want /= 2;
                }
            }
        }
    }
    let free = free_bytes(stack, target, path).await?;
    if free.saturating_sub(leave) < 4096 * 1024 {
        return Ok((filled, free));
    }
    Err(last_error.unwrap_or_else(|| StackError::Command {
        what: format!("filling {path} in {target}"),
        message: format!("{free} bytes still free after {ATTEMPTS} attempts"),
    }))
}
