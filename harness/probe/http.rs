//! `http` probe: a GET on a fresh connection must answer with the expected status —
//! on a `url`, or on `path` of `port` of a `service` at the service's own address
//! (on docker the container's, found again after every start: no port proxy in
//! between, and a host port that changed when the container restarted does not
//! matter).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Check, Failure, RawCheck};
use crate::field::{http_url, FieldError};
use crate::stack::Stack;

/// `kind = "http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHttp {
    /// Name in reports (default `http-<n>`).
    pub name: Option<String>,
    /// Plain-HTTP URL (or give `service` and `port`).
    pub url: Option<String>,
    /// A service of the stack, reached at its own address (with `port`).
    pub service: Option<String>,
    /// The service's port (with `service`).
    pub port: Option<u16>,
    /// The path asked for on the service (with `service`; default `/`).
    pub path: Option<String>,
    /// Expected status code (default 200).
    pub expect_status: Option<u16>,
    /// Poll period (default `[run] probe-period`).
    #[serde(default, with = "humantime_serde::option")]
    pub period: Option<Duration>,
    /// Per-attempt timeout (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// Where an http probe sends its GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A fixed URL.
    Url(String),
    /// A path on a port of a service, at the service's own address.
    Service {
        /// Service.
        service: String,
        /// Port.
        port: u16,
        /// Path, starting with `/`.
        path: String,
    },
}

/// HTTP GET expecting a status.
#[derive(Debug, Clone)]
pub struct Http {
    /// Where the GET goes.
    pub target: Target,
    /// The expected status.
    pub expect_status: u16,
    client: reqwest::Client,
}

impl RawCheck for RawHttp {
    super::probe_common!();

    fn check(self, timeout: Duration) -> Result<Arc<dyn Check>, FieldError> {
        let target = match (self.url, self.service, self.port) {
            (Some(url), None, None) => {
                if self.path.is_some() {
                    return Err(FieldError::new(
                        "path",
                        "`path` goes with `service` and `port`; put it in the `url`",
                    ));
                }
                http_url("url", &url)?;
                Target::Url(url)
            }
            (None, Some(service), Some(port)) => {
                let path = self.path.unwrap_or_else(|| "/".into());
                if !path.starts_with('/') || path.chars().any(char::is_whitespace) {
                    return Err(FieldError::at(
                        "path",
                        &path,
                        "a path starts with `/` and has no spaces",
                    ));
                }
                Target::Service {
                    service,
                    port,
                    path,
                }
            }
            (None, Some(_), None) => {
                return Err(FieldError::new("port", "`service` needs a `port`"))
            }
            (None, None, Some(_)) => {
                return Err(FieldError::new("service", "`port` needs a `service`"))
            }
            _ => {
                return Err(FieldError::new(
                    "url",
                    "give either `url = \"http://…\"` or `service` and `port` (and `path`)",
                ))
            }
        };
        let expect_status =
            crate::field::http_status("expect-status", self.expect_status.unwrap_or(200))?;
        // No connection pool: every attempt is a fresh connection.
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .map_err(|e| FieldError::new("url", format!("cannot build an HTTP client: {e}")))?;
        Ok(Arc::new(Http {
            target,
            expect_status,
            client,
        }))
    }
}

#[async_trait]
impl Check for Http {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn service(&self) -> Option<&str> {
        match &self.target {
            Target::Service { service, .. } => Some(service),
            Target::Url(_) => None,
        }
    }

    async fn attempt(&self, stack: &dyn Stack) -> Result<(), Failure> {
        let url = match &self.target {
            Target::Url(u) => u.clone(),
            Target::Service {
                service,
                port,
                path,
            } => {
                let addr = stack
                    .address(service, *port)
                    .await
                    .map_err(|e| e.to_string())?;
                format!("http://{addr}{path}")
            }
        };
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| Failure::from(describe(&e)))?;
        let status = resp.status().as_u16();
        if status == self.expect_status {
            Ok(())
        } else {
            Err(format!("status {status}, expected {}", self.expect_status).into())
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// "connect: Connection refused": the kind of failure and its innermost cause.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    // The innermost source carries the OS error ("Connection refused").
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    format!("{kind}: {inner}")
}
