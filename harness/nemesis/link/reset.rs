//! `link-reset`: every open connection on the link is reset (TCP RST), and so is
//! every new one, for `duration`.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::field::{nonzero, FieldError};
use crate::nemesis::{Fault, FaultPlan, Injected, PlanCtx, RawKind, UndoRecord};
use crate::proxy::LinkFault;
use crate::stack::{Capability, Stack, StackError};

/// `kind = "link-reset"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLinkReset {
    /// Link name (`[[stack.link]]`).
    pub target: String,
    /// How long.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// A link that resets every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReset {
    /// How long.
    pub duration: Duration,
}

impl RawKind for RawLinkReset {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        Ok(FaultPlan::new(self.target, LinkReset { duration }))
    }
}

#[async_trait]
impl Fault for LinkReset {
    fn name(&self) -> &'static str {
        "link-reset"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Link]
    }

    fn targets_link(&self) -> bool {
        true
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        super::inject_for(target, LinkFault::Reset, self.duration, stack).await
    }

    fn undo(&self, target: &str) -> UndoRecord {
        super::undo(self.name(), target)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
