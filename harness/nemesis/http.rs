//! `http`: an HTTP call (e.g. an endpoint that triggers a restore). The request is
//! `t_inject` and its response opens the recovery gate, so the time an endpoint
//! keeps the service blocked is measured; an unexpected status or body fails the
//! trial and the body is quoted.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Effect, Fault, FaultPlan, Injected, PlanCtx, RawKind};
use crate::field::{http_url, FieldError};
use crate::stack::{Stack, StackError};

/// Longest part of a response body quoted in a fault's detail.
const BODY_QUOTE: usize = 400;

/// `kind = "http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHttp {
    /// The service the endpoint belongs to (for reports and heal).
    pub target: String,
    /// Plain-HTTP URL.
    pub url: String,
    /// Method (default POST).
    pub method: Option<String>,
    /// Request body (sent as application/json).
    pub body: Option<String>,
    /// Expected status (default: any 2xx).
    pub expect_status: Option<u16>,
    /// Text the response body must contain (default: anything).
    pub expect_body: Option<String>,
    /// Request timeout (default 30s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// An HTTP call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    /// URL.
    pub url: String,
    /// Method.
    pub method: String,
    /// JSON body.
    pub body: Option<String>,
    /// Expected status (None: any 2xx).
    pub expect_status: Option<u16>,
    /// Text the body must contain.
    pub expect_body: Option<String>,
    /// Request timeout.
    pub timeout: Duration,
}

impl RawKind for RawHttp {
    fn plan(self, _: &PlanCtx) -> Result<FaultPlan, FieldError> {
        http_url("url", &self.url)?;
        let method = self
            .method
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
            return Err(FieldError::new(
                "method",
                format!("`{method}` is not an HTTP method"),
            ));
        }
        let plan = Http {
            url: self.url,
            method,
            body: self.body,
            expect_status: self
                .expect_status
                .map(|s| crate::field::http_status("expect-status", s))
                .transpose()?,
            expect_body: self.expect_body,
            timeout: crate::field::nonzero(
                "timeout",
                self.timeout.unwrap_or(Duration::from_secs(30)),
            )?,
        };
        Ok(FaultPlan::new(self.target, plan))
    }
}

#[async_trait]
impl Fault for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    // The request is t_inject; its response (the effect) opens the recovery gate.
    async fn inject(&self, _target: &str, _stack: &dyn Stack) -> Result<Injected, StackError> {
        Ok(Injected::new(
            format!("{} {}", self.method, self.url),
            self.clone(),
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[async_trait]
impl Effect for Http {
    async fn wait(self: Box<Self>, _stack: &dyn Stack) -> Result<String, StackError> {
        call(&self).await
    }
}

async fn call(h: &Http) -> Result<String, StackError> {
    let fail = |message: String| StackError::Command {
        what: format!("{} {}", h.method, h.url),
        message,
    };
    let client = reqwest::Client::builder()
        .timeout(h.timeout)
        .no_proxy()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let method =
        reqwest::Method::from_bytes(h.method.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let mut req = client.request(method.clone(), &h.url);
    if let Some(b) = &h.body {
        req = req
            .header("content-type", "application/json")
            .body(b.clone());
    }
    let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let quoted: String = text.trim().chars().take(BODY_QUOTE).collect();
    let ok = h
        .expect_status
        .map_or(status.is_success(), |e| status.as_u16() == e);
    if !ok {
        return Err(fail(format!("status {status}: {quoted}")));
    }
    if let Some(want) = &h.expect_body {
        if !text.contains(want.as_str()) {
            return Err(fail(format!(
                "status {status}, but the body does not contain `{want}`: {quoted}"
            )));
        }
    }
    Ok(format!(
        "{method} {} → {}: {quoted}",
        h.url,
        status.as_u16()
    ))
}
