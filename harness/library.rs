//! rebound as a library: a scenario built in code, run from `cargo test`, with an
//! assertion whose failure message is the console summary and the run directory.
//!
//! The builder writes the same TOML a scenario file holds and validates it with
//! [`crate::scenario::parse`], so a scenario built here is the same
//! [`crate::scenario::Plan`], with the same checks and messages, as the file; the
//! run writes the usual run directory (`history.jsonl`, `scenario.toml`, CSV,
//! charts, JUnit, HTML), so `rebound check` and `rebound report` work on it.
//!
//! Services can be containers a test started itself with testcontainers:
//! [`Scenario::containers`] names them by container id, and rebound's faults,
//! probes and Docker events act on those containers.
//!
//! ```no_run
//! use std::time::Duration;
//! use rebound::{Fault, Probe, Scenario, Slo, Workload};
//!
//! # async fn t(db_id: &str, app_id: &str, app_port: u16) -> Result<(), rebound::Error> {
//! let run = Scenario::new("db-sigkill")
//!     .containers([("db", db_id), ("app", app_id)])
//!     .fault(Fault::sigkill("db"))
//!     .probe(Probe::http(format!("http://127.0.0.1:{app_port}/health")))
//!     .workload(Workload::http_writes(
//!         format!("http://127.0.0.1:{app_port}/write"),
//!         format!("http://127.0.0.1:{app_port}/read/{{id}}"),
//!     ))
//!     .slo(Slo::recover_within(Duration::from_secs(2)).success_rate(0.99))
//!     .trials(20)
//!     .run()
//!     .await?;
//! run.assert_slo();
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checker::TrialResult;
use crate::exit::ExitStatus;
use crate::report::{ConsoleReporter, Reporter, Summary};
use crate::scenario::{Plan, ScenarioError};

/// A value of a scenario key: what TOML can hold, and durations (written as
/// humantime, `1500ms`).
#[derive(Debug, Clone, PartialEq)]
pub struct Value(toml::Value);

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value(toml::Value::String(v.to_string()))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value(toml::Value::String(v))
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value(toml::Value::String(v.clone()))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value(toml::Value::Boolean(v))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value(toml::Value::Integer(v))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value(toml::Value::Integer(i64::from(v)))
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value(toml::Value::Integer(i64::from(v)))
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value(toml::Value::Integer(i64::from(v)))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value(toml::Value::Float(v))
    }
}

impl From<Duration> for Value {
    fn from(d: Duration) -> Self {
        Value(toml::Value::String(duration_text(d)))
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value(toml::Value::Array(
            v.into_iter().map(|x| x.into().0).collect(),
        ))
    }
}

/// `1500ms`, `2s`, `250us`: a duration as scenario files write it, exactly.
fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else if d.as_nanos().is_multiple_of(1_000) {
        format!("{}us", d.as_micros())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// A table of keys (written in key order).
#[derive(Debug, Clone, Default, PartialEq)]
struct Table(toml::Table);

impl Table {
    fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.insert(key.to_string(), value.into().0);
    }
}

/// One `[[fault]]`: a kind (`sigkill`, `sigterm`, `restart`, `stop-for`,
/// `pause-for`, `disconnect-for`, …) on a target, with the kind's own keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    table: Table,
    then: Vec<Table>,
}

impl Fault {
    /// A fault of `kind` on `target` (a service, or a link for `link-*` kinds).
    pub fn new(kind: &str, target: &str) -> Self {
        let mut table = Table::default();
        table.set("kind", kind);
        table.set("target", target);
        Fault {
            table,
            then: Vec::new(),
        }
    }

    /// SIGKILL of `service`: a crash, after which its restart policy applies.
    pub fn sigkill(service: &str) -> Self {
        Fault::new("sigkill", service)
    }

    /// SIGTERM of `service`.
    pub fn sigterm(service: &str) -> Self {
        Fault::new("sigterm", service)
    }

    /// A restart of `service` through the engine (docker).
    pub fn restart(service: &str) -> Self {
        Fault::new("restart", service)
    }

