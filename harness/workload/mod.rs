//! Client workloads: traffic that runs during every trial, each operation recorded
//! as an `op-invoke` and an `op-complete` (ok / fail / info) in the history, and
//! the read-back of every acknowledged write after the trial (`verify`). Every
//! workload kind is one file here, holding its raw table (serde), its validation
//! and its [`Client`].
//!
//! Loops are bounded: a fixed rate, at most `concurrency` operations in flight
//! (a tick that finds them all busy is skipped), at most `max-ops` per trial, each
//! operation bounded by its timeout; they stop with the trial.
//!
//! Adding a kind: a file with a `Raw…` table that implements [`RawClient`] and a
//! client that implements [`Client`], plus one line in the `registry!` below.

pub mod http_writes;
pub mod pg_inserts;
pub mod reads;
pub mod redis_writes;

use std::any::Any;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::field::FieldError;
use crate::history::{Event, History, OpResult};

/// Largest accepted workload rate (operations per second).
const MAX_RATE: f64 = 10_000.0;
/// Largest accepted concurrency.
const MAX_CONCURRENCY: usize = 256;

/// One validated workload.
#[derive(Debug, Clone)]
pub struct WorkloadPlan {
    /// Unique name.
    pub name: String,
    /// What it does.
    pub client: Arc<dyn Client>,
    /// Operations per second.
    pub rate: f64,
    /// Operations in flight at most.
    pub concurrency: usize,
    /// Per-operation timeout.
    pub timeout: Duration,
    /// Operations per trial at most.
    pub max_ops: u64,
}

/// A workload kind with its parameters.
#[async_trait]
pub trait Client: Debug + Send + Sync + Any {
    /// The default name's stem (`writes`, `inserts`, `reads`).
    fn stem(&self) -> &'static str;
    /// Whether its operations are writes that must survive (and are read back).
    fn writes(&self) -> bool;
    /// The connections for one trial (dropped with it, so no connection outlives
    /// the trial that saw an outage).
    fn open(&self, timeout: Duration) -> Arc<dyn Ops>;
    /// Reads back acknowledged writes after the trial.
    async fn verify(&self, _ids: &[String]) -> Verified {
        Verified::default()
    }
    /// The client as `Any`, for tests that look at a kind's parameters.
    fn as_any(&self) -> &dyn Any;
}

/// One trial's connections of a workload.
#[async_trait]
pub trait Ops: Send + Sync {
    /// Operation `n` with unique `id`, as Jepsen classifies its result.
    async fn run_op(&self, workload: &str, id: &str, n: u64) -> (OpResult, Option<String>);
}

/// What a read-back found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Acknowledged ids that are not there.
    pub missing: Vec<String>,
    /// Ids whose read-back failed (neither found nor known missing).
    pub unverifiable: u64,
    /// The first read-back error.
    pub error: Option<String>,
}

/// The keys every workload table has.
#[derive(Debug, Clone, Copy, Default)]
pub struct Common<'a> {
    /// `name`.
    pub name: Option<&'a str>,
    /// `rate`.
    pub rate: Option<f64>,
    /// `concurrency`.
    pub concurrency: Option<usize>,
    /// `timeout`.
    pub timeout: Option<Duration>,
    /// `max-ops`.
    pub max_ops: Option<u64>,
}

/// The [`RawClient::common`] of a raw table with the keys every workload table has.
macro_rules! workload_common {
    () => {
        fn common(&self) -> super::Common<'_> {
            super::Common {
                name: self.name.as_deref(),
                rate: self.rate,
                concurrency: self.concurrency,
                timeout: self.timeout,
                max_ops: self.max_ops,
            }
        }
    };
}
use workload_common;

/// A raw `[[workload]]` table of one kind, as serde reads it.
pub trait RawClient {
    /// Its `name`, `rate`, `concurrency`, `timeout` and `max-ops`.
    fn common(&self) -> Common<'_>;
    /// Validates the kind's own keys into a client.
    fn client(self) -> Result<Arc<dyn Client>, FieldError>;
}

