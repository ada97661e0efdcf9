//! `rebound swarm`: the shards of one scenario as Docker Swarm jobs on the swarm
//! the local engine manages, merged back into one run directory and verdict.
//!
//! Each shard is a replicated job of one task (`rebound swarm task`, image
//! `rebound/rebound`) on the host network of the node it lands on, with the node's
//! Docker socket and rebound's state directory bind-mounted: it runs `rebound run
//! --shard i/N` against that node's engine, its run directory and fault journal on
//! the node (`<state>/swarm/<id>/shard-<i>`, the same path inside and out, so the
//! node's `rebound heal` undoes what a killed task left). The scenario and its
//! compose files travel as swarm configs mounted at their own absolute paths (so
//! relative paths and the scenario's hash are unchanged); the shard's history comes
//! back through the task's log stream, framed and checked by length, so no shared
//! filesystem is needed. Host ports come from rebound (`${port:NAME}`), leased in
//! the shared state directory, so shards on one node do not collide.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use bollard::models::{
    ConfigSpec, Mount, MountType, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile1, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
    TaskState,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::checker::TrialResult;
use crate::merge::MergeError;
use crate::report::Summary;
use crate::run_dir::{HISTORY, PORTS, SCENARIO, TRIALS_CSV};
use crate::scenario::{DockerSource, Plan, ScenarioError, StackPlan};

/// The image a shard runs in (built by `docker/images/build.sh`).
pub const IMAGE: &str = "rebound/rebound:latest";
/// The label on every service, config and task container of a swarm run.
pub const LABEL: &str = "rebound.swarm";
/// The shard number label.
const SHARD_LABEL: &str = "rebound.shard";
/// Fault kinds that enter a container's network namespace from the engine's host
/// (`nsenter`): a swarm task has neither the host's pids nor its `/proc`.
pub const HOST_NETNS_KINDS: &[&str] =
    &["partition-for", "loss-for", "bandwidth-for", "latency-for"];
/// How long a stopped task has to heal and tear down before the engine kills it.
pub const STOP_GRACE: Duration = Duration::from_secs(120);

const TRIALS_MARK: &str = "REBOUND-TRIALS ";
const EXIT_MARK: &str = "REBOUND-EXIT ";
const FILE_MARK: &str = "REBOUND-FILE ";
const DATA_MARK: &str = "REBOUND-DATA ";
const END_MARK: &str = "REBOUND-END";
/// What a shard sends back: all that `merge` reads (it re-renders the rest).
const BUNDLED: &[&str] = &[SCENARIO, PORTS, HISTORY];
/// Base64 characters per log line (the engine splits lines above 16 KiB).
const DATA_LINE: usize = 4000;

/// Why a swarm run, status or stop could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// A flag or the scenario does not suit a swarm run.
    #[error("{0}")]
    Usage(String),
    /// The local engine does not manage a swarm.
    #[error("this Docker Engine is not a swarm manager (swarm state: {state}); `docker swarm init --advertise-addr 127.0.0.1` makes a single-node swarm of it")]
    NotManager {
        /// The engine's swarm state.
        state: String,
    },
    /// The shard image is missing.
    #[error("image {image} is not on this engine: build it with docker/images/build.sh (every node needs the same image id: `docker save {image} | docker load` on each)")]
    NoImage {
        /// The image reference.
        image: String,
    },
    /// An engine call failed.
    #[error("{what}: {source}")]
    Engine {
        /// What rebound asked the engine.
        what: String,
        /// The engine's answer.
        source: bollard::errors::Error,
    },
    /// The engine could not be reached.
    #[error(transparent)]
    Stack(#[from] crate::stack::StackError),
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A shard failed or sent back nothing usable.
    #[error("shard {shard}: {message}")]
    Shard {
        /// The shard (1-based).
        shard: u32,
        /// What happened.
        message: String,
    },
    /// The shards could not be merged.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// A local file could not be read or written.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Ctrl-C (or SIGTERM) stopped the run; every shard was stopped and healed.
    #[error("interrupted: every shard was stopped ({0})")]
    Interrupted(String),
}

impl SwarmError {
    /// The documented exit status of this error.
    pub fn exit_status(&self) -> crate::exit::ExitStatus {
        use crate::exit::ExitStatus;
        match self {
            SwarmError::Usage(_) | SwarmError::Scenario(_) | SwarmError::Merge(_) => {
                ExitStatus::Invalid
            }
            SwarmError::Interrupted(_) => ExitStatus::Interrupted,
            _ => ExitStatus::StackFailure,
        }
    }
}

