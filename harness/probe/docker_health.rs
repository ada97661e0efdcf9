//! `docker-health` probe: the container's own healthcheck must say `healthy`.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Check, Failure, RawCheck};
use crate::field::FieldError;
use crate::stack::{Capability, Health, Stack};

/// `kind = "docker-health"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDockerHealth {
    /// Name in reports (default `docker-health-<n>`).
    pub name: Option<String>,
    /// Service name.
    pub service: String,
    /// Poll period (default `[run] probe-period`).
    #[serde(default, with = "humantime_serde::option")]
    pub period: Option<Duration>,
    /// Per-attempt timeout (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// The container's healthcheck status must be `healthy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerHealth {
    /// Service.
    pub service: String,
}

impl RawCheck for RawDockerHealth {
    super::probe_common!();

    fn check(self, _timeout: Duration) -> Result<Arc<dyn Check>, FieldError> {
        Ok(Arc::new(DockerHealth {
            service: self.service,
        }))
    }
}

#[async_trait]
impl Check for DockerHealth {
    fn kind(&self) -> &'static str {
        "docker-health"
    }

    fn service(&self) -> Option<&str> {
        Some(&self.service)
    }

    fn needs(&self) -> &'static [Capability] {
        &[Capability::Health]
    }

    async fn attempt(&self, stack: &dyn Stack) -> Result<(), Failure> {
        let service = &self.service;
        match stack.health(service).await.map_err(|e| e.to_string())? {
            Some(Health::Healthy) => Ok(()),
            Some(h) => Err(format!("health {}", h.word()).into()),
            None => Err(format!("service `{service}` has no healthcheck").into()),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
