//! Readiness probes: every probe kind is one file here, holding its raw table
//! (serde), its validation and its [`Check`]; one attempt is a fresh connection (no
//! pooling hides an outage), bounded by the probe's timeout; [`run_loop`] polls at a
//! fixed period and records every attempt in the history.
//!
//! Adding a kind: a file with a `Raw…` table that implements [`RawCheck`] and a
//! check that implements [`Check`], plus one line in the `registry!` below.

pub mod docker_health;
pub mod exec;
pub mod http;
pub mod postgres;
pub mod redis;
pub mod tcp;

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::field::{nonzero, FieldError};
use crate::history::{Event, History};
use crate::stack::{Capability, Stack};

/// Smallest probe period accepted.
pub const MIN_PROBE_PERIOD: Duration = Duration::from_millis(5);

/// Per-attempt timeout when a probe's table does not give one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// One validated readiness probe.
#[derive(Debug, Clone)]
pub struct ProbePlan {
    /// Unique name.
    pub name: String,
    /// What is checked.
    pub check: Arc<dyn Check>,
    /// Poll period.
    pub period: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

/// One kind of readiness check, with its parameters.
#[async_trait]
pub trait Check: Debug + Send + Sync + Any {
    /// The kebab-case kind name (also the default probe name's stem).
    fn kind(&self) -> &'static str;
    /// The service it runs in, for the kinds that act through the stack.
    fn service(&self) -> Option<&str> {
        None
    }
    /// Stack primitives beyond the basic ones that the kind uses.
    fn needs(&self) -> &'static [Capability] {
        &[]
    }
    /// At most this many attempts in flight at once, for kinds whose attempts load
    /// the stack itself (each `docker exec` starts a process through the engine):
    /// overlapping them on every tick would slow every one of them down.
    fn max_in_flight(&self) -> Option<usize> {
        None
    }
    /// One attempt: Ok when the service answered as expected, else why not.
    async fn attempt(&self, stack: &dyn Stack) -> Result<(), Failure>;
    /// The check as `Any`, for tests that look at a kind's parameters.
    fn as_any(&self) -> &dyn Any;
}

/// Why an attempt failed, and which instant of the attempt that proves the service
/// was not ready — the evidence rule behind `recovery_lower`:
///
/// - a **refused connection** proves it when the connect was issued (`proof`): the
///   kernel on the other side answered at once that nothing listens. Not the
///   attempt's end: on a busy machine the wake-up that reports the refusal can come
///   long after it, when the service may already be up;
/// - every other failure (a timeout, a hang, an error reply, a closed connection, a
///   non-zero exit code, a refusal inside an HTTP client) proves it only at the
///   attempt's **start**: whatever decided it happened somewhere inside the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, for the history and the report.
    pub message: String,
    /// When, after the attempt's start, the failure proves the service down (a
    /// refused connect: the instant it was issued); None: the start.
    pub proof: Option<std::time::Instant>,
}

impl Failure {
    /// An I/O error of a connect issued at `issued`: a refusal proves the service
    /// down then; any other error only at the attempt's start.
    pub fn connect(e: &std::io::Error, issued: std::time::Instant) -> Self {
        Failure {
            message: e.to_string(),
            proof: (e.kind() == std::io::ErrorKind::ConnectionRefused).then_some(issued),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            proof: None,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::from(message.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The keys every probe table has.
#[derive(Debug, Clone, Copy, Default)]
pub struct Common<'a> {
    /// `name`.
    pub name: Option<&'a str>,
    /// `period`.
    pub period: Option<Duration>,
    /// `timeout`.
    pub timeout: Option<Duration>,
}

/// The [`RawCheck::common`] of a raw table with the keys `name`, `period` and
/// `timeout` (every probe table has them).
macro_rules! probe_common {
    () => {
        fn common(&self) -> super::Common<'_> {
            super::Common {
                name: self.name.as_deref(),
                period: self.period,
                timeout: self.timeout,
            }
        }
    };
}
use probe_common;

/// A raw `[[probe]]` table of one kind, as serde reads it.
pub trait RawCheck {
    /// Its `name`, `period` and `timeout`.
    fn common(&self) -> Common<'_>;
    /// Validates the kind's own keys into a check that gives up after `timeout`.
    fn check(self, timeout: Duration) -> Result<Arc<dyn Check>, FieldError>;
}

/// What probe validation may consult about the scenario.
#[derive(Debug, Clone, Copy)]
pub struct ProbeCtx {
    /// Position of the table among the probes (0-based), for default names.
    pub index: usize,
    /// `[run] probe-period`.
    pub default_period: Duration,
}

fn plan_of(raw: impl RawCheck, ctx: &ProbeCtx) -> Result<ProbePlan, FieldError> {
    let common = raw.common();
    let name = common.name.map(str::to_string);
    let period = common.period.unwrap_or(ctx.default_period);
    if period < MIN_PROBE_PERIOD {
        return Err(FieldError::new(
            "period",
            "probe period must be at least 5ms",
        ));
    }
    let timeout = nonzero("timeout", common.timeout.unwrap_or(DEFAULT_TIMEOUT))?;
    let check = raw.check(timeout)?;
    Ok(ProbePlan {
        name: name.unwrap_or_else(|| format!("{}-{}", check.kind(), ctx.index + 1)),
        check,
        period,
        timeout,
    })
}

macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident => $raw:ty ),* $(,)?) => {
        /// `[[probe]]`: how to tell that the stack is up (each kind's keys are
        /// documented on its raw type).
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(tag = "kind", rename_all = "kebab-case")]
        pub enum RawProbe {
            $( $(#[$doc])* $variant($raw), )*
        }

        impl RawProbe {
            /// Validates the table into a probe plan.
            pub fn plan(self, ctx: &ProbeCtx) -> Result<ProbePlan, FieldError> {
                match self {
                    $( RawProbe::$variant(raw) => plan_of(raw, ctx), )*
                }
            }
        }
    };
}

