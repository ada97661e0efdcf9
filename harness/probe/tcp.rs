//! `tcp` probe: a TCP connect must succeed — to an `address`, or to `port` of a
//! `service` at the service's own address (on the docker backend the container's
//! address on its network, so no port proxy can accept the connection for a
//! service that is not listening yet). On a fixed address of a docker stack (a
//! published port, which Docker's port proxy accepts before the service listens and
//! closes once it finds nothing behind it) the connection must also stay open for a
//! short `hold`.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Check, Failure, RawCheck};
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
    /// How long the connection must stay open after connecting; one the other side
    /// closes sooner counts as down (default [`DEFAULT_HOLD`] for an `address` on the
    /// docker backend, else 0: no hold).
    #[serde(default, with = "humantime_serde::option")]
    pub hold: Option<Duration>,
}

/// The hold of a tcp probe on a fixed address of a docker stack. Docker's port
/// proxy closes a connection it cannot forward within about 0.1–0.8 ms here (50
/// connects to a published port with nothing listening behind it: p50 0.12 ms, max
/// 0.78 ms); 5 ms leaves room for a busy machine and adds 5 ms to each success.
pub const DEFAULT_HOLD: Duration = Duration::from_millis(5);

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
    /// The hold, when the table gives one.
    pub hold: Option<Duration>,
}

impl Tcp {
    /// The hold on `backend`: the table's, else [`DEFAULT_HOLD`] for a fixed address
    /// on the docker backend, else none.
    pub fn hold_on(&self, backend: &str) -> Duration {
        self.hold.unwrap_or(match self.target {
            Target::Address(_) if backend == "docker" => DEFAULT_HOLD,
            _ => Duration::ZERO,
        })
    }
}

impl Tcp {
    /// The connection stays open for the hold (or the service speaks first).
    async fn hold(&self, stream: &tokio::net::TcpStream, backend: &str) -> Result<(), Failure> {
        let hold = self.hold_on(backend);
        if hold.is_zero() {
            return Ok(());
        }
        let mut byte = [0u8; 1];
        match tokio::time::timeout(hold, stream.peek(&mut byte)).await {
            // Still open after the hold, or the service spoke first (a banner).
            Err(_) | Ok(Ok(1..)) => Ok(()),
            Ok(Ok(0)) => Err(format!(
                "closed by the other side within {hold:?} of connecting (a port proxy with nothing listening behind it)"
            )
            .into()),
            Ok(Err(e)) => Err(format!("{e} within {hold:?} of connecting").into()),
        }
    }

    /// A port proxy accepts before the service listens, and may keep the
    /// connection open while its own connect to the service is still pending (on
    /// Docker 20.10 for a whole SYN retransmission timeout, 1 s): when the stack
    /// knows the service behind `addr`, it must accept on its own address too.
    async fn behind(&self, addr: SocketAddr, stack: &dyn Stack) -> Result<(), Failure> {
        if !matches!(self.target, Target::Address(_)) {
            return Ok(());
        }
        let Some(inner) = stack.behind(addr).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(inner)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                // Not a refusal at the attempt's end: the hold may outlast it.
                Err(format!(
                    "the port proxy accepted, the service behind it ({inner}) did not: {e}"
                )
                .into())
            }
            Err(_) => {
                Err(format!("connect to the service behind the proxy ({inner}) timed out").into())
            }
        }
    }
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
        if self.hold.is_some_and(|h| h >= timeout) {
            return Err(FieldError::new(
                "hold",
                "the hold must be shorter than the probe's timeout",
            ));
        }
        Ok(Arc::new(Tcp {
            target,
            timeout,
            hold: self.hold,
        }))
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

    async fn attempt(&self, stack: &dyn Stack) -> Result<(), Failure> {
        let addr = match &self.target {
            Target::Address(a) => *a,
            Target::Service { service, port } => stack
                .address(service, *port)
                .await
                .map_err(|e| e.to_string())?,
        };
        let issued = std::time::Instant::now();
        let connect = tokio::net::TcpStream::connect(addr);
        let stream = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Failure::connect(&e, issued)),
            Err(_) => return Err(format!("connect timed out after {:?}", self.timeout).into()),
        };
        // Both at once: the connection must stay open for the hold, and the
        // service behind a port proxy must accept on its own address.
        let (held, behind) = tokio::join!(
            self.hold(&stream, stack.backend()),
            self.behind(addr, stack)
        );
        held.and(behind)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
