//! `rebound explore`: searches fault schedules for restart bugs. Schedules of up
//! to `max-faults` faults (each on a timer or on an event) are drawn from the
//! stack's fault space at random and by mutating kept ones; a schedule is kept
//! when its trial showed new behaviour ([`signature::features`]). A failing
//! schedule is confirmed (its reproduction rate, with a Clopper–Pearson
//! interval), shrunk (faults dropped by ddmin, then durations and delays
//! simplified, each candidate re-run enough times for the observed rate) and
//! written as a scenario `rebound run` replays. Trials run through the ordinary
//! runner, several schedules per stack bring-up, so every fault is journaled and
//! healed as in a run.

pub mod report;
pub mod schedule;
pub mod shrink;
pub mod signature;
pub mod space;

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::checker::Outcome;
use crate::exit::ExitStatus;
use crate::history::Record;
use crate::runner::{self, RunError, RunOptions, StackBuilder};
use crate::scenario::{FaultOrder, Plan, ScenarioError};
use schedule::{Schedule, Step, Trigger};
use space::{Cell, Space};

/// Fault kinds explore knows how to draw (and parameterise).
pub const KINDS: &[&str] = &[
    "sigkill",
    "sigterm",
    "stop-for",
    "pause-for",
    "restart",
    "disconnect-for",
];

/// The kinds drawn when `[explore] kinds` is not given.
pub fn default_kinds(docker: bool) -> &'static [&'static str] {
    if docker {
        KINDS
    } else {
        &KINDS[..4]
    }
}

/// Confidence of the reproduction-rate interval and of "not a pass by luck".
const CONFIDENCE: f64 = 0.95;

/// Most re-runs of one shrink candidate (enough for a failure rate of 14 %).
const MAX_RERUNS: u32 = 20;

/// Most shrink candidates tried for one mode.
const MAX_CANDIDATES: usize = 24;

/// Shortest duration and delay shrinking goes down to.
const MIN_DURATION: Duration = Duration::from_millis(250);

/// Choices of an explore session.
#[derive(Debug, Clone)]
pub struct ExploreOptions {
    /// How long to search (confirming and shrinking a found mode may run past it).
    pub budget: Duration,
    /// Seed of the schedule generator (default: random, recorded).
    pub seed: Option<u64>,
    /// Most faults per schedule (default: `[explore] max-faults`).
    pub max_faults: Option<usize>,
    /// Stop after this many schedules even within the budget.
    pub max_schedules: Option<u32>,
    /// Stop once this many failure modes were found.
    pub max_modes: Option<usize>,
    /// Schedules per stack bring-up.
    pub batch: u32,
    /// Trials that estimate a failure mode's reproduction rate.
    pub confirm: u32,
    /// Output directory (default `<reports_root>/<scenario>/explore-<time>`).
    pub out: Option<PathBuf>,
    /// Root of default output directories.
    pub reports_root: PathBuf,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Default for ExploreOptions {
    fn default() -> Self {
        ExploreOptions {
            budget: Duration::from_secs(20 * 60),
            seed: None,
            max_faults: None,
            max_schedules: None,
            max_modes: None,
            batch: 4,
            confirm: 6,
            out: None,
            reports_root: PathBuf::from("reports"),
            progress: true,
        }
    }
}

/// Why an explore session could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    /// A command-line value is not acceptable (exit 3).
    #[error("{0}")]
    Usage(String),
    /// A generated scenario did not validate (a bug in explore).
    #[error("internal error: an explored schedule did not validate: {0}")]
    Generated(Box<ScenarioError>),
    /// A run of schedules failed (the stack could not be brought up, …).
    #[error("{what}: {source}")]
    Run {
        /// Which run.
        what: String,
        /// Its error.
        source: Box<RunError>,
    },
    /// Writing the results failed (exit 3).
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ExploreError {
    /// The documented exit status for this error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            ExploreError::Usage(_) | ExploreError::Io { .. } => ExitStatus::Invalid,
            ExploreError::Generated(_) => ExitStatus::StackFailure,
            ExploreError::Run { source, .. } => source.exit_status(),
        }
    }
}

