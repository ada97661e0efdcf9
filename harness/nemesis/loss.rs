//! `loss-for`: each packet the target receives and sends is dropped with
//! probability `probability` for `duration` (iptables `statistic` match in
//! rebound's own chain `REBOUND-LOSS` in the target's network namespace).

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::netfilter::{clear, cut};
use super::{Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind, UndoRecord, UndoStep};
use crate::field::{nonzero, FieldError};
use crate::stack::{Capability, Stack, StackError};

/// The chain rebound owns for `loss-for`.
pub const CHAIN: &str = "REBOUND-LOSS";

/// Which packets of the target a kernel fault acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Way {
    /// What it receives and what it sends.
    #[default]
    Both,
    /// What it receives.
    Ingress,
    /// What it sends.
    Egress,
}

impl Way {
    fn hooks(self) -> &'static [&'static str] {
        match self {
            Way::Both => &["INPUT", "OUTPUT"],
            Way::Ingress => &["INPUT"],
            Way::Egress => &["OUTPUT"],
        }
    }
}

/// `kind = "loss-for"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLossFor {
    /// Service name.
    pub target: String,
    /// Chance that a packet is dropped, in (0, 1].
    pub probability: f64,
    /// `both` (default), `ingress` or `egress`.
    #[serde(default)]
    pub direction: Way,
    /// How long.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// Random packet loss.
#[derive(Debug, Clone, PartialEq)]
pub struct LossFor {
    /// Drop probability.
    pub probability: f64,
    /// Which packets.
    pub direction: Way,
    /// How long.
    pub duration: Duration,
}

impl RawKind for RawLossFor {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        if !(self.probability > 0.0 && self.probability <= 1.0) {
            return Err(FieldError::new(
                "probability",
                format!("{} must lie in (0, 1]", self.probability),
            ));
        }
        Ok(FaultPlan::new(
            self.target,
            LossFor {
                probability: self.probability,
                direction: self.direction,
                duration,
            },
        ))
    }
}

#[async_trait]
impl Fault for LossFor {
    fn name(&self) -> &'static str {
        "loss-for"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Netns]
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        let rule: Vec<String> = [
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &format!("{:.6}", self.probability),
            "-j",
            "DROP",
        ]
        .map(String::from)
        .to_vec();
        cut(stack, target, CHAIN, self.direction.hooks(), &[rule]).await?;
        Ok(Injected::new(
            format!(
                "{target} drops {:.1}% of its packets ({:?}) for {:?}",
                self.probability * 100.0,
                self.direction,
                self.duration
            )
            .replace("Both", "both ways")
            .replace("Ingress", "received")
            .replace("Egress", "sent"),
            ClearAfter {
                target: target.into(),
                chain: CHAIN,
                duration: self.duration,
            },
        ))
    }

    fn undo(&self, target: &str) -> UndoRecord {
        UndoRecord {
            fault: self.name().into(),
            target: target.into(),
            steps: vec![UndoStep::ClearChain {
                service: target.into(),
                chain: CHAIN.into(),
            }],
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of a chain fault on one service: the chain is deleted after the duration.
pub(crate) struct ClearAfter {
    pub(crate) target: String,
    pub(crate) chain: &'static str,
    pub(crate) duration: Duration,
}

#[async_trait]
impl Effect for ClearAfter {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        tokio::time::sleep(self.duration).await;
        clear(stack, &self.target, self.chain).await?;
        Ok(format!(
            "{}: {} removed after {:?}",
            self.target, self.chain, self.duration
        ))
    }
}