registry! {
    /// HTTP GET that must answer with `expect-status`.
    Http => http::RawHttp,
    /// TCP connect that must succeed.
    Tcp => tcp::RawTcp,
    /// A fresh PostgreSQL connection must answer `SELECT 1`.
    Postgres => postgres::RawPostgres,
    /// A fresh Redis connection must answer `PING` with `PONG`.
    Redis => redis::RawRedis,
    /// docker: an argv run in a service must exit 0.
    Exec => exec::RawExec,
    /// docker: the container's own healthcheck must say `healthy`.
    DockerHealth => docker_health::RawDockerHealth,
}

/// A ready-to-use probe.
pub struct Prober {
    plan: ProbePlan,
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
    /// How long after `start_ns` the failure proves the service down (0: at the start).
    pub proof_ns: u64,
    /// Why it failed.
    pub error: Option<String>,
}

impl Attempt {
    /// The attempt as the checkers see it.
    pub fn span(&self) -> crate::checker::Span {
        crate::checker::Span {
            probe: self.probe,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            ok: self.ok,
            proof_ns: self.proof_ns,
        }
    }
}

impl Prober {
    /// A probe acting on `stack`.
    pub fn new(plan: ProbePlan, stack: Arc<dyn Stack>) -> Self {
        Prober { plan, stack }
    }

    /// The probe's name.
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// One attempt, bounded by the probe's timeout.
    pub async fn check(&self) -> Result<(), Failure> {
        let attempt = self.plan.check.attempt(self.stack.as_ref());
        match tokio::time::timeout(self.plan.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", self.plan.timeout).into()),
        }
    }
}

/// Attempts of one probe in flight at once, at most, whatever its period and
/// timeout: a probe whose attempts all hang skips ticks rather than pile up
/// connections without bound.
pub const MAX_IN_FLIGHT: usize = 128;

/// How many attempts of a probe may be in flight: enough that attempts hanging for
/// the whole timeout never stop a tick (timeout / period + 1), at most
/// [`MAX_IN_FLIGHT`].
pub fn in_flight_bound(period: Duration, timeout: Duration) -> usize {
    let per = period.as_nanos().max(1);
    let n = timeout.as_nanos().div_ceil(per) + 1;
    usize::try_from(n)
        .unwrap_or(MAX_IN_FLIGHT)
        .min(MAX_IN_FLIGHT)
}

/// The grid slots strictly between two ticks `gap` apart (tokio's intervals keep
/// their ticks on the grid of `period`, skipping whole slots when late).
fn skipped_ticks(gap: Duration, period: Duration) -> u32 {
    let per = period.as_nanos().max(1);
    // Round to the nearest slot: the ticks are on the grid, up to timer rounding.
    let slots = (gap.as_nanos() + per / 2) / per;
    u32::try_from(slots.saturating_sub(1)).unwrap_or(u32::MAX)
}

