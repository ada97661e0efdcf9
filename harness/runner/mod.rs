//! Orchestration of a run: run directory, stack bring-up to steady state, the
//! trial loop (warm-up → inject → observe → heal → steady state), Ctrl-C handling
//! and teardown, progress. Heal and teardown run on every path: success, failure,
//! timeout, interruption and a panicking trial.
//!
//! Ctrl-C: the first heals the current fault, tears the stack down and exits 130
//! keeping finished trials; the second SIGKILLs the stack now; the third exits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::analysis::{self, RunFacts};
use crate::checker::{self, RecoveryTracker, TrialResult};
use crate::exit::ExitStatus;
use crate::history::{Event, History, HistoryError};
use crate::journal::{Journal, RunEntry};
use crate::nemesis;
use crate::probe::{ProbeSet, Prober};
use crate::report::{self, ConsoleReporter, ReportError, Reporter, Summary};
use crate::run_dir::{RunDir, RunDirError};
use crate::scenario::Plan;
use crate::stack::{BuildCtx, Stack, StackError};
use crate::workload::{self, WorkloadSet};
use schedule::{ScheduleSpec, TrialSchedule};

pub mod schedule;
#[cfg(test)]
mod tests;

/// Command-line choices that override the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Number of trials (default: the scenario's).
    pub trials: Option<u32>,
    /// Run directory (default `<reports_root>/<scenario>/<run-id>`).
    pub out: Option<PathBuf>,
    /// Root of default run directories.
    pub reports_root: PathBuf,
    /// Schedule seed (default: the scenario's, else random).
    pub seed: Option<u64>,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Print the console summary to stdout.
    pub print_summary: bool,
    /// docker backend: leave a compose stack rebound brought up running.
    pub keep: bool,
    /// Stop as soon as the success-rate verdict is PASS or FAIL (sequential rule);
    /// `trials` is then the maximum.
    pub until_decided: bool,
    /// Run only shard `(i, n)` of the trials (merge the shards with `rebound merge`).
    pub shard: Option<(u32, u32)>,
    /// Heal what killed runs of the same scenario left behind first, instead of
    /// refusing to start (`--heal-stale`).
    pub heal_stale: bool,
    /// Evidence ledger (`--evidence FILE`): decide the success rate on the pooled
    /// trials of every earlier run of this scenario in it, and append this run.
    pub evidence: Option<PathBuf>,
    /// Services whose log templates are recorded, each template's first line
    /// per trial (explore's coverage signature).
    pub log_templates: Vec<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            trials: None,
            out: None,
            reports_root: PathBuf::from("reports"),
            seed: None,
            progress: true,
            print_summary: true,
            keep: false,
            until_decided: false,
            shard: None,
            heal_stale: false,
            evidence: None,
            log_templates: Vec::new(),
        }
    }
}

/// What the run's log followers record: the lines `[run] record-log` names and
/// `when = "SERVICE log /…/"` follow-ups wait for, and the templates `opts` asks for.
fn log_policy(plan: &Plan, opts: &RunOptions) -> crate::stack::logs::LogPolicy {
    let mut policy = crate::stack::logs::LogPolicy {
        templates: opts.log_templates.iter().cloned().collect(),
        ..Default::default()
    };
    for (service, re) in &plan.run.record_log {
        policy
            .record
            .entry(service.clone())
            .or_default()
            .push(re.clone());
    }
    for f in &plan.faults {
        for w in f.then.iter().filter_map(|t| t.when.as_ref()) {
            if let Some(p) = &w.pattern {
                policy
                    .patterns
                    .entry(w.service.clone())
                    .or_default()
                    .push(p.0.clone());
            }
        }
    }
    policy
}

/// Why a run could not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The run directory could not be prepared (exit 3: a usage problem).
    #[error("run directory {0}")]
    RunDir(#[from] RunDirError),
    /// A command-line value is not acceptable (exit 3).
    #[error("{0}")]
    Usage(String),
    /// History could not be written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// A report could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The stack could not be brought up (exit 4).
    #[error("stack could not be brought up: {source}{hint}")]
    StackUp {
        /// The primitive that failed.
        source: StackError,
        /// Extra context (log tail).
        hint: String,
    },
    /// The stack came up but never reached steady state (exit 4).
    #[error("stack did not become healthy within {waited:?}: {detail}")]
    NotHealthy {
        /// How long rebound waited.
        waited: Duration,
        /// Probe errors and service states.
        detail: String,
    },
    /// A killed run of the same scenario left faults or a stack behind (exit 4).
    #[error("{0}")]
    Stale(String),
    /// The fault journal could not be written (exit 4): no fault is injected
    /// without its undo record on disk.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// `--heal-stale` could not heal a killed run (exit 4).
    #[error(transparent)]
    Heal(#[from] crate::heal::HealError),
    /// A bug: a task panicked. Faults were healed and the stack torn down.
    #[error("internal error (faults healed, stack torn down): {0}")]
    Internal(String),
    /// The evidence ledger cannot be read or written (exit 3).
    #[error(transparent)]
    Evidence(#[from] crate::evidence::EvidenceError),
}

/// Why `--evidence` and `[slo] per-fault = true` do not go together.
pub const PER_FAULT_EVIDENCE: &str = "--evidence pools one success rate over all trials, but `[slo] per-fault = true` decides each fault on its own trials, which the ledger does not record: use one or the other";

impl RunError {
    /// The documented exit status for this error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            RunError::RunDir { .. } | RunError::Usage(_) | RunError::Evidence(_) => {
                ExitStatus::Invalid
            }
            _ => ExitStatus::StackFailure,
        }
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The summary (also in `summary.json`).
    pub summary: Summary,
    /// Every finished trial.
    pub trials: Vec<TrialResult>,
    /// The exit status.
    pub exit: ExitStatus,
}

