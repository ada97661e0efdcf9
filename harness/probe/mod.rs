//! Readiness probes: one attempt is a fresh connection (no pooling hides an
//! outage), bounded by the probe's timeout; [`run_loop`] polls at a fixed period
//! and records every attempt in the history.

use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::history::{Event, History};
use crate::scenario::{ProbeKind, ProbePlan};
use crate::stack::Stack;

/// A ready-to-use probe.
pub struct Prober {
    plan: ProbePlan,
    http: Option<reqwest::Client>,
    stack: Arc<dyn Stack>,
}

/// One completed attempt, as sent to the runner.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Index of the probe in the scenario.
    pub probe: usize,
    /// Monotonic start time (run nanoseconds).
    pub start_ns: u64,
    /// Monotonic end time.
    pub end_ns: u64,
    /// Success.
    pub ok: bool,
    /// Why it failed.
    pub error: Option<String>,
}

impl Prober {
    /// Builds the client a probe needs.
    pub fn new(plan: ProbePlan, stack: Arc<dyn Stack>) -> Result<Self, reqwest::Error> {
        let http = match &plan.kind {
            ProbeKind::Http { .. } => Some(
                reqwest::Client::builder()
                    .timeout(plan.timeout)
                    .connect_timeout(plan.timeout)
                    .pool_max_idle_per_host(0)
                    .no_proxy()
                    .build()?,
            ),
            _ => None,
        };
        Ok(Prober { plan, http, stack })
    }

    /// The probe's name.
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// One attempt: Ok when the service answered as expected.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(self.plan.timeout, self.attempt()).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", self.plan.timeout)),
        }
    }

    async fn attempt(&self) -> Result<(), String> {
        match (&self.plan.kind, &self.http) {
            (ProbeKind::Http { url, expect_status }, Some(client)) => {
                let resp = client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| describe_reqwest(&e))?;
                let status = resp.status().as_u16();
                if status == *expect_status {
                    Ok(())
                } else {
                    Err(format!("status {status}, expected {expect_status}"))
                }
            }
            (ProbeKind::Tcp { address }, _) => match tokio::time::timeout(
                self.plan.timeout,
                tokio::net::TcpStream::connect(address),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("connect timed out after {:?}", self.plan.timeout)),
            },
            (ProbeKind::Http { .. }, None) => Err("http client missing".into()),
            (ProbeKind::DockerHealth { service }, _) => match self
                .stack
                .health(service)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(h) if h == "healthy" => Ok(()),
                Some(h) => Err(format!("health {h}")),
                None => Err(format!("service `{service}` has no healthcheck")),
            },
            (ProbeKind::Exec { service, command }, _) => {
                let out = self
                    .stack
                    .exec(service, command)
                    .await
                    .map_err(|e| e.to_string())?;
                if out.code == 0 {
                    Ok(())
                } else {
                    Err(format!("exit code {}: {}", out.code, out.output.trim()))
                }
            }
            (
                ProbeKind::Postgres {
                    address,
                    user,
                    dbname,
                },
                _,
            ) => {
                let mut cfg = tokio_postgres::Config::new();
                cfg.host(address.ip().to_string())
                    .port(address.port())
                    .user(user)
                    .dbname(dbname)
                    .connect_timeout(self.plan.timeout)
                    .application_name("rebound-probe");
                let (client, conn) = cfg
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                let driver = tokio::spawn(conn);
                let res = client
                    .simple_query("SELECT 1")
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("query: {e}"));
                drop(client);
                driver.abort();
                res
            }
        }
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
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

/// Polls `prober` every period until `stop`, recording each attempt in `history`
/// and sending it to `tx`. Attempts never overlap: a slow one delays the next.
pub async fn run_loop(
    index: usize,
    prober: Arc<Prober>,
    history: Arc<History>,
    tx: mpsc::UnboundedSender<Attempt>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(prober.plan.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = tokio::select! {
            () = stop.cancelled() => return,
            due = ticks.tick() => due,
        };
        let late_ns = u64::try_from(due.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let start_ns = history.now_ns();
        let result = prober.check().await;
        let latency_ns = history.now_ns().saturating_sub(start_ns);
        let error = result.err();
        history.record(Event::Probe {
            probe: prober.name().to_string(),
            ok: error.is_none(),
            start_ns,
            latency_ns,
            late_ns,
            error: error.clone(),
        });
        if tx
            .send(Attempt {
                probe: index,
                start_ns,
                end_ns: start_ns + latency_ns,
                ok: error.is_none(),
                error,
            })
            .is_err()
        {
            return;
        }
    }
}

/// A set of running probe loops; dropped or stopped together.
pub struct ProbeSet {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Attempts as they complete.
    pub attempts: mpsc::UnboundedReceiver<Attempt>,
}

impl ProbeSet {
    /// Starts one loop per prober.
    pub fn start(probers: &[Arc<Prober>], history: &Arc<History>) -> Self {
        let stop = CancellationToken::new();
        let (tx, attempts) = mpsc::unbounded_channel();
        let tasks = probers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                tokio::spawn(run_loop(
                    i,
                    Arc::clone(p),
                    Arc::clone(history),
                    tx.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        ProbeSet {
            stop,
            tasks,
            attempts,
        }
    }

    /// Stops every loop and waits for in-flight attempts to be recorded.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for ProbeSet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
