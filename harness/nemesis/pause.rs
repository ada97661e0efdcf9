//! `pause-for`: the service is frozen (SIGSTOP, `docker pause`) for a while, then
//! resumed.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind};
use crate::field::{nonzero, FieldError};
use crate::stack::{Stack, StackError};

/// `kind = "pause-for"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPauseFor {
    /// Service name.
    pub target: String,
    /// How long the service stays frozen.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// SIGSTOP for `duration`, then SIGCONT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseFor {
    /// How long it stays frozen.
    pub duration: Duration,
}

impl RawKind for RawPauseFor {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        Ok(FaultPlan::new(self.target, PauseFor { duration }))
    }
}

#[async_trait]
impl Fault for PauseFor {
    fn name(&self) -> &'static str {
        "pause-for"
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        stack.pause(target).await?;
        Ok(Injected::new(
            format!("{target} paused for {:?}", self.duration),
            ResumeAfter {
                target: target.into(),
                duration: self.duration,
            },
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of `pause-for`: resumed after the duration.
struct ResumeAfter {
    target: String,
    duration: Duration,
}

#[async_trait]
impl Effect for ResumeAfter {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        tokio::time::sleep(self.duration).await;
        match stack.unpause(&self.target).await {
            Ok(()) => Ok(format!("{} resumed after {:?}", self.target, self.duration)),
            // A later fault of the trial (a kill, a restart) ended the pause: the
            // effect is over all the same. Found by `rebound explore`.
            Err(e) if stack.status(&self.target).is_ok_and(|s| !s.paused) => Ok(format!(
                "{} was no longer paused after {:?} (a later fault ended the pause: {e})",
                self.target, self.duration
            )),
            Err(e) => Err(e),
        }
    }
}