fn plan_of(raw: impl RawClient, index: usize) -> Result<WorkloadPlan, FieldError> {
    let c = raw.common();
    let name = c.name.map(str::to_string);
    let rate = c.rate.unwrap_or(20.0);
    if !(rate > 0.0 && rate <= MAX_RATE) {
        return Err(FieldError::new(
            "rate",
            format!("rate must be in (0, {MAX_RATE}] operations per second"),
        ));
    }
    let concurrency = c.concurrency.unwrap_or(4);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(FieldError::new(
            "concurrency",
            format!("concurrency must be in 1..={MAX_CONCURRENCY}"),
        ));
    }
    let max_ops = c.max_ops.unwrap_or(10_000);
    if max_ops == 0 {
        return Err(FieldError::new("max-ops", "max-ops must be at least 1"));
    }
    let timeout = crate::field::nonzero("timeout", c.timeout.unwrap_or(Duration::from_secs(1)))?;
    let client = raw.client()?;
    Ok(WorkloadPlan {
        name: name.unwrap_or_else(|| format!("{}-{}", client.stem(), index + 1)),
        client,
        rate,
        concurrency,
        timeout,
        max_ops,
    })
}

macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident => $raw:ty ),* $(,)?) => {
        /// `[[workload]]`: client traffic that runs during every trial (each kind's
        /// keys are documented on its raw type).
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(tag = "kind", rename_all = "kebab-case")]
        pub enum RawWorkload {
            $( $(#[$doc])* $variant($raw), )*
        }

        impl RawWorkload {
            /// Validates the `index`-th (0-based) table into a plan.
            pub fn plan(self, index: usize) -> Result<WorkloadPlan, FieldError> {
                match self {
                    $( RawWorkload::$variant(raw) => plan_of(raw, index), )*
                }
            }
        }
    };
}

registry! {
    /// POSTs of unique ids, read back after the trial.
    HttpWrites => http_writes::RawHttpWrites,
    /// INSERTs of unique ids into a PostgreSQL table, read back after the trial.
    PostgresInserts => pg_inserts::RawPgInserts,
    /// GET traffic, for availability as clients see it.
    Reads => reads::RawReads,
    /// SADDs of unique ids into a Redis set, read back after the trial.
    RedisWrites => redis_writes::RawRedisWrites,
}

/// The result of an HTTP operation: `Ok` when the status is accepted; a status the
/// service answered with is certainly not applied; a request that did not complete
/// is classified by [`classify_http`].
pub(crate) fn http_result(
    sent: Result<reqwest::Response, reqwest::Error>,
    accepted: impl Fn(reqwest::StatusCode) -> bool,
) -> (OpResult, Option<String>) {
    match sent {
        Ok(r) if accepted(r.status()) => (OpResult::Ok, None),
        Ok(r) => (
            OpResult::Fail,
            Some(format!("status {}", r.status().as_u16())),
        ),
        Err(e) => {
            let (res, msg) = classify_http(&e);
            (res, Some(msg))
        }
    }
}

/// Result of an HTTP request that did not complete: refused before anything was
/// sent is certainly not applied; anything after sending (timeout, reset) may or
/// may not have been.
pub(crate) fn classify_http(e: &reqwest::Error) -> (OpResult, String) {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    let result = if e.is_connect() {
        OpResult::Fail
    } else {
        OpResult::Info
    };
    (
        result,
        format!("{}{inner}", if e.is_timeout() { "timeout: " } else { "" }),
    )
}

/// A plain-HTTP client for one trial (building one only fails without a TLS
/// backend, which is not used).
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// Workloads running for one trial.
pub struct WorkloadSet {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    acked: Arc<Mutex<Vec<Vec<String>>>>,
}

