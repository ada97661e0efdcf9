//! Client workloads: traffic that runs during every trial, each operation recorded
//! as an `op-invoke` and an `op-complete` (ok / fail / info) in the history, and
//! the read-back of every acknowledged write after the trial (`verify`).
//!
//! Loops are bounded: a fixed rate, at most `concurrency` operations in flight
//! (a tick that finds them all busy is skipped), at most `max-ops` per trial, each
//! operation bounded by its timeout; they stop with the trial.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::history::{Event, History, OpResult};
use crate::scenario::{WorkloadKind, WorkloadPlan};

/// Read-backs in flight at once.
const VERIFY_CONCURRENCY: usize = 8;

/// A PostgreSQL client pool of the workload's own: no silent reconnects hide an
/// outage, a closed connection is dropped and the next operation connects anew.
struct PgPool {
    cfg: tokio_postgres::Config,
    table: String,
    idle: Mutex<Vec<tokio_postgres::Client>>,
}

impl PgPool {
    fn new(
        address: std::net::SocketAddr,
        user: &str,
        dbname: &str,
        table: &str,
        timeout: Duration,
    ) -> Self {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(address.ip().to_string())
            .port(address.port())
            .user(user)
            .dbname(dbname)
            .connect_timeout(timeout)
            .application_name("rebound-workload");
        PgPool {
            cfg,
            table: table.to_string(),
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn client(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        while let Some(c) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            if !c.is_closed() {
                return Ok(c);
            }
        }
        let (client, conn) = self.cfg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())", self.table))
            .await?;
        Ok(client)
    }

    fn give_back(&self, c: tokio_postgres::Client) {
        if !c.is_closed() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(c);
            }
        }
    }
}

enum Client {
    Http(reqwest::Client),
    Pg(Arc<PgPool>),
}

