//! `http` probe: a GET on a fresh connection must answer with the expected status.

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
    /// Plain-HTTP URL.
    pub url: String,
    /// Expected status code (default 200).
    pub expect_status: Option<u16>,
    /// Poll period (default `[run] probe-period`).
    #[serde(default, with = "humantime_serde::option")]
    pub period: Option<Duration>,
    /// Per-attempt timeout (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// HTTP GET expecting a status.
#[derive(Debug, Clone)]
pub struct Http {
    /// The URL.
    pub url: String,
    /// The expected status.
    pub expect_status: u16,
    client: reqwest::Client,
}

impl RawCheck for RawHttp {
    super::probe_common!();

    fn check(self, timeout: Duration) -> Result<Arc<dyn Check>, FieldError> {
        http_url("url", &self.url)?;
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
            url: self.url,
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

    async fn attempt(&self, _stack: &dyn Stack) -> Result<(), Failure> {
        let resp = self
            .client
            .get(&self.url)
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