impl WorkloadSet {
    /// Starts every workload; ids are `<prefix>-<workload index>-<n>`, unique per run
    /// when the prefix names the trial.
    pub fn start(plans: &[WorkloadPlan], history: &Arc<History>, prefix: &str) -> Self {
        let stop = CancellationToken::new();
        let acked = Arc::new(Mutex::new(vec![Vec::new(); plans.len()]));
        let tasks = plans
            .iter()
            .enumerate()
            .map(|(i, plan)| {
                tokio::spawn(run_loop(
                    i,
                    plan.clone(),
                    plan.client.open(plan.timeout),
                    Arc::clone(history),
                    format!("{prefix}-{i}"),
                    stop.clone(),
                    Arc::clone(&acked),
                ))
            })
            .collect();
        WorkloadSet { stop, tasks, acked }
    }

    /// Stops issuing operations, waits for those in flight, returns the acknowledged
    /// write ids per workload.
    pub async fn stop(self) -> Vec<Vec<String>> {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.acked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

async fn run_loop(
    index: usize,
    plan: WorkloadPlan,
    ops: Arc<dyn Ops>,
    history: Arc<History>,
    prefix: String,
    stop: CancellationToken,
    acked: Arc<Mutex<Vec<Vec<String>>>>,
) {
    let slots = Arc::new(Semaphore::new(plan.concurrency));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = JoinSet::new();
    let mut n: u64 = 0;
    while n < plan.max_ops {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // Saturated: skip this tick rather than queue work without bound.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        n += 1;
        let id = format!("{prefix}-{n}");
        let (plan, ops, history, acked) = (
            plan.clone(),
            Arc::clone(&ops),
            Arc::clone(&history),
            Arc::clone(&acked),
        );
        in_flight.spawn(async move {
            history.record(Event::OpInvoke {
                workload: plan.name.clone(),
                id: id.clone(),
            });
            let start_ns = history.now_ns();
            let (result, error) = ops.run_op(&plan.name, &id, n).await;
            let latency_ns = history.now_ns().saturating_sub(start_ns);
            history.record(Event::OpComplete {
                workload: plan.name.clone(),
                id: id.clone(),
                result,
                start_ns,
                latency_ns,
                error,
            });
            if result == OpResult::Ok && plan.client.writes() {
                if let Ok(mut a) = acked.lock() {
                    a[index].push(id);
                }
            }
            drop(slot);
        });
        // Reap finished operations so the set stays small on long trials.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

/// Reads back every acknowledged write and records one `verify` event per write workload.
pub async fn verify(plans: &[WorkloadPlan], acked: &[Vec<String>], history: &History) {
    for (plan, ids) in plans.iter().zip(acked) {
        if !plan.client.writes() {
            continue;
        }
        let v = plan.client.verify(ids).await;
        history.record(Event::Verify {
            workload: plan.name.clone(),
            checked: ids.len() as u64,
            missing: v.missing,
            unverifiable: v.unverifiable,
            error: v.error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loops_stop_at_max_ops_and_classify_refused_writes_as_failed() {
        // A port nobody listens on: every write is refused before it is sent.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let table = format!(
            "kind = \"http-writes\"\nurl = \"http://127.0.0.1:{port}/items\"\n\
             read-url = \"http://127.0.0.1:{port}/items/{{id}}\"\n\
             rate = 1000\nconcurrency = 2\ntimeout = \"200ms\"\nmax-ops = 5"
        );
        let raw: RawWorkload = toml::from_str(&table).expect("table");
        let plan = raw.plan(0).expect("valid");
        let history = Arc::new(History::in_memory());
        history.begin_trial(1, None);
        let set = WorkloadSet::start(std::slice::from_ref(&plan), &history, "t");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let acked = set.stop().await;
        history.end_trial();
        let records = history.records();
        let invoked = records
            .iter()
            .filter(|r| matches!(r.event, Event::OpInvoke { .. }))
            .count();
        let failed = records
            .iter()
            .filter(|r| {
                matches!(
                    r.event,
                    Event::OpComplete {
                        result: OpResult::Fail,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(invoked, 5, "max-ops bounds the loop");
        assert_eq!(failed, 5, "connection refused means certainly not applied");
        assert!(acked[0].is_empty());
    }
}