    /// `service` frozen for `duration`.
    pub fn pause_for(service: &str, duration: Duration) -> Self {
        Fault::new("pause-for", service).set("duration", duration)
    }

    /// `service` stopped for `duration`, then started again.
    pub fn stop_for(service: &str, duration: Duration) -> Self {
        Fault::new("stop-for", service).set("duration", duration)
    }

    /// Sets one of the kind's keys, as in the file (`grace`, `duration`, …).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.table.set(key, value);
        self
    }

    /// A follow-up in the same trial (`[[fault.then]]`): `then` is injected
    /// `after` the previous one (set `when` on it with [`Fault::set`] to wait for
    /// an event instead).
    ///
    /// ```
    /// use std::time::Duration;
    /// use rebound::Fault;
    ///
    /// // The app killed again 200 ms after the first kill, while it restarts.
    /// let twice = Fault::sigkill("app").then(Fault::sigkill("app"), Duration::from_millis(200));
    /// // Or the app killed when the database is back.
    /// let as_db_returns = Fault::sigkill("db").then(
    ///     Fault::sigkill("app").set("when", "db started"),
    ///     Duration::ZERO,
    /// );
    /// # let _ = (twice, as_db_returns);
    /// ```
    pub fn then(mut self, then: Fault, after: Duration) -> Self {
        let mut t = then.table;
        if !t.0.contains_key("when") {
            t.set("after", after);
        }
        self.then.push(t);
        // Its own follow-ups come after it, in order (a trial's faults are one list).
        self.then.extend(then.then);
        self
    }

    fn toml(&self) -> toml::Value {
        let mut t = self.table.0.clone();
        if !self.then.is_empty() {
            t.insert(
                "then".into(),
                toml::Value::Array(
                    self.then
                        .iter()
                        .map(|x| toml::Value::Table(x.0.clone()))
                        .collect(),
                ),
            );
        }
        toml::Value::Table(t)
    }
}

/// One `[[probe]]`: how rebound tells that the stack is up.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe(Table);

impl Probe {
    /// A probe of `kind` (`http`, `tcp`, `postgres`, `redis`, `exec`,
    /// `docker-health`), keys set with [`Probe::set`].
    pub fn new(kind: &str) -> Self {
        let mut t = Table::default();
        t.set("kind", kind);
        Probe(t)
    }

    /// A GET on `url` must answer 200.
    pub fn http(url: impl Into<String>) -> Self {
        Probe::new("http").set("url", url.into())
    }

    /// A GET on `path` of `port` of `service`, at the service's own address,
    /// must answer 200: on docker the container's address, looked up again after
    /// every start, so a host port testcontainers mapped (which changes when the
    /// container restarts) plays no part.
    pub fn http_service(service: &str, port: u16, path: &str) -> Self {
        Probe::new("http")
            .set("service", service)
            .set("port", port)
            .set("path", path)
    }

    /// A TCP connect to `port` of `service` at the service's own address (on
    /// docker the container's address, so no port proxy answers for it, and a
    /// host port that changed when the container restarted does not matter).
    pub fn tcp(service: &str, port: u16) -> Self {
        Probe::new("tcp").set("service", service).set("port", port)
    }

    /// `SELECT 1` on a fresh PostgreSQL connection to `address` (`ip:port`).
    pub fn postgres(address: impl Into<String>) -> Self {
        Probe::new("postgres").set("address", address.into())
    }

    /// Sets one of the kind's keys, as in the file (`name`, `period`, …).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.set(key, value);
        self
    }
}

/// One `[[workload]]`: client traffic during every trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload(Table);

impl Workload {
    /// A workload of `kind` (`http-writes`, `pg-inserts`, `http-reads`), keys set
    /// with [`Workload::set`].
    pub fn new(kind: &str) -> Self {
        let mut t = Table::default();
        t.set("kind", kind);
        Workload(t)
    }

    /// JSON POSTs to `url`, each acknowledged write read back through
    /// `read_url` (with `{id}`) after the trial: a missing one is a lost write.
    pub fn http_writes(url: impl Into<String>, read_url: impl Into<String>) -> Self {
        Workload::new("http-writes")
            .set("url", url.into())
            .set("read-url", read_url.into())
    }

