//! `exec`: an argv run inside the target; exit 0 is a successful injection.

use std::any::Any;

use async_trait::async_trait;
use serde::Deserialize;

use super::{exec_ok, Done, Fault, FaultPlan, Injected, PlanCtx, RawKind};
use crate::field::{command, FieldError};
use crate::stack::{Capability, Stack, StackError};

/// `kind = "exec"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawExec {
    /// Service name.
    pub target: String,
    /// argv (no shell).
    pub command: Vec<String>,
}

/// An argv run in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// argv.
    pub command: Vec<String>,
}

impl RawKind for RawExec {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        command("command", &self.command)?;
        Ok(FaultPlan::new(
            self.target,
            Exec {
                command: self.command,
            },
        ))
    }
}

#[async_trait]
impl Fault for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Exec]
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        exec_ok(stack, target, &self.command).await?;
        Ok(Injected::new(
            format!("exec {:?} in {target}: exit 0", self.command),
            Done("delivered".into()),
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