struct Ctx {
    plan: Plan,
    history: Arc<History>,
    stack: Arc<dyn Stack>,
    probers: Vec<Arc<Prober>>,
    cancel: CancellationToken,
    run_dir: RunDir,
    /// Undo records on disk before each fault (`rebound heal`).
    journal: Arc<Journal>,
    /// Short run tag that makes workload operation ids unique across runs.
    run_tag: String,
    /// Sequential mode: stop once the success rate is decided.
    sequential: bool,
    /// Earlier evidence from the ledger: (successes, trials).
    prior: (u64, u64),
    /// This run's shard `(i, n)`, 1-based; `(1, 1)` when not sharded.
    shard: (u32, u32),
    /// Trials of the whole run (all shards).
    total_trials: u32,
}

/// How a trial ended, as far as the run loop cares.
struct TrialRun {
    interrupted: bool,
    heal_error: Option<String>,
    steady_error: Option<String>,
}

enum SteadyError {
    Cancelled,
    Failed(String),
}

fn new_run_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

fn prepare_run_dir(plan: &Plan, opts: &RunOptions, run_id: &str) -> Result<RunDir, RunError> {
    let dir = opts
        .out
        .clone()
        .unwrap_or_else(|| opts.reports_root.join(&plan.name).join(run_id));
    let rd = RunDir::create(&dir, &plan.source_text)?;
    rd.write_ports(&plan.ports)?;
    if opts.out.is_none() {
        RunDir::link_latest(&opts.reports_root, &plan.name, run_id);
    }
    Ok(rd)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n    ")
}

impl Ctx {
    fn service_log(&self, service: &str) -> PathBuf {
        self.run_dir.service_log(service)
    }

    /// Describes services that are down for good, with their log tails.
    fn dead_services(&self) -> Vec<String> {
        self.stack
            .services()
            .into_iter()
            .filter_map(|name| {
                let st = self.stack.status(&name).ok()?;
                if st.running || st.wanted {
                    return None;
                }
                let how = match (st.last_code, st.last_signal) {
                    (Some(c), _) => format!("exited with code {c}"),
                    (None, Some(s)) => format!("was killed by signal {s}"),
                    (None, None) => "is not running".to_string(),
                };
                let log = self.service_log(&name);
                Some(format!(
                    "service `{name}` {how} and its restart policy does not restart it (log {}):\n    {}",
                    log.display(),
                    log_tail(&log, 5)
                ))
            })
            .collect()
    }

    /// Polls every probe until all have a stable streak; fails fast when a service
    /// is down for good.
    async fn wait_steady(&self, timeout: Duration) -> Result<Duration, SteadyError> {
        let started = Instant::now();
        let mut probes = ProbeSet::start(&self.probers, &self.history);
        let mut tracker = RecoveryTracker::new(self.probers.len(), self.plan.run.stable_for);
        tracker.set_gate(self.history.now_ns());
        let mut last_error: Vec<Option<String>> = vec![None; self.probers.len()];
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut check_dead = tokio::time::interval(Duration::from_millis(100));
        let result = loop {
            tokio::select! {
                () = self.cancel.cancelled() => break Err(SteadyError::Cancelled),
                () = &mut deadline => {
                    let errors: Vec<String> = self.probers.iter().zip(&last_error)
                        .filter_map(|(p, e)| e.as_ref().map(|e| format!("probe `{}`: {e}", p.name())))
                        .collect();
                    break Err(SteadyError::Failed(if errors.is_empty() { "probes never got a stable streak".into() } else { errors.join("; ") }));
                }
                _ = check_dead.tick() => {
                    let dead = self.dead_services();
                    if !dead.is_empty() {
                        break Err(SteadyError::Failed(dead.join("\n")));
                    }
                }
                Some(a) = probes.attempts.recv() => {
                    if let Some(slot) = last_error.get_mut(a.probe) {
                        *slot = a.error.clone();
                    }
                    tracker.observe(a.span());
                    if tracker.recovered().is_some() {
                        break Ok(started.elapsed());
                    }
                }
            }
        };
        probes.stop().await;
        result
    }

