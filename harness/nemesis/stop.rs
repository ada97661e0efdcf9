//! Stop faults: `stop-for` (stopped gracefully, started again after a duration) and
//! `restart` (the engine's own restart of one container).

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    exits_of, Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind, DEATH_TIMEOUT, DEFAULT_GRACE,
};
use crate::field::{nonzero, FieldError};
use crate::stack::{Capability, Stack, StackError};

/// `kind = "stop-for"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStopFor {
    /// Service name.
    pub target: String,
    /// How long the service stays stopped.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Time allowed between SIGTERM and SIGKILL (default 10s).
    #[serde(default, with = "humantime_serde::option")]
    pub grace: Option<Duration>,
}

/// `kind = "restart"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRestart {
    /// Service name.
    pub target: String,
    /// Time allowed between SIGTERM and SIGKILL (default 10s).
    #[serde(default, with = "humantime_serde::option")]
    pub grace: Option<Duration>,
}

/// Stopped for `duration`, then started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopFor {
    /// How long it stays stopped.
    pub duration: Duration,
    /// SIGTERM → SIGKILL grace.
    pub grace: Duration,
}

/// `docker restart` with a grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// SIGTERM → SIGKILL grace.
    pub grace: Duration,
}

impl RawKind for RawStopFor {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let plan = StopFor {
            duration: nonzero("duration", self.duration)?,
            grace: self.grace.unwrap_or(DEFAULT_GRACE),
        };
        Ok(FaultPlan::new(self.target, plan))
    }
}

impl RawKind for RawRestart {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let grace = self.grace.unwrap_or(DEFAULT_GRACE);
        Ok(FaultPlan::new(self.target, Restart { grace }))
    }
}

#[async_trait]
impl Fault for StopFor {
    fn name(&self) -> &'static str {
        "stop-for"
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        stack.stop(target, self.grace).await?;
        Ok(Injected::new(
            format!("{target} stopped for {:?}", self.duration),
            StartAfter {
                target: target.into(),
                duration: self.duration,
            },
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of `stop-for`: the service is started again after the duration.
struct StartAfter {
    target: String,
    duration: Duration,
}

#[async_trait]
impl Effect for StartAfter {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        tokio::time::sleep(self.duration).await;
        stack.start(&self.target).await?;
        Ok(format!("{} started after {:?}", self.target, self.duration))
    }
}

#[async_trait]
impl Fault for Restart {
    fn name(&self) -> &'static str {
        "restart"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Restart]
    }

    // The blocking engine call runs in the effect: the request itself is t_inject.
    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        let exits = exits_of(stack, target)?;
        Ok(Injected::new(
            format!("docker restart {target} (grace {:?})", self.grace),
            Restarted {
                target: target.into(),
                exits,
                grace: self.grace,
            },
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of `restart`: the engine's restart returned and the old process is gone.
struct Restarted {
    target: String,
    exits: u64,
    grace: Duration,
}

#[async_trait]
impl Effect for Restarted {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        stack.restart(&self.target, self.grace).await?;
        stack
            .wait_exit(&self.target, self.exits, DEATH_TIMEOUT)
            .await?;
        Ok(format!("{} restarted", self.target))
    }
}