fn engine(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> SwarmError {
    let what = what.into();
    move |source| SwarmError::Engine { what, source }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SwarmError + '_ {
    move |source| SwarmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Settings of `rebound swarm run`.
#[derive(Debug, Clone)]
pub struct SwarmOptions {
    /// Shards (tasks), at least 1.
    pub shards: u32,
    /// Shards running at once (default: all).
    pub parallel: Option<u32>,
    /// Merged run directory (default `<reports_root>/<scenario>/swarm-<id>`).
    pub out: Option<PathBuf>,
    /// Root of default run directories.
    pub reports_root: PathBuf,
    /// Shard image.
    pub image: String,
    /// Trials in all (overrides `[run] trials`).
    pub trials: Option<u32>,
    /// Schedule seed (the same for every shard: they split one schedule).
    pub seed: Option<u64>,
    /// Print shard progress on stderr.
    pub progress: bool,
}

/// A finished swarm run.
#[derive(Debug)]
pub struct SwarmOutcome {
    /// The swarm run's id (label `rebound.swarm`).
    pub id: String,
    /// The merged run directory.
    pub out: PathBuf,
    /// Its verdict.
    pub summary: Summary,
    /// Its trials.
    pub trials: Vec<TrialResult>,
}

/// Refuses what a swarm task cannot run: host-namespace faults, an attached project.
pub fn check_plan(plan: &Plan) -> Result<(), SwarmError> {
    for f in &plan.faults {
        for step in f.steps() {
            let kind = step.kind.name();
            if HOST_NETNS_KINDS.contains(&kind) {
                return Err(SwarmError::Usage(format!(
                    "fault `{kind}` enters the target's network namespace from the engine's host (nsenter), which a swarm task cannot do; run this scenario with `rebound run --shard i/N` on each machine, or use a proxy link (`link-*` faults)"
                )));
            }
        }
    }
    if let StackPlan::Docker {
        source: DockerSource::Attach { project },
        ..
    } = &plan.stack
    {
        return Err(SwarmError::Usage(format!(
            "the scenario attaches to the running project `{project}`: shards need a stack of their own each (`compose = …`)"
        )));
    }
    if let StackPlan::Docker {
        source: DockerSource::Containers { .. },
        ..
    } = &plan.stack
    {
        return Err(SwarmError::Usage(
            "the scenario names running containers (`containers = …`): shards need a stack of their own each (`compose = …`)".into(),
        ));
    }
    Ok(())
}

/// The files a task needs: the scenario and its compose files, by absolute path.
fn shipped_files(plan: &Plan) -> Result<Vec<PathBuf>, SwarmError> {
    let mut files = vec![plan.source_path.clone()];
    if let StackPlan::Docker {
        source: DockerSource::Compose {
            file, overrides, ..
        },
        ..
    } = &plan.stack
    {
        files.push(file.clone());
        files.extend(overrides.iter().cloned());
    }
    files
        .into_iter()
        .map(|f| std::path::absolute(&f).map_err(io(&f)))
        .collect()
}

/// A new swarm run id: time and a random suffix, lower case (service names).
fn new_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dt%H%M%Sz"),
        rand::random::<u16>()
    )
}

/// The node directory of a swarm run (its shards' run directories).
pub fn node_dir(id: &str) -> PathBuf {
    let state = crate::journal::state_dir();
    std::path::absolute(&state)
        .unwrap_or(state)
        .join("swarm")
        .join(id)
}

fn service_name(id: &str, shard: u32) -> String {
    format!("rebound-{id}-{shard}")
}

fn filters(pairs: &[(&str, String)]) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in pairs {
        m.entry((*k).to_string()).or_default().push(v.clone());
    }
    m
}

/// Connects and checks that the engine manages a swarm.
async fn manager() -> Result<Docker, SwarmError> {
    let docker = crate::stack::docker::connect().await?;
    let info = docker
        .info()
        .await
        .map_err(engine("reading the engine's info"))?;
    let swarm = info.swarm.unwrap_or_default();
    let state = swarm
        .local_node_state
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unknown".into());
    if state != "active" || swarm.control_available != Some(true) {
        return Err(SwarmError::NotManager {
            state: if state == "active" {
                "a worker".into()
            } else {
                state
            },
        });
    }
    Ok(docker)
}

/// What one shard's task is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardState {
    /// The shard (1-based).
    pub shard: u32,
    /// The task's state (`pending`, `running`, `complete`, …), `waiting` before its
    /// service exists.
    pub state: String,
    /// The node it runs on.
    pub node: String,
    /// Trials finished so far (from its log).
    pub trials: u32,
    /// The engine's message for a failed or rejected task.
    pub error: Option<String>,
    /// The task container's exit code, once it ended.
    pub exit_code: Option<i64>,
}

/// The state of shard `shard` of swarm run `id`, from its newest task and its log.
async fn shard_state(docker: &Docker, id: &str, shard: u32) -> Result<ShardState, SwarmError> {
    let name = service_name(id, shard);
    let tasks = match docker
        .list_tasks(Some(bollard::query_parameters::ListTasksOptions {
            filters: Some(filters(&[("service", name.clone())])),
        }))
        .await
    {
        Ok(t) => t,
        // The service is gone (`rebound swarm stop`).
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Vec::new(),
        Err(e) => return Err(engine(format!("listing the tasks of service {name}"))(e)),
    };
    let Some(task) = tasks
        .into_iter()
        .max_by_key(|t| t.created_at.as_ref().map(|d| d.to_string()))
    else {
        // No task yet, or no service any more (`rebound swarm stop`).
        let gone = docker
            .inspect_service(
                &name,
                None::<bollard::query_parameters::InspectServiceOptions>,
            )
            .await
            .is_err();
        return Ok(ShardState {
            shard,
            state: if gone { "removed" } else { "pending" }.into(),
            node: String::new(),
            trials: 0,
            error: None,
            exit_code: None,
        });
    };
    let status = task.status.clone().unwrap_or_default();
    let state = status.state.unwrap_or(TaskState::PENDING);
    let log = match &task.id {
        Some(t) => task_log(docker, t).await.unwrap_or_default(),
        None => String::new(),
    };
    let trials = log
        .lines()
        .filter_map(|l| l.strip_prefix(TRIALS_MARK))
        .filter_map(|n| n.trim().parse::<u32>().ok())
        .next_back()
        .unwrap_or(0);
    let node = match &task.node_id {
        Some(n) => docker
            .inspect_node(n)
            .await
            .ok()
            .and_then(|n| n.description.and_then(|d| d.hostname))
            .unwrap_or_else(|| n.chars().take(12).collect()),
        None => String::new(),
    };
    Ok(ShardState {
        shard,
        state: state.to_string(),
        node,
        trials,
        error: status.err.filter(|e| !e.is_empty()),
        exit_code: status.container_status.and_then(|c| c.exit_code),
    })
}

/// A task's whole stdout.
async fn task_log(docker: &Docker, task: &str) -> Result<String, SwarmError> {
    task_output(docker, task, false).await
}