    /// One trial, from warm-up to heal. Returns (interrupted, heal error).
    async fn trial(&self, t: &TrialSchedule) -> TrialRun {
        let h = &self.history;
        let number = t.number;
        // The trial's first fault fires at the end of the warm-up; its follow-ups
        // (`[[fault.then]]`) each a while after the previous one.
        let fault = &self.plan.faults[t.injections[0].fault];
        let mut probes = ProbeSet::start(&self.probers, h);
        let workloads = WorkloadSet::start(
            &self.plan.workloads,
            h,
            &format!("{}-t{number}", self.run_tag),
        );
        let mut interrupted = false;

        tokio::select! {
            () = self.cancel.cancelled() => interrupted = true,
            () = tokio::time::sleep(t.warm_up) => {}
        }
        // Every fault of the trial whose undo record reached the disk (before the
        // fault did): heal takes back each of them.
        let mut journaled: Vec<(&nemesis::FaultPlan, u64)> = Vec::new();
        if !interrupted {
            match self.journal.fault(&fault.kind.undo(&fault.target)) {
                Ok(seq) => journaled.push((fault, seq)),
                Err(e) => {
                    h.record(Event::FaultFail {
                        error: format!("not injected: {e}"),
                    });
                    interrupted = self.cancel.is_cancelled();
                }
            }
        }
        if !journaled.is_empty() {
            // Lifecycle events from the first fault's invocation on (those recorded
            // before it are skipped by sequence number): what a follow-up's `when`
            // waits for.
            let lifecycle = h.lifecycle();
            let invoked = h.record(Event::FaultInvoke {
                fault: fault.kind.name().into(),
                target: fault.target.clone(),
            });
            // A panic in a fault's code must not skip heal: it is recorded as a
            // failed injection (the trial is unknown) and heal runs as always.
            let observed = std::panic::AssertUnwindSafe(self.inject_and_observe(
                fault,
                &mut probes,
                &mut journaled,
                (lifecycle, invoked.seq),
            ))
            .catch_unwind()
            .await;
            match observed {
                Ok(cancelled) => interrupted = cancelled,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    h.record(Event::FaultFail {
                        error: format!("internal error: the fault panicked: {what}"),
                    });
                }
            }
        }
        // Heal always runs: after recovery, timeout, failed injection and Ctrl-C;
        // each injected fault, latest first (the first fault even if none was).
        h.record(Event::HealInvoke);
        let to_heal: Vec<(&nemesis::FaultPlan, Option<u64>)> = if journaled.is_empty() {
            vec![(fault, None)]
        } else {
            journaled
                .iter()
                .rev()
                .map(|(f, seq)| (*f, Some(*seq)))
                .collect()
        };
        let several = to_heal.len() > 1;
        let mut details = Vec::new();
        let mut heal_error = None;
        let mut failed = false;
        for (f, seq) in to_heal {
            match nemesis::heal(f, self.stack.as_ref()).await {
                Ok(detail) => {
                    details.push(if several {
                        format!("{} on {}: {detail}", f.kind.name(), f.target)
                    } else {
                        detail
                    });
                    if let Some(Err(e)) = seq.map(|seq| self.journal.healed(seq)) {
                        heal_error.get_or_insert(e.to_string());
                    }
                }
                Err(e) => {
                    let error = if several {
                        format!("{} on {}: {e}", f.kind.name(), f.target)
                    } else {
                        e.to_string()
                    };
                    h.record(Event::HealFail {
                        error: error.clone(),
                    });
                    failed = true;
                    heal_error.get_or_insert(error);
                }
            }
        }
        if !failed {
            h.record(Event::HealOk {
                detail: details.join("; "),
            });
        }
        probes.stop().await;
        // Back to steady state with the clients still running, then read back every
        // acknowledged write: a restart that lost data is a failed restart.
        let mut steady_error = None;
        if !interrupted && heal_error.is_none() {
            match self.wait_steady(self.plan.run.heal_timeout).await {
                Ok(_) => {}
                Err(SteadyError::Cancelled) => interrupted = true,
                Err(SteadyError::Failed(detail)) => steady_error = Some(detail),
            }
        }
        let acked = workloads.stop().await;
        if !interrupted && steady_error.is_none() {
            workload::verify(&self.plan.workloads, &acked, h).await;
        }
        TrialRun {
            interrupted,
            heal_error,
            steady_error,
        }
    }

    /// Injects `fault`, then each of its follow-ups in turn, and watches the probes
    /// until the stack recovered after every fault's effect ended, the observe
    /// window ended, or the run was cancelled (returns true then). Each follow-up's
    /// undo record is journaled (and added to `journaled`) before it is injected.
    async fn inject_and_observe<'p>(
        &self,
        fault: &'p nemesis::FaultPlan,
        probes: &mut ProbeSet,
        journaled: &mut Vec<(&'p nemesis::FaultPlan, u64)>,
        (mut lifecycle, mut since_seq): (
            tokio::sync::broadcast::Receiver<crate::history::Record>,
            u64,
        ),
    ) -> bool {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let h = &self.history;
        let stack = self.stack.as_ref();
        let mut tracker = RecoveryTracker::new(self.probers.len(), self.plan.run.stable_for);
        let injected = match nemesis::inject(fault, stack).await {
            Err(e) => {
                h.record(Event::FaultFail {
                    error: e.to_string(),
                });
                return false;
            }
            Ok(injected) => injected,
        };
        h.record(Event::FaultOk {
            detail: injected.detail,
        });
        let mut effects = FuturesUnordered::new();
        effects.push(injected.effect.wait(stack));
        let follow = &fault.then;
        let mut next = 0;
        // Whether the next follow-up's delay runs (it waits for its event first).
        let mut armed = follow.first().is_some_and(|f| f.when.is_none());
        let far = Duration::from_secs(365 * 24 * 3600);
        let next_at = tokio::time::sleep(follow.first().filter(|_| armed).map_or(far, |f| f.after));
        tokio::pin!(next_at);
        let mut trigger: Option<String> = None;
        // For a `probe … up` trigger: whether its probe failed since counting began.
        let mut seen_down = false;
        let mut pending: Option<
            futures_util::future::BoxFuture<'_, Result<nemesis::Injected, StackError>>,
        > = None;
        let observe = tokio::time::sleep(self.plan.run.observe_for);
        tokio::pin!(observe);
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return true,
                Some(res) = effects.next(), if !effects.is_empty() => {
                    match res {
                        Ok(detail) => {
                            let r = h.record(Event::FaultEnd { detail });
                            // The gate opens when the last fault's effect has ended.
                            if effects.is_empty() && next == follow.len() && pending.is_none() {
                                tracker.set_gate(r.elapsed_ns);
                            }
                        }
                        Err(e) => {
                            h.record(Event::FaultFail { error: format!("fault effect not confirmed: {e}") });
                            return false;
                        }
                    }
                }
                event = lifecycle.recv(), if next < follow.len() && !armed && pending.is_none() => {
                    let Ok(record) = event else { continue };
                    let f = &follow[next];
                    // Only what happened after the previous fault was invoked.
                    if record.seq > since_seq && f.when.as_ref().is_some_and(|w| w.matches(&record, &mut seen_down)) {
                        armed = true;
                        next_at.as_mut().reset(tokio::time::Instant::now() + f.after);
                        trigger = f.when.as_ref().map(|w| format!("when {w}, then {:?}", f.after));
                    }
                }
                () = &mut next_at, if next < follow.len() && armed && pending.is_none() => {
                    let f = &follow[next].fault;
                    next += 1;
                    match self.journal.fault(&f.kind.undo(&f.target)) {
                        Ok(seq) => journaled.push((f, seq)),
                        Err(e) => {
                            h.record(Event::FaultFail { error: format!("not injected: {e}") });
                            return false;
                        }
                    }
                    // The next trigger counts events from this invocation on.
                    lifecycle = lifecycle.resubscribe();
                    seen_down = false;
                    since_seq = h.record(Event::FaultInvoke { fault: f.kind.name().into(), target: f.target.clone() }).seq;
                    // Injected while the loop goes on: earlier faults' effects end
                    // on time and Ctrl-C is heard during a slow injection.
                    pending = Some(nemesis::inject(f, stack).boxed());
                }
                res = async { pending.as_mut().expect("guarded by is_some").await }, if pending.is_some() => {
                    pending = None;
                    match res {
                        Err(e) => {
                            h.record(Event::FaultFail { error: e.to_string() });
                            return false;
                        }
                        Ok(injected) => {
                            let detail = match trigger.take() {
                                Some(t) => format!("{} ({t})", injected.detail),
                                None => injected.detail,
                            };
                            h.record(Event::FaultOk { detail });
                            effects.push(injected.effect.wait(stack));
                        }
                    }
                    armed = follow.get(next).is_some_and(|n| n.when.is_none());
                    if let Some(n) = follow.get(next).filter(|_| armed) {
                        next_at.as_mut().reset(tokio::time::Instant::now() + n.after);
                    }
                }
                Some(a) = probes.attempts.recv() => {
                    tracker.observe(a.span());
                    if tracker.recovered().is_some() { return false; }
                }
                () = &mut observe => {
                    if pending.is_some() {
                        let f = &follow[next - 1].fault;
                        h.record(Event::FaultFail {
                            error: format!(
                                "{}{} on {} was still being injected when the observation window ended",
                                checker::FOLLOW_UP_FAILED,
                                f.kind.name(),
                                f.target
                            ),
                        });
                    } else if let Some(f) = follow.get(next) {
                        let why = match &f.when {
                            None => "its delay did not end".to_string(),
                            Some(w) if armed => format!("`{w}` happened but its delay of {:?} did not end", f.after),
                            Some(w) => format!("`{w}` did not happen"),
                        };
                        h.record(Event::FaultFail {
                            error: format!(
                                "{}{} on {} never fired: {why} within the observation window",
                                checker::FOLLOW_UP_FAILED,
                                f.fault.kind.name(),
                                f.fault.target,
                            ),
                        });
                    }
                    return false;
                }
            }
        }
    }

    /// Starts the stack and waits for steady state; false when cancelled meanwhile.
    async fn bring_up(&self) -> Result<bool, RunError> {
        let plan = &self.plan;
        // Ctrl-C during bring-up: stop waiting for it (its compose child is killed
        // with the future) and go straight to teardown, which removes what was made.
        let up = tokio::select! {
            r = self.stack.up() => r,
            () = self.cancel.cancelled() => return Ok(false),
        };
        if let Err(source) = up {
            let hint = match &source {
                StackError::Spawn { service, .. } => {
                    format!("\n  (log: {})", self.service_log(service).display())
                }
                _ => String::new(),
            };
            return Err(RunError::StackUp { source, hint });
        }
        match self.wait_steady(plan.run.startup_timeout).await {
            Ok(waited) => {
                self.stack.settled();
                self.history.record(Event::SteadyState {
                    waited_ms: waited.as_secs_f64() * 1e3,
                });
                Ok(true)
            }
            Err(SteadyError::Cancelled) => Ok(false),
            Err(SteadyError::Failed(detail)) => Err(RunError::NotHealthy {
                waited: plan.run.startup_timeout,
                detail,
            }),
        }
    }

    /// Sequential mode: whether the success rate is decided after `reports`.
    fn decided(&self, reports: &[TrialResult]) -> bool {
        if !self.sequential {
            return false;
        }
        let slo = &self.plan.slo;
        if slo.per_fault {
            // Decided once every fault has run and the worst of them is decided.
            let mut planned: Vec<(String, &str)> = self
                .plan
                .faults
                .iter()
                .map(|f| (f.kind.name().to_string(), f.target.as_str()))
                .collect();
            planned.sort();
            planned.dedup();
            // Looked at after every trial: count, do not copy the trials.
            let mut counts = vec![(0u64, 0u64); planned.len()];
            for t in reports {
                if let Some(i) = planned
                    .iter()
                    .position(|(f, g)| *f == t.fault && *g == t.target)
                {
                    counts[i].0 += u64::from(t.outcome == checker::Outcome::Pass);
                    counts[i].1 += 1;
                }
            }
            if counts.iter().any(|c| c.1 == 0) {
                return false;
            }
            let d = counts
                .iter()
                .map(|&(k, n)| {
                    crate::stats::decide_rate_sequential(k, n, slo.success_rate, slo.confidence)
                        .decision
                })
                .reduce(crate::stats::Decision::merge)
                .unwrap_or(crate::stats::Decision::Inconclusive);
            if d == crate::stats::Decision::Inconclusive {
                return false;
            }
            tracing::info!(
                trials = reports.len(),
                decision = d.word(),
                "sequential rule decided every fault"
            );
            return true;
        }
        let passed = reports
            .iter()
            .filter(|t| t.outcome == checker::Outcome::Pass)
            .count() as u64;
        // With a ledger, the earlier runs' evidence counts too.
        let d = crate::stats::decide_rate_sequential(
            passed + self.prior.0,
            reports.len() as u64 + self.prior.1,
            slo.success_rate,
            slo.confidence,
        );
        if d.decision == crate::stats::Decision::Inconclusive {
            return false;
        }
        tracing::info!(
            trials = reports.len(),
            decision = d.decision.word(),
            "sequential rule decided"
        );
        true
    }

    /// The whole run after the stack object exists; teardown is the caller's.
    async fn drive(
        &self,
        trials_planned: u32,
        seed: u64,
        reporters: &mut [Box<dyn Reporter + Send>],
        progress: &ProgressBar,
    ) -> Result<(Vec<TrialResult>, RunFacts), RunError> {
        let mut facts = RunFacts {
            trials_planned,
            seed,
            ..RunFacts::default()
        };
        let plan = &self.plan;
        if !self.bring_up().await? {
            facts.interrupted = true;
            return Ok((Vec::new(), facts));
        }
        let cfg = analysis::check_config(plan);
        let mut reports = Vec::new();
        progress.set_length(u64::from(trials_planned));
        let spec = ScheduleSpec {
            faults: plan.faults.len(),
            order: plan.run.order,
            warm_up: plan.run.warm_up,
            jitter: plan.run.jitter,
            total: self.total_trials,
            shard: self.shard,
        };
        for t in schedule::schedule(spec, seed) {
            if self.cancel.is_cancelled() {
                facts.interrupted = true;
                break;
            }
            let i = t.number;
            let fault = &plan.faults[t.injections[0].fault];
            // The trial's records, kept in bounded memory as they are written.
            let capture = Arc::new(std::sync::Mutex::new(checker::Capture::new(
                &cfg.probes,
                cfg.stable_for,
            )));
            let tap = Arc::clone(&capture);
            self.history.begin_trial(
                i,
                Some(Box::new(move |r| {
                    tap.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                })),
            );
            self.plan.ports.renew();
            self.history.record(Event::TrialStart {
                fault: fault.kind.name().into(),
                target: fault.target.clone(),
            });
            let TrialRun {
                interrupted,
                heal_error,
                steady_error,
            } = self.trial(&t).await;
            self.history.record(Event::TrialEnd { interrupted });
            self.history.end_trial();
            if interrupted {
                facts.interrupted = true;
                break;
            }
            let report = {
                let capture = capture.lock().unwrap_or_else(|p| p.into_inner());
                checker::check_capture(i, &capture, &cfg)
            };
            for r in reporters.iter_mut() {
                r.trial_finished(&report)?;
            }
            progress.inc(1);
            progress.set_message(progress_message(&report, &reports));
            tracing::info!(trial = i, outcome = report.outcome.word(), recovery_ms = ?report.recovery_ms, "{}", report.reason);
            reports.push(report);

            if let Some(e) = heal_error {
                facts.stopped_early = Some(format!("after trial {i}: heal failed: {e}"));
                break;
            }
            if self.decided(&reports) {
                break;
            }
            if let Some(detail) = steady_error {
                facts.stopped_early = Some(format!(
                    "after trial {i}: the stack did not return to steady state: {detail}"
                ));
                break;
            }
            if i < trials_planned && !plan.run.settle.is_zero() {
                tokio::select! {
                    () = self.cancel.cancelled() => {}
                    () = tokio::time::sleep(plan.run.settle) => {}
                }
            }
        }
        Ok((reports, facts))
    }
}

