//! `power-cut`: the services whose data is under rebound's power-loss layer
//! (`durable-dirs`) lose power at one instant — frozen so that nothing more is
//! acknowledged, their layers' connections aborted (a request a layer already holds
//! cannot be ended by SIGKILL), SIGKILLed — then everything their layers had not
//! made durable is dropped, the layers are mounted again and the services start, as
//! a host that lost power boots. What SIGKILL cannot show: the page cache is gone.

use std::any::Any;

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind, UndoRecord, UndoStep, ALL_SERVICES,
};
use crate::field::FieldError;
use crate::stack::{Capability, Stack, StackError};

/// `kind = "power-cut"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPowerCut {
    /// Service name; default every service with `durable-dirs` (one host losing power).
    #[serde(default)]
    pub target: Option<String>,
}

/// The power cut of the target (or of every service on the layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerCut;

impl RawKind for RawPowerCut {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        Ok(FaultPlan::new(
            self.target.unwrap_or_else(|| ALL_SERVICES.to_string()),
            PowerCut,
        ))
    }
}

/// The services a power cut of `target` acts on.
pub(super) fn victims(target: &str, stack: &dyn Stack) -> Result<Vec<String>, StackError> {
    if target != ALL_SERVICES {
        return Ok(vec![target.to_string()]);
    }
    let all = stack.durable_services();
    if all.is_empty() {
        return Err(StackError::Command {
            what: "power-cut".into(),
            message: "no service names durable-dirs: nothing is on the power-loss layer".into(),
        });
    }
    Ok(all)
}

#[async_trait]
impl Fault for PowerCut {
    fn name(&self) -> &'static str {
        "power-cut"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::PowerLoss]
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        let services = victims(target, stack)?;
        let detail = stack.power_off(&services).await?;
        Ok(Injected::new(detail, PowerOn { services }))
    }

    fn undo(&self, target: &str) -> UndoRecord {
        UndoRecord {
            fault: self.name().into(),
            target: target.into(),
            steps: vec![UndoStep::PowerOn {
                service: target.into(),
            }],
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of `power-cut`: the processes are gone, what was not durable is
/// dropped, the layers are mounted again and the services started.
struct PowerOn {
    services: Vec<String>,
}

#[async_trait]
impl Effect for PowerOn {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        stack.power_on(&self.services).await
    }
}

/// Heal's step: finish a cut that was begun (idempotent: a finished one leaves
/// nothing to do but to start what is down).
pub(super) async fn heal(service: &str, stack: &dyn Stack) -> Result<Option<String>, StackError> {
    let services = victims(service, stack)?;
    let done = stack.power_on(&services).await?;
    Ok((done != "nothing to roll back").then(|| format!("power back on: {done}")))
}
