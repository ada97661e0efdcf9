//! `http-writes` workload: POSTs of `{"id": …, "value": …}` with a unique id each,
//! read back after the trial through `read-url` (`{id}` is replaced), re-read for up
//! to `verify-within` for pipelines where writes become visible asynchronously.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use serde::Deserialize;

use super::{http_client, http_result, Client, Ops, RawClient, Verified};
use crate::field::{loopback_url, FieldError};
use crate::history::OpResult;

/// Read-backs in flight at once.
const VERIFY_CONCURRENCY: usize = 8;

/// `kind = "http-writes"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHttpWrites {
    /// Name in reports (default `writes-<n>`).
    pub name: Option<String>,
    /// Write endpoint.
    pub url: String,
    /// Read endpoint with `{id}`, e.g. `http://127.0.0.1:8080/items/{id}`.
    pub read_url: String,
    /// Re-read missing ids for up to this long (default 0s): for pipelines where
    /// a write becomes visible at `read-url` asynchronously (a queue and a worker).
    #[serde(default, with = "humantime_serde::option")]
    pub verify_within: Option<Duration>,
    /// Operations per second (default 20).
    pub rate: Option<f64>,
    /// Operations in flight at most (default 4).
    pub concurrency: Option<usize>,
    /// Per-operation timeout (default 1s); a timeout after sending is indeterminate.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Operations per trial at most (default 10000).
    pub max_ops: Option<u64>,
}

/// HTTP POST writes, read back through `read_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpWrites {
    /// Write endpoint.
    pub url: String,
    /// Read endpoint with `{id}`.
    pub read_url: String,
    /// How long missing ids are re-read before they count as lost.
    pub verify_within: Duration,
    /// Per-operation timeout (read-backs use at least 2 s).
    pub timeout: Duration,
}

impl RawClient for RawHttpWrites {
    super::workload_common!();

    fn client(self) -> Result<Arc<dyn Client>, FieldError> {
        loopback_url("url", &self.url)?;
        if !self.read_url.contains("{id}") {
            return Err(FieldError::new("read-url", "read-url must contain `{id}`"));
        }
        // Checked with `{id}` filled in; the error points at the value as written.
        loopback_url("read-url", &self.read_url.replace("{id}", "x")).map_err(|e| FieldError {
            value: Some(self.read_url.clone()),
            ..e
        })?;
        Ok(Arc::new(HttpWrites {
            url: self.url,
            read_url: self.read_url,
            verify_within: self.verify_within.unwrap_or_default(),
            timeout: self.timeout.unwrap_or(Duration::from_secs(1)),
        }))
    }
}

struct Session {
    url: String,
    client: reqwest::Client,
}

#[async_trait]
impl Ops for Session {
    async fn run_op(&self, workload: &str, id: &str, n: u64) -> (OpResult, Option<String>) {
        let body = serde_json::json!({"id": id, "value": {"workload": workload, "n": n}});
        let sent = self.client.post(&self.url).json(&body).send().await;
        http_result(sent, |s| s.is_success())
    }
}

#[async_trait]
impl Client for HttpWrites {
    fn stem(&self) -> &'static str {
        "writes"
    }

    fn writes(&self) -> bool {
        true
    }

    fn open(&self, timeout: Duration) -> Arc<dyn Ops> {
        Arc::new(Session {
            url: self.url.clone(),
            client: http_client(timeout),
        })
    }

    async fn verify(&self, ids: &[String]) -> Verified {
        // Asynchronous pipelines: re-read what is missing until the deadline.
        let deadline = tokio::time::Instant::now() + self.verify_within;
        let mut v = read_back(self.timeout, &self.read_url, ids).await;
        while !v.missing.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let again = read_back(self.timeout, &self.read_url, &v.missing).await;
            v = Verified {
                missing: again.missing,
                unverifiable: v.unverifiable + again.unverifiable,
                error: v.error.or(again.error),
            };
        }
        v
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

async fn read_back(timeout: Duration, read_url: &str, ids: &[String]) -> Verified {
    let Ok(client) = reqwest::Client::builder()
        .timeout(timeout.max(Duration::from_secs(2)))
        .no_proxy()
        .build()
    else {
        return Verified {
            missing: Vec::new(),
            unverifiable: ids.len() as u64,
            error: Some("cannot build an HTTP client".into()),
        };
    };
    let client = &client;
    let results: Vec<(String, Result<bool, String>)> =
        futures_util::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let url = read_url.replace("{id}", &id);
                // One retry: a read-back that fails once is not yet evidence of anything.
                let mut outcome = Err(String::new());
                for _ in 0..2 {
                    outcome = match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => Ok(true),
                        Ok(r) if r.status().as_u16() == 404 => Ok(false),
                        Ok(r) => Err(format!("GET {url}: status {}", r.status().as_u16())),
                        Err(e) => Err(format!("GET {url}: {e}")),
                    };
                    if outcome.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                (id, outcome)
            })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .collect()
            .await;
    let mut missing = Vec::new();
    let mut unverifiable = 0;
    let mut first_error = None;
    for (id, r) in results {
        match r {
            Ok(true) => {}
            Ok(false) => missing.push(id),
            Err(e) => {
                unverifiable += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    missing.sort();
    Verified {
        missing,
        unverifiable,
        error: first_error,
    }
}
