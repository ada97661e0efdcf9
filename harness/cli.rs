//! The command line: clap types, one function per command, and the one place where
//! an error becomes a message and a documented exit code ([`CliError::exit_status`];
//! see `rebound::exit`). Usage errors exit 3, never 2.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rebound::analysis::AnalysisError;
use rebound::exit::ExitStatus;
use rebound::merge::MergeError;
use rebound::report::{render_console, ReportError};
use rebound::run_dir::RunDirError;
use rebound::runner::{self, RunError, RunOptions};
use rebound::scenario::{self, ScenarioError};

/// Everything a command can fail with; each maps to one documented exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag value or the working directory is not usable.
    #[error("{0}")]
    Usage(String),
    /// The scenario file is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A run directory cannot be read.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// The baseline given with `--baseline` cannot be read.
    #[error("baseline: {0}")]
    Baseline(AnalysisError),
    /// A baseline could not be stored.
    #[error("saving baseline `{name}`: {source}")]
    SaveBaseline {
        /// The baseline name.
        name: String,
        /// Why.
        source: RunDirError,
    },
    /// An A/B run could not finish.
    #[error(transparent)]
    Ab(#[from] rebound::ab::AbError),
    /// An explore session could not go on.
    #[error(transparent)]
    Explore(#[from] rebound::explore::ExploreError),
    /// Runs could not be merged.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// Reports could not be rewritten.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The run failed before it could decide.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A swarm run could not go on.
    #[error(transparent)]
    Swarm(#[from] rebound::swarm::SwarmError),
    /// The async runtime or an external tool could not be started.
    #[error("{0}")]
    Environment(String),
}

impl CliError {
    /// The documented exit status of this error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            CliError::Usage(_)
            | CliError::Scenario(_)
            | CliError::Analysis(_)
            | CliError::Baseline(_)
            | CliError::SaveBaseline { .. }
            | CliError::Merge(_)
            | CliError::Report(_) => ExitStatus::Invalid,
            CliError::Run(e) => e.exit_status(),
            CliError::Ab(e) => e.exit_status(),
            CliError::Explore(e) => e.exit_status(),
            CliError::Swarm(e) => e.exit_status(),
            CliError::Environment(_) => ExitStatus::StackFailure,
        }
    }
}

type Outcome = Result<ExitStatus, CliError>;

/// Restart-reliability chaos testing: inject faults, measure every recovery,
/// decide the SLO with honest statistics.
#[derive(Debug, Parser)]
#[command(name = "rebound", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 SLO met · 1 SLO violated · 2 inconclusive · 3 invalid scenario or usage · 4 stack could not be brought up or healed · 130 interrupted";

