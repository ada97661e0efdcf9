//! `tcp` probe: a TCP connect must succeed.

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
    /// `host:port`, an IP literal.
    pub address: String,
    /// Poll period (default `[run] probe-period`).
    #[serde(default, with = "humantime_serde::option")]
    pub period: Option<Duration>,
    /// Per-attempt timeout (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// TCP connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    /// Address to connect to.
    pub address: SocketAddr,
    /// Connect timeout.
    pub timeout: Duration,
}

impl RawCheck for RawTcp {
    super::probe_common!();

    fn check(self, timeout: Duration) -> Result<Arc<dyn Check>, FieldError> {
        let address = address("address", &self.address)?;
        Ok(Arc::new(Tcp { address, timeout }))
    }
}

#[async_trait]
impl Check for Tcp {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    async fn attempt(&self, _stack: &dyn Stack) -> Result<(), String> {
        let connect = tokio::net::TcpStream::connect(self.address);
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