/// A task's whole stdout, or stderr.
async fn task_output(docker: &Docker, task: &str, stderr: bool) -> Result<String, SwarmError> {
    let mut stream = docker.task_logs(
        task,
        Some(bollard::query_parameters::LogsOptions {
            stdout: !stderr,
            stderr,
            follow: false,
            ..Default::default()
        }),
    );
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        let item = item.map_err(engine(format!("reading the log of task {task}")))?;
        out.extend_from_slice(&item.into_bytes());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn ended(state: &str) -> bool {
    matches!(
        state,
        "complete" | "failed" | "rejected" | "shutdown" | "orphaned" | "remove"
    )
}

/// Runs `plan` as `opts.shards` swarm jobs and merges them into one run directory.
pub async fn run(
    plan: &Plan,
    opts: &SwarmOptions,
    cancel: CancellationToken,
) -> Result<SwarmOutcome, SwarmError> {
    if opts.shards == 0 {
        return Err(SwarmError::Usage("--shards must be at least 1".into()));
    }
    let parallel = opts.parallel.unwrap_or(opts.shards).clamp(1, opts.shards);
    check_plan(plan)?;
    let docker = manager().await?;
    let image = docker
        .inspect_image(&opts.image)
        .await
        .ok()
        .and_then(|i| i.id)
        .ok_or_else(|| SwarmError::NoImage {
            image: opts.image.clone(),
        })?;
    let id = new_id();
    let out = opts.out.clone().unwrap_or_else(|| {
        opts.reports_root
            .join(&plan.name)
            .join(format!("swarm-{id}"))
    });
    if out.join(HISTORY).exists() {
        return Err(SwarmError::Usage(format!(
            "{} already holds a run; give another --out",
            out.display()
        )));
    }
    let files = shipped_files(plan)?;
    let labels = HashMap::from([(LABEL.to_string(), id.clone())]);
    let mut configs = Vec::new();
    let result = async {
        for (k, f) in files.iter().enumerate() {
            let data = std::fs::read(f).map_err(io(f))?;
            let name = format!("rebound-{id}-{k}");
            let made = docker
                .create_config(ConfigSpec {
                    name: Some(name.clone()),
                    labels: Some(labels.clone()),
                    data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
                    ..Default::default()
                })
                .await
                .map_err(engine(format!(
                    "creating swarm config {name} for {}",
                    f.display()
                )))?;
            configs.push(TaskSpecContainerSpecConfigs {
                file: Some(TaskSpecContainerSpecFile1 {
                    name: Some(f.display().to_string()),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(0o444),
                }),
                config_id: Some(made.id),
                config_name: Some(name),
                ..Default::default()
            });
        }
        let scenario = std::path::absolute(&plan.source_path).map_err(io(&plan.source_path))?;
        let shard_dirs = drive(
            &docker, plan, opts, &id, &image, &scenario, &configs, parallel, &out, &cancel,
        )
        .await?;
        let (summary, trials) = crate::merge::merge_runs(&shard_dirs, &out, None)?;
        Ok::<_, SwarmError>((summary, trials))
    }
    .await;
    match &result {
        // A failed shard or merge: the other shards are stopped the way `swarm stop`
        // stops them (each heals; what a killed one left is healed from its journal).
        Err(e) if !matches!(e, SwarmError::Interrupted(_)) => {
            if let Ok(lines) = stop(Some(&id)).await {
                for l in lines {
                    eprintln!("swarm run {id}: {l}");
                }
            }
        }
        Err(_) => {}
        // Merged: the shards' directories on this node are copies of what `out` holds.
        Ok(_) => {
            let _ = std::fs::remove_dir_all(node_dir(&id));
        }
    }
    // Services, configs and the ended task containers go on every path (a stop
    // already took the services).
    remove_services(&docker, &id).await;
    remove_configs(&docker, &id).await;
    remove_ended(&docker, &id).await;
    plan.ports.release();
    let (summary, trials) = result?;
    Ok(SwarmOutcome {
        id,
        out,
        summary,
        trials,
    })
}

/// Creates the shards' services (at most `parallel` running), follows them to the
/// end, and writes each shard's run directory under `out/shards`.
#[allow(clippy::too_many_arguments)]
async fn drive(
    docker: &Docker,
    plan: &Plan,
    opts: &SwarmOptions,
    id: &str,
    image: &str,
    scenario: &Path,
    configs: &[TaskSpecContainerSpecConfigs],
    parallel: u32,
    out: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<PathBuf>, SwarmError> {
    let n = opts.shards;
    let mut waiting: Vec<u32> = (1..=n).rev().collect();
    let mut running: Vec<u32> = Vec::new();
    let mut done: BTreeMap<u32, PathBuf> = BTreeMap::new();
    let mut last: BTreeMap<u32, String> = BTreeMap::new();
    if opts.progress {
        eprintln!(
            "swarm run {id}: {n} shard(s) of {} ({parallel} at once), image {}; `rebound swarm status {id}` follows it, `rebound swarm stop {id}` stops it",
            plan.name, opts.image
        );
    }
    while done.len() < n as usize {
        while running.len() < parallel as usize {
            let Some(shard) = waiting.pop() else { break };
            create_shard(docker, opts, id, image, scenario, configs, shard).await?;
            running.push(shard);
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                let lines = stop(Some(id)).await.unwrap_or_else(|e| vec![e.to_string()]);
                return Err(SwarmError::Interrupted(lines.join("; ")));
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for shard in running.clone() {
            let s = shard_state(docker, id, shard).await?;
            let line = format!(
                "shard {shard}/{n}: {}{}, {} trial(s)",
                s.state,
                if s.node.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", s.node)
                },
                s.trials
            );
            if opts.progress && last.get(&shard) != Some(&line) {
                eprintln!("{line}");
                last.insert(shard, line);
            }
            if s.state == "removed" {
                let lines = stop(Some(id)).await.unwrap_or_else(|e| vec![e.to_string()]);
                return Err(SwarmError::Interrupted(format!(
                    "shard {shard}'s service was removed (`rebound swarm stop`?); {}",
                    lines.join("; ")
                )));
            }
            if !ended(&s.state) {
                continue;
            }
            let dir = collect(docker, id, shard, &s, out).await?;
            running.retain(|r| *r != shard);
            done.insert(shard, dir);
        }
    }
    Ok(done.into_values().collect())
}

/// The service of one shard: a replicated job of one task.
async fn create_shard(
    docker: &Docker,
    opts: &SwarmOptions,
    id: &str,
    image: &str,
    scenario: &Path,
    configs: &[TaskSpecContainerSpecConfigs],
    shard: u32,
) -> Result<(), SwarmError> {
    let state = std::path::absolute(crate::journal::state_dir())
        .unwrap_or_else(|_| crate::journal::state_dir());
    std::fs::create_dir_all(&state).map_err(io(&state))?;
    let node_out = node_dir(id).join(format!("shard-{shard}"));
    let mut args = vec![
        "swarm".to_string(),
        "task".into(),
        scenario.display().to_string(),
        "--shard".into(),
        format!("{shard}/{}", opts.shards),
        "--out".into(),
        node_out.display().to_string(),
    ];
    if let Some(t) = opts.trials {
        args.extend(["--trials".into(), t.to_string()]);
    }
    if let Some(s) = opts.seed {
        args.extend(["--seed".into(), s.to_string()]);
    }
    args.extend(["--image".into(), image.to_string()]);
    let labels = HashMap::from([
        (LABEL.to_string(), id.to_string()),
        (SHARD_LABEL.to_string(), shard.to_string()),
    ]);
    let bind = |p: &str| Mount {
        target: Some(p.to_string()),
        source: Some(p.to_string()),
        typ: Some(MountType::BIND),
        ..Default::default()
    };
    let name = service_name(id, shard);
    let spec = ServiceSpec {
        name: Some(name.clone()),
        labels: Some(labels.clone()),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                // By id: the engine then never tries a registry for it.
                image: Some(image.to_string()),
                labels: Some(labels),
                args: Some(args),
                env: Some(vec![
                    format!("{}={id}", crate::journal::SWARM_ENV),
                    format!("REBOUND_STATE_DIR={}", state.display()),
                ]),
                mounts: Some(vec![
                    bind("/var/run/docker.sock"),
                    bind(&state.display().to_string()),
                ]),
                configs: Some(configs.to_vec()),
                init: Some(true),
                stop_grace_period: Some(STOP_GRACE.as_nanos() as i64),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some("host".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_service(spec, None)
        .await
        .map_err(engine(format!("creating swarm service {name}")))?;
    Ok(())
}

/// Reads an ended shard's bundle from its task log into `out/shards/shard-<i>`.
async fn collect(
    docker: &Docker,
    id: &str,
    shard: u32,
    s: &ShardState,
    out: &Path,
) -> Result<PathBuf, SwarmError> {
    let name = service_name(id, shard);
    let tasks = docker
        .list_tasks(Some(bollard::query_parameters::ListTasksOptions {
            filters: Some(filters(&[("service", name.clone())])),
        }))
        .await
        .map_err(engine(format!("listing the tasks of service {name}")))?;
    let mut log = String::new();
    let mut errors = String::new();
    for t in tasks.iter().filter_map(|t| t.id.as_deref()) {
        log.push_str(&task_log(docker, t).await?);
        errors.push_str(&task_output(docker, t, true).await.unwrap_or_default());
    }
    let tail: Vec<&str> = errors.lines().rev().take(6).collect();
    let tail: String = tail.into_iter().rev().collect::<Vec<_>>().join("\n  ");
    let bundle = unbundle(&log).map_err(|message| SwarmError::Shard {
        shard,
        message: format!(
            "task {} (exit code {}{}) sent back no run: {message}{}; its run directory is on node {} at {}",
            s.state,
            s.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
            s.error.as_ref().map(|e| format!(", {e}")).unwrap_or_default(),
            if tail.is_empty() {
                String::new()
            } else {
                format!("\n  {tail}\n")
            },
            if s.node.is_empty() { "?" } else { &s.node },
            node_dir(id).join(format!("shard-{shard}")).display()
        ),
    })?;
    write_shard(out, shard, bundle)
}

/// Writes a shard's bundle as `out/shards/shard-<i>` and renders its reports there
/// (trials.csv, summary, report.html), so each shard is a whole run directory.
fn write_shard(
    out: &Path,
    shard: u32,
    files: Vec<(String, Vec<u8>)>,
) -> Result<PathBuf, SwarmError> {
    let dir = out.join("shards").join(format!("shard-{shard}"));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    for (file, bytes) in files {
        let p = dir.join(&file);
        std::fs::write(&p, bytes).map_err(io(&p))?;
    }
    let rendered = crate::analysis::reanalyse(&dir)
        .map_err(|e| e.to_string())
        .and_then(|(summary, trials)| {
            crate::report::rewrite_all(&dir, &summary, &trials).map_err(|e| e.to_string())
        });
    rendered.map_err(|message| SwarmError::Shard { shard, message })?;
    Ok(dir)
}

async fn remove_services(docker: &Docker, id: &str) -> Vec<String> {
    let Ok(services) = docker
        .list_services(Some(bollard::query_parameters::ListServicesOptions {
            filters: Some(filters(&[("label", format!("{LABEL}={id}"))])),
            ..Default::default()
        }))
        .await
    else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for s in services {
        let name = s.spec.and_then(|s| s.name).unwrap_or_default();
        if let Some(sid) = s.id {
            if docker.delete_service(&sid).await.is_ok() {
                removed.push(name);
            }
        }
    }
    removed
}

/// Removes the ended containers labelled with swarm run `id` (the engine keeps a
/// removed service's task containers).
async fn remove_ended(docker: &Docker, id: &str) {
    if let Ok(list) = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters(&[
                ("label", format!("{LABEL}={id}")),
                ("status", "exited".into()),
                ("status", "created".into()),
                ("status", "dead".into()),
            ])),
            ..Default::default()
        }))
        .await
    {
        for c in list.into_iter().filter_map(|c| c.id) {
            let _ = docker
                .remove_container(
                    &c,
                    None::<bollard::query_parameters::RemoveContainerOptions>,
                )
                .await;
        }
    }
}

