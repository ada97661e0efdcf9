//! The `process` backend: services are local commands that rebound spawns and
//! supervises with a Docker-like restart policy (`never` / `on-failure` / `always`,
//! doubling back-off reset after 10 s of uptime).
//!
//! Each service runs in its own process group, so signals reach the whole service
//! and a Ctrl-C on rebound's terminal does not reach it directly: rebound decides.
//! stdout and stderr go to `RUN_DIR/logs/<service>.log`.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::plan::{expand, RestartPolicy, ServicePlan};
use super::{ServiceStatus, Sig, Stack, StackError};
use crate::history::{Event, History, Lifecycle};

/// Uptime after which the restart back-off starts again from its first value (Docker's rule).
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// Smallest delay between attempts when the program cannot even be spawned.
const SPAWN_RETRY_MIN: Duration = Duration::from_millis(100);
/// How long `start` waits for the supervisor to spawn the process.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a SIGKILLed process to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Values for `${rebound}`, `${run_dir}`, `${scenario_dir}`.
#[derive(Debug, Clone)]
pub struct ExpandContext {
    /// The running rebound executable.
    pub rebound: PathBuf,
    /// The run directory.
    pub run_dir: PathBuf,
    /// The scenario file's directory (absolute).
    pub scenario_dir: PathBuf,
}

impl ExpandContext {
    fn vars(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("rebound", self.rebound.display().to_string()),
            ("run_dir", self.run_dir.display().to_string()),
            ("scenario_dir", self.scenario_dir.display().to_string()),
        ])
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    want_up: bool,
    pid: Option<i32>,
    /// Process group of the latest process, kept after it exits to reap stragglers.
    pgid: Option<i32>,
    paused: bool,
    starts: u64,
    exits: u64,
    last_code: Option<i32>,
    last_signal: Option<i32>,
    spawn_failures: u64,
    last_spawn_error: Option<String>,
}

struct Svc {
    name: String,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    log: PathBuf,
    policy: RestartPolicy,
    backoff: Duration,
    max_backoff: Duration,
    grace: Duration,
    state: watch::Sender<State>,
    /// Where each new process group is recorded, right after its leader started.
    journal: std::sync::OnceLock<Arc<crate::journal::Journal>>,
    /// `durable-dirs`, expanded and resolved, with the layer's model.
    durable: Vec<(PathBuf, crate::durable::Model)>,
}

/// A stack of local processes.
pub struct ProcessStack {
    services: Vec<Arc<Svc>>,
    history: Arc<History>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
    /// Set by `kill_now`: nothing may be started any more.
    killed: AtomicBool,
    /// `[[stack.link]]`: the fault proxies, bound at the first `up`.
    links: Vec<super::plan::LinkPlan>,
    proxies: Mutex<Vec<crate::proxy::Proxy>>,
    /// The power-loss layers on services' `durable-dirs`, `(service, layer)`,
    /// mounted at the first `up` and unmounted by `teardown` (or when dropped).
    layers: Arc<super::power::PowerLayers>,
    /// Where mounts are recorded (`rebound heal` unmounts what a dead run left).
    journal: std::sync::OnceLock<Arc<crate::journal::Journal>>,
}

fn signal_name(sig: Signal) -> String {
    sig.as_str().to_string()
}

impl Svc {
    fn status(&self) -> ServiceStatus {
        let s = self.state.borrow();
        ServiceStatus {
            running: s.pid.is_some(),
            paused: s.paused,
            starts: s.starts,
            exits: s.exits,
            wanted: s.want_up,
            last_code: s.last_code,
            last_signal: s.last_signal,
        }
    }

    /// The running process's pid (its group id), or `NotRunning`.
    fn pid(&self) -> Result<i32, StackError> {
        self.state
            .borrow()
            .pid
            .ok_or_else(|| StackError::NotRunning(self.name.clone()))
    }

    fn send(&self, sig: Signal) -> Result<(), StackError> {
        let pid = self.pid()?;
        self.send_to(pid, sig)
    }