/// One trial of a schedule, as explore saw it.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Pass, fail or unknown.
    pub outcome: Outcome,
    /// The checker's reason.
    pub reason: String,
    /// Recovery time.
    pub recovery_ms: Option<f64>,
    /// Coverage features.
    pub features: BTreeSet<String>,
    /// Failure mode, when it failed.
    pub mode: Option<String>,
    /// The run directory and trial number.
    pub run_dir: PathBuf,
    /// Trial number within it.
    pub trial: u32,
}

/// A reproduction rate: failures of the mode in trials, with its interval.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rate {
    /// Trials that failed this way.
    pub failures: u64,
    /// Trials run.
    pub trials: u64,
    /// Clopper–Pearson interval at 95 %.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Rate {
    fn of(failures: u64, trials: u64) -> Self {
        let (low, high) = crate::stats::rate_interval(failures, trials.max(1), CONFIDENCE);
        Rate {
            failures,
            trials,
            low,
            high,
        }
    }

    /// The point estimate.
    pub fn value(&self) -> f64 {
        self.failures as f64 / self.trials.max(1) as f64
    }
}

/// A distinct failure mode and what explore made of it.
#[derive(Debug, Clone, Serialize)]
pub struct Mode {
    /// 1-based.
    pub number: usize,
    /// What failed and how (numbers masked).
    pub key: String,
    /// The reason of the first failing trial.
    pub reason: String,
    /// The schedule that first showed it, and its number among those tried.
    pub found: Schedule,
    /// Its number among the schedules tried.
    pub found_at: u32,
    /// Its reproduction rate (the discovering trial included).
    pub found_rate: Rate,
    /// The shrunk schedule.
    pub shrunk: Schedule,
    /// Its reproduction rate, measured after shrinking.
    pub rate: Rate,
    /// Runs of each shrink candidate (k ≥ ln 0.05 / ln(1 − rate)).
    pub reruns: u32,
    /// The scenario file that replays it.
    pub file: PathBuf,
    /// A run with a failing trial of the shrunk schedule (its report has the ECDF
    /// and the timeline), and the trial.
    pub run_dir: PathBuf,
    /// The failing trial in it.
    pub trial: Option<u32>,
    /// What shrinking tried and kept, one line per candidate.
    pub shrink_log: Vec<String>,
    /// Shrinking was cut short (Ctrl-C).
    pub incomplete: bool,
}

/// What an explore session did.
#[derive(Debug, Clone, Serialize)]
pub struct ExploreOutcome {
    /// Scenario explored.
    pub scenario: String,
    /// The output directory.
    pub dir: PathBuf,
    /// Seed of the generator.
    pub seed: u64,
    /// The search budget.
    #[serde(with = "humantime_serde")]
    pub budget: Duration,
    /// Wall time of the whole session.
    #[serde(with = "humantime_serde")]
    pub elapsed: Duration,
    /// Schedules tried in the search, in order.
    pub schedules: Vec<Schedule>,
    /// How many were kept for mutation (new behaviour).
    pub kept: usize,
    /// Trials run in all (search, confirmation, shrinking).
    pub trials: u64,
    /// Stack bring-ups (runs).
    pub runs: u32,
    /// Every coverage feature seen, with the schedule that first showed it.
    pub features: Vec<(String, u32)>,
    /// Failure modes found.
    pub modes: Vec<Mode>,
    /// The fault space.
    pub space: SpaceSummary,
    /// Cut short by Ctrl-C.
    pub interrupted: bool,
    /// The exit status: 1 with a failure mode, 0 without, 130 interrupted.
    pub exit: ExitStatus,
}

/// The fault space, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct SpaceSummary {
    /// `kind → target` cells.
    pub cells: Vec<String>,
    /// Events follow-ups may wait for.
    pub events: Vec<String>,
    /// Durations of timed faults.
    pub durations: Vec<String>,
    /// Most faults per schedule.
    pub max_faults: usize,
}

/// Builds a fresh stack for each run of an explore session (tests pass a fake).
pub type BuildFactory<'a> = Box<dyn Fn() -> StackBuilder<'a> + Send + Sync + 'a>;

