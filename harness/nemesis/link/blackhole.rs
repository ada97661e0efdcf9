//! `link-blackhole`: connections on the link are accepted and nothing is answered
//! (a half-open dependency: a start-up blocks instead of failing) for `duration`;
//! what was sent meanwhile flows on when it is lifted.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::field::{nonzero, FieldError};
use crate::nemesis::{Fault, FaultPlan, Injected, PlanCtx, RawKind, UndoRecord};
use crate::proxy::LinkFault;
use crate::stack::{Capability, Stack, StackError};

/// `kind = "link-blackhole"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLinkBlackhole {
    /// Link name (`[[stack.link]]`).
    pub target: String,
    /// How long.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// A link that swallows everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkBlackhole {
    /// How long.
    pub duration: Duration,
}

impl RawKind for RawLinkBlackhole {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        Ok(FaultPlan::new(self.target, LinkBlackhole { duration }))
    }
}

#[async_trait]
impl Fault for LinkBlackhole {
    fn name(&self) -> &'static str {
        "link-blackhole"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Link]
    }

    fn targets_link(&self) -> bool {
        true
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        super::inject_for(target, LinkFault::Blackhole, self.duration, stack).await
    }

    fn undo(&self, target: &str) -> UndoRecord {
        super::undo(self.name(), target)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