    /// Sets one of the kind's keys, as in the file (`rate`, `concurrency`, …).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.set(key, value);
        self
    }
}

/// `[slo]`: what must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo(Table);

impl Slo {
    /// A trial succeeds when the stack is back within `d`.
    pub fn recover_within(d: Duration) -> Self {
        let mut t = Table::default();
        t.set("recover-within", d);
        Slo(t)
    }

    /// The fraction of trials that must succeed (default 0.99).
    pub fn success_rate(self, rate: f64) -> Self {
        self.set("success-rate", rate)
    }

    /// Acknowledged writes a trial may lose and still succeed (default 0).
    pub fn max_lost_writes(self, n: u32) -> Self {
        self.set("max-lost-writes", n)
    }

    /// Limit on the 99th percentile of recovery times.
    pub fn p99(self, d: Duration) -> Self {
        self.set("p99", d)
    }

    /// Sets one of `[slo]`'s keys, as in the file (`confidence`, `p50`, …).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.set(key, value);
        self
    }
}

/// A scenario built in code.
///
/// ```
/// use std::time::Duration;
/// use rebound::{Fault, Probe, Scenario, Slo};
///
/// let s = Scenario::new("quick")
///     .process("app", ["${rebound}", "demo-app", "--port", "18099"])
///     .fault(Fault::sigkill("app"))
///     .probe(Probe::http("http://127.0.0.1:18099/healthz"))
///     .slo(Slo::recover_within(Duration::from_secs(2)).success_rate(0.9))
///     .trials(10);
/// // The checks a scenario file gets, and the plan it gives.
/// let plan = s.plan()?;
/// assert_eq!(plan.run.trials, 10);
/// assert!(s.to_toml().contains("recover-within = \"2s\""));
/// // A mistake is the file's error, naming the key.
/// let bad = s.clone().fault(Fault::sigkill("db")).plan().unwrap_err();
/// assert!(bad.to_string().contains("unknown target `db`"));
/// # Ok::<(), rebound::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    name: String,
    description: Option<String>,
    stack: Table,
    services: Vec<Table>,
    faults: Vec<Fault>,
    probes: Vec<Probe>,
    workloads: Vec<Workload>,
    slo: Option<Slo>,
    run: Table,
    seed: Option<u64>,
    heal_stale: bool,
    out: Option<PathBuf>,
    reports_root: PathBuf,
    print_summary: bool,
}

impl Scenario {
    /// A scenario called `name` (its run directories go under `reports/<name>/`).
    pub fn new(name: &str) -> Self {
        Scenario {
            name: name.to_string(),
            description: None,
            stack: Table::default(),
            services: Vec::new(),
            faults: Vec::new(),
            probes: Vec::new(),
            workloads: Vec::new(),
            slo: None,
            run: Table::default(),
            seed: None,
            heal_stale: false,
            out: None,
            reports_root: PathBuf::from("reports"),
            print_summary: false,
        }
    }

    /// What the scenario tests and why (shown in reports).
    pub fn description(mut self, text: &str) -> Self {
        self.description = Some(text.to_string());
        self
    }

    /// The stack is containers already running — those a test started with
    /// testcontainers — as (service name, container id or name). rebound acts
    /// on them by id and never removes them; the test's own handles do.
    pub fn containers<S: AsRef<str>, I: AsRef<str>>(
        mut self,
        containers: impl IntoIterator<Item = (S, I)>,
    ) -> Self {
        let mut map = toml::Table::new();
        for (s, i) in containers {
            map.insert(
                s.as_ref().to_string(),
                toml::Value::String(i.as_ref().to_string()),
            );
        }
        self.stack = Table::default();
        self.services.clear();
        self.stack.set("backend", "docker");
        self.stack
            .0
            .insert("containers".into(), toml::Value::Table(map));
        self
    }

    /// The stack is a compose file rebound brings up and tears down.
    pub fn compose(mut self, file: impl AsRef<Path>) -> Self {
        self.stack = Table::default();
        self.services.clear();
        self.stack.set("backend", "docker");
        self.stack
            .set("compose", file.as_ref().display().to_string());
        self
    }