const DEFAULT_SCENARIO: &str = "scenarios/quickstart.toml";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario: trials, measurements, verdict, run directory.
    Run {
        /// Scenario file (default: scenarios/quickstart.toml).
        scenario: Option<PathBuf>,
        /// Number of trials (overrides [run] trials).
        #[arg(long)]
        trials: Option<u32>,
        /// Run directory (default: reports/<scenario>/<run-id>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed for fault order and jitter (recorded; replays the schedule).
        #[arg(long)]
        seed: Option<u64>,
        /// Never draw a progress bar.
        #[arg(long)]
        no_progress: bool,
        /// docker backend: leave the compose stack running after the run.
        #[arg(long)]
        keep: bool,
        /// Stop as soon as the success-rate verdict is PASS or FAIL (sequential rule).
        #[arg(long)]
        until_decided: bool,
        /// With --until-decided: the most trials to run (default: the scenario's trials).
        #[arg(long, requires = "until_decided")]
        max_trials: Option<u32>,
        /// Compare with this baseline run directory afterwards; exit 1 on a regression.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Store this run as reports/baselines/NAME.
        #[arg(long, value_name = "NAME")]
        save_baseline: Option<String>,
        /// Run only shard i of n of the trials (e.g. 2/4); merge shards with `rebound merge`.
        #[arg(long, value_parser = parse_shard, value_name = "I/N")]
        shard: Option<(u32, u32)>,
        /// First heal what killed runs of this scenario left behind (else they stop the run).
        #[arg(long)]
        heal_stale: bool,
        /// Evidence ledger: decide the success rate on the trials of every earlier
        /// run of this scenario recorded in FILE too (anytime-valid), then add this run.
        #[arg(long, value_name = "FILE")]
        evidence: Option<PathBuf>,
    },
    /// How many trials the scenario's SLO needs (fixed and sequential design), what
    /// its planned trials can prove, and the wall time a pilot run predicts.
    Plan {
        /// Scenario file (default: scenarios/quickstart.toml).
        scenario: Option<PathBuf>,
        /// A pilot run directory: estimate wall time from its trial durations.
        #[arg(long, value_name = "RUN_DIR")]
        from: Option<PathBuf>,
        /// The sequential design's cap (default: 5× the fixed design's clean trials).
        #[arg(long)]
        max_trials: Option<u64>,
    },
    /// Search fault schedules (several faults per trial, on timers and events) for
    /// failures; confirm, shrink and write each failure mode as a scenario.
    Explore {
        /// Scenario file: its stack, probes, workloads and SLO (its faults are not used).
        scenario: PathBuf,
        /// How long to search (a failure found in time is still confirmed and shrunk).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "20m")]
        budget: std::time::Duration,
        /// Seed of the schedule generator (recorded; the same seed tries the same schedules).
        #[arg(long)]
        seed: Option<u64>,
        /// Most faults per schedule (default: [explore] max-faults, else 3).
        #[arg(long)]
        max_faults: Option<usize>,
        /// Stop after this many schedules.
        #[arg(long)]
        max_schedules: Option<u32>,
        /// Stop once this many failure modes were found.
        #[arg(long)]
        max_modes: Option<usize>,
        /// Schedules per stack bring-up.
        #[arg(long, default_value_t = 4)]
        batch: u32,
        /// Trials that estimate a failure mode's reproduction rate.
        #[arg(long, default_value_t = 6)]
        confirm: u32,
        /// Output directory (default: reports/<scenario>/explore-<time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Never draw a progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Undo what runs killed mid-fault left behind (paused, cut off, filled, stopped
    /// services; stacks not torn down), from their fault journals.
    Heal {
        /// Run directories (default: every unfinished run in the index).
        run_dirs: Vec<PathBuf>,
        /// Every unfinished run in the index (the default without run directories).
        #[arg(long)]
        all: bool,
    },
    /// Merge runs of one scenario (e.g. shards) into one run directory and verdict.
    Merge {
        /// Run directories to merge.
        #[arg(required = true, num_args = 2..)]
        run_dirs: Vec<PathBuf>,
        /// Output run directory.
        #[arg(long)]
        out: PathBuf,
        /// Evidence ledger: decide on its earlier runs plus the merged trials, and
        /// add the merged run to it (the shards' own lines are never counted twice).
        #[arg(long, value_name = "FILE")]
        evidence: Option<PathBuf>,
    },
    /// Interleaved A/B run: baseline and candidate trials alternate in ABBA blocks in
    /// one session (same schedule, same seed), then the two sides are compared.
    Ab {
        /// The baseline scenario.
        baseline: PathBuf,
        /// The candidate scenario.
        candidate: PathBuf,
        /// Trials per side (default: the baseline's [run] trials).
        #[arg(long)]
        trials: Option<u32>,
        /// Trials per block (default 1).
        #[arg(long, default_value_t = 1)]
        block: u32,
        /// Output directory (default: reports/ab/<time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Schedule seed shared by both sides.
        #[arg(long)]
        seed: Option<u64>,
        /// Relative change of recovery figures treated as noise.
        #[arg(long, default_value_t = 0.05)]
        noise: f64,
    },
    /// Compare a run with a baseline: Improved / Regressed / No change per figure.
    Compare {
        /// The baseline run directory.
        baseline: PathBuf,
        /// The run directory to judge.
        run_dir: PathBuf,
        /// Relative change of recovery figures treated as noise.
        #[arg(long, default_value_t = 0.05)]
        noise: f64,
    },
    /// Run rebound's TCP fault proxy on its own (the `rebound/proxy` image that a
    /// compose file puts in front of a dependency); faults are set through its HTTP
    /// control API (GET /links, PUT /links/NAME).
    Proxy {
        /// A link NAME=LISTEN=UPSTREAM, e.g. app-db=0.0.0.0:5432=db:5432 (repeatable;
        /// the upstream host is resolved again for every connection).
        #[arg(long = "link", required = true, value_parser = rebound::proxy::control::parse_link, value_name = "NAME=LISTEN=UPSTREAM")]
        links: Vec<(String, std::net::SocketAddr, String)>,
        /// Where the control API listens.
        #[arg(long, default_value = "0.0.0.0:8474")]
        control: std::net::SocketAddr,
    },
    /// Check everything a run depends on (engine, compose, images, kernel,
    /// privileges, ports, disk): one line each with its fix; exit 0 when the
    /// scenario (default: any docker scenario) can run, 4 when it cannot.
    Doctor {
        /// Scenario file: check what it needs (faults, images, ports).
        scenario: Option<PathBuf>,
    },
    /// Build the demo images offline (runs docker/images/build.sh).
    Images {
        /// Rebuild even when the recipe did not change.
        #[arg(long)]
        force: bool,
    },
    /// Validate scenario files; prints one line per file.
    Validate {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the scenarios of a directory with their descriptions.
    List {
        /// Directory to scan.
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
    },
    /// Re-analyse a run directory offline (history.jsonl + scenario.toml).
    Check {
        /// A run directory written by `rebound run`.
        run_dir: PathBuf,
    },
    /// Re-render every report of a run directory from history.jsonl (no stack needed).
    Report {
        /// A run directory written by `rebound run`.
        run_dir: PathBuf,
    },
    /// Shards of one scenario as Docker Swarm jobs, merged into one verdict.
    Swarm {
        #[command(subcommand)]
        action: SwarmCommand,
    },
    /// Print a Kubernetes Indexed Job (one pod per shard) and its collection step.
    K8sJob {
        /// Scenario file.
        scenario: PathBuf,
        /// Shards (the Job's completions).
        #[arg(long)]
        shards: u32,
        /// Pods at once (default: all).
        #[arg(long)]
        parallel: Option<u32>,
        /// Image holding rebound (pushed to the cluster's registry).
        #[arg(long, default_value = rebound::swarm::IMAGE)]
        image: String,
        /// Kubernetes namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
    },
    /// Turn the logs of a k8s-job's pods (each ending with its run bundle) into one
    /// merged run directory and verdict.
    K8sCollect {
        /// One log per shard.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Merged run directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the bundled demo service (the quick start's system under test).
    #[cfg(feature = "demo")]
    #[command(hide = true)]
    DemoApp(Box<demo_app::Args>),
}

/// `rebound swarm …`.
#[derive(Debug, clap::Subcommand)]
enum SwarmCommand {
    /// Run SCENARIO as N shards on the swarm this engine manages; merge them into one
    /// run directory (default reports/<scenario>/swarm-<id>) and verdict.
    Run {
        /// Scenario file.
        scenario: PathBuf,
        /// Shards (one swarm job each).
        #[arg(long)]
        shards: u32,
        /// Shards running at once (default: all).
        #[arg(long)]
        parallel: Option<u32>,
        /// Trials in all (overrides [run] trials; split among the shards).
        #[arg(long)]
        trials: Option<u32>,
        /// Schedule seed (every shard runs its part of one schedule).
        #[arg(long)]
        seed: Option<u64>,
        /// Merged run directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The image shards run in.
        #[arg(long, default_value = rebound::swarm::IMAGE)]
        image: String,
        /// No progress lines.
        #[arg(long)]
        no_progress: bool,
    },
    /// Tasks and trials so far of every swarm run (or of ID).
    Status {
        /// Swarm run id (printed by `swarm run`).
        id: Option<String>,
    },
    /// Stop every task of swarm run ID (of every swarm run without one): each shard
    /// heals its faults and tears its stack down; a killed one is healed from its
    /// journal.
    Stop {
        /// Swarm run id.
        id: Option<String>,
    },
    /// One shard inside its swarm task (what `swarm run` starts).
    #[command(hide = true)]
    Task {
        /// Scenario file.
        scenario: PathBuf,
        /// This shard.
        #[arg(long, value_parser = parse_shard, value_name = "I/N")]
        shard: (u32, u32),
        /// Run directory on the node.
        #[arg(long)]
        out: PathBuf,
        /// Trials in all.
        #[arg(long)]
        trials: Option<u32>,
        /// Schedule seed.
        #[arg(long)]
        seed: Option<u64>,
        /// The image of the shard's own container.
        #[arg(long)]
        image: Option<String>,
    },
}

fn cmd_swarm(action: SwarmCommand) -> Outcome {
    use rebound::swarm;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Environment(format!("starting the async runtime: {e}")))?;
    match action {
        SwarmCommand::Run {
            scenario,
            shards,
            parallel,
            trials,
            seed,
            out,
            image,
            no_progress,
        } => {
            let plan = scenario::load(&scenario)?;
            let opts = swarm::SwarmOptions {
                shards,
                parallel,
                out,
                reports_root: PathBuf::from("reports"),
                image,
                trials,
                seed,
                progress: !no_progress,
            };
            let o = runtime.block_on(async {
                let cancel = tokio_util::sync::CancellationToken::new();
                let watcher = rebound::runner::interrupt_watcher(cancel.clone());
                let o = swarm::run(&plan, &opts, cancel).await;
                watcher.abort();
                o
            })?;
            print!("{}", render_console(&o.summary, &o.trials));
            println!("merged run of swarm run {}: {}", o.id, o.out.display());
            Ok(o.summary.verdict.exit_status())
        }
        SwarmCommand::Status { id } => {
            let runs = runtime.block_on(swarm::status(id.as_deref()))?;
            if runs.is_empty() {
                println!("no swarm run on this swarm");
            }
            for (run, shards) in runs {
                println!("swarm run {run}");
                for s in shards {
                    println!(
                        "  shard {:<3} {:<10} {:<16} {:>4} trial(s){}",
                        s.shard,
                        s.state,
                        s.node,
                        s.trials,
                        s.error.map(|e| format!("  {e}")).unwrap_or_default()
                    );
                }
            }
            Ok(ExitStatus::SloMet)
        }
        SwarmCommand::Stop { id } => {
            let lines = runtime.block_on(swarm::stop(id.as_deref()))?;
            let failed = lines.iter().any(|l| l.starts_with("error"));
            for l in lines {
                println!("{l}");
            }
            Ok(if failed {
                ExitStatus::StackFailure
            } else {
                ExitStatus::SloMet
            })
        }
        SwarmCommand::Task {
            scenario,
            shard,
            out,
            trials,
            seed,
            image,
        } => {
            let args = swarm::TaskArgs {
                scenario,
                shard,
                out,
                trials,
                seed,
                image,
            };
            let code = runtime.block_on(swarm::task(&args));
            std::process::exit(code);
        }
    }
}

fn init_tracing(verbose: u8) {
    // fuser warns "Unmount failed" when its session ends after rebound has
    // already unmounted (or detached) the layer itself, and errs "Failed to send
    // FUSE reply" for a request a power cut aborted: both expected, not news (the
    // layer's own failures reach rebound as errors). RUST_LOG=fuser=warn shows them.
    let default = match verbose {
        0 => "warn,fuser=off",
        1 => "rebound=info",
        _ => "rebound=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn exit(status: ExitStatus) -> ExitCode {
    ExitCode::from(status.code())
}

/// Parses the command line, runs the command, prints an error once, and returns the
/// documented exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit(ExitStatus::Invalid)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    #[cfg(feature = "demo")]
    if let Command::DemoApp(args) = cli.command {
        return demo_app::main_with(*args);
    }
    init_tracing(cli.verbose);
    match dispatch(cli.command) {
        Ok(status) => exit(status),
        Err(e) => {
            eprintln!("error: {e}");
            exit(e.exit_status())
        }
    }
}

fn dispatch(command: Command) -> Outcome {
    match command {
        Command::Run {
            scenario,
            trials,
            out,
            seed,
            no_progress,
            keep,
            until_decided,
            max_trials,
            baseline,
            save_baseline,
            shard,
            heal_stale,
            evidence,
        } => cmd_run(
            scenario,
            baseline.as_deref(),
            save_baseline.as_deref(),
            RunOptions {
                trials: max_trials.or(trials),
                until_decided,
                shard,
                out,
                seed,
                keep,
                progress: !no_progress,
                heal_stale,
                evidence,
                ..RunOptions::default()
            },
        ),
        Command::Heal { run_dirs, all } => cmd_heal(&run_dirs, all),
        Command::Explore {
            scenario,
            budget,
            seed,
            max_faults,
            max_schedules,
            max_modes,
            batch,
            confirm,
            out,
            no_progress,
        } => cmd_explore(
            &scenario,
            rebound::explore::ExploreOptions {
                budget,
                seed,
                max_faults,
                max_schedules,
                max_modes,
                batch,
                confirm,
                out,
                progress: !no_progress,
                ..rebound::explore::ExploreOptions::default()
            },
        ),
        Command::Images { force } => cmd_images(force),
        Command::Doctor { scenario } => cmd_doctor(scenario.as_deref()),
        Command::Proxy { links, control } => cmd_proxy(&links, control),
        Command::Validate { files } => Ok(cmd_validate(&files)),
        Command::List { dir } => cmd_list(&dir),
        Command::Check { run_dir } => cmd_check(&run_dir),
        Command::Plan {
            scenario,
            from,
            max_trials,
        } => cmd_plan(scenario, from.as_deref(), max_trials),
        Command::Report { run_dir } => cmd_report(&run_dir),
        Command::Compare {
            baseline,
            run_dir,
            noise,
        } => cmd_compare(&baseline, &run_dir, noise),
        Command::Ab {
            baseline,
            candidate,
            trials,
            block,
            out,
            seed,
            noise,
        } => cmd_ab(&baseline, &candidate, trials, block, out, seed, noise),
        Command::Merge {
            run_dirs,
            out,
            evidence,
        } => {
            let (summary, trials) = rebound::merge::merge(&run_dirs, &out, evidence.as_deref())?;
            print!("{}", render_console(&summary, &trials));
            Ok(summary.verdict.exit_status())
        }
        Command::Swarm { action } => cmd_swarm(action),
        Command::K8sCollect { logs, out } => {
            let (summary, trials) = rebound::swarm::collect_logs(&logs, &out)?;
            print!("{}", render_console(&summary, &trials));
            Ok(summary.verdict.exit_status())
        }
        Command::K8sJob {
            scenario,
            shards,
            parallel,
            image,
            namespace,
        } => {
            let plan = scenario::load(&scenario)?;
            plan.ports.release();
            let text = rebound::k8s::job(
                &plan,
                &rebound::k8s::JobOptions {
                    shards,
                    parallel,
                    image,
                    namespace,
                },
            )
            .map_err(CliError::Usage)?;
            print!("{text}");
            Ok(ExitStatus::SloMet)
        }
        #[cfg(feature = "demo")]
        Command::DemoApp(_) => unreachable!("handled in main"),
    }
}

fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 2/4")?;
    let (i, n): (u32, u32) = (
        i.trim().parse().map_err(|_| "I is not a number")?,
        n.trim().parse().map_err(|_| "N is not a number")?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(format!("{i}/{n}: need 1 ≤ I ≤ N"));
    }
    Ok((i, n))
}

