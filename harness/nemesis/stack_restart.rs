//! `stack-restart`: every service of the project restarted — all at once, in
//! dependency order through compose, or compose down and up (volumes kept).

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind, ALL_SERVICES, DEFAULT_GRACE};
use crate::field::FieldError;
use crate::stack::{Capability, Stack, StackError, StackRestartMode};

/// `kind = "stack-restart"` (no `target`: every service).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStackRestart {
    /// How (default `parallel`).
    pub mode: Option<StackRestartMode>,
    /// SIGTERM → SIGKILL grace per container (default 10s).
    #[serde(default, with = "humantime_serde::option")]
    pub grace: Option<Duration>,
}

/// Every service restarted (target [`ALL_SERVICES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackRestart {
    /// How.
    pub mode: StackRestartMode,
    /// SIGTERM → SIGKILL grace per container.
    pub grace: Duration,
}

impl RawKind for RawStackRestart {
    fn plan(self, ctx: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let mode = self.mode.unwrap_or_default();
        let caps = ctx.capabilities;
        // A backend that cannot restart the stack at all is named by the generic check.
        if mode != StackRestartMode::Parallel
            && caps.has(Capability::RestartAll)
            && !caps.has(Capability::Compose)
        {
            return Err(FieldError::new(
                "mode",
                "modes `ordered` and `down-up` run compose and need `compose = …`; an attached project supports `parallel` only",
            ));
        }
        let grace = self.grace.unwrap_or(DEFAULT_GRACE);
        Ok(FaultPlan::new(ALL_SERVICES, StackRestart { mode, grace }))
    }
}

#[async_trait]
impl Fault for StackRestart {
    fn name(&self) -> &'static str {
        "stack-restart"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::RestartAll]
    }

    async fn inject(&self, _target: &str, _stack: &dyn Stack) -> Result<Injected, StackError> {
        Ok(Injected::new(
            format!(
                "restart every service ({}, grace {:?})",
                self.mode.name(),
                self.grace
            ),
            self.clone(),
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[async_trait]
impl Effect for StackRestart {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        stack.restart_all(self.mode, self.grace).await
    }
}