    /// Signals the group `pid` read once by the caller: a sequence of signals (SIGTERM
    /// then SIGCONT) goes to one process even if it exits in between — the supervisor
    /// clearing `pid` meanwhile must not turn a finished stop into an error.
    fn send_to(&self, pid: i32, sig: Signal) -> Result<(), StackError> {
        match killpg(Pid::from_raw(pid), sig) {
            // The process died between the check and the signal: the effect is the same.
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(StackError::Signal {
                service: self.name.clone(),
                signal: signal_name(sig),
                message: e.to_string(),
            }),
        }
    }

    /// SIGTERM, then SIGCONT so that a frozen process can act on it; both to the same
    /// process. `NotRunning` only if nothing was running when it was called.
    fn terminate(&self) -> Result<(), StackError> {
        let pid = self.pid()?;
        self.send_to(pid, Signal::SIGTERM)?;
        self.send_to(pid, Signal::SIGCONT)
    }

    fn spawn(&self, history: &History) -> Result<Child, StackError> {
        let spawn_err = |source| StackError::Spawn {
            service: self.name.clone(),
            program: self.program.clone(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| StackError::Io {
                what: format!("service `{}`: log file {}", self.name, self.log.display()),
                source,
            })?;
        let log_err = log.try_clone().map_err(spawn_err)?;
        let parent = nix::unistd::getpid().as_raw();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(true);
        // No orphans: if rebound dies, even by SIGKILL, the kernel kills the service.
        // (The death signal follows the thread that forked; the runtime's worker
        // threads live as long as the run.)
        // SAFETY: the closure only calls prctl(2) and getppid(2), both
        // async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)?;
                // rebound died between fork and prctl: do not outlive it.
                if nix::unistd::getppid().as_raw() != parent {
                    // No allocation between fork and exec.
                    return Err(std::io::Error::from_raw_os_error(
                        nix::errno::Errno::ESRCH as i32,
                    ));
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(spawn_err)?;
        let pid = child.id();
        if let (Some(j), Some(pgid)) = (self.journal.get(), pid.and_then(|p| i32::try_from(p).ok()))
        {
            // Best effort: the service runs either way; heal then cannot find what
            // it forks.
            if let Err(e) = j.group(&self.name, pgid) {
                tracing::warn!("service `{}`: {e}", self.name);
            }
        }
        self.state.send_modify(|s| {
            s.pid = pid.and_then(|p| i32::try_from(p).ok());
            s.pgid = s.pid;
            s.paused = false;
            s.starts += 1;
        });
        history.record(Event::Service {
            service: self.name.clone(),
            action: Lifecycle::Started,
            pid,
            code: None,
            signal: None,
            detail: None,
            daemon_time_ns: None,
        });
        Ok(child)
    }

    /// Runs forever: waits for the child, applies the restart policy, respawns.
    async fn supervise(self: Arc<Self>, first: Child, history: Arc<History>) {
        let mut next = Some(first);
        let mut failures_in_row: u32 = 0;
        let mut rx = self.state.subscribe();
        loop {
            let mut child = match next.take() {
                Some(c) => c,
                None => {
                    if rx.wait_for(|s| s.want_up).await.is_err() {
                        return;
                    }
                    match self.spawn(&history) {
                        Ok(c) => c,
                        Err(e) => {
                            let msg = e.to_string();
                            self.state.send_modify(|s| {
                                s.spawn_failures += 1;
                                s.last_spawn_error = Some(msg.clone());
                            });
                            history.record(Event::service(
                                &self.name,
                                Lifecycle::SpawnFailed,
                                Some(msg),
                            ));
                            if self.policy == RestartPolicy::Never {
                                self.state.send_modify(|s| s.want_up = false);
                            } else {
                                let delay = self.delay(failures_in_row).max(SPAWN_RETRY_MIN);
                                failures_in_row = failures_in_row.saturating_add(1);
                                self.sleep_unless_held(&mut rx, delay).await;
                            }
                            continue;
                        }
                    }
                }
            };
            let started = Instant::now();
            let status = child.wait().await;
            let (code, signal) = match &status {
                Ok(st) => (st.code(), st.signal()),
                Err(_) => (None, None),
            };
            self.state.send_modify(|s| {
                s.pid = None;
                s.paused = false;
                s.exits += 1;
                s.last_code = code;
                s.last_signal = signal;
            });
            history.record(Event::Service {
                service: self.name.clone(),
                action: Lifecycle::Exited,
                pid: None,
                code,
                signal,
                detail: status.as_ref().err().map(|e| format!("wait failed: {e}")),
                daemon_time_ns: None,
            });
            if !self.state.borrow().want_up {
                continue; // Held by rebound: it decides when to start again.
            }
            let clean = code == Some(0);
            let restart = match self.policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !clean,
                RestartPolicy::Never => false,
            };
            if !restart {
                self.state.send_modify(|s| s.want_up = false);
                continue;
            }
            if started.elapsed() >= BACKOFF_RESET_AFTER {
                failures_in_row = 0;
            }
            let delay = self.delay(failures_in_row);
            failures_in_row = failures_in_row.saturating_add(1);
            let detail =
                format!("restart policy {:?}, delay {delay:?}", self.policy).to_lowercase();
            history.record(Event::service(
                &self.name,
                Lifecycle::RestartScheduled,
                Some(detail),
            ));
            self.sleep_unless_held(&mut rx, delay).await;
        }
    }

    /// Docker's back-off: first delay, doubled per consecutive restart, capped.
    fn delay(&self, failures_in_row: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures_in_row.min(20));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }

    async fn sleep_unless_held(&self, rx: &mut watch::Receiver<State>, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = rx.wait_for(|s| !s.want_up) => {}
        }
    }

    async fn wait_exit(&self, exits: u64, timeout: Duration) -> Result<(), StackError> {
        let mut rx = self.state.subscribe();
        let exited = tokio::time::timeout(timeout, rx.wait_for(|s| s.exits > exits))
            .await
            .is_ok();
        if exited {
            Ok(())
        } else {
            Err(StackError::Timeout {
                service: self.name.clone(),
                what: "process exit".into(),
                after: timeout,
            })
        }
    }

    /// SIGTERM (resuming a frozen process so it can act on it), SIGKILL after grace.
    async fn stop(&self, grace: Duration) -> Result<(), StackError> {
        self.state.send_modify(|s| s.want_up = false);
        let (running, exits) = {
            let s = self.state.borrow();
            (s.pid.is_some(), s.exits)
        };
        if !running {
            return Ok(());
        }
        match self.terminate() {
            // Exited between the check and the signal: already stopped.
            Err(StackError::NotRunning(_)) => return Ok(()),
            r => r?,
        }
        if self.wait_exit(exits, grace).await.is_ok() {
            return Ok(());
        }
        match self.send(Signal::SIGKILL) {
            // It exited at the end of the grace period: stopped.
            Err(StackError::NotRunning(_)) => return Ok(()),
            r => r?,
        }
        self.wait_exit(exits, KILL_WAIT).await
    }
}