fn progress_message(last: &TrialResult, earlier: &[TrialResult]) -> String {
    let ok = earlier
        .iter()
        .chain(std::iter::once(last))
        .filter(|t| t.outcome == checker::Outcome::Pass)
        .count();
    let n = earlier.len() + 1;
    let rec = last
        .recovery_ms
        .map_or("not recovered".into(), |ms| format!("{ms:.0} ms"));
    format!("last {rec} · {ok}/{n} ok")
}

/// The journal's run entry: who runs, and which stack it brings up and must take down.
fn run_entry(plan: &Plan, opts: &RunOptions, run_id: &str) -> RunEntry {
    use crate::scenario::{DockerSource, StackPlan};
    let (project, owns_stack) = match &plan.stack {
        StackPlan::Process { .. } => (None, false),
        StackPlan::Docker {
            source: DockerSource::Compose { project, .. },
            ..
        } => (
            Some(
                project
                    .clone()
                    .unwrap_or_else(|| crate::stack::compose_project_name(&plan.name, run_id)),
            ),
            !opts.keep,
        ),
        StackPlan::Docker {
            source: DockerSource::Attach { project },
            ..
        } => (Some(project.clone()), false),
        StackPlan::Docker {
            source: DockerSource::Containers { .. },
            ..
        } => (
            Some(crate::stack::compose_project_name(&plan.name, run_id)),
            false,
        ),
    };
    let containers = match &plan.stack {
        StackPlan::Docker {
            source: DockerSource::Containers { containers },
            ..
        } => containers.clone(),
        _ => Default::default(),
    };
    let pid = std::process::id();
    RunEntry {
        run_id: run_id.to_string(),
        scenario: plan.name.clone(),
        pid,
        pid_start: crate::journal::process_start(pid).unwrap_or(0),
        backend: plan.stack.backend().to_string(),
        project,
        owns_stack,
        swarm: std::env::var(crate::journal::SWARM_ENV)
            .ok()
            .filter(|s| !s.is_empty()),
        containers,
    }
}

