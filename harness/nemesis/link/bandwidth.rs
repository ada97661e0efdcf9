//! `link-bandwidth`: at most `bytes-per-sec` per connection and direction on the
//! link, for `duration`.

use std::time::Duration;

use serde::Deserialize;

use super::LinkFor;
use crate::field::{nonzero, FieldError};
use crate::nemesis::{FaultPlan, PlanCtx, RawKind};
use crate::proxy::{Direction, LinkFault};

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
            LinkFor {
                name: "link-bandwidth",
                fault: LinkFault::Bandwidth {
                    bytes_per_sec: self.bytes_per_sec,
                    direction: self.direction,
                },
                duration,
            },
        ))
    }
}