impl ProcessStack {
    /// Prepares the services (placeholders expanded, log directory created); starts nothing.
    pub fn new(
        services: &[ServicePlan],
        ctx: &ExpandContext,
        history: Arc<History>,
    ) -> Result<Self, StackError> {
        let vars = ctx.vars();
        let logs = ctx.run_dir.join(crate::run_dir::LOGS);
        std::fs::create_dir_all(&logs).map_err(|source| StackError::Io {
            what: format!("creating {}", logs.display()),
            source,
        })?;
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                ctx.scenario_dir.join(p)
            }
        };
        let services = services
            .iter()
            .map(|s| {
                let argv: Vec<String> = s.command.iter().map(|a| expand(a, &vars)).collect();
                // A relative program path with a slash is relative to the scenario file,
                // like every other path in it; a bare name is looked up in PATH.
                let program = if argv[0].contains('/') {
                    resolve(Path::new(&argv[0])).display().to_string()
                } else {
                    argv[0].clone()
                };
                Arc::new(Svc {
                    name: s.name.clone(),
                    program,
                    args: argv[1..].to_vec(),
                    env: s
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone(), expand(v, &vars)))
                        .collect(),
                    cwd: s
                        .workdir
                        .as_deref()
                        .map(|w| resolve(Path::new(&expand(&w.display().to_string(), &vars))))
                        .unwrap_or_else(|| ctx.scenario_dir.clone()),
                    log: logs.join(format!("{}.log", s.name)),
                    policy: s.restart,
                    backoff: s.restart_backoff,
                    max_backoff: s.restart_max_backoff,
                    grace: s.stop_grace,
                    state: watch::Sender::new(State::default()),
                    journal: std::sync::OnceLock::new(),
                    durable: s
                        .durable_dirs
                        .iter()
                        .map(|d| {
                            (
                                resolve(Path::new(&expand(&d.display().to_string(), &vars))),
                                s.durability,
                            )
                        })
                        .collect(),
                })
            })
            .collect();
        Ok(ProcessStack {
            services,
            history,
            supervisors: Mutex::new(Vec::new()),
            killed: AtomicBool::new(false),
            links: Vec::new(),
            proxies: Mutex::new(Vec::new()),
            layers: Arc::default(),
            journal: std::sync::OnceLock::new(),
        })
    }

    /// Mounts the power-loss layer on every `durable-dirs` entry not mounted yet
    /// (journaled first, so a rebound killed meanwhile leaves it to `rebound heal`).
    fn mount_layers(&self) -> Result<(), StackError> {
        for svc in &self.services {
            for (dir, model) in &svc.durable {
                self.layers.mount(
                    &svc.name,
                    "durable-dirs",
                    dir,
                    *model,
                    self.journal.get().map(|j| &**j),
                )?;
            }
        }
        Ok(())
    }

    /// Unmounts every layer (after the services are stopped).
    fn unmount_layers(&self) -> Result<(), StackError> {
        self.layers.unmount_all(self.journal.get())
    }

    /// Serves `links` through rebound's fault proxy from the first `up` on.
    pub fn with_links(mut self, links: Vec<super::plan::LinkPlan>) -> Self {
        self.links = links;
        self
    }

    /// Binds every link's proxy that is not listening yet.
    async fn bind_links(&self) -> Result<(), StackError> {
        let bound: Vec<String> = self
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        for l in self.links.iter().filter(|l| !bound.contains(&l.name)) {
            let super::plan::LinkRoute::Local { listen, upstream } = &l.route else {
                continue;
            };
            let proxy = crate::proxy::Proxy::bind(&l.name, *listen, upstream)
                .await
                .map_err(|source| StackError::Io {
                    what: format!("link `{}`: listening on {listen}", l.name),
                    source,
                })?;
            self.proxies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(proxy);
        }
        Ok(())
    }

    /// Records every process group a service is started in to `journal`, and
    /// marks every service process with `REBOUND_RUN=<run_id>` in its environment
    /// (inherited by what it forks), so `rebound heal` can end what a service forked
    /// if rebound is killed — the kernel's parent-death signal reaches only the
    /// service's own process — and only that.
    pub fn with_run(mut self, run_id: &str, journal: Option<Arc<crate::journal::Journal>>) -> Self {
        for s in &mut self.services {
            if let Some(svc) = Arc::get_mut(s) {
                svc.env
                    .push((crate::journal::RUN_ENV.to_string(), run_id.to_string()));
            }
            if let Some(j) = &journal {
                let _ = s.journal.set(Arc::clone(j));
            }
        }
        if let Some(j) = journal {
            let _ = self.journal.set(j);
        }
        self
    }

    fn svc(&self, name: &str) -> Result<&Arc<Svc>, StackError> {
        self.services
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| StackError::UnknownService(name.to_string()))
    }

    fn refuse_if_killed(&self) -> Result<(), StackError> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(StackError::StartFailed {
                service: "*".into(),
                message: "the stack was killed (second Ctrl-C); nothing is started any more".into(),
            });
        }
        Ok(())
    }

    /// Path of a service's log file.
    pub fn log_path(&self, service: &str) -> Option<PathBuf> {
        self.svc(service).ok().map(|s| s.log.clone())
    }

    /// Process ids currently alive, by service (for tests and diagnostics).
    pub fn pids(&self) -> Vec<(String, i32)> {
        self.services
            .iter()
            .filter_map(|s| s.state.borrow().pid.map(|p| (s.name.clone(), p)))
            .collect()
    }
}