/// Refuses to start while a killed run of the same scenario (or on the same compose
/// project) left faults or a stack behind — or heals them first with `--heal-stale`.
async fn check_stale(plan: &Plan, opts: &RunOptions) -> Result<(), RunError> {
    use crate::scenario::{DockerSource, StackPlan};
    let project = match &plan.stack {
        StackPlan::Docker {
            source: DockerSource::Compose {
                project: Some(p), ..
            },
            ..
        }
        | StackPlan::Docker {
            source: DockerSource::Attach { project: p },
            ..
        } => Some(p.clone()),
        _ => None,
    };
    let stale: Vec<_> = crate::journal::stale()
        .into_iter()
        .filter(|p| p.run.scenario == plan.name || (project.is_some() && p.run.project == project))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    if !opts.heal_stale {
        let lines: Vec<String> = stale.iter().map(crate::heal::describe).collect();
        return Err(RunError::Stale(format!(
            "{}
run `rebound heal` to undo it (or `rebound run --heal-stale`)",
            lines.join("\n")
        )));
    }
    for p in &stale {
        let done = crate::heal::heal(p).await?;
        eprintln!(
            "healed run {}: {}",
            p.run.run_id,
            if done.is_empty() {
                "nothing left".to_string()
            } else {
                done.join("; ")
            }
        );
    }
    Ok(())
}

