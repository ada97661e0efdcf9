//! Link faults: `link-latency`, `link-bandwidth`, `link-blackhole` and
//! `link-reset` put a fault on a `[[stack.link]]` of rebound's TCP proxy for a
//! while, then lift it; one file per kind, this module holds what they share (the
//! timed effect and the undo record that lifts whatever is on the link).

pub mod bandwidth;
pub mod blackhole;
pub mod latency;
pub mod reset;

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;

use super::{Effect, Fault, Injected, UndoRecord, UndoStep};
use crate::proxy::LinkFault;
use crate::stack::{Capability, Stack, StackError};

/// How long a proxy outside rebound keeps a fault after its planned end, unless
/// rebound lifts it first.
pub const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// Every link kind's plan: a fault on a link for a while.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkFor {
    /// The kind's name (`link-latency`, …).
    pub name: &'static str,
    /// What the proxy does meanwhile.
    pub fault: LinkFault,
    /// How long.
    pub duration: Duration,
}

#[async_trait]
impl Fault for LinkFor {
    fn name(&self) -> &'static str {
        self.name
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Link]
    }

    fn targets_link(&self) -> bool {
        true
    }

    async fn inject(&self, target: &str, stack: &dyn Stack) -> Result<Injected, StackError> {
        inject_for(target, self.fault.clone(), self.duration, stack).await
    }

    fn undo(&self, target: &str) -> UndoRecord {
        undo(self.name, target)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Puts `fault` on `link`; the effect lifts it after `duration`.
async fn inject_for(
    link: &str,
    fault: LinkFault,
    duration: Duration,
    stack: &dyn Stack,
) -> Result<Injected, StackError> {
    let what = fault.describe();
    // A proxy outside rebound lifts the fault by itself 10 s after rebound should
    // have, should rebound be killed meanwhile.
    stack
        .set_link(link, Some(fault), Some(duration + LEASE_MARGIN))
        .await?;
    Ok(Injected::new(
        format!("link {link}: {what} for {duration:?}"),
        LiftAfter {
            link: link.to_string(),
            what,
            duration,
        },
    ))
}

/// The undo of every link fault: lift whatever is on the link.
fn undo(kind: &str, link: &str) -> UndoRecord {
    UndoRecord {
        fault: kind.to_string(),
        target: link.to_string(),
        steps: vec![UndoStep::ClearLink {
            link: link.to_string(),
        }],
    }
}

/// Effect of a link fault: lifted after its duration.
struct LiftAfter {
    link: String,
    what: String,
    duration: Duration,
}

#[async_trait]
impl Effect for LiftAfter {
    async fn wait(self: Box<Self>, stack: &dyn Stack) -> Result<String, StackError> {
        tokio::time::sleep(self.duration).await;
        stack.set_link(&self.link, None, None).await?;
        Ok(format!(
            "link {}: {} lifted after {:?}",
            self.link, self.what, self.duration
        ))
    }
}
