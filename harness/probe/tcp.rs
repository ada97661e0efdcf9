//! `tcp` probe: a TCP connect must succeed — to an `address`, or to `port` of a
//! `service` at the service's own address (on the docker backend the container's
//! address on its network, so no port proxy can accept the connection for a
//! service that is not listening yet).

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Check, RawCheck};
use crate::field::{address, FieldError};
use crate::stack::Stack;

/// `kind = "tcp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTcp {
    /// Name in reports (default `tcp-<n>`).
    pub name: Option<String>,
    /// `host:port`, an IP literal (or give `service` and `port`).
    pub address: Option<String>,
    /// A service of the stack, reached at its own address (with `port`).
    pub service: Option<String>,
    /// The service's port (with `service`).
    pub port: Option<u16>,
    /// Poll period (default `[run] probe-period`).
    #[serde(default, with = "humantime_serde::option")]
    pub period: Option<Duration>,
    /// Per-attempt timeout (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// Where a tcp probe connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A fixed address.
    Address(SocketAddr),
    /// A port of a service, at the service's own address.
    Service {
        /// Service.
        service: String,
        /// Port.
        port: u16,
    },
}

/// TCP connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    /// Where to connect.
    pub target: Target,
    /// Connect timeout.
    pub timeout: Duration,
}

impl RawCheck for RawTcp {
    super::probe_common!();

    fn check(self, timeout: Duration) -> Result<Arc<dyn Check>, FieldError> {
        let target = match (self.address, self.service, self.port) {
            (Some(a), None, None) => Target::Address(address("address", &a)?),
            (None, Some(service), Some(port)) => Target::Service { service, port },
            (None, Some(_), None) => {
                return Err(FieldError::new("port", "`service` needs a `port`"))
            }
            (None, None, Some(_)) => {
                return Err(FieldError::new("service", "`port` needs a `service`"))
            }
            _ => {
                return Err(FieldError::new(
                    "address",
                    "give either `address = \"ip:port\"` or `service` and `port`",
                ))
            }
        };
        Ok(Arc::new(Tcp { target, timeout }))
    }
}

#[async_trait]
impl Check for Tcp {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn service(&self) -> Option<&str> {
        match &self.target {
            Target::Service { service, .. } => Some(service),
            Target::Address(_) => None,
        }
    }

    async fn attempt(&self, stack: &dyn Stack) -> Result<(), String> {
        let addr = match &self.target {
            Target::Address(a) => *a,
            Target::Service { service, port } => stack
                .address(service, *port)
                .await
                .map_err(|e| e.to_string())?,
        };
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("connect timed out after {:?}", self.timeout)),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