    /// A local process service (the process backend), supervised by rebound
    /// with restart policy `always`; several calls add several services.
    /// `${rebound}` in the command is the running executable — in a test, the
    /// test binary, so name a program of your own.
    pub fn process<S: Into<String>>(
        mut self,
        name: &str,
        command: impl IntoIterator<Item = S>,
    ) -> Self {
        if self.stack.0.get("backend").and_then(|b| b.as_str()) != Some("process") {
            self.stack = Table::default();
            self.stack.set("backend", "process");
        }
        let mut t = Table::default();
        t.set("name", name);
        t.set(
            "command",
            command
                .into_iter()
                .map(|s| s.into())
                .collect::<Vec<String>>(),
        );
        t.set("restart", "always");
        self.services.push(t);
        self
    }

    /// Adds a fault; trials take them in turn (`[run] order`).
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// Adds a readiness probe: the stack is up when all of them are.
    pub fn probe(mut self, probe: Probe) -> Self {
        self.probes.push(probe);
        self
    }

    /// Adds a workload.
    pub fn workload(mut self, workload: Workload) -> Self {
        self.workloads.push(workload);
        self
    }

    /// The service level objective.
    pub fn slo(mut self, slo: Slo) -> Self {
        self.slo = Some(slo);
        self
    }

    /// Number of trials (default 20).
    pub fn trials(self, n: u32) -> Self {
        self.run_setting("trials", n)
    }

    /// The schedule's seed (default: random, printed and recorded in
    /// `summary.json`): the same seed replays the same fault order and jitter.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// First heal what killed runs of this scenario left behind (a test killed
    /// mid-run), instead of refusing to start until `rebound heal` ran.
    pub fn heal_stale(mut self, on: bool) -> Self {
        self.heal_stale = on;
        self
    }

    /// Sets one of `[run]`'s keys, as in the file (`warm-up`, `probe-period`,
    /// `heal-timeout`, …).
    pub fn run_setting(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.run.set(key, value);
        self
    }

    /// The run directory (default `reports/<name>/<run id>`).
    pub fn out(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out = Some(dir.into());
        self
    }

    /// Prints the console summary to stdout at the end, as `rebound run` does
    /// (default: off; [`Run::assert_slo`] shows it when it fails).
    pub fn print_summary(mut self, on: bool) -> Self {
        self.print_summary = on;
        self
    }

    /// The scenario as a file would hold it.
    pub fn to_toml(&self) -> String {
        let mut doc = toml::Table::new();
        doc.insert("name".into(), toml::Value::String(self.name.clone()));
        if let Some(d) = &self.description {
            doc.insert("description".into(), toml::Value::String(d.clone()));
        }
        let mut stack = self.stack.0.clone();
        if !self.services.is_empty() {
            stack.insert(
                "service".into(),
                toml::Value::Array(
                    self.services
                        .iter()
                        .map(|s| toml::Value::Table(s.0.clone()))
                        .collect(),
                ),
            );
        }
        if !stack.is_empty() {
            doc.insert("stack".into(), toml::Value::Table(stack));
        }
        let array = |v: Vec<toml::Value>| toml::Value::Array(v);
        if !self.faults.is_empty() {
            doc.insert(
                "fault".into(),
                array(self.faults.iter().map(Fault::toml).collect()),
            );
        }
        if !self.probes.is_empty() {
            doc.insert(
                "probe".into(),
                array(
                    self.probes
                        .iter()
                        .map(|p| toml::Value::Table(p.0 .0.clone()))
                        .collect(),
                ),
            );
        }
        if !self.workloads.is_empty() {
            doc.insert(
                "workload".into(),
                array(
                    self.workloads
                        .iter()
                        .map(|w| toml::Value::Table(w.0 .0.clone()))
                        .collect(),
                ),
            );
        }
        if let Some(slo) = &self.slo {
            doc.insert("slo".into(), toml::Value::Table(slo.0 .0.clone()));
        }
        if !self.run.0.is_empty() {
            doc.insert("run".into(), toml::Value::Table(self.run.0.clone()));
        }
        toml::to_string(&doc)
            .unwrap_or_else(|e| format!("# this scenario cannot be written as TOML: {e}\n"))
    }

