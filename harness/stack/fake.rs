//! An in-memory [`Stack`] for unit tests of the runner and the nemesis: services are
//! flags and counters, a "restart policy" brings a crashed service back after a
//! scripted delay, health turns `healthy` a scripted time after each start, and
//! scripted failures (an injection that fails or panics, a cancellation when a given
//! primitive is called) reach the paths that real backends reach only rarely.
//! Every primitive call is logged so that tests can assert what heal and teardown did.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{Health, ServiceStatus, Sig, Stack, StackError};
use crate::history::{Event, History, Lifecycle};

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct Script {
    /// A crashed (not held) service is running again this long after it died.
    pub restart_after: Duration,
    /// Health is `healthy` this long after a start.
    pub ready_after: Duration,
    /// `signal` fails (an injection failure).
    pub fail_signal: bool,
    /// `signal` panics (a bug in a fault).
    pub panic_on_signal: bool,
    /// Health never turns healthy again after the first fault (a stack that does
    /// not recover).
    pub never_ready_after_fault: bool,
    /// `(a, b)`: a planted bug — `a` never turns healthy again once it started
    /// while `b` was down (stopped or paused), as an app that caches a failed
    /// dependency lookup forever.
    pub stuck_if_started_while_down: Option<(String, String)>,
    /// Services that take longer than [`Script::restart_after`] to come back,
    /// with their own delay (a dependency slower to restart than its client).
    pub slow_restart: Vec<(String, Duration)>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            restart_after: Duration::from_millis(20),
            ready_after: Duration::from_millis(10),
            fail_signal: false,
            panic_on_signal: false,
            never_ready_after_fault: false,
            stuck_if_started_while_down: None,
            slow_restart: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Svc {
    running: bool,
    paused: bool,
    held: bool,
    starts: u64,
    exits: u64,
    up_since: Option<Instant>,
    last_signal: Option<i32>,
    /// The planted bug struck ([`Script::stuck_if_started_while_down`]).
    stuck: bool,
}

#[derive(Default)]
struct Inner {
    services: HashMap<String, Svc>,
    calls: Vec<String>,
    counts: HashMap<&'static str, usize>,
    faulted: bool,
}

/// The fake stack.
#[derive(Clone)]
pub struct FakeStack {
    names: Vec<String>,
    script: Script,
    inner: Arc<Mutex<Inner>>,
    history: Arc<History>,
    cancel_on: Option<(&'static str, usize, CancellationToken)>,
}

impl FakeStack {
    /// A stack of `names` behaving as `script`, recording into `history`.
    pub fn new(names: &[&str], script: Script, history: Arc<History>) -> Self {
        FakeStack {
            names: names.iter().map(|s| s.to_string()).collect(),
            script,
            inner: Arc::new(Mutex::new(Inner::default())),
            history,
            cancel_on: None,
        }
    }

    /// Cancels `token` (what Ctrl-C does) when primitive `op` is called the `nth`
    /// time (from 1): `up`, `health`, `signal`, `start`, `unpause`, `teardown`.
    pub fn cancel_on(mut self, op: &'static str, nth: usize, token: CancellationToken) -> Self {
        self.cancel_on = Some((op, nth, token));
        self
    }

    /// Every primitive call so far, e.g. `signal app Kill`, `start app`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Whether any service is paused or stopped right now.
    pub fn anything_down(&self) -> bool {
        self.lock()
            .services
            .values()
            .any(|s| s.paused || !s.running)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn call(&self, op: &'static str, detail: String) {
        let n = {
            let mut inner = self.lock();
            inner.calls.push(detail);
            let n = inner.counts.entry(op).or_default();
            *n += 1;
            *n
        };
        if let Some((want, nth, token)) = &self.cancel_on {
            if *want == op && *nth == n {
                token.cancel();
            }
        }
    }

    fn with<T>(&self, service: &str, f: impl FnOnce(&mut Svc) -> T) -> Result<T, StackError> {
        let mut inner = self.lock();
        inner
            .services
            .get_mut(service)
            .map(f)
            .ok_or_else(|| StackError::UnknownService(service.into()))
    }

    fn started(&self, service: &str) {
        let dependency_down = self
            .script
            .stuck_if_started_while_down
            .as_ref()
            .filter(|(a, _)| a == service)
            .and_then(|(_, b)| {
                self.with(b, |d| d.starts > 0 && (!d.running || d.paused))
                    .ok()
            })
            .unwrap_or(false);
        let _ = self.with(service, |s| {
            s.stuck |= dependency_down;
            s.running = true;
            s.starts += 1;
            s.up_since = Some(Instant::now());
        });
        self.history
            .record(Event::service(service, Lifecycle::Started, None));
    }

    fn died(&self, service: &str, signal: i32) -> Result<(), StackError> {
        let restart = self.with(service, |s| {
            if !s.running {
                return Err(StackError::NotRunning(service.into()));
            }
            s.running = false;
            s.paused = false;
            s.exits += 1;
            s.last_signal = Some(signal);
            Ok(!s.held)
        })??;
        self.lock().faulted = true;
        self.history
            .record(Event::service(service, Lifecycle::Exited, None));
        if restart {
            let me = self.clone();
            let name = service.to_string();
            let after = me
                .script
                .slow_restart
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(me.script.restart_after, |(_, d)| *d);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let still_down = me.with(&name, |s| !s.running && !s.held).unwrap_or(false);
                if still_down {
                    me.started(&name);
                }
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Stack for FakeStack {
    fn backend(&self) -> &'static str {
        "fake"
    }

    fn services(&self) -> Vec<String> {
        self.names.clone()
    }

    async fn up(&self) -> Result<(), StackError> {
        self.call("up", "up".into());
        {
            let mut inner = self.lock();
            for n in &self.names {
                inner.services.insert(n.clone(), Svc::default());
            }
        }
        for n in &self.names {
            self.started(n);
        }
        self.history.record(Event::StackUp);
        Ok(())
    }

    fn status(&self, service: &str) -> Result<ServiceStatus, StackError> {
        self.with(service, |s| ServiceStatus {
            running: s.running,
            paused: s.paused,
            starts: s.starts,
            exits: s.exits,
            wanted: s.running || !s.held,
            last_code: None,
            last_signal: s.last_signal,
        })
    }

    async fn signal(&self, service: &str, sig: Sig) -> Result<(), StackError> {
        self.call("signal", format!("signal {service} {sig:?}"));
        if self.script.panic_on_signal {
            panic!("scripted panic in signal");
        }
        if self.script.fail_signal {
            return Err(StackError::Signal {
                service: service.into(),
                signal: format!("{sig:?}"),
                message: "scripted failure".into(),
            });
        }
        self.died(service, if sig == Sig::Kill { 9 } else { 15 })
    }

    fn hold(&self, service: &str) -> Result<(), StackError> {
        self.with(service, |s| s.held = true)
    }

    async fn stop(&self, service: &str, _grace: Duration) -> Result<(), StackError> {
        self.call("stop", format!("stop {service}"));
        self.hold(service)?;
        match self.died(service, 15) {
            Err(StackError::NotRunning(_)) => Ok(()),
            r => r,
        }
    }

    async fn start(&self, service: &str) -> Result<(), StackError> {
        self.call("start", format!("start {service}"));
        let running = self.with(service, |s| {
            s.held = false;
            s.running
        })?;
        if !running {
            self.started(service);
        }
        Ok(())
    }

    async fn pause(&self, service: &str) -> Result<(), StackError> {
        self.call("pause", format!("pause {service}"));
        self.with(service, |s| s.paused = true)
    }

    async fn unpause(&self, service: &str) -> Result<(), StackError> {
        self.call("unpause", format!("unpause {service}"));
        self.with(service, |s| s.paused = false)
    }

    async fn wait_exit(
        &self,
        service: &str,
        exits: u64,
        timeout: Duration,
    ) -> Result<(), StackError> {
        let deadline = Instant::now() + timeout;
        while self.with(service, |s| s.exits)? <= exits {
            if Instant::now() >= deadline {
                return Err(StackError::Timeout {
                    service: service.into(),
                    what: "process exit".into(),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    async fn health(&self, service: &str) -> Result<Option<Health>, StackError> {
        self.call("health", format!("health {service}"));
        let faulted = self.lock().faulted;
        let ready_after = self.script.ready_after;
        let never = self.script.never_ready_after_fault && faulted;
        self.with(service, |s| {
            let ready = s.running
                && !s.paused
                && !never
                && !s.stuck
                && s.up_since.is_some_and(|t| t.elapsed() >= ready_after);
            Some(if ready {
                Health::Healthy
            } else {
                Health::Starting
            })
        })
    }

    async fn teardown(&self) -> Result<(), StackError> {
        self.call("teardown", "teardown".into());
        let mut inner = self.lock();
        for s in inner.services.values_mut() {
            s.running = false;
            s.paused = false;
        }
        Ok(())
    }

    fn kill_now(&self) {
        self.call("kill_now", "kill_now".into());
    }
}
