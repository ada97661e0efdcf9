//! `link-bandwidth`: at most `bytes-per-sec` per connection and direction on the
//! link, for `duration`.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::field::{nonzero, FieldError};
use crate::nemesis::{Fault, FaultPlan, Injected, PlanCtx, RawKind, UndoRecord};
use crate::proxy::{Direction, LinkFault};
use crate::stack::{Capability, Stack, StackError};

/// `kind = "link-bandwidth"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLinkBandwidth {
    /// Link name (`[[stack.link]]`).
    pub target: String,
    /// The rate, per connection and direction.
    pub bytes_per_sec: u64,
    /// `both` (default), `upstream` or `downstream`.
    #[serde(default)]
    pub direction: Direction,
    /// How long.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// A narrow link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkBandwidth {
    /// The fault the proxy applies.
    pub fault: LinkFault,
    /// How long.
    pub duration: Duration,
}

impl RawKind for RawLinkBandwidth {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        if self.bytes_per_sec == 0 {
            return Err(FieldError::new(
                "bytes-per-sec",
                "must be at least 1 (use link-blackhole to stop all traffic)",
            ));
        }
        Ok(FaultPlan::new(
            self.target,
            LinkBandwidth {
                fault: LinkFault::Bandwidth {
                    bytes_per_sec: self.bytes_per_sec,
                    direction: self.direction,
                },
                duration,
            },
        ))
    }
}

#[async_trait]
impl Fault for LinkBandwidth {
    fn name(&self) -> &'static str {
        "link-bandwidth"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Link]
    }

    fn targets_link(&self) -> bool {
        true
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        super::inject_for(target, self.fault.clone(), self.duration, stack).await
    }

    fn undo(&self, target: &str) -> UndoRecord {
        super::undo(self.name(), target)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