async fn remove_configs(docker: &Docker, id: &str) {
    if let Ok(configs) = docker
        .list_configs(Some(bollard::query_parameters::ListConfigsOptions {
            filters: Some(filters(&[("label", format!("{LABEL}={id}"))])),
        }))
        .await
    {
        for c in configs.into_iter().filter_map(|c| c.id) {
            let _ = docker.delete_config(&c).await;
        }
    }
}

/// The swarm runs with services on this swarm (`id` alone if given), by id.
async fn runs_on_swarm(
    docker: &Docker,
    id: Option<&str>,
) -> Result<BTreeMap<String, Vec<u32>>, SwarmError> {
    let label = match id {
        Some(i) => format!("{LABEL}={i}"),
        None => LABEL.to_string(),
    };
    let services = docker
        .list_services(Some(bollard::query_parameters::ListServicesOptions {
            filters: Some(filters(&[("label", label)])),
            ..Default::default()
        }))
        .await
        .map_err(engine("listing swarm services"))?;
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for s in services {
        let labels = s.spec.and_then(|s| s.labels).unwrap_or_default();
        if let (Some(run), Some(shard)) = (labels.get(LABEL), labels.get(SHARD_LABEL)) {
            if let Ok(n) = shard.parse() {
                out.entry(run.clone()).or_default().push(n);
            }
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    Ok(out)
}

/// `rebound swarm status`: every shard of every swarm run (or of `id`).
pub async fn status(id: Option<&str>) -> Result<Vec<(String, Vec<ShardState>)>, SwarmError> {
    let docker = manager().await?;
    let mut out = Vec::new();
    for (run, shards) in runs_on_swarm(&docker, id).await? {
        let mut states = Vec::new();
        for s in shards {
            states.push(shard_state(&docker, &run, s).await?);
        }
        out.push((run, states));
    }
    if let (Some(i), true) = (id, out.is_empty()) {
        return Err(SwarmError::Usage(format!(
            "no swarm run `{i}` on this swarm"
        )));
    }
    Ok(out)
}

/// `rebound swarm stop`: removes the services of swarm run `id` (every one without
/// an id); each task gets SIGTERM and [`STOP_GRACE`] to heal and tear its stack
/// down. Then what a killed task left is healed from its journal, and what is
/// left is checked: no task container, no paused container, nothing labelled with
/// a shard's run id. Returns what was done, one line each.
pub async fn stop(id: Option<&str>) -> Result<Vec<String>, SwarmError> {
    let docker = manager().await?;
    let runs: Vec<String> = match id {
        Some(i) => vec![i.to_string()],
        None => runs_on_swarm(&docker, None).await?.into_keys().collect(),
    };
    let mut lines = Vec::new();
    for run in &runs {
        let removed = remove_services(&docker, run).await;
        if !removed.is_empty() {
            lines.push(format!("stopped {}", removed.join(", ")));
        }
        remove_configs(&docker, run).await;
        // The engine stops each task (its launcher then stops its shard's container);
        // stop the shards' containers too, in case a launcher is gone already.
        let mut shards = containers(&docker, &format!("{LABEL}={run}")).await?;
        let grace = STOP_GRACE.saturating_sub(Duration::from_secs(10)).as_secs() as i32;
        futures_util::future::join_all(shards.iter().map(|c| {
            docker.stop_container(
                c,
                Some(bollard::query_parameters::StopContainerOptions {
                    t: Some(grace),
                    signal: None,
                }),
            )
        }))
        .await;
        // Then wait for every container of the run to go.
        let deadline = tokio::time::Instant::now() + STOP_GRACE + Duration::from_secs(30);
        loop {
            let left = containers(&docker, &format!("{LABEL}={run}")).await?;
            if left.is_empty() {
                break;
            }
            // A shard container made after the first look is stopped too; ended ones
            // (task containers of the removed services, which the engine keeps, and a
            // shard container whose launcher was gone before it could remove it) go.
            for c in &left {
                if let Ok(info) = docker
                    .inspect_container(
                        c,
                        None::<bollard::query_parameters::InspectContainerOptions>,
                    )
                    .await
                {
                    let running = info.state.and_then(|s| s.running).unwrap_or(false);
                    if running && !shards.contains(c) {
                        shards.push(c.clone());
                        let docker = docker.clone();
                        let c = c.clone();
                        tokio::spawn(async move {
                            let _ = docker
                                .stop_container(
                                    &c,
                                    Some(bollard::query_parameters::StopContainerOptions {
                                        t: Some(grace),
                                        signal: None,
                                    }),
                                )
                                .await;
                        });
                    }
                    if !running {
                        let _ = docker
                            .remove_container(
                                c,
                                None::<bollard::query_parameters::RemoveContainerOptions>,
                            )
                            .await;
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                lines.push(format!(
                    "{} task container(s) still there after {:?}",
                    left.len(),
                    STOP_GRACE + Duration::from_secs(30)
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // A task killed before it healed left its journal on this node.
        for p in crate::journal::stale()
            .into_iter()
            .filter(|p| p.run.swarm.as_deref() == Some(run.as_str()))
        {
            match crate::heal::heal(&p).await {
                Ok(done) => lines.push(format!(
                    "healed shard run {}: {}",
                    p.run.run_id,
                    if done.is_empty() {
                        "nothing left".into()
                    } else {
                        done.join("; ")
                    }
                )),
                Err(e) => lines.push(format!("error: {e}")),
            }
        }
        for run_id in shard_run_ids(run) {
            let label = format!("rebound.run={run_id}");
            let left = containers(&docker, &label).await?;
            if !left.is_empty() {
                lines.push(format!(
                    "error: {} container(s) labelled {label} are left",
                    left.len()
                ));
            }
        }
        for run_id in shard_run_ids(run) {
            let paused = docker
                .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                    all: true,
                    filters: Some(filters(&[
                        ("label", format!("rebound.run={run_id}")),
                        ("status", "paused".into()),
                    ])),
                    ..Default::default()
                }))
                .await
                .map_err(engine("listing paused containers"))?;
            if !paused.is_empty() {
                lines.push(format!(
                    "error: {} container(s) of shard run {run_id} are paused",
                    paused.len()
                ));
            }
        }
    }
    if runs.is_empty() {
        lines.push("no swarm run on this swarm".into());
    }
    Ok(lines)
}

async fn containers(docker: &Docker, label: &str) -> Result<Vec<String>, SwarmError> {
    Ok(docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters(&[("label", label.to_string())])),
            ..Default::default()
        }))
        .await
        .map_err(engine(format!("listing containers labelled {label}")))?
        .into_iter()
        .filter_map(|c| c.id)
        .collect())
}

/// The run ids of the shards of swarm run `id` that ran on this node.
fn shard_run_ids(id: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(node_dir(id)) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join(HISTORY)).ok())
        .filter_map(|h| {
            let first: serde_json::Value = serde_json::from_str(h.lines().next()?).ok()?;
            Some(first.get("run_id")?.as_str()?.to_string())
        })
        .collect()
}