/// Spawns the Ctrl-C / SIGTERM / SIGHUP / SIGQUIT handler: cancel, then kill the
/// stack, then exit.
fn handle_signals(cancel: CancellationToken, stack: Arc<dyn Stack>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // SIGHUP (a closed terminal, a dropped SSH session) and SIGQUIT (Ctrl-\\)
        // are interruptions too.
        let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut quit)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
            signal(SignalKind::quit()),
        ) else {
            tracing::warn!("cannot install signal handlers; Ctrl-C will not heal faults");
            return;
        };
        let mut count = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
                _ = quit.recv() => {}
            }
            count += 1;
            match count {
                1 => {
                    eprintln!("\nrebound: interrupted — healing the fault and tearing the stack down (again: kill the stack now)");
                    cancel.cancel();
                }
                2 => {
                    eprintln!("rebound: killing the stack now (again: exit at once)");
                    // On a thread of its own, detached: it may wait on the engine,
                    // and neither a third signal nor the runtime's shutdown may
                    // wait for it.
                    let stack = Arc::clone(&stack);
                    std::thread::spawn(move || stack.kill_now());
                }
                _ => std::process::exit(i32::from(ExitStatus::Interrupted.code())),
            }
        }
    })
}

/// Cancels `cancel` on the first SIGINT, SIGTERM or SIGHUP: what a session of
/// runs (explore, ab, swarm) watches between its runs; during a run, the run's own
/// handler heals first. Abort the handle when the session ends.
pub fn interrupt_watcher(cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        cancel.cancel();
    })
}

