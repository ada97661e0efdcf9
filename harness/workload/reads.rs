//! `reads` workload: GET traffic, for availability as clients see it.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{http_client, http_result, Client, Ops, RawClient};
use crate::field::{loopback_url, FieldError};
use crate::history::OpResult;

/// `kind = "reads"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawReads {
    /// Name in reports (default `reads-<n>`).
    pub name: Option<String>,
    /// URL to GET.
    pub url: String,
    /// Expected status (default 200).
    pub expect_status: Option<u16>,
    /// Operations per second (default 20).
    pub rate: Option<f64>,
    /// Operations in flight at most (default 4).
    pub concurrency: Option<usize>,
    /// Per-operation timeout (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Operations per trial at most (default 10000).
    pub max_ops: Option<u64>,
}

/// HTTP GETs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reads {
    /// URL.
    pub url: String,
    /// Expected status.
    pub expect_status: u16,
}

impl RawClient for RawReads {
    super::workload_common!();

    fn client(self) -> Result<Arc<dyn Client>, FieldError> {
        loopback_url("url", &self.url)?;
        Ok(Arc::new(Reads {
            url: self.url,
            expect_status: crate::field::http_status(
                "expect-status",
                self.expect_status.unwrap_or(200),
            )?,
        }))
    }
}

struct Session {
    plan: Reads,
    client: reqwest::Client,
}

#[async_trait]
impl Ops for Session {
    async fn run_op(&self, _workload: &str, _id: &str, _n: u64) -> (OpResult, Option<String>) {
        let sent = self.client.get(&self.plan.url).send().await;
        http_result(sent, |s| s.as_u16() == self.plan.expect_status)
    }
}

#[async_trait]
impl Client for Reads {
    fn stem(&self) -> &'static str {
        "reads"
    }

    fn writes(&self) -> bool {
        false
    }

    fn open(&self, timeout: Duration) -> Arc<dyn Ops> {
        Arc::new(Session {
            plan: self.clone(),
            client: http_client(timeout),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