/// The bundle of a run directory as log lines (see [`unbundle`]).
pub fn bundle(run_dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for name in BUNDLED {
        let Ok(bytes) = std::fs::read(run_dir.join(name)) else {
            continue;
        };
        lines.push(format!("{FILE_MARK}{name} {}", bytes.len()));
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        for chunk in text.as_bytes().chunks(DATA_LINE) {
            lines.push(format!("{DATA_MARK}{}", String::from_utf8_lossy(chunk)));
        }
    }
    lines.push(END_MARK.to_string());
    lines
}

/// The files of the last complete bundle in a log, checked by length.
pub fn unbundle(log: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let lines: Vec<&str> = log.lines().map(|l| l.trim_end_matches('\r')).collect();
    let Some(end) = lines.iter().rposition(|l| *l == END_MARK) else {
        return Err("its log has no end-of-run marker (killed, or the run never started)".into());
    };
    let start = lines[..end]
        .iter()
        .rposition(|l| !l.starts_with(FILE_MARK) && !l.starts_with(DATA_MARK))
        .map_or(0, |i| i + 1);
    let mut files: Vec<(String, usize, String)> = Vec::new();
    for l in &lines[start..end] {
        if let Some(head) = l.strip_prefix(FILE_MARK) {
            let (name, len) = head
                .rsplit_once(' ')
                .ok_or_else(|| format!("bad file line `{l}`"))?;
            if !BUNDLED.contains(&name) {
                return Err(format!("unexpected file `{name}`"));
            }
            let len = len.parse().map_err(|_| format!("bad length in `{l}`"))?;
            files.push((name.to_string(), len, String::new()));
        } else if let Some(data) = l.strip_prefix(DATA_MARK) {
            files
                .last_mut()
                .ok_or("data before any file")?
                .2
                .push_str(data);
        }
    }
    let mut out = Vec::new();
    for (name, len, data) in files {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_bytes())
            .map_err(|e| format!("{name}: {e}"))?;
        if bytes.len() != len {
            return Err(format!(
                "{name}: {} bytes arrived of {len} (lines lost from the log)",
                bytes.len()
            ));
        }
        out.push((name, bytes));
    }
    for need in [SCENARIO, HISTORY] {
        if !out.iter().any(|(n, _)| n == need) {
            return Err(format!("no {need} in its bundle"));
        }
    }
    Ok(out)
}