#[async_trait]
impl Stack for ProcessStack {
    fn backend(&self) -> &'static str {
        "process"
    }

    fn services(&self) -> Vec<String> {
        self.services.iter().map(|s| s.name.clone()).collect()
    }

    async fn up(&self) -> Result<(), StackError> {
        self.refuse_if_killed()?;
        // Links first: a service may connect through one as it starts; its data
        // directories must be under the layer before it opens a file there.
        self.bind_links().await?;
        self.mount_layers()?;
        for svc in &self.services {
            if svc.state.borrow().pid.is_some() {
                continue;
            }
            svc.state.send_modify(|s| s.want_up = true);
            let child = svc.spawn(&self.history)?;
            let task = tokio::spawn(Arc::clone(svc).supervise(child, Arc::clone(&self.history)));
            self.supervisors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(task);
        }
        self.history.record(Event::StackUp);
        Ok(())
    }

    fn status(&self, service: &str) -> Result<ServiceStatus, StackError> {
        Ok(self.svc(service)?.status())
    }

    async fn signal(&self, service: &str, sig: Sig) -> Result<(), StackError> {
        let svc = self.svc(service)?;
        match sig {
            Sig::Kill => svc.send(Signal::SIGKILL),
            Sig::Other(s) => svc.send(s),
            // A frozen process only acts on SIGTERM once resumed.
            Sig::Term => svc.terminate(),
        }
    }

    fn hold(&self, service: &str) -> Result<(), StackError> {
        self.svc(service)?.state.send_modify(|s| s.want_up = false);
        Ok(())
    }

    async fn stop(&self, service: &str, grace: Duration) -> Result<(), StackError> {
        self.svc(service)?.stop(grace).await
    }

    async fn start(&self, service: &str) -> Result<(), StackError> {
        self.refuse_if_killed()?;
        let svc = self.svc(service)?;
        let mut rx = svc.state.subscribe();
        let (starts, failures) = {
            let s = rx.borrow();
            (s.starts, s.spawn_failures)
        };
        svc.state.send_modify(|s| s.want_up = true);
        if svc.state.borrow().pid.is_some() {
            return Ok(());
        }
        let waited = tokio::time::timeout(
            START_TIMEOUT,
            rx.wait_for(|s| s.starts > starts || s.spawn_failures > failures),
        )
        .await;
        let s = svc.state.borrow().clone();
        match waited {
            Ok(_) if s.starts > starts => Ok(()),
            Ok(_) => Err(StackError::StartFailed {
                service: service.to_string(),
                message: s.last_spawn_error.unwrap_or_else(|| "spawn failed".into()),
            }),
            Err(_) => Err(StackError::Timeout {
                service: service.to_string(),
                what: "process start".into(),
                after: START_TIMEOUT,
            }),
        }
    }

    async fn pause(&self, service: &str) -> Result<(), StackError> {
        let svc = self.svc(service)?;
        svc.send(Signal::SIGSTOP)?;
        svc.state.send_modify(|s| s.paused = true);
        self.history
            .record(Event::service(service, Lifecycle::Paused, None));
        Ok(())
    }

    async fn unpause(&self, service: &str) -> Result<(), StackError> {
        let svc = self.svc(service)?;
        let (paused, running) = {
            let s = svc.state.borrow();
            (s.paused, s.pid.is_some())
        };
        if !paused || !running {
            return Ok(());
        }
        svc.send(Signal::SIGCONT)?;
        svc.state.send_modify(|s| s.paused = false);
        self.history
            .record(Event::service(service, Lifecycle::Resumed, None));
        Ok(())
    }

    async fn wait_exit(
        &self,
        service: &str,
        exits: u64,
        timeout: Duration,
    ) -> Result<(), StackError> {
        self.svc(service)?.wait_exit(exits, timeout).await
    }

    async fn power_off(&self, services: &[String]) -> Result<String, StackError> {
        let svcs = services
            .iter()
            .map(|s| self.svc(s))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(s) = svcs.iter().find(|s| s.durable.is_empty()) {
            return Err(StackError::Command {
                what: format!("power-cut of {}", s.name),
                message:
                    "the service has no durable-dirs: nothing of it is on the power-loss layer"
                        .into(),
            });
        }
        // Held first: no restart policy may bring one back before its data is rolled back.
        let pids: Vec<(&Arc<Svc>, Option<i32>)> = svcs
            .iter()
            .map(|s| {
                s.state.send_modify(|st| st.want_up = false);
                (*s, s.state.borrow().pid)
            })
            .collect();
        for (svc, pid) in &pids {
            if let Some(pid) = pid {
                svc.send_to(*pid, Signal::SIGSTOP)?;
            }
        }
        let abort_error = self.layers.abort(services).err();
        // Killed whatever happened above: frozen processes are never left behind
        // (the rollback aborts and detaches a layer again by itself).
        let mut kill_error = None;
        for (svc, pid) in &pids {
            if let Some(pid) = pid {
                if let Err(e) = svc.send_to(*pid, Signal::SIGKILL) {
                    kill_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = kill_error.or(abort_error) {
            return Err(e);
        }
        Ok(format!(
            "power cut: {} frozen, their layers aborted, SIGKILLed",
            services.join(", ")
        ))
    }

    async fn power_on(&self, services: &[String]) -> Result<String, StackError> {
        let cut = self.layers.cut(services);
        for s in &cut {
            let svc = self.svc(s)?;
            // The processes must be gone before their data is rolled back.
            let gone = tokio::time::timeout(START_TIMEOUT, async {
                let mut rx = svc.state.subscribe();
                let _ = rx.wait_for(|st| st.pid.is_none()).await;
            })
            .await;
            if gone.is_err() {
                return Err(StackError::Timeout {
                    service: s.clone(),
                    what: "the power-cut processes to die".into(),
                    after: START_TIMEOUT,
                });
            }
            // Every member of the group, not only the leader, must be gone before
            // the rollback: one left would write into the directory meanwhile.
            let pgid = svc.state.borrow().pgid;
            if let Some(pgid) = pgid {
                let group = Pid::from_raw(pgid);
                let deadline = tokio::time::Instant::now() + START_TIMEOUT;
                while killpg(group, Signal::SIGKILL).is_ok() {
                    if tokio::time::Instant::now() > deadline {
                        return Err(StackError::Timeout {
                            service: s.clone(),
                            what: format!("process group {pgid} to die after the power cut"),
                            after: START_TIMEOUT,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        self.layers
            .roll_back_and_start(&cut, services, |s| async move { self.start(&s).await })
            .await
    }

    async fn set_io(
        &self,
        services: &[String],
        fault: Option<&crate::durable::IoFault>,
    ) -> Result<Vec<String>, StackError> {
        self.layers
            .set_io_off_runtime(services, fault, "the service has no durable-dirs")
            .await
    }

    fn durable_services(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|s| !s.durable.is_empty())
            .map(|s| s.name.clone())
            .collect()
    }

    fn settled(&self) {
        self.layers.checkpoint();
    }

    fn log_source(&self, service: &str) -> Option<super::logs::LogSource> {
        self.log_path(service).map(super::logs::LogSource::File)
    }

    async fn teardown(&self) -> Result<(), StackError> {
        let mut first_error = None;
        for svc in self.services.iter().rev() {
            if let Err(e) = svc.stop(svc.grace).await {
                first_error.get_or_insert(e);
            }
            // Members of the group that outlived the leader.
            if let Some(pid) = svc.state.borrow().pgid {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        for task in self
            .supervisors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        for p in self
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            p.shutdown();
        }
        if let Err(e) = self.unmount_layers() {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn set_link(
        &self,
        link: &str,
        fault: Option<crate::proxy::LinkFault>,
        _lease: Option<Duration>,
    ) -> Result<Option<crate::proxy::LinkFault>, StackError> {
        let proxies = self.proxies.lock().unwrap_or_else(|p| p.into_inner());
        match proxies.iter().find(|p| p.name() == link) {
            Some(p) => Ok(p.set(fault)),
            // Not bound (bring-up failed before it): nothing to lift, nothing to set.
            None if fault.is_none() => Ok(None),
            None => Err(StackError::Command {
                what: format!("link `{link}`"),
                message: "no such link is listening".into(),
            }),
        }
    }

    fn kill_now(&self) {
        self.killed.store(true, Ordering::SeqCst);
        for p in self
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            p.shutdown();
        }
        for svc in &self.services {
            svc.state.send_modify(|s| s.want_up = false);
            if let Some(pid) = svc.state.borrow().pid {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests;