    /// Validates the scenario into the plan a file would give: the same checks,
    /// the same messages (line numbers refer to [`Scenario::to_toml`]).
    pub fn plan(&self) -> Result<Plan, Error> {
        let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let path = dir.join(format!("{}.toml", self.name));
        crate::scenario::parse(&path, &self.to_toml()).map_err(|e| Error::Scenario(Box::new(e)))
    }

    /// Runs the trials: heals every fault on every path (Ctrl-C included) and
    /// writes the run directory. An SLO that does not hold is not an error: see
    /// [`Run::passed`] and [`Run::assert_slo`].
    pub async fn run(&self) -> Result<Run, Error> {
        let plan = self.plan()?;
        let opts = crate::runner::RunOptions {
            out: self.out.clone(),
            reports_root: self.reports_root.clone(),
            progress: false,
            print_summary: self.print_summary,
            seed: self.seed,
            heal_stale: self.heal_stale,
            ..crate::runner::RunOptions::default()
        };
        let o = crate::runner::run(&plan, &opts)
            .await
            .map_err(|e| Error::Run(Box::new(e)))?;
        Ok(Run {
            summary: o.summary,
            trials: o.trials,
            exit: o.exit,
        })
    }
}

/// Why a scenario could not run (an SLO that does not hold is not one: it is a
/// [`Run`] that did not pass).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario is invalid (exit code 3 on the command line).
    #[error("{0}")]
    Scenario(Box<ScenarioError>),
    /// The run could not produce a verdict: the stack did not come up, a fault
    /// could not be healed, the run directory could not be written, …
    #[error("{0}")]
    Run(Box<crate::runner::RunError>),
}

impl Error {
    /// The exit code `rebound run` gives for it.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Scenario(_) => ExitStatus::Invalid.code(),
            Error::Run(e) => e.exit_status().code(),
        }
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The summary: verdict, quantiles, lost writes (also in `summary.json`).
    pub summary: Summary,
    /// Every finished trial's outcome.
    pub trials: Vec<TrialResult>,
    /// What `rebound run` would exit with.
    pub exit: ExitStatus,
}

/// The SLO did not hold: the console summary and where the run directory is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SloFailed(pub String);

impl Run {
    /// Every SLO was met (exit 0).
    pub fn passed(&self) -> bool {
        self.exit == ExitStatus::SloMet
    }

    /// The run directory (`history.jsonl`, reports).
    pub fn run_dir(&self) -> &Path {
        &self.summary.run_dir
    }

    /// Acknowledged writes lost, over every trial.
    pub fn lost_writes(&self) -> u64 {
        self.summary.verdict.lost_acked_writes
    }

    /// The console summary `rebound run` prints.
    pub fn console(&self) -> String {
        let mut out = Vec::new();
        let _ = ConsoleReporter { out: &mut out }.run_finished(&self.summary, &self.trials);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Ok when every SLO was met; else the console summary and the run
    /// directory, as one message.
    pub fn check(&self) -> Result<(), SloFailed> {
        if self.passed() {
            return Ok(());
        }
        Err(SloFailed(format!(
            "rebound: scenario `{}` did not meet its SLO (exit {}: {})\n\n{}\nrun directory: {}\n(`rebound report {}` renders it again)",
            self.summary.scenario,
            self.exit.code(),
            describe_exit(self.exit),
            self.console().trim(),
            self.run_dir().display(),
            self.run_dir().display(),
        )))
    }

    /// Panics unless every SLO was met, with [`Run::check`]'s message: in a
    /// test, a failed SLO is a failed test that says why.
    #[track_caller]
    pub fn assert_slo(&self) {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
    }
}

fn describe_exit(exit: ExitStatus) -> &'static str {
    match exit {
        ExitStatus::SloMet => "every SLO met",
        ExitStatus::SloViolated => "an SLO was violated",
        ExitStatus::Inconclusive => "the trials cannot decide the SLO either way; run more",
        ExitStatus::Invalid => "invalid scenario",
        ExitStatus::StackFailure => "the stack could not be brought up or healed",
        ExitStatus::Interrupted => "interrupted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario::new("lib-demo")
            .process(
                "app",
                [
                    "${rebound}",
                    "demo-app",
                    "--listen",
                    "127.0.0.1:${port:APP}",
                ],
            )
            .fault(Fault::sigkill("app").then(Fault::sigterm("app"), Duration::from_millis(300)))
            .probe(
                Probe::http("http://127.0.0.1:${port:APP}/health")
                    .set("period", Duration::from_millis(20)),
            )
            .slo(Slo::recover_within(Duration::from_secs(2)).success_rate(0.9))
            .trials(3)
            .run_setting("warm-up", Duration::from_millis(1500))
    }