fn classify_http(e: &reqwest::Error) -> (OpResult, String) {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    // Refused before anything was sent: certainly not applied. Anything after
    // sending (timeout, reset) may or may not have been applied.
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

async fn run_op(
    plan: &WorkloadPlan,
    client: &Client,
    id: &str,
    n: u64,
) -> (OpResult, Option<String>) {
    match (&plan.kind, client) {
        (WorkloadKind::HttpWrites { url, .. }, Client::Http(c)) => {
            let body = serde_json::json!({"id": id, "value": {"workload": plan.name, "n": n}});
            match c.post(url).json(&body).send().await {
                Ok(r) if r.status().is_success() => (OpResult::Ok, None),
                // The service answered: it did not acknowledge the write.
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
        (WorkloadKind::Reads { url, expect_status }, Client::Http(c)) => {
            match c.get(url).send().await {
                Ok(r) if r.status().as_u16() == *expect_status => (OpResult::Ok, None),
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
        (WorkloadKind::PostgresInserts { .. }, Client::Pg(pool)) => {
            let client = match tokio::time::timeout(plan.timeout, pool.client()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return (OpResult::Fail, Some(format!("connect: {e}"))),
                Err(_) => return (OpResult::Fail, Some("connect: timeout".into())),
            };
            let sql = format!("INSERT INTO {} (id) VALUES ($1)", pool.table);
            match tokio::time::timeout(plan.timeout, client.execute(&sql, &[&id])).await {
                Ok(Ok(_)) => {
                    pool.give_back(client);
                    (OpResult::Ok, None)
                }
                // The server refused it: not applied.
                Ok(Err(e)) if e.as_db_error().is_some() => {
                    pool.give_back(client);
                    (OpResult::Fail, Some(e.to_string()))
                }
                // The connection broke after sending: the commit may have happened.
                Ok(Err(e)) => (OpResult::Info, Some(e.to_string())),
                Err(_) => (
                    OpResult::Info,
                    Some(format!("timeout after {:?}", plan.timeout)),
                ),
            }
        }
        _ => (OpResult::Fail, Some("workload client mismatch".into())),
    }
}

/// Workloads running for one trial.
pub struct WorkloadSet {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    acked: Arc<Mutex<Vec<Vec<String>>>>,
    pools: Vec<Option<Arc<PgPool>>>,
}

impl WorkloadSet {
    /// Starts every workload; ids are `<prefix>-<workload index>-<n>`, unique per run
    /// when the prefix names the trial.
    pub fn start(plans: &[WorkloadPlan], history: &Arc<History>, prefix: &str) -> Self {
        let stop = CancellationToken::new();
        let acked = Arc::new(Mutex::new(vec![Vec::new(); plans.len()]));
        let mut tasks = Vec::new();
        let mut pools = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let client = match &plan.kind {
                WorkloadKind::PostgresInserts {
                    address,
                    user,
                    dbname,
                    table,
                } => {
                    let pool = Arc::new(PgPool::new(*address, user, dbname, table, plan.timeout));
                    pools.push(Some(Arc::clone(&pool)));
                    Client::Pg(pool)
                }
                _ => {
                    pools.push(None);
                    // Building a plain-HTTP client only fails without a TLS backend, which is not used.
                    Client::Http(
                        reqwest::Client::builder()
                            .timeout(plan.timeout)
                            .connect_timeout(plan.timeout)
                            .no_proxy()
                            .build()
                            .unwrap_or_default(),
                    )
                }
            };
            tasks.push(tokio::spawn(run_loop(
                i,
                plan.clone(),
                Arc::new(client),
                Arc::clone(history),
                format!("{prefix}-{i}"),
                stop.clone(),
                Arc::clone(&acked),
            )));
        }
        WorkloadSet {
            stop,
            tasks,
            acked,
            pools,
        }
    }

    /// Stops issuing operations, waits for those in flight, returns the acknowledged
    /// write ids per workload.
    pub async fn stop(self) -> Vec<Vec<String>> {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        drop(self.pools);
        self.acked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

async fn run_loop(
    index: usize,
    plan: WorkloadPlan,
    client: Arc<Client>,
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
        let (plan, client, history, acked) = (
            plan.clone(),
            Arc::clone(&client),
            Arc::clone(&history),
            Arc::clone(&acked),
        );
        in_flight.spawn(async move {
            history.record(Event::OpInvoke {
                workload: plan.name.clone(),
                id: id.clone(),
            });
            let start_ns = history.now_ns();
            let (result, error) = run_op(&plan, &client, &id, n).await;
            let latency_ns = history.now_ns().saturating_sub(start_ns);
            history.record(Event::OpComplete {
                workload: plan.name.clone(),
                id: id.clone(),
                result,
                start_ns,
                latency_ns,
                error,
            });
            if result == OpResult::Ok && plan.kind.writes() {
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
        let (missing, unverifiable, error) = match &plan.kind {
            WorkloadKind::Reads { .. } => continue,
            WorkloadKind::HttpWrites {
                read_url,
                verify_within,
                ..
            } => {
                // Asynchronous pipelines: re-read what is missing until the deadline.
                let deadline = tokio::time::Instant::now() + *verify_within;
                let (mut missing, mut unverifiable, mut error) =
                    verify_http(plan, read_url, ids).await;
                while !missing.is_empty() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let (m, u, e) = verify_http(plan, read_url, &missing).await;
                    missing = m;
                    unverifiable += u;
                    error = error.or(e);
                }
                (missing, unverifiable, error)
            }
            WorkloadKind::PostgresInserts {
                address,
                user,
                dbname,
                table,
            } => {
                let pool = PgPool::new(*address, user, dbname, table, Duration::from_secs(5));
                verify_pg(&pool, ids).await
            }
        };
        history.record(Event::Verify {
            workload: plan.name.clone(),
            checked: ids.len() as u64,
            missing,
            unverifiable,
            error,
        });
    }
}

async fn verify_http(
    plan: &WorkloadPlan,
    read_url: &str,
    ids: &[String],
) -> (Vec<String>, u64, Option<String>) {
    let Ok(client) = reqwest::Client::builder()
        .timeout(plan.timeout.max(Duration::from_secs(2)))
        .no_proxy()
        .build()
    else {
        return (
            Vec::new(),
            ids.len() as u64,
            Some("cannot build an HTTP client".into()),
        );
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
    (missing, unverifiable, first_error)
}

async fn verify_pg(pool: &PgPool, ids: &[String]) -> (Vec<String>, u64, Option<String>) {
    if ids.is_empty() {
        return (Vec::new(), 0, None);
    }
    let found = async {
        let c = pool.client().await?;
        let rows = c
            .query(
                &format!("SELECT id FROM {} WHERE id = ANY($1)", pool.table),
                &[&ids],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>(
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<std::collections::HashSet<String>>(),
        )
    };
    match found.await {
        Ok(found) => {
            let mut missing: Vec<String> = ids
                .iter()
                .filter(|id| !found.contains(*id))
                .cloned()
                .collect();
            missing.sort();
            (missing, 0, None)
        }
        Err(e) => (Vec::new(), ids.len() as u64, Some(e.to_string())),
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
        let plan = WorkloadPlan {
            name: "w".into(),
            kind: WorkloadKind::HttpWrites {
                url: format!("http://127.0.0.1:{port}/items"),
                read_url: format!("http://127.0.0.1:{port}/items/{{id}}"),
                verify_within: Duration::ZERO,
            },
            rate: 1000.0,
            concurrency: 2,
            timeout: Duration::from_millis(200),
            max_ops: 5,
        };
        let history = Arc::new(History::in_memory());
        history.begin_trial(1);
        let set = WorkloadSet::start(std::slice::from_ref(&plan), &history, "t");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let acked = set.stop().await;
        let records = history.end_trial();
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
