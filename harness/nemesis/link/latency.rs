//! `link-latency`: every chunk on the link is delayed by `latency` ± `jitter`
//! (seeded), one way or both, for `duration`.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::field::{nonzero, FieldError};
use crate::nemesis::{Fault, FaultPlan, Injected, PlanCtx, RawKind, UndoRecord};
use crate::proxy::{Direction, LinkFault};
use crate::stack::{Capability, Stack, StackError};

/// `kind = "link-latency"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLinkLatency {
    /// Link name (`[[stack.link]]`).
    pub target: String,
    /// Added delay per direction it applies to.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Largest deviation from `latency`, uniform (default 0).
    #[serde(default, with = "humantime_serde::option")]
    pub jitter: Option<Duration>,
    /// `both` (default), `upstream` (requests) or `downstream` (responses).
    #[serde(default)]
    pub direction: Direction,
    /// How long the link stays slow.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Jitter seed (default 0: the same delays every trial).
    #[serde(default)]
    pub seed: u64,
}

/// A slow link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkLatency {
    /// The fault the proxy applies.
    pub fault: LinkFault,
    /// How long.
    pub duration: Duration,
}

impl RawKind for RawLinkLatency {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        let latency = nonzero("latency", self.latency)?;
        let jitter = self.jitter.unwrap_or_default();
        if jitter > latency {
            return Err(FieldError::new(
                "jitter",
                format!(
                    "{jitter:?} is larger than latency {latency:?} (a delay cannot be negative)"
                ),
            ));
        }
        Ok(FaultPlan::new(
            self.target,
            LinkLatency {
                fault: LinkFault::Latency {
                    delay: latency,
                    jitter,
                    direction: self.direction,
                    seed: self.seed,
                },
                duration,
            },
        ))
    }
}

#[async_trait]
impl Fault for LinkLatency {
    fn name(&self) -> &'static str {
        "link-latency"
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