/// How an attempt ended.
enum Done {
    /// It completed (its result and end, run ns).
    Finished(Result<(), Failure>, u64),
    /// It was cancelled at this instant: a later attempt succeeded, or the loop stopped.
    Cancelled(u64, &'static str),
}

/// One attempt between its start and its release to the history.
struct Flight {
    start_ns: u64,
    late_ns: u64,
    /// Ticks of the period's grid since the previous attempt's that started no
    /// attempt (the loop was later than a whole period, or the in-flight bound was
    /// reached).
    skipped: u32,
    handle: tokio::task::AbortHandle,
    done: Option<Done>,
}

/// Polls `prober` on every tick of its period, whether or not earlier attempts are
/// still in flight (at most [`in_flight_bound`]; each bounded by the probe's timeout),
/// so a hanging attempt cannot hide a recovery. Attempts are recorded in `history`
/// and sent to `tx` in start order; when one succeeds, the earlier ones still in
/// flight are moot: they are cancelled and recorded as such (never sent on).
pub async fn run_loop(
    index: usize,
    prober: Arc<Prober>,
    history: Arc<History>,
    tx: mpsc::UnboundedSender<Attempt>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(prober.plan.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let bound = in_flight_bound(prober.plan.period, prober.plan.timeout)
        .min(prober.plan.check.max_in_flight().unwrap_or(MAX_IN_FLIGHT))
        .max(1);
    let mut flights: std::collections::VecDeque<Flight> = std::collections::VecDeque::new();
    // Sequence number of `flights[0]`; attempt `seq` is `flights[seq - first]`.
    let mut first: u64 = 0;
    let mut next: u64 = 0;
    let mut running: tokio::task::JoinSet<(u64, Result<(), Failure>, u64)> =
        tokio::task::JoinSet::new();
    // The tick of the latest attempt: the grid's slots between it and the next
    // attempt's are the ticks skipped.
    let mut prev_due: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                let now = history.now_ns();
                for f in flights.iter_mut().filter(|f| f.done.is_none()) {
                    f.handle.abort();
                    f.done = Some(Done::Cancelled(now, "the probe loop stopped"));
                }
                release(index, &prober, &history, &tx, &mut flights, &mut first);
                return;
            }
            Some(joined) = running.join_next(), if !running.is_empty() => {
                let (seq, result, end_ns) = match joined {
                    Ok(done) => done,
                    // A check that panicked failed; its flight must not block the rest.
                    Err(e) if e.is_panic() => {
                        let now = history.now_ns();
                        let Some(pos) = flights.iter().position(|f| f.handle.id() == e.id()) else { continue };
                        (first + pos as u64, Err(Failure::from("internal error: the probe check panicked")), now)
                    }
                    // An aborted attempt was already marked cancelled.
                    Err(_) => continue,
                };
                let Some(i) = seq.checked_sub(first).and_then(|i| usize::try_from(i).ok()) else { continue };
                let ok = matches!(result, Ok(()));
                if let Some(f) = flights.get_mut(i) {
                    f.done = Some(Done::Finished(result, end_ns));
                }
                if ok {
                    for f in flights.iter_mut().take(i).filter(|f| f.done.is_none()) {
                        f.handle.abort();
                        f.done = Some(Done::Cancelled(end_ns, "a later attempt succeeded"));
                    }
                }
                if !release(index, &prober, &history, &tx, &mut flights, &mut first) {
                    return;
                }
            }
            due = ticks.tick() => {
                let in_flight = flights.iter().filter(|f| f.done.is_none()).count();
                if in_flight >= bound {
                    continue;
                }
                let late_ns = u64::try_from(due.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let skipped = prev_due.map_or(0, |prev| skipped_ticks(due - prev, prober.plan.period));
                prev_due = Some(due);
                let start_ns = history.now_ns();
                let (p, h, seq) = (Arc::clone(&prober), Arc::clone(&history), next);
                next += 1;
                let handle = running.spawn(async move {
                    let result = p.check().await;
                    (seq, result, h.now_ns())
                });
                flights.push_back(Flight { start_ns, late_ns, skipped, handle, done: None });
            }
        }
    }
}

/// Records and sends the attempts at the front of `flights` that are done, in start
/// order. Returns false once the receiver is gone.
fn release(
    index: usize,
    prober: &Prober,
    history: &History,
    tx: &mpsc::UnboundedSender<Attempt>,
    flights: &mut std::collections::VecDeque<Flight>,
    first: &mut u64,
) -> bool {
    while flights.front().is_some_and(|f| f.done.is_some()) {
        let Some(Flight {
            start_ns,
            late_ns,
            skipped,
            done: Some(done),
            ..
        }) = flights.pop_front()
        else {
            break;
        };
        *first += 1;
        let (ok, error, proof_ns, end_ns, cancelled) = match done {
            Done::Finished(Ok(()), end) => (true, None, None, end, false),
            Done::Finished(Err(f), end) => {
                // Within the attempt, never before its start nor after its end.
                let proof = f
                    .proof
                    .map(|at| history.ns_at(at).clamp(start_ns, end) - start_ns)
                    .filter(|p| *p > 0);
                (false, Some(f.message), proof, end, false)
            }
            Done::Cancelled(end, why) => {
                (false, Some(format!("cancelled: {why}")), None, end, true)
            }
        };
        history.record(Event::Probe {
            probe: prober.name().to_string(),
            ok,
            start_ns,
            latency_ns: end_ns.saturating_sub(start_ns),
            late_ns,
            skipped,
            cancelled,
            proof_ns,
            error: error.clone(),
        });
        if cancelled {
            continue;
        }
        let sent = tx.send(Attempt {
            probe: index,
            start_ns,
            end_ns,
            ok,
            proof_ns: proof_ns.unwrap_or(0),
            error,
        });
        if sent.is_err() {
            return false;
        }
    }
    true
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

    /// Stops every loop; attempts still in flight are recorded as cancelled.
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

#[cfg(test)]
mod tests;
