//! `disconnect-for`: the service is cut off every network for a while, then
//! reconnected under its service alias.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind};
use crate::field::{nonzero, FieldError};
use crate::stack::{Capability, Stack, StackError};

/// `kind = "disconnect-for"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDisconnectFor {
    /// Service name.
    pub target: String,
    /// How long it stays cut off.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// Off every network for `duration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectFor {
    /// How long it stays cut off.
    pub duration: Duration,
}

impl RawKind for RawDisconnectFor {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        Ok(FaultPlan::new(self.target, DisconnectFor { duration }))
    }
}

#[async_trait]
impl Fault for DisconnectFor {
    fn name(&self) -> &'static str {
        "disconnect-for"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Network]
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        let networks = stack.disconnect(target).await?;
        Ok(Injected::new(
            format!("{target} cut off {networks:?} for {:?}", self.duration),
            ReconnectAfter {
                target: target.into(),
                networks,
                duration: self.duration,
            },
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of `disconnect-for`: reconnected after the duration.
struct ReconnectAfter {
    target: String,
    networks: Vec<String>,
    duration: Duration,
}

#[async_trait]
impl Effect for ReconnectAfter {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        tokio::time::sleep(self.duration).await;
        stack.connect(&self.target, &self.networks).await?;
        Ok(format!(
            "{} reconnected after {:?}",
            self.target, self.duration
        ))
    }
}