fn compare_config(noise: f64) -> Option<rebound::compare::CompareConfig> {
    (noise.is_finite() && noise >= 0.0).then(|| rebound::compare::CompareConfig {
        noise,
        ..Default::default()
    })
}

fn cmd_compare(baseline: &Path, run_dir: &Path, noise: f64) -> Outcome {
    let cfg = compare_config(noise).ok_or_else(|| {
        CliError::Usage(format!(
            "--noise must be a non-negative number, got {noise}"
        ))
    })?;
    let (bs, bt) = rebound::analysis::reanalyse(baseline)?;
    let (rs, rt) = rebound::analysis::reanalyse(run_dir)?;
    if bs.scenario != rs.scenario {
        eprintln!(
            "warning: comparing scenario `{}` with `{}`",
            bs.scenario, rs.scenario
        );
    }
    let c = rebound::compare::compare(&bt, &rt, &cfg);
    print!(
        "{}",
        rebound::compare::render(
            &c,
            &format!("{} ({} trials)", bs.run_id, bt.len()),
            &format!("{} ({} trials)", rs.run_id, rt.len())
        )
    );
    Ok(if c.regressed {
        ExitStatus::SloViolated
    } else {
        ExitStatus::SloMet
    })
}

/// Copies the files that describe a run (not logs or service data) to `reports/baselines/NAME`.
fn save_baseline(run_dir: &Path, name: &str) -> Result<PathBuf, rebound::run_dir::RunDirError> {
    let dest = Path::new("reports/baselines").join(name);
    rebound::run_dir::RunDir::open(run_dir)?.copy_describing(&dest)?;
    Ok(dest)
}