    #[test]
    fn the_builder_gives_the_plan_the_same_file_gives() {
        let s = scenario();
        let text = s.to_toml();
        let built = s.plan().expect("valid");
        let from_file =
            crate::scenario::parse(Path::new("lib-demo.toml"), &text).expect("the text parses");
        assert_eq!(built.name, "lib-demo");
        assert_eq!(built.run.trials, 3);
        assert_eq!(built.run.trials, from_file.run.trials);
        assert_eq!(built.run.warm_up, Duration::from_millis(1500));
        assert_eq!(built.faults.len(), 1);
        assert_eq!(built.faults[0].then.len(), 1);
        assert_eq!(built.faults[0].kind.name(), "sigkill");
        assert_eq!(built.probes[0].period, Duration::from_millis(20));
        assert_eq!(built.slo.success_rate, 0.9);
        assert_eq!(built.slo.recover_within, Duration::from_secs(2));
        assert!(text.contains("recover-within = \"2s\""), "{text}");
    }

    #[test]
    fn a_builder_mistake_is_the_file_s_error_naming_the_key() {
        let e = Scenario::new("bad")
            .process("app", ["true"])
            .fault(Fault::sigkill("ap"))
            .probe(Probe::tcp("app", 9))
            .slo(Slo::recover_within(Duration::from_secs(1)))
            .plan()
            .expect_err("unknown target");
        assert_eq!(e.exit_code(), 3);
        let msg = e.to_string();
        assert!(
            msg.contains("fault[1].target: unknown target `ap`; services are: app"),
            "{msg}"
        );
        // No probe at all: the file's rule, the file's words.
        let e = Scenario::new("bad")
            .process("app", ["true"])
            .fault(Fault::sigkill("app"))
            .slo(Slo::recover_within(Duration::from_secs(1)))
            .plan()
            .expect_err("no probe");
        assert!(
            e.to_string().contains("at least one [[probe]] is required"),
            "{e}"
        );
    }

    #[test]
    fn containers_become_a_docker_stack_of_those_services() {
        let plan = Scenario::new("tc")
            .containers([("db", "0123abcd"), ("app", "4567ef")])
            .fault(Fault::restart("db"))
            .probe(Probe::tcp("db", 5432))
            .slo(Slo::recover_within(Duration::from_secs(5)))
            .plan()
            .expect("valid");
        assert_eq!(
            plan.stack.service_names(),
            Some(vec!["app".to_string(), "db".to_string()])
        );
        match &plan.stack {
            crate::scenario::StackPlan::Docker {
                source: crate::scenario::DockerSource::Containers { containers },
                ..
            } => assert_eq!(containers["db"], "0123abcd"),
            other => panic!("{other:?}"),
        }
        // Compose-only faults are refused on given containers, as on an attached project.
        let e = Scenario::new("tc")
            .containers([("db", "0123abcd")])
            .fault(Fault::new("stack-restart", "*").set("mode", "ordered"))
            .probe(Probe::tcp("db", 5432))
            .slo(Slo::recover_within(Duration::from_secs(5)))
            .plan();
        assert!(e.is_err(), "{e:?}");
    }

    #[test]
    fn durations_are_written_exactly() {
        assert_eq!(duration_text(Duration::from_secs(2)), "2s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_text(Duration::from_micros(250)), "250us");
        assert_eq!(duration_text(Duration::from_nanos(7)), "7ns");
    }
}