/// The progress bar on stderr (hidden when `show` is false).
fn progress_bar(show: bool, trials: u32) -> ProgressBar {
    let progress = if show {
        ProgressBar::with_draw_target(Some(u64::from(trials)), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} trial {pos}/{len} [{bar:30}] {elapsed} · {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

/// What this run (one shard of the whole) runs.
struct Shard {
    index: u32,
    count: u32,
    /// The schedule seed of this shard.
    seed: u64,
    /// Trials of the whole run.
    total: u32,
    /// Trials of this shard.
    planned: u32,
}

impl Shard {
    fn of(plan: &Plan, opts: &RunOptions) -> Result<Self, RunError> {
        let (index, count) = opts.shard.unwrap_or((1, 1));
        if index == 0 || index > count {
            return Err(RunError::Usage(format!(
                "--shard {index}/{count}: use i/n with 1 ≤ i ≤ n"
            )));
        }
        // Each shard gets its own schedule seed, so jitter and random order differ.
        let seed = opts
            .seed
            .or(plan.run.seed)
            .unwrap_or_else(rand::random)
            .wrapping_add(u64::from(index - 1));
        let total = opts.trials.unwrap_or(plan.run.trials);
        let planned = schedule::shard_trials(total, (index, count));
        if planned == 0 {
            return Err(RunError::Usage("--trials must be at least 1".into()));
        }
        Ok(Shard {
            index,
            count,
            seed,
            total,
            planned,
        })
    }
}

/// Gives the run's port leases back when the run ends, on every path.
struct PortLeases<'a>(&'a crate::ports::Ports);

impl Drop for PortLeases<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Builds the stack of a run (see [`crate::stack::build`]); tests pass a fake.
pub type StackBuilder<'a> =
    Box<dyn FnOnce(BuildCtx) -> BoxFuture<'a, Result<Arc<dyn Stack>, StackError>> + Send + 'a>;

/// Runs a validated plan end to end and writes its run directory.
pub async fn run(plan: &Plan, opts: &RunOptions) -> Result<RunOutcome, RunError> {
    let stack_plan = plan.stack.clone();
    let build: StackBuilder<'_> =
        Box::new(move |ctx| async move { crate::stack::build(&stack_plan, ctx).await }.boxed());
    run_with(plan, opts, build, CancellationToken::new()).await
}

/// [`run`] on the stack `build` makes; cancelling `cancel` is what Ctrl-C does.
pub async fn run_with(
    plan: &Plan,
    opts: &RunOptions,
    build: StackBuilder<'_>,
    cancel: CancellationToken,
) -> Result<RunOutcome, RunError> {
    // Every path gives the leases back (a kept stack still publishes its ports:
    // nothing else can bind them while it runs).
    let _leases = (!opts.keep).then(|| PortLeases(&plan.ports));
    let Shard {
        index: shard_index,
        count: shard_count,
        seed,
        total,
        planned: trials_planned,
    } = Shard::of(plan, opts)?;
    check_stale(plan, opts).await?;
    if opts.evidence.is_some() && plan.slo.per_fault {
        return Err(RunError::Usage(PER_FAULT_EVIDENCE.into()));
    }
    // Read before anything runs: a bad ledger stops the run at once (exit 3).
    let prior = opts
        .evidence
        .as_deref()
        .map(|f| {
            crate::evidence::read(
                f,
                &plan.name,
                &crate::evidence::scenario_hash(&plan.source_text),
                &[],
            )
        })
        .transpose()?;
    let run_id = new_run_id();
    let rd = prepare_run_dir(plan, opts, &run_id)?;
    if !plan.ports.is_empty() {
        eprintln!("host ports: {}", plan.ports.describe());
    }
    if let Some(p) = &prior {
        crate::evidence::save_prior(rd.path(), p)?;
    }
    let history = Arc::new(History::create(&rd.history())?);
    let run_dir = rd.path().to_path_buf();
    history.record(Event::RunStart {
        format: crate::history::FORMAT_VERSION,
        scenario: plan.name.clone(),
        run_id: run_id.clone(),
        rebound: crate::history::VERSION.into(),
        seed,
        trials: trials_planned,
        sequential: opts.until_decided,
    });
    // Per-trial outputs, each flushed as its trial ends.
    let mut reporters = report::trial_reporters(&run_dir)?;
    // Last before the stack is built: any error before it leaves nothing to heal.
    let journal = Arc::new(Journal::create(rd.path(), run_entry(plan, opts, &run_id))?);
    let build_ctx = BuildCtx {
        run_id: run_id.clone(),
        scenario: plan.name.clone(),
        run_dir: run_dir.clone(),
        scenario_dir: std::path::absolute(&plan.base_dir).unwrap_or_else(|_| plan.base_dir.clone()),
        keep: opts.keep,
        history: Arc::clone(&history),
        journal: Some(Arc::clone(&journal)),
        ports: plan.ports.clone(),
    };
    let stack = match build(build_ctx).await {
        Ok(s) => s,
        Err(source) => {
            let _ = journal.end("never built", true);
            return Err(RunError::StackUp {
                source,
                hint: String::new(),
            });
        }
    };
    let probers: Vec<Arc<Prober>> = plan
        .probes
        .iter()
        .map(|p| Arc::new(Prober::new(p.clone(), Arc::clone(&stack))))
        .collect();
    let signals = handle_signals(cancel.clone(), Arc::clone(&stack));
    let followers = crate::stack::logs::follow(
        Arc::clone(&stack),
        Arc::clone(&history),
        log_policy(plan, opts),
    );
    let progress = progress_bar(opts.progress, trials_planned);

    let ctx = Arc::new(Ctx {
        plan: plan.clone(),
        history: Arc::clone(&history),
        stack: Arc::clone(&stack),
        probers,
        cancel: cancel.clone(),
        run_dir: rd.clone(),
        journal: Arc::clone(&journal),
        run_tag: run_id.rsplit('-').next().unwrap_or("run").to_string(),
        sequential: opts.until_decided,
        prior: prior.as_ref().map_or((0, 0), |p| (p.successes, p.trials)),
        shard: (shard_index, shard_count),
        total_trials: total,
    });
    // The trial loop runs in its own task so that a panic in it still reaches the
    // heal-all teardown below.
    let body = {
        let ctx = Arc::clone(&ctx);
        let progress = progress.clone();
        tokio::spawn(async move {
            let res = ctx
                .drive(trials_planned, seed, &mut reporters, &progress)
                .await;
            (res, reporters)
        })
    };
    let joined = body.await;
    progress.finish_and_clear();
    for f in followers {
        f.abort();
        let _ = f.await;
    }
    let teardown = stack.teardown().await;
    signals.abort();
    // A failed teardown stays in the index: `rebound heal` finishes it.
    if teardown.is_ok() {
        let kept = opts.keep && matches!(plan.stack, crate::scenario::StackPlan::Docker { .. });
        let owned = !kept
            && matches!(
                plan.stack,
                crate::scenario::StackPlan::Docker {
                    source: crate::scenario::DockerSource::Compose { .. },
                    ..
                }
            );
        // A process stack is always gone after teardown; a kept or attached one is
        // not, so a fault whose heal failed keeps the run in the index.
        let gone = owned || matches!(plan.stack, crate::scenario::StackPlan::Process { .. });
        if let Err(e) = journal.end(if kept { "kept (--keep)" } else { "torn down" }, gone) {
            tracing::warn!("{e}");
        }
    }

    let (result, _reporters) = match joined {
        Ok(pair) => pair,
        Err(e) => {
            history.record(Event::RunEnd {
                interrupted: false,
                stopped_early: Some(format!("internal error: {e}")),
            });
            return Err(RunError::Internal(e.to_string()));
        }
    };
    let (trials, mut facts) = match result {
        Ok(x) => x,
        Err(e) => {
            history.record(Event::RunEnd {
                interrupted: cancel.is_cancelled(),
                stopped_early: Some(e.to_string()),
            });
            return Err(e);
        }
    };
    facts.run_id = run_id;
    facts.interrupted |= cancel.is_cancelled();
    if let Err(e) = teardown {
        facts
            .stopped_early
            .get_or_insert(format!("teardown failed: {e}"));
    }
    facts.sequential = opts.until_decided;
    facts.evidence = prior;
    finish(plan, opts, &history, &run_dir, facts, trials)
}

/// Ends the history and writes the final reports of a run that ran to its end.
fn finish(
    plan: &Plan,
    opts: &RunOptions,
    history: &History,
    run_dir: &Path,
    facts: RunFacts,
    trials: Vec<TrialResult>,
) -> Result<RunOutcome, RunError> {
    history.record(Event::RunEnd {
        interrupted: facts.interrupted,
        stopped_early: facts.stopped_early.clone(),
    });
    if let Some(e) = history.take_write_error() {
        return Err(e.into());
    }
    let summary = analysis::summarize(plan, &facts, &trials, run_dir);
    // A finished run adds its trials to the ledger (an interrupted one does not:
    // where it stopped was chosen by a person, not by the rule).
    if let (Some(file), false) = (&opts.evidence, facts.interrupted) {
        crate::evidence::append(
            file,
            &crate::evidence::Entry {
                scenario: plan.name.clone(),
                hash: crate::evidence::scenario_hash(&plan.source_text),
                run_id: facts.run_id.clone(),
                successes: summary.verdict.passed,
                trials: summary.verdict.trials,
                parts: Vec::new(),
            },
        )?;
    }
    for mut r in report::final_reporters(run_dir) {
        r.run_finished(&summary, &trials)?;
    }
    if opts.print_summary {
        ConsoleReporter {
            out: std::io::stdout(),
        }
        .run_finished(&summary, &trials)?;
    }
    let exit = analysis::exit_status(summary.decision, &facts);
    Ok(RunOutcome {
        summary,
        trials,
        exit,
    })
}