fn cmd_run(
    scenario: Option<PathBuf>,
    baseline: Option<&Path>,
    save_as: Option<&str>,
    opts: RunOptions,
) -> Outcome {
    if let Some(name) = save_as {
        rebound::scenario::check_name(name)
            .map_err(|m| CliError::Usage(format!("--save-baseline `{name}`: {m}")))?;
    }
    // Check the baseline before spending a run on it.
    let baseline_trials = baseline
        .map(|b| rebound::analysis::reanalyse(b).map_err(CliError::Baseline))
        .transpose()?
        .map(|(s, t)| (s.run_id, t));
    let path = scenario.unwrap_or_else(|| PathBuf::from(DEFAULT_SCENARIO));
    if !path.exists() && path == Path::new(DEFAULT_SCENARIO) {
        return Err(CliError::Usage(format!("no scenario given and {DEFAULT_SCENARIO} does not exist here; run from the repository root or pass a scenario file")));
    }
    let plan = scenario::load(&path)?;
    for w in scenario::lint(&plan) {
        eprintln!("warning: {w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Environment(format!("starting the async runtime: {e}")))?;
    let outcome = match runtime.block_on(runner::run(&plan, &opts)) {
        Ok(o) => o,
        Err(e) => {
            // A stack that does not come up is often the machine: say doctor's
            // first finding, with its fix.
            if matches!(e, RunError::StackUp { .. } | RunError::NotHealthy { .. }) {
                let d = runtime.block_on(rebound::doctor::diagnose(
                    Some(&plan),
                    Some(Path::new(IMAGES_SCRIPT)),
                ));
                if let Some(f) = d.first_error() {
                    eprintln!(
                        "doctor: {}: {}{}",
                        f.name,
                        f.detail,
                        f.fix
                            .as_ref()
                            .map(|x| format!(" (fix: {x})"))
                            .unwrap_or_default()
                    );
                }
            }
            return Err(e.into());
        }
    };
    if let Some(name) = save_as {
        let dest = save_baseline(&outcome.summary.run_dir, name).map_err(|source| {
            CliError::SaveBaseline {
                name: name.to_string(),
                source,
            }
        })?;
        eprintln!("baseline saved: {}", dest.display());
    }
    if let Some((label, trials)) = baseline_trials {
        let c = rebound::compare::compare(
            &trials,
            &outcome.trials,
            &rebound::compare::CompareConfig::default(),
        );
        print!(
            "{}",
            rebound::compare::render(&c, &label, &outcome.summary.run_id)
        );
        if c.regressed && outcome.exit != ExitStatus::Interrupted {
            return Ok(ExitStatus::SloViolated);
        }
    }
    Ok(outcome.exit)
}

fn cmd_explore(path: &Path, opts: rebound::explore::ExploreOptions) -> Outcome {
    let plan = scenario::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Environment(format!("starting the async runtime: {e}")))?;
    let stack = plan.stack.clone();
    let build: rebound::explore::BuildFactory<'_> = Box::new(move || {
        let stack = stack.clone();
        Box::new(move |ctx| {
            use futures_util::FutureExt;
            async move { rebound::stack::build(&stack, ctx).await }.boxed()
        })
    });
    let o = runtime.block_on(async {
        // Ctrl-C between runs stops the session (during a run, the run heals first).
        let cancel = tokio_util::sync::CancellationToken::new();
        let watcher = rebound::runner::interrupt_watcher(cancel.clone());
        let o = rebound::explore::explore(&plan, &opts, build, cancel).await;
        watcher.abort();
        o
    })?;
    print!("{}", rebound::explore::report::render_console(&o));
    Ok(o.exit)
}

