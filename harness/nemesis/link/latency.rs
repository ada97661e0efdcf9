//! `link-latency`: every chunk on the link is delayed by `latency` ± `jitter`
//! (seeded), one way or both, for `duration`.

use std::time::Duration;

use serde::Deserialize;

use super::LinkFor;
use crate::field::{nonzero, FieldError};
use crate::nemesis::{FaultPlan, PlanCtx, RawKind};
use crate::proxy::{Direction, LinkFault};

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
            LinkFor {
                name: "link-latency",
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