/// The fault space of `plan`: every (kind, target) of `[explore]` that validates
/// on its stack.
pub fn space_of(plan: &Plan, max_faults: Option<usize>) -> Result<Space, ExploreError> {
    let raw = raw_table(plan)?;
    let mut cells = Vec::new();
    for kind in &plan.explore.kinds {
        for target in &plan.explore.targets {
            let step = Step {
                kind: kind.clone(),
                target: target.clone(),
                duration: space::timed(kind).then_some(MIN_DURATION),
                trigger: Trigger::After(Duration::ZERO),
            };
            let text = scenario_text(&raw, &[Schedule::of(vec![step])], None);
            if crate::scenario::parse_with(&plan.source_path, &text, plan.ports.clone()).is_ok() {
                cells.push(Cell {
                    kind: kind.clone(),
                    target: target.clone(),
                });
            }
        }
    }
    if cells.is_empty() {
        return Err(ExploreError::Usage(format!(
            "nothing to explore: none of the kinds {} can be injected into {} on the {} backend",
            plan.explore.kinds.join(", "),
            plan.explore.targets.join(", "),
            plan.stack.backend()
        )));
    }
    let max_faults = max_faults.unwrap_or(plan.explore.max_faults);
    if !(1..=8).contains(&max_faults) {
        return Err(ExploreError::Usage(format!(
            "--max-faults {max_faults}: between 1 and 8"
        )));
    }
    // Events of the services faults land on (others may never die or start in
    // a trial, and a follow-up waiting for them would only wait out the window).
    let services = plan.explore.targets.clone();
    let probes: Vec<String> = plan.probes.iter().map(|p| p.name.clone()).collect();
    Ok(Space::new(
        cells,
        &services,
        &probes,
        plan.stack.backend() == "docker",
        plan.explore.max_duration,
        plan.run.observe_for,
        max_faults,
    ))
}

/// The scenario file as a TOML table.
fn raw_table(plan: &Plan) -> Result<toml::Table, ExploreError> {
    plan.source_text
        .parse::<toml::Table>()
        .map_err(|e| ExploreError::Usage(format!("{}: {e}", plan.source_path.display())))
}

/// The scenario with `schedules` as its faults (and `trials`, if given).
fn scenario_text(raw: &toml::Table, schedules: &[Schedule], trials: Option<u32>) -> String {
    let mut t = raw.clone();
    t.insert(
        "fault".into(),
        toml::Value::Array(schedules.iter().map(Schedule::to_toml).collect()),
    );
    if let Some(n) = trials {
        let run = t
            .entry("run")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(run) = run.as_table_mut() {
            run.insert("trials".into(), i64::from(n).into());
            run.insert("order".into(), "round-robin".into());
            run.remove("seed");
        }
    }
    toml::to_string(&t).unwrap_or_default()
}