fn cmd_heal(run_dirs: &[PathBuf], all: bool) -> Outcome {
    use rebound::journal;
    let pending: Vec<journal::Pending> = if run_dirs.is_empty() || all {
        let mut p = journal::stale();
        for d in run_dirs {
            p.push(journal::read(d).map_err(|e| CliError::Usage(e.to_string()))?);
        }
        p
    } else {
        run_dirs
            .iter()
            .map(|d| journal::read(d).map_err(|e| CliError::Usage(e.to_string())))
            .collect::<Result<_, _>>()?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Environment(format!("starting the async runtime: {e}")))?;
    let mut status = ExitStatus::SloMet;
    let orphaned = if run_dirs.is_empty() || all {
        journal::orphaned()
    } else {
        Vec::new()
    };
    for (run_id, run_dir) in &orphaned {
        println!(
            "run {run_id}: its run directory {} (and fault journal) is gone; dropped from the index — anything it left behind carries the label rebound.run={run_id}",
            run_dir.display()
        );
        journal::forget(run_id);
    }
    if orphaned.is_empty() && pending.iter().all(journal::Pending::is_clean) {
        println!("nothing to heal");
    }
    for p in pending.iter().filter(|p| !p.is_clean()) {
        println!("{}", rebound::heal::describe(p));
        match runtime.block_on(rebound::heal::heal(p)) {
            Ok(done) => {
                for d in &done {
                    println!("  {d}");
                }
                println!("  healed");
            }
            Err(e) => {
                eprintln!("error: {e}");
                status = ExitStatus::StackFailure;
            }
        }
    }
    Ok(status)
}