/// `rebound k8s-collect`: shard logs (each ending with its bundle) into
/// `out/shards/shard-<i>`, merged into `out`.
pub fn collect_logs(
    logs: &[PathBuf],
    out: &Path,
) -> Result<(Summary, Vec<TrialResult>), SwarmError> {
    let mut dirs = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let text = std::fs::read(log).map_err(io(log))?;
        let files =
            unbundle(&String::from_utf8_lossy(&text)).map_err(|message| SwarmError::Shard {
                shard: i as u32 + 1,
                message: format!("{}: {message}", log.display()),
            })?;
        dirs.push(write_shard(out, i as u32 + 1, files)?);
    }
    Ok(crate::merge::merge_runs(&dirs, out, None)?)
}

/// Arguments of `rebound swarm task` (what a shard's container runs).
#[derive(Debug, Clone)]
pub struct TaskArgs {
    /// The scenario (a swarm config at its caller's path).
    pub scenario: PathBuf,
    /// `i/N`.
    pub shard: (u32, u32),
    /// The run directory on the node.
    pub out: PathBuf,
    /// Trials in all.
    pub trials: Option<u32>,
    /// Schedule seed.
    pub seed: Option<u64>,
    /// The image id to start the shard's own container from (the launcher's side).
    pub image: Option<String>,
}