/// Explores `plan` (see the module documentation) with stacks from `build`;
/// cancelling `cancel` is what Ctrl-C does.
pub async fn explore<'a, 'b>(
    plan: &'a Plan,
    opts: &'a ExploreOptions,
    build: BuildFactory<'b>,
    cancel: CancellationToken,
) -> Result<ExploreOutcome, ExploreError> {
    if opts.batch == 0 || opts.confirm == 0 {
        return Err(ExploreError::Usage(
            "--batch and --confirm must be at least 1".into(),
        ));
    }
    if opts.budget.is_zero() {
        return Err(ExploreError::Usage("--budget must be more than 0s".into()));
    }
    let space = space_of(plan, opts.max_faults)?;
    // Within i64: a seed is written into scenario files (TOML integers are i64).
    let seed = opts
        .seed
        .unwrap_or_else(|| rand::random::<u64>() & i64::MAX as u64);
    let dir = opts.out.clone().unwrap_or_else(|| {
        opts.reports_root.join(&plan.name).join(format!(
            "explore-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ExploreError::Usage(format!(
            "{} is not empty; explore writes a new directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir.join("modes")).map_err(|source| ExploreError::Io {
        path: dir.join("modes"),
        source,
    })?;
    let mut ex = Explorer {
        plan,
        raw: raw_table(plan)?,
        space,
        opts,
        build,
        cancel,
        rng: ChaCha8Rng::seed_from_u64(seed),
        seed,
        dir,
        started: Instant::now(),
        runs: 0,
        trials: 0,
        schedules: Vec::new(),
        tried: HashSet::new(),
        pending: VecDeque::new(),
        kept: Vec::new(),
        features: Vec::new(),
        seen: HashSet::new(),
        modes: Vec::new(),
        progress: progress_bar(opts.progress),
    };
    let result = ex.search().await;
    ex.progress.finish_and_clear();
    let outcome = ex.outcome();
    report::write(&outcome)?;
    result?;
    Ok(outcome)
}

struct Explorer<'a, 'b> {
    plan: &'a Plan,
    raw: toml::Table,
    space: Space,
    opts: &'a ExploreOptions,
    build: BuildFactory<'b>,
    cancel: CancellationToken,
    rng: ChaCha8Rng,
    seed: u64,
    dir: PathBuf,
    started: Instant,
    runs: u32,
    trials: u64,
    schedules: Vec<Schedule>,
    tried: HashSet<Schedule>,
    pending: VecDeque<Schedule>,
    kept: Vec<Schedule>,
    features: Vec<(String, u32)>,
    seen: HashSet<String>,
    modes: Vec<Mode>,
    progress: indicatif::ProgressBar,
}

impl Explorer<'_, '_> {
    fn outcome(&self) -> ExploreOutcome {
        let interrupted = self.cancel.is_cancelled();
        ExploreOutcome {
            scenario: self.plan.name.clone(),
            dir: self.dir.clone(),
            seed: self.seed,
            budget: self.opts.budget,
            elapsed: Duration::from_millis(self.started.elapsed().as_millis() as u64),
            schedules: self.schedules.clone(),
            kept: self.kept.len(),
            trials: self.trials,
            runs: self.runs,
            features: self.features.clone(),
            modes: self.modes.clone(),
            space: SpaceSummary {
                cells: self
                    .space
                    .cells
                    .iter()
                    .map(|c| format!("{} → {}", c.kind, c.target))
                    .collect(),
                events: self.space.events.clone(),
                durations: self
                    .space
                    .durations
                    .iter()
                    .map(|d| humantime::format_duration(*d).to_string())
                    .collect(),
                max_faults: self.space.max_faults,
            },
            interrupted,
            exit: if interrupted {
                ExitStatus::Interrupted
            } else if self.modes.is_empty() {
                ExitStatus::SloMet
            } else {
                ExitStatus::SloViolated
            },
        }
    }

    fn done(&self) -> bool {
        self.cancel.is_cancelled()
            || self.started.elapsed() >= self.opts.budget
            || self
                .opts
                .max_schedules
                .is_some_and(|m| self.schedules.len() >= m as usize)
            || self.opts.max_modes.is_some_and(|m| self.modes.len() >= m)
    }

    /// The next schedule to try: one a cut-short run did not get to, else a new
    /// one (random, or a mutation of a kept one) that was never tried and that
    /// validates as a scenario; `None` when 200 draws found none (the space is
    /// exhausted).
    fn draw(&mut self) -> Option<Schedule> {
        if let Some(s) = self.pending.pop_front() {
            return Some(s);
        }
        for _ in 0..200 {
            let fresh = self.kept.is_empty() || self.rng.random_bool(0.3);
            let s = if fresh {
                self.space.random(&mut self.rng)
            } else {
                let i = self.rng.random_range(0..self.kept.len());
                self.space.mutate(&mut self.rng, &self.kept[i])
            };
            if self.tried.contains(&s) {
                continue;
            }
            self.tried.insert(s.clone());
            // A schedule the scenario rules refuse (its follow-ups would not fit
            // the observation window) is skipped, never run.
            let text = scenario_text(&self.raw, std::slice::from_ref(&s), None);
            if crate::scenario::parse_with(&self.plan.source_path, &text, self.plan.ports.clone())
                .is_ok()
            {
                return Some(s);
            }
        }
        None
    }

    async fn search(&mut self) -> Result<(), ExploreError> {
        while !self.done() {
            let left = self
                .opts
                .max_schedules
                .map_or(u32::MAX, |m| m - self.schedules.len() as u32);
            let n = self.opts.batch.min(left).max(1);
            let batch: Vec<Schedule> = (0..n).filter_map(|_| self.draw()).collect();
            if batch.is_empty() {
                self.say(format!(
                    "[explore] every schedule of the space was tried ({})",
                    self.tried.len()
                ));
                break;
            }
            let obs = self.run(&batch, 1, "search").await?;
            let mut found = Vec::new();
            for (s, o) in batch.into_iter().zip(obs) {
                let Some(o) = o.into_iter().next() else {
                    // The run stopped before it (a stack that did not come back).
                    if !self.cancel.is_cancelled() {
                        self.pending.push_back(s);
                    }
                    continue;
                };
                self.schedules.push(s.clone());
                let number = self.schedules.len() as u32;
                let new: Vec<String> = o
                    .features
                    .iter()
                    .filter(|f| !self.seen.contains(*f))
                    .cloned()
                    .collect();
                if !new.is_empty() {
                    for f in new {
                        self.seen.insert(f.clone());
                        self.features.push((f, number));
                    }
                    self.kept.push(s.clone());
                }
                if let Some(key) = &o.mode {
                    if !self.modes.iter().any(|m| &m.key == key) {
                        found.push((s, o.clone(), number));
                    }
                }
            }
            self.tick();
            for (s, o, number) in found {
                // Found within the budget: investigated even past it.
                if self.cancel.is_cancelled()
                    || self.opts.max_modes.is_some_and(|m| self.modes.len() >= m)
                {
                    break;
                }
                // A mode found twice in one batch is investigated once.
                if o.mode
                    .as_ref()
                    .is_some_and(|k| self.modes.iter().any(|m| &m.key == k))
                {
                    continue;
                }
                self.investigate(s, o, number).await?;
                report::write(&self.outcome())?;
            }
        }
        Ok(())
    }

    /// A line above the progress bar (on stderr without one).
    fn say(&self, line: String) {
        if !self.progress.is_hidden() {
            self.progress.println(line);
        } else if self.opts.progress {
            eprintln!("{line}");
        }
    }

    fn tick(&self) {
        let msg = format!(
            "explore {} · {} schedule(s) · {} trial(s) · {} feature(s) · {} mode(s) found",
            humantime::format_duration(Duration::from_secs(self.started.elapsed().as_secs())),
            self.schedules.len(),
            self.trials,
            self.features.len(),
            self.modes.len()
        );
        if self.progress.is_hidden() {
            if self.opts.progress {
                eprintln!("[explore] {msg}");
            }
        } else {
            self.progress.set_message(msg);
        }
    }

    /// Runs each of `schedules` `each` times on one stack; per schedule, the
    /// trials that ran (a run stops early when the stack does not come back).
    async fn run(
        &mut self,
        schedules: &[Schedule],
        each: u32,
        what: &str,
    ) -> Result<Vec<Vec<Observation>>, ExploreError> {
        self.runs += 1;
        let trials = schedules.len() as u32 * each;
        let text = scenario_text(&self.raw, schedules, Some(trials));
        let parsed =
            crate::scenario::parse_with(&self.plan.source_path, &text, self.plan.ports.clone())
                .map_err(|e| ExploreError::Generated(Box::new(e)))?;
        let mut plan = self.plan.clone();
        plan.faults = parsed.faults;
        plan.source_text = text;
        plan.run.trials = trials;
        plan.run.order = FaultOrder::RoundRobin;
        plan.slo.per_fault = false;
        let mut out = self
            .dir
            .join("runs")
            .join(format!("{:04}-{what}", self.runs));
        let mut opts = RunOptions {
            trials: Some(trials),
            out: Some(out.clone()),
            seed: Some(self.seed.wrapping_add(u64::from(self.runs))),
            progress: false,
            print_summary: false,
            // Log templates of every service known (on docker without a
            // service list, the targets): a new one is new behaviour.
            log_templates: plan
                .stack
                .service_names()
                .unwrap_or_else(|| plan.explore.targets.clone()),
            ..RunOptions::default()
        };
        // A stack that does not come up once (a port still held by the last
        // run, a slow engine) gets one more bring-up before the session stops.
        let mut retried = false;
        let o = loop {
            match runner::run_with(&plan, &opts, (self.build)(), self.cancel.clone()).await {
                Ok(o) => break o,
                Err(e @ (RunError::StackUp { .. } | RunError::NotHealthy { .. }))
                    if !retried && !self.cancel.is_cancelled() =>
                {
                    self.say(format!(
                        "run {} ({}): {e}; bringing the stack up once more",
                        self.runs,
                        out.display()
                    ));
                    retried = true;
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                        () = self.cancel.cancelled() => {}
                    }
                    out.set_file_name(format!("{:04}-{what}-again", self.runs));
                    opts.out = Some(out.clone());
                }
                Err(source) => {
                    return Err(ExploreError::Run {
                        what: format!("run {} ({})", self.runs, out.display()),
                        source: Box::new(source),
                    })
                }
            }
        };
        let mut by_trial: std::collections::HashMap<u32, Vec<Record>> = Default::default();
        crate::history::read(&out.join("history.jsonl"), |r| {
            if let Some(t) = r.trial {
                by_trial.entry(t).or_default().push(r);
            }
        })
        .map_err(|e| ExploreError::Run {
            what: format!("reading {}", out.display()),
            source: Box::new(RunError::History(e)),
        })?;
        let mut obs = vec![Vec::new(); schedules.len()];
        for t in &o.trials {
            self.trials += 1;
            let records = by_trial.remove(&t.trial).unwrap_or_default();
            let i = (t.trial as usize - 1) % schedules.len();
            obs[i].push(Observation {
                outcome: t.outcome,
                reason: t.reason.clone(),
                recovery_ms: t.recovery_ms,
                features: signature::features(t, &records),
                mode: signature::failure_mode(
                    t,
                    &records,
                    self.plan.slo.recover_within.as_secs_f64() * 1000.0,
                ),
                run_dir: out.clone(),
                trial: t.trial,
            });
        }
        Ok(obs)
    }

    /// `n` trials of `s`, over as many runs as it takes (a failure that leaves the
    /// stack broken ends its run).
    async fn trials_of(
        &mut self,
        s: &Schedule,
        n: u32,
        what: &str,
    ) -> Result<Vec<Observation>, ExploreError> {
        let mut got = Vec::new();
        let mut empty_runs = 0;
        while (got.len() as u32) < n && !self.cancel.is_cancelled() && empty_runs < 2 {
            let more = self
                .run(std::slice::from_ref(s), n - got.len() as u32, what)
                .await?
                .remove(0);
            empty_runs += u32::from(more.is_empty());
            got.extend(more);
        }
        Ok(got)
    }

    /// Whether `s` still fails as `key` in `k` trials (stops at the first such
    /// failure); `None` when cancelled before it could tell.
    async fn still_fails(
        &mut self,
        s: &Schedule,
        key: &str,
        k: u32,
    ) -> Result<Option<Observation>, ExploreError> {
        let mut runs_left = k;
        let mut seen = 0;
        while seen < k && runs_left > 0 && !self.cancel.is_cancelled() {
            runs_left -= 1;
            let obs = self
                .run(std::slice::from_ref(s), k - seen, "shrink")
                .await?
                .remove(0);
            seen += obs.len() as u32;
            if let Some(o) = obs.into_iter().find(|o| o.mode.as_deref() == Some(key)) {
                return Ok(Some(o));
            }
        }
        Ok(None)
    }

    /// Confirms, shrinks and writes a new failure mode.
    async fn investigate(
        &mut self,
        s: Schedule,
        first: Observation,
        found_at: u32,
    ) -> Result<(), ExploreError> {
        let key = first.mode.clone().unwrap_or_default();
        let number = self.modes.len() + 1;
        self.say(format!(
            "[explore] mode {number}: {key}\n          after {s}"
        ));
        // Confirm: its rate on fresh trials (the discovering one is not counted:
        // it was picked for failing).
        let confirm = self.trials_of(&s, self.opts.confirm, "confirm").await?;
        let k = confirm
            .iter()
            .filter(|o| o.mode.as_deref() == Some(key.as_str()))
            .count() as u64;
        let found_rate = Rate::of(k, confirm.len() as u64);
        // Re-runs per candidate for that rate; a failure not seen again in the
        // confirmation is rarer than 1 in (n + 1): as many re-runs as allowed.
        let rate_for_reruns = if k == 0 {
            1.0 / (confirm.len() as f64 + 1.0)
        } else {
            found_rate.value()
        };
        let reruns = shrink::reruns_for(rate_for_reruns).min(MAX_RERUNS);
        let mut log = Vec::new();
        let mut witness = first.clone();
        // Drop faults (ddmin), then simplify what is left.
        let mut steps = s.steps.clone();
        if steps.len() > 1 {
            let mut tests: Vec<(Vec<Step>, bool)> = Vec::new();
            steps = shrink::ddmin(steps, async |sub: Vec<Step>| {
                let cand = shrink::first_at_start(sub.clone());
                if let Some((_, r)) = tests.iter().find(|(t, _)| *t == cand.steps) {
                    return Ok::<bool, ExploreError>(*r);
                }
                // Cut short (Ctrl-C) or out of candidates: keep what we have.
                if self.cancel.is_cancelled() || tests.len() >= MAX_CANDIDATES {
                    return Ok(false);
                }
                let hit = self.still_fails(&cand, &key, reruns).await?;
                if self.cancel.is_cancelled() && hit.is_none() {
                    return Ok(false);
                }
                let r = hit.is_some();
                log.push(format!("{} {cand}", if r { "kept   " } else { "dropped" }));
                if let Some(o) = hit {
                    witness = o;
                }
                tests.push((cand.steps.clone(), r));
                Ok(r)
            })
            .await?;
            steps = shrink::first_at_start(steps).steps;
        }
        let mut current = Schedule::of(steps);
        'simplify: while !self.cancel.is_cancelled() {
            for cand in shrink::simpler(&current, MIN_DURATION) {
                if log.len() >= MAX_CANDIDATES {
                    break 'simplify;
                }
                let hit = self.still_fails(&cand, &key, reruns).await?;
                if self.cancel.is_cancelled() && hit.is_none() {
                    break 'simplify;
                }
                log.push(format!(
                    "{} {cand}",
                    if hit.is_some() { "kept   " } else { "dropped" }
                ));
                if let Some(o) = hit {
                    witness = o;
                    current = cand;
                    continue 'simplify;
                }
                if self.cancel.is_cancelled() {
                    break 'simplify;
                }
            }
            break;
        }
        let incomplete = self.cancel.is_cancelled();
        // The shrunk schedule's own rate: what the emitted scenario reproduces.
        let (rate, run_dir, trial) = if incomplete {
            (found_rate, witness.run_dir.clone(), Some(witness.trial))
        } else {
            let obs = self.trials_of(&current, self.opts.confirm, "rate").await?;
            let fails: Vec<&Observation> = obs
                .iter()
                .filter(|o| o.mode.as_deref() == Some(key.as_str()))
                .collect();
            let at = fails
                .first()
                .map_or((witness.run_dir.clone(), Some(witness.trial)), |o| {
                    (o.run_dir.clone(), Some(o.trial))
                });
            (Rate::of(fails.len() as u64, obs.len() as u64), at.0, at.1)
        };
        let file = self.write_mode(number, &current, &key, &rate)?;
        self.say(format!(
            "[explore] mode {number} shrunk to {} fault(s): {current} · reproduces {}/{} · {}",
            current.steps.len(),
            rate.failures,
            rate.trials,
            file.display()
        ));
        self.modes.push(Mode {
            number,
            key,
            reason: first.reason,
            found: s,
            found_at,
            found_rate,
            shrunk: current,
            rate,
            reruns,
            file,
            run_dir,
            trial,
            shrink_log: log,
            incomplete,
        });
        self.tick();
        Ok(())
    }

    /// Writes `modes/mode-N.toml`: the scenario with the shrunk schedule as its
    /// only fault, relative paths rewritten for its new directory.
    fn write_mode(
        &self,
        number: usize,
        s: &Schedule,
        key: &str,
        rate: &Rate,
    ) -> Result<PathBuf, ExploreError> {
        let path = self.dir.join("modes").join(format!("mode-{number}.toml"));
        let mut raw = self.raw.clone();
        raw.remove("explore");
        let name = format!("{}-mode-{number}", self.plan.name);
        raw.insert("name".into(), name.into());
        raw.insert(
            "description".into(),
            format!(
                "Found by `rebound explore` (seed {}) on scenario `{}`: {key}.\n\
                 Schedule: {s}.\nReproduced in {}/{} trials (95 % interval {:.0}–{:.0} %).\n",
                self.seed,
                self.plan.name,
                rate.failures,
                rate.trials,
                rate.low * 100.0,
                rate.high * 100.0
            )
            .into(),
        );
        raw.remove("story");
        rebase_paths(&mut raw, &self.plan.base_dir, &self.dir.join("modes"));
        // The replay's own schedule seed (its warm-up jitter), recorded.
        if let Some(run) = raw
            .entry("run")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
        {
            match i64::try_from(self.seed) {
                Ok(seed) => run.insert("seed".into(), seed.into()),
                Err(_) => run.remove("seed"),
            };
        }
        let text = format!(
            "# Written by `rebound explore`: replay with `rebound run {}`.\n{}",
            path.display(),
            scenario_text(&raw, std::slice::from_ref(s), None)
        );
        std::fs::write(&path, &text).map_err(|source| ExploreError::Io {
            path: path.clone(),
            source,
        })?;
        crate::scenario::parse_with(&path, &text, self.plan.ports.clone())
            .map_err(|e| ExploreError::Generated(Box::new(e)))?;
        Ok(path)
    }
}

