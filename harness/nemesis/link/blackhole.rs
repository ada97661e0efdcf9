//! `link-blackhole`: connections on the link are accepted and nothing is answered
//! (a half-open dependency: a start-up blocks instead of failing) for `duration`;
//! what was sent meanwhile flows on when it is lifted.

use std::time::Duration;

use serde::Deserialize;

use super::LinkFor;
use crate::field::{nonzero, FieldError};
use crate::nemesis::{FaultPlan, PlanCtx, RawKind};
use crate::proxy::LinkFault;

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

impl RawKind for RawLinkBlackhole {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        Ok(FaultPlan::new(
            self.target,
            LinkFor {
                name: "link-blackhole",
                fault: LinkFault::Blackhole,
                duration,
            },
        ))
    }
}