/// Set where `rebound swarm task` is the shard itself: in the shard container a
/// swarm launcher starts, and in a Kubernetes pod (`rebound k8s-job`).
pub const INNER_ENV: &str = "REBOUND_SWARM_INNER";

/// `rebound swarm task` in a swarm task: a launcher. A swarm service can have
/// neither the host's pid namespace nor privileges, which signals by host pid and
/// network faults need, so the task starts the shard as a sibling container on its
/// node's engine (`--pid host --network host`, the capabilities of `nsenter`, the socket, the state
/// directory and the shipped files bind-mounted), streams its output, passes a
/// stop on (SIGTERM, with the grace the shard needs to heal), and exits as it did.
pub async fn launch(args: &TaskArgs) -> i32 {
    match launch_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            4
        }
    }
}

async fn launch_inner(args: &TaskArgs) -> Result<i32, SwarmError> {
    use bollard::models::{ContainerCreateBody, HostConfig};
    use std::io::Write;
    use tokio::signal::unix::{signal, SignalKind};
    // First: a stop that arrives while the shard container is being made is kept
    // (the streams buffer it) and passed on once it runs.
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return Err(SwarmError::Usage("cannot handle signals".into()));
    };
    let docker = crate::stack::docker::connect().await?;
    let image = args
        .image
        .clone()
        .ok_or_else(|| SwarmError::Usage("the launcher needs --image".into()))?;
    let id = std::env::var(crate::journal::SWARM_ENV).unwrap_or_default();
    let plan = crate::scenario::load(&args.scenario)?;
    plan.ports.release();
    // The shipped files (swarm configs in this container) copied to the node, where
    // the shard's container mounts them at their own paths again.
    let files_dir = node_dir(&id).join(format!("files-{}", args.shard.0));
    let mut binds = vec![
        "/var/run/docker.sock:/var/run/docker.sock".to_string(),
        format!(
            "{s}:{s}",
            s = std::path::absolute(crate::journal::state_dir())
                .unwrap_or_else(|_| crate::journal::state_dir())
                .display()
        ),
    ];
    for f in shipped_files(&plan)? {
        let copy = files_dir.join(f.strip_prefix("/").unwrap_or(&f));
        if let Some(parent) = copy.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::copy(&f, &copy).map_err(io(&f))?;
        binds.push(format!("{}:{}:ro", copy.display(), f.display()));
    }
    let mut cmd = vec![
        "swarm".to_string(),
        "task".into(),
        args.scenario.display().to_string(),
        "--shard".into(),
        format!("{}/{}", args.shard.0, args.shard.1),
        "--out".into(),
        args.out.display().to_string(),
    ];
    if let Some(t) = args.trials {
        cmd.extend(["--trials".into(), t.to_string()]);
    }
    if let Some(s) = args.seed {
        cmd.extend(["--seed".into(), s.to_string()]);
    }
    let mut env: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("REBOUND_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.push(format!("{INNER_ENV}=1"));
    let name = format!("rebound-{id}-shard-{}", args.shard.0);
    let made = docker
        .create_container(
            Some(
                bollard::query_parameters::CreateContainerOptionsBuilder::default()
                    .name(&name)
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(image),
                cmd: Some(cmd),
                env: Some(env),
                labels: Some(HashMap::from([
                    (LABEL.to_string(), id.clone()),
                    (SHARD_LABEL.to_string(), args.shard.0.to_string()),
                ])),
                host_config: Some(HostConfig {
                    binds: Some(binds),
                    network_mode: Some("host".into()),
                    pid_mode: Some("host".into()),
                    // Not `privileged` (an engine in a container may not grant every
                    // capability): what signals and `nsenter` need.
                    cap_add: Some(
                        ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "KILL", "NET_RAW"]
                            .map(String::from)
                            .to_vec(),
                    ),
                    security_opt: Some(vec![
                        "seccomp=unconfined".into(),
                        "apparmor=unconfined".into(),
                    ]),
                    init: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .map_err(engine(format!("creating the shard container {name}")))?;
    let cid = made.id;
    docker
        .start_container(
            &cid,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(engine(format!("starting the shard container {name}")))?;
    let mut logs = docker.logs(
        &cid,
        Some(bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            follow: true,
            ..Default::default()
        }),
    );
    let stop = || async {
        let grace = STOP_GRACE.saturating_sub(Duration::from_secs(10)).as_secs() as i32;
        let _ = docker
            .stop_container(
                &cid,
                Some(bollard::query_parameters::StopContainerOptions {
                    t: Some(grace),
                    signal: None,
                }),
            )
            .await;
    };
    loop {
        tokio::select! {
            item = logs.next() => match item {
                Some(Ok(bollard::container::LogOutput::StdOut { message })) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&message);
                    let _ = out.flush();
                }
                Some(Ok(other)) => {
                    let _ = std::io::stderr().write_all(&other.into_bytes());
                }
                Some(Err(_)) | None => break,
            },
            _ = term.recv() => stop().await,
            _ = int.recv() => stop().await,
            _ = hup.recv() => stop().await,
        }
    }
    // The log ended (the shard exited, or the stream broke): wait for the exit,
    // still passing a stop on.
    let code = loop {
        let mut wait = docker.wait_container(
            &cid,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        tokio::select! {
            r = wait.next() => break match r {
                Some(Ok(r)) => r.status_code as i32,
                // bollard reports a non-zero exit as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code as i32,
                // The engine did not say: stop it with its grace (it heals), then 4.
                _ => {
                    stop().await;
                    4
                }
            },
            _ = term.recv() => stop().await,
            _ = int.recv() => stop().await,
            _ = hup.recv() => stop().await,
        }
    };
    // Ended by now: removed without force, so a shard still running is never killed.
    let _ = docker
        .remove_container(
            &cid,
            None::<bollard::query_parameters::RemoveContainerOptions>,
        )
        .await;
    let _ = std::fs::remove_dir_all(&files_dir);
    Ok(code)
}

/// `rebound swarm task`: a launcher in a swarm task ([`launch`]); in the shard's
/// own container ([`INNER_ENV`]), the shard itself: runs `rebound run --shard` as a child (passing SIGTERM,
/// SIGINT and SIGHUP on, so the run heals), prints the trial count to stdout as it
/// grows, then the run's exit code and its bundle. Exits 0 when the run decided
/// (0, 1 or 2), else with the run's own code.
pub async fn task(args: &TaskArgs) -> i32 {
    if std::env::var_os(INNER_ENV).is_none() {
        return launch(args).await;
    }
    use std::io::Write;
    use tokio::signal::unix::{signal, SignalKind};
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rebound"));
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("run")
        .arg(&args.scenario)
        .arg("--shard")
        .arg(format!("{}/{}", args.shard.0, args.shard.1))
        .arg("--out")
        .arg(&args.out)
        .arg("--no-progress");
    if let Some(t) = args.trials {
        cmd.arg("--trials").arg(t.to_string());
    }
    if let Some(s) = args.seed {
        cmd.arg("--seed").arg(s.to_string());
    }
    // Before the child: a stop in between is kept and passed on (with `--pid host`,
    // this process ending takes the whole container, the child unhealed, with it).
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("error: cannot handle signals");
        return 4;
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: starting rebound run: {e}");
            return 4;
        }
    };
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let csv = args.out.join(TRIALS_CSV);
    let mut shown = 0u32;
    let mut forwarded = false;
    let status = loop {
        let forward = tokio::select! {
            s = child.wait() => break s,
            _ = term.recv() => Some(nix::sys::signal::Signal::SIGTERM),
            _ = int.recv() => Some(nix::sys::signal::Signal::SIGINT),
            _ = hup.recv() => Some(nix::sys::signal::Signal::SIGHUP),
            _ = tokio::time::sleep(Duration::from_secs(1)) => None,
        };
        // Once: a stop may arrive twice (the launcher's and `swarm stop`'s), and a
        // second signal tells `rebound run` to kill the stack without healing.
        if let (Some(sig), Some(pid), false) = (forward, pid, forwarded) {
            let _ = nix::sys::signal::kill(pid, sig);
            forwarded = true;
        }
        let rows = std::fs::read_to_string(&csv)
            .map(|t| t.lines().count().saturating_sub(1) as u32)
            .unwrap_or(0);
        if rows != shown {
            shown = rows;
            println!("{TRIALS_MARK}{rows}");
            let _ = std::io::stdout().flush();
        }
    };
    let code = status.ok().and_then(|s| s.code()).unwrap_or(4);
    let rows = std::fs::read_to_string(&csv)
        .map(|t| t.lines().count().saturating_sub(1) as u32)
        .unwrap_or(0);
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{TRIALS_MARK}{rows}");
    let _ = writeln!(stdout, "{EXIT_MARK}{code}");
    if args.out.join(HISTORY).is_file() {
        for line in bundle(&args.out) {
            let _ = writeln!(stdout, "{line}");
        }
    }
    let _ = stdout.flush();
    if matches!(code, 0..=2) {
        0
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_survives_the_log_and_a_lost_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let history: String = (0..3000)
            .map(|i| format!("{{\"seq\":{i},\"type\":\"stack-up\"}}\n"))
            .collect();
        std::fs::write(dir.path().join(SCENARIO), "name = \"x\"\n").unwrap();
        std::fs::write(dir.path().join(HISTORY), &history).unwrap();
        let lines = bundle(dir.path());
        assert!(lines.iter().all(|l| l.len() < 16 * 1024));
        assert!(lines.len() > 10, "long files span many lines");
        // Other output around it, as in a task's log.
        let log = format!(
            "verdict: met\n{TRIALS_MARK}3\n{}\nafter\n",
            lines.join("\n")
        );
        let files = unbundle(&log).unwrap();
        assert_eq!(files.len(), 2, "no ports.json in this run");
        assert_eq!(files[1].0, HISTORY);
        assert_eq!(files[1].1, history.as_bytes());

        let mut short = lines.clone();
        short.remove(5);
        let e = unbundle(&short.join("\n")).unwrap_err();
        assert!(e.contains("bytes arrived"), "{e}");
        let e = unbundle("verdict: met\n").unwrap_err();
        assert!(e.contains("no end-of-run marker"), "{e}");
        let evil = format!("{FILE_MARK}../../etc/passwd 3\n{DATA_MARK}eHl6\n{END_MARK}\n");
        assert!(unbundle(&evil).unwrap_err().contains("unexpected file"));
    }

    #[test]
    fn host_namespace_faults_and_attached_projects_are_refused() {
        let base = "name = \"s\"\n[stack]\nbackend = \"docker\"\n";
        let tail = "\n[[probe]]\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n[slo]\nsuccess-rate = 0.5\nrecover-within = \"10s\"\n";
        let attach = format!(
            "{base}attach = \"p\"\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n{tail}"
        );
        let plan = crate::scenario::parse(Path::new("s.toml"), &attach).unwrap();
        let e = check_plan(&plan).unwrap_err().to_string();
        assert!(e.contains("attaches to the running project `p`"), "{e}");
        let loss = format!(
            "{base}attach = \"p\"\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n[[fault.then]]\nafter = \"1s\"\nkind = \"loss-for\"\ntarget = \"app\"\nduration = \"1s\"\nprobability = 0.5\n{tail}"
        );
        let plan = crate::scenario::parse(Path::new("s.toml"), &loss).unwrap();
        let e = check_plan(&plan).unwrap_err().to_string();
        assert!(e.contains("`loss-for` enters"), "{e}");
    }
}
