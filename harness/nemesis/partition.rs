//! `partition-for`: the stack is split into groups of services that cannot reach
//! each other (both directions) while every service keeps running, then joined
//! again. Kernel-level, from the host: in each service's network namespace rebound
//! adds its own chain (`REBOUND-PARTITION`, jumped to from INPUT and OUTPUT of the
//! filter table) that drops packets from and to the other groups' addresses, so a
//! connect between groups times out while one within a group succeeds. Docker's
//! own rules (the embedded DNS in `nat`) are never touched; heal deletes the jumps
//! and the chain.

use std::any::Any;
use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::netfilter::{clear, cut};
use super::{
    Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind, UndoRecord, UndoStep, ALL_SERVICES,
};
use crate::field::{nonzero, FieldError};
use crate::stack::{Capability, Stack, StackError};

/// The chain rebound owns in a service's network namespace.
pub const CHAIN: &str = "REBOUND-PARTITION";

/// `kind = "partition-for"` (no `target`: the groups name the services).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPartitionFor {
    /// Two or more groups of service names, e.g. `[["app"], ["db", "redis"]]`.
    pub groups: Vec<Vec<String>>,
    /// How long the groups stay apart.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// A partition between groups of services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFor {
    /// The groups.
    pub groups: Vec<Vec<String>>,
    /// How long.
    pub duration: Duration,
}

impl RawKind for RawPartitionFor {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        let duration = nonzero("duration", self.duration)?;
        if self.groups.len() < 2 || self.groups.iter().any(Vec::is_empty) {
            return Err(FieldError::new(
                "groups",
                "needs at least two groups of services, none empty, e.g. [[\"app\"], [\"db\"]]",
            ));
        }
        let mut seen = BTreeSet::new();
        for s in self.groups.iter().flatten() {
            if !seen.insert(s.clone()) {
                return Err(FieldError::new(
                    "groups",
                    format!("service `{s}` is in two groups"),
                ));
            }
        }
        Ok(FaultPlan::new(
            ALL_SERVICES,
            PartitionFor {
                groups: self.groups,
                duration,
            },
        ))
    }
}

#[async_trait]
impl Fault for PartitionFor {
    fn name(&self) -> &'static str {
        "partition-for"
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Netns]
    }

    fn services(&self) -> Vec<String> {
        self.groups.iter().flatten().cloned().collect()
    }

    async fn inject(&self, _target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        let mut addresses = Vec::new();
        for g in &self.groups {
            let mut ips = Vec::new();
            for s in g {
                let own = stack.addresses(s).await?;
                if own.is_empty() {
                    return Err(StackError::Command {
                        what: format!("partitioning {s}"),
                        message: "it has no address on a network (network_mode host, none or container:?): nothing to cut".into(),
                    });
                }
                ips.extend(own);
            }
            addresses.push(ips);
        }
        for (i, g) in self.groups.iter().enumerate() {
            let others: Vec<std::net::IpAddr> = addresses
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, ips)| ips.iter().copied())
                .collect();
            for s in g {
                let rules: Vec<Vec<String>> = others
                    .iter()
                    .flat_map(|ip| {
                        ["-s", "-d"].map(|dir| {
                            vec![dir.to_string(), ip.to_string(), "-j".into(), "DROP".into()]
                        })
                    })
                    .collect();
                cut(stack, s, CHAIN, &["INPUT", "OUTPUT"], &rules).await?;
            }
        }
        let groups = self
            .groups
            .iter()
            .map(|g| g.join(", "))
            .collect::<Vec<_>>()
            .join(" | ");
        Ok(Injected::new(
            format!("partitioned {groups} for {:?}", self.duration),
            JoinAfter {
                services: self.services(),
                groups,
                duration: self.duration,
            },
        ))
    }

    fn undo(&self, target: &str) -> UndoRecord {
        UndoRecord {
            fault: self.name().into(),
            target: target.into(),
            steps: self
                .services()
                .into_iter()
                .map(|service| UndoStep::ClearChain {
                    service,
                    chain: CHAIN.into(),
                })
                .collect(),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Effect of `partition-for`: joined again after the duration.
struct JoinAfter {
    services: Vec<String>,
    groups: String,
    duration: Duration,
}

#[async_trait]
impl Effect for JoinAfter {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        tokio::time::sleep(self.duration).await;
        // Every service is joined again even when one of them fails (heal retries).
        let mut first_error = None;
        for s in &self.services {
            if let Err(e) = clear(stack, s, CHAIN).await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(format!(
            "{} joined again after {:?}",
            self.groups, self.duration
        ))
    }
}
