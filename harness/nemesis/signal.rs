//! Signal faults: `sigkill` (a crash: the restart policy brings the service back),
//! `sigterm` (graceful restart: SIGTERM, SIGKILL after a grace, then started again)
//! and `signal` (any signal, e.g. SIGHUP for a reload).

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    exits_of, Death, Done, Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind, DEATH_TIMEOUT,
    DEFAULT_GRACE,
};
use crate::field::FieldError;
use crate::stack::{Sig, Stack, StackError};

/// `kind = "sigkill"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSigkill {
    /// Service name.
    pub target: String,
}

/// `kind = "sigterm"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSigterm {
    /// Service name.
    pub target: String,
    /// Time allowed between SIGTERM and SIGKILL (default 10s).
    #[serde(default, with = "humantime_serde::option")]
    pub grace: Option<Duration>,
}

/// `kind = "signal"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSignal {
    /// Service name.
    pub target: String,
    /// Signal name, e.g. `SIGHUP` (the `SIG` prefix is optional).
    pub signal: String,
}

/// SIGKILL; the restart policy brings the service back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sigkill;

/// SIGTERM, SIGKILL after `grace`, then start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sigterm {
    /// SIGTERM → SIGKILL grace.
    pub grace: Duration,
}

/// Any signal, delivered as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalFault {
    /// The signal.
    pub signal: nix::sys::signal::Signal,
}

impl RawKind for RawSigkill {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        Ok(FaultPlan::new(self.target, Sigkill))
    }
}

impl RawKind for RawSigterm {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let grace = self.grace.unwrap_or(DEFAULT_GRACE);
        Ok(FaultPlan::new(self.target, Sigterm { grace }))
    }
}

impl RawKind for RawSignal {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let upper = self.signal.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        let signal = name.parse().map_err(|_| {
            FieldError::at(
                "signal",
                &self.signal,
                format!(
                    "`{}` is not a signal name (e.g. SIGHUP, SIGUSR1)",
                    self.signal
                ),
            )
        })?;
        Ok(FaultPlan::new(self.target, SignalFault { signal }))
    }
}

#[async_trait]
impl Fault for Sigkill {
    fn name(&self) -> &'static str {
        "sigkill"
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        let exits = exits_of(stack, target)?;
        stack.signal(target, Sig::Kill).await?;
        Ok(Injected::new(
            format!("SIGKILL sent to {target}"),
            Death {
                target: target.into(),
                exits,
            },
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[async_trait]
impl Fault for Sigterm {
    fn name(&self) -> &'static str {
        "sigterm"
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        let exits = exits_of(stack, target)?;
        stack.hold(target)?;
        stack.signal(target, Sig::Term).await?;
        Ok(Injected::new(
            format!("SIGTERM sent to {target} (SIGKILL after {:?})", self.grace),
            TermThenStart {
                target: target.into(),
                exits,
                grace: self.grace,
            },
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of `sigterm`: the exit (escalated to SIGKILL after the grace), then start.
struct TermThenStart {
    target: String,
    exits: u64,
    grace: Duration,
}

#[async_trait]
impl Effect for TermThenStart {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        let target = self.target.as_str();
        let escalated = if stack
            .wait_exit(target, self.exits, self.grace)
            .await
            .is_err()
        {
            stack.signal(target, Sig::Kill).await?;
            stack.wait_exit(target, self.exits, DEATH_TIMEOUT).await?;
            true
        } else {
            false
        };
        stack.start(target).await?;
        Ok(if escalated {
            format!(
                "{target} ignored SIGTERM for {:?}, SIGKILLed, started again",
                self.grace
            )
        } else {
            format!("{target} exited on SIGTERM, started again")
        })
    }
}

#[async_trait]
impl Fault for SignalFault {
    fn name(&self) -> &'static str {
        "signal"
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        stack.signal(target, Sig::Other(self.signal)).await?;
        Ok(Injected::new(
            format!("{} sent to {target}", self.signal.as_str()),
            Done("delivered".into()),
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
