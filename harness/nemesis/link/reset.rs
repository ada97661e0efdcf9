//! `link-reset`: every open connection on the link is reset (TCP RST), and so is
//! every new one, for `duration`; with `every`, a reset storm instead: new
//! connections pass and each is reset `every` after it opened.

use std::time::Duration;

use serde::Deserialize;

use super::LinkFor;
use crate::field::{nonzero, FieldError};
use crate::nemesis::{FaultPlan, PlanCtx, RawKind};
use crate::proxy::LinkFault;

/// `kind = "link-reset"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLinkReset {
    /// Link name (`[[stack.link]]`).
    pub target: String,
    /// How long.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// A storm: let connections through, reset each this long after it opened.
    #[serde(default, with = "humantime_serde::option")]
    pub every: Option<Duration>,
}

impl RawKind for RawLinkReset {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        let fault = match self.every {
            Some(every) => LinkFault::ResetEvery {
                every: nonzero("every", every)?,
            },
            None => LinkFault::Reset,
        };
        Ok(FaultPlan::new(
            self.target,
            LinkFor {
                name: "link-reset",
                fault,
                duration,
            },
        ))
    }
}