/// Rewrites the relative paths of a scenario table (compose files, programs and
/// working directories of process services, `${scenario_dir}`) from `from` (the
/// original's directory) to `to` (where the copy is written).
fn rebase_paths(raw: &mut toml::Table, from: &Path, to: &Path) {
    // Canonical: `..` and symlinks resolved, so the components compare.
    let canonical = |p: &Path| {
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let rel = relative(&canonical(from), &canonical(to));
    let rebased = |s: &str| -> Option<String> {
        (Path::new(s).is_relative() && !s.starts_with("${"))
            .then(|| rel.join(s).display().to_string())
    };
    let fix = |v: &mut toml::Value| {
        if let Some(new) = v.as_str().and_then(rebased) {
            *v = new.into();
        }
    };
    let Some(stack) = raw.get_mut("stack").and_then(|s| s.as_table_mut()) else {
        return;
    };
    if let Some(v) = stack.get_mut("compose") {
        fix(v);
    }
    if let Some(list) = stack
        .get_mut("compose-overrides")
        .and_then(|v| v.as_array_mut())
    {
        list.iter_mut().for_each(fix);
    }
    let dir = format!("${{scenario_dir}}/{}", rel.display());
    let Some(services) = stack.get_mut("service").and_then(|v| v.as_array_mut()) else {
        return;
    };
    for svc in services.iter_mut().filter_map(|s| s.as_table_mut()) {
        // `${scenario_dir}` anywhere in the service (command, env, workdir).
        for (_, v) in svc.iter_mut() {
            replace_strings(v, &|s| s.replace("${scenario_dir}", &dir));
        }
        // A program named by a relative path resolves against the scenario's
        // directory, and so does a missing or relative working directory.
        if let Some(program) = svc
            .get_mut("command")
            .and_then(|v| v.as_array_mut())
            .and_then(|c| c.first_mut())
        {
            if program.as_str().is_some_and(|p| p.contains('/')) {
                fix(program);
            }
        }
        match svc.get_mut("workdir") {
            Some(v) => fix(v),
            None => {
                svc.insert("workdir".into(), dir.clone().into());
            }
        }
    }
}

/// Applies `f` to every string inside `v`.
fn replace_strings(v: &mut toml::Value, f: &dyn Fn(&str) -> String) {
    match v {
        toml::Value::String(s) => *s = f(s),
        toml::Value::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, f)),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| replace_strings(x, f)),
        _ => {}
    }
}

/// The path from directory `to` to directory `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..t.len() {
        out.push("..");
    }
    for c in &f[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn progress_bar(show: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let p = indicatif::ProgressBar::new_spinner();
    p.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    p.enable_steady_tick(Duration::from_millis(200));
    p
}

#[cfg(test)]
mod tests;
