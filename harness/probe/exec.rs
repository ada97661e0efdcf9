//! `exec` probe: an argv run inside a service must exit 0.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Check, Failure, RawCheck};
use crate::field::{command, FieldError};
use crate::stack::{Capability, Stack};

/// Attempts of an exec probe in flight at once. Every `docker exec` costs the
/// engine a process start in the container (70–100 ms each here); with one attempt
/// on every 10 ms tick, 100 in flight, the engine fell so far behind that every
/// attempt timed out and a restarted Redis never "recovered" within 60 s.
pub const EXEC_IN_FLIGHT: usize = 4;

/// `kind = "exec"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawExec {
    /// Name in reports (default `exec-<n>`).
    pub name: Option<String>,
    /// Service name.
    pub service: String,
    /// argv (no shell).
    pub command: Vec<String>,
    /// Poll period (default `[run] probe-period`).
    #[serde(default, with = "humantime_serde::option")]
    pub period: Option<Duration>,
    /// Per-attempt timeout (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// An argv in a service must exit 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// Service.
    pub service: String,
    /// argv.
    pub command: Vec<String>,
}

impl RawCheck for RawExec {
    super::probe_common!();

    fn check(self, _timeout: Duration) -> Result<Arc<dyn Check>, FieldError> {
        command("command", &self.command)?;
        Ok(Arc::new(Exec {
            service: self.service,
            command: self.command,
        }))
    }
}

#[async_trait]
impl Check for Exec {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn service(&self) -> Option<&str> {
        Some(&self.service)
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Exec]
    }

    fn max_in_flight(&self) -> Option<usize> {
        Some(EXEC_IN_FLIGHT)
    }

    async fn attempt(&self, stack: &dyn Stack) -> Result<(), Failure> {
        // An exec into a container that is not running (stopped, restarting,
        // frozen) fails or blocks until it runs again (462 ms seen), holding an
        // in-flight slot: the stack's own state answers at once instead.
        if stack
            .status(&self.service)
            .is_ok_and(|s| !s.running || s.paused)
        {
            return Err(format!("service `{}` is not running", self.service).into());
        }
        let out = stack
            .exec(&self.service, &self.command)
            .await
            .map_err(|e| e.to_string())?;
        if out.code == 0 {
            Ok(())
        } else {
            Err(format!("exit code {}: {}", out.code, out.output.trim()).into())
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