fn cmd_proxy(
    links: &[(String, std::net::SocketAddr, String)],
    control: std::net::SocketAddr,
) -> Outcome {
    use rebound::proxy::{control as api, Proxy};
    let mut names = std::collections::HashSet::new();
    if let Some((dup, ..)) = links.iter().find(|(n, ..)| !names.insert(n.clone())) {
        return Err(CliError::Usage(format!(
            "--link {dup}: link names must be unique"
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Environment(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async {
        let mut proxies = Vec::new();
        for (name, listen, upstream) in links {
            let p = Proxy::bind(name, *listen, upstream).await.map_err(|e| {
                CliError::Environment(format!("link {name}: cannot listen on {listen}: {e}"))
            })?;
            eprintln!(
                "rebound proxy: link {name}: {} → {upstream}",
                p.local_addr()
            );
            proxies.push(p);
        }
        let listener = tokio::net::TcpListener::bind(control).await.map_err(|e| {
            CliError::Environment(format!("control API: cannot listen on {control}: {e}"))
        })?;
        eprintln!("rebound proxy: control API on {control} (GET /links, PUT /links/NAME)");
        let server = tokio::spawn(api::serve(listener, api::Links::new(proxies, true)));
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| CliError::Environment(format!("installing a SIGTERM handler: {e}")))?;
        let mut hup = signal(SignalKind::hangup())
            .map_err(|e| CliError::Environment(format!("installing a SIGHUP handler: {e}")))?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        server.abort();
        eprintln!("rebound proxy: stopping");
        Ok(ExitStatus::SloMet)
    })
}

/// The image build script, relative to the repository root.
const IMAGES_SCRIPT: &str = "docker/images/build.sh";

fn cmd_doctor(scenario: Option<&Path>) -> Outcome {
    let plan = scenario.map(scenario::load).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Environment(format!("starting the async runtime: {e}")))?;
    let d = runtime.block_on(rebound::doctor::diagnose(
        plan.as_ref(),
        Some(Path::new(IMAGES_SCRIPT)),
    ));
    if let Some(p) = &plan {
        p.ports.release();
    }
    let title = scenario.map_or("this machine (docker scenarios)".to_string(), |s| {
        format!("scenario {}", s.display())
    });
    print!("{}", d.render(&title));
    Ok(if d.can_run() {
        ExitStatus::SloMet
    } else {
        ExitStatus::StackFailure
    })
}

fn cmd_images(force: bool) -> Outcome {
    let script = Path::new(IMAGES_SCRIPT);
    if !script.is_file() {
        return Err(CliError::Usage(format!(
            "{} not found; run from the repository root",
            script.display()
        )));
    }
    let mut cmd = std::process::Command::new(script);
    if force {
        cmd.arg("--force");
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(ExitStatus::SloMet),
        Ok(s) => Err(CliError::Environment(format!("image build failed ({s})"))),
        Err(e) => Err(CliError::Environment(format!(
            "cannot run {}: {e}",
            script.display()
        ))),
    }
}

/// One line per file; invalid files are reported and make the status 3.
fn cmd_validate(files: &[PathBuf]) -> ExitStatus {
    let mut status = ExitStatus::SloMet;
    for f in files {
        match scenario::load(f) {
            Ok(plan) => {
                plan.ports.release(); // nothing runs: the host ports it took go back
                println!(
                    "ok: {} ({}: {} fault(s), {} probe(s), {} workload(s), {} trials)",
                    f.display(),
                    plan.name,
                    plan.faults.len(),
                    plan.probes.len(),
                    plan.workloads.len(),
                    plan.run.trials
                );
                for w in scenario::lint(&plan) {
                    eprintln!("warning: {}: {w}", f.display());
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                status = ExitStatus::Invalid;
            }
        }
    }
    status
}

fn cmd_list(dir: &Path) -> Outcome {
    let entries =
        std::fs::read_dir(dir).map_err(|e| CliError::Usage(format!("{}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut status = ExitStatus::SloMet;
    for f in files {
        match scenario::load(&f) {
            Ok(plan) => {
                plan.ports.release();
                // A field story says best what the scenario is for; else the description.
                let about = plan
                    .story
                    .as_deref()
                    .unwrap_or_else(|| plan.description.lines().next().unwrap_or(""));
                println!("{:<28} {:<44} {about}", plan.name, f.display());
            }
            Err(e) => {
                println!("{:<28} {:<40} INVALID: {e}", "?", f.display());
                status = ExitStatus::Invalid;
            }
        }
    }
    Ok(status)
}

fn cmd_report(run_dir: &Path) -> Outcome {
    let (summary, trials) = rebound::analysis::reanalyse(run_dir)?;
    rebound::report::rewrite_all(run_dir, &summary, &trials)?;
    print!("{}", render_console(&summary, &trials));
    Ok(summary.verdict.exit_status())
}

fn cmd_ab(
    baseline: &Path,
    candidate: &Path,
    trials: Option<u32>,
    block: u32,
    out: Option<PathBuf>,
    seed: Option<u64>,
    noise: f64,
) -> Outcome {
    let cfg = compare_config(noise).ok_or_else(|| {
        CliError::Usage(format!(
            "--noise must be a non-negative number, got {noise}"
        ))
    })?;
    let a = scenario::load(baseline)?;
    let b = scenario::load(candidate)?;
    let out = out.unwrap_or_else(|| {
        PathBuf::from("reports/ab").join(chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string())
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Environment(format!("starting the async runtime: {e}")))?;
    let o = runtime.block_on(rebound::ab::run(
        &a,
        &b,
        &rebound::ab::AbOptions {
            trials,
            block,
            out: out.clone(),
            seed,
            compare: cfg,
        },
    ))?;
    print!("{}", o.text);
    println!(
        "  run dirs           {} · {}",
        o.baseline.display(),
        o.candidate.display()
    );
    Ok(o.exit)
}

fn cmd_plan(scenario: Option<PathBuf>, from: Option<&Path>, max_trials: Option<u64>) -> Outcome {
    let path = scenario.unwrap_or_else(|| PathBuf::from(DEFAULT_SCENARIO));
    let plan = scenario::load(&path)?;
    plan.ports.release();
    if max_trials == Some(0) {
        return Err(CliError::Usage("--max-trials must be at least 1".into()));
    }
    let pilot = match from {
        None => None,
        Some(dir) => {
            let (summary, trials) = rebound::analysis::reanalyse(dir)?;
            let same = rebound::run_dir::RunDir::open(dir)
                .ok()
                .and_then(|rd| std::fs::read_to_string(rd.scenario()).ok())
                .is_some_and(|text| {
                    rebound::evidence::scenario_hash(&text)
                        == rebound::evidence::scenario_hash(&plan.source_text)
                });
            Some((dir.to_path_buf(), summary.run_id, trials, same))
        }
    };
    let p = rebound::planning::plan(&plan, pilot, max_trials);
    print!("{}", rebound::planning::render(&p));
    Ok(ExitStatus::SloMet)
}

fn cmd_check(run_dir: &Path) -> Outcome {
    let (summary, trials) = rebound::analysis::reanalyse(run_dir)?;
    print!("{}", render_console(&summary, &trials));
    // The verdict's own code: an interrupted run re-checked is still decided on its trials.
    Ok(summary.verdict.exit_status())
}
