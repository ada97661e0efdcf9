//! The `docker` backend: a compose project on the local Docker Engine, driven
//! through bollard. rebound either brings a compose file up under its own project
//! name (and tears it down) or attaches to a running project (never torn down).
//!
//! Containers are found by the `com.docker.compose.project` / `.service` labels:
//! nothing outside the scenario's project is ever touched. Docker events (start,
//! die with exit code, pause, health_status) are recorded into the history with
//! the daemon's nanosecond timestamps and keep the per-service state current.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{
    ExecConfig, NetworkConnectRequest, NetworkDisconnectRequest, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ExecOutput, Health, ServiceStatus, Sig, Stack, StackError, StackRestartMode};
use crate::history::{Event, History, Lifecycle};

const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";

/// Where the stack comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// rebound brings this compose file up under `project` and tears it down.
    Compose {
        /// The compose file and its overrides, merged in order.
        files: Vec<PathBuf>,
        /// Keep the stack after the run (`--keep`).
        keep: bool,
    },
    /// An already running compose project; never torn down.
    Attach,
    /// Containers someone else started (a test's testcontainers), service →
    /// container id or name; never torn down, events followed by container.
    Containers(BTreeMap<String, String>),
}

/// Host ports the stack's containers publish: (host port, service, container
/// port), re-read after every start (a container published on a random host
/// port gets a new one each time it starts).
#[derive(Debug, Default)]
struct Published {
    seen: Vec<(u16, String, u16)>,
    /// The start count ([`Published::starts`]) `seen` was read at.
    read_at: Option<u64>,
    /// Container starts seen by the events so far.
    starts: u64,
}

#[derive(Debug, Clone, Default)]
struct Ctr {
    id: String,
    running: bool,
    paused: bool,
    restarts_by_policy: bool,
    starts: u64,
    exits: u64,
    last_code: Option<i32>,
    /// Its address on its network, read once per start (probes ask on every tick).
    ip: Option<std::net::IpAddr>,
}

/// A compose project on the local Docker Engine.
pub struct DockerStack {
    docker: Docker,
    project: String,
    source: Source,
    run_id: String,
    history: Arc<History>,
    state: watch::Sender<BTreeMap<String, Ctr>>,
    held: Mutex<HashSet<String>>,
    disconnected: Mutex<HashMap<String, Vec<String>>>,
    events: Mutex<Option<JoinHandle<()>>>,
    /// Where cut networks are recorded before they are cut (`rebound heal`).
    journal: Option<Arc<crate::journal::Journal>>,
    /// Published host ports, re-read after a start.
    published: Arc<Mutex<Published>>,
    /// `docker compose` or `docker-compose`, found once (empty when attaching).
    compose_cmd: Vec<String>,
    /// `[[stack.link]]`: links served by `rebound proxy` services.
    links: Vec<super::plan::LinkPlan>,
    /// Host ports given to compose.
    ports: crate::ports::Ports,
    /// `durable` services and the directory each one's layer is mounted on
    /// (`REBOUND_DURABLE_<SERVICE>` for compose), with the layers' model.
    durable: Vec<(String, PathBuf)>,
    durability: crate::durable::Model,
    /// The power-loss layers, mounted before the first `compose up`.
    layers: Arc<super::power::PowerLayers>,
}

fn docker_err(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> StackError {
    let what = what.into();
    move |e| StackError::Docker {
        what,
        message: e.to_string(),
    }
}

/// How long one `docker` CLI call of the emergency path may take.
const CLI_BOUND: Duration = Duration::from_secs(20);

/// Runs `docker ARGS…` synchronously for at most [`CLI_BOUND`] (killed after);
/// its stdout, or None when it failed or took too long.
fn bounded_cli<'a>(args: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut child = std::process::Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + CLI_BOUND;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = std::io::Read::read_to_string(&mut o, &mut out);
                }
                return status.success().then_some(out);
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Connects to the local engine and negotiates the API version (the engine here speaks 1.41).
pub async fn connect() -> Result<Docker, StackError> {
    let unreachable = |e: bollard::errors::Error| {
        StackError::Docker {
        what: "connecting to the Docker Engine (is dockerd running? is /var/run/docker.sock readable?)".into(),
        message: e.to_string(),
    }
    };
    let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
    let docker = docker.negotiate_version().await.map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    Ok(docker)
}

/// Undoes what a run whose rebound process is gone left on the engine: applies the
/// undo records of its unhealed faults (latest first) to the project, with the
/// networks its journal says were cut, then removes everything labelled with its
/// run id when the run owned the stack. Returns what was done, one item each.
pub async fn heal_dead_run(
    project: &str,
    run_id: &str,
    owns_stack: bool,
    containers: &BTreeMap<String, String>,
    faults: &[crate::nemesis::UndoRecord],
    disconnected: &BTreeMap<String, Vec<String>>,
    links: &[super::plan::LinkPlan],
) -> Result<Vec<String>, StackError> {
    let source = if containers.is_empty() {
        Source::Attach
    } else {
        Source::Containers(containers.clone())
    };
    let stack = DockerStack::new(
        project.to_string(),
        source,
        run_id.to_string(),
        Arc::new(History::in_memory()),
        None,
    )
    .await?
    .with_links(links.to_vec());
    // Nothing of the project left (killed during `compose down`, or removed by
    // hand): no fault to undo; an owned stack may still have networks and volumes.
    // Of given containers, those still there (a fault on one that is gone has
    // nothing left to undo; the others still do).
    let present = stack.discover_with(true).await.is_ok();
    stack
        .disconnected
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(disconnected.iter().map(|(s, n)| (s.clone(), n.clone())));
    let mut done = Vec::new();
    let mut failed = None;
    for undo in faults.iter().rev().filter(|_| present) {
        // A service the run removed with its stack has nothing left to undo; nor a
        // link whose proxy service is gone. A link the scenario does not name is an
        // error (set_link says so), never skipped.
        let on_link = undo
            .steps
            .iter()
            .any(|s| matches!(s, crate::nemesis::UndoStep::ClearLink { .. }));
        let service = if on_link {
            links
                .iter()
                .find(|l| l.name == undo.target)
                .and_then(|l| match &l.route {
                    super::plan::LinkRoute::Service { service, .. } => Some(service.as_str()),
                    super::plan::LinkRoute::Local { .. } => None,
                })
        } else {
            Some(undo.target.as_str())
        };
        if undo.target != crate::nemesis::ALL_SERVICES
            && service.is_some_and(|s| stack.id(s).is_err())
        {
            continue;
        }
        match undo.apply(&stack).await {
            Ok(what) => done.push(format!("{} on {}: {what}", undo.fault, undo.target)),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if !present && !owns_stack {
        done.push(if containers.is_empty() {
            format!("nothing of compose project {project} is left")
        } else {
            "none of the run's containers is left".to_string()
        });
    }
    if owns_stack {
        // By run id, and by project for a user's compose file without rebound's labels
        // (the project is the run's own: rebound brought it up).
        done.extend(remove_labelled(&stack.docker, &format!("rebound.run={run_id}")).await?);
        done.extend(remove_labelled(&stack.docker, &format!("{PROJECT_LABEL}={project}")).await?);
    }
    match failed {
        // Removing the stack undoes whatever a step could not.
        Some(e) if !owns_stack => Err(e),
        _ => Ok(done),
    }
}

/// Removes every container (with its anonymous volumes), network and volume
/// carrying `label` (`key=value`); returns what was removed.
async fn remove_labelled(docker: &Docker, label: &str) -> Result<Vec<String>, StackError> {
    remove_labelled_known(docker, label, &[]).await
}

/// [`remove_labelled`], where `known` names containers that were on the label's
/// networks and may already be gone (their endpoints can outlive them).
async fn remove_labelled_known(
    docker: &Docker,
    label: &str,
    known: &[String],
) -> Result<Vec<String>, StackError> {
    use bollard::query_parameters::{
        ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions,
    };
    let filters = || HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let mut done = Vec::new();
    let mut endpoints: Vec<String> = known.to_vec();
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters()),
            ..Default::default()
        }))
        .await
        .map_err(docker_err("listing the run's containers"))?;
    for c in containers {
        let Some(id) = c.id else { continue };
        let name = c
            .names
            .and_then(|n| n.first().cloned())
            .unwrap_or_else(|| id.clone());
        endpoints.push(name.trim_start_matches('/').to_string());
        docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(docker_err(format!("removing container {name}")))?;
        done.push(format!(
            "removed container {}",
            name.trim_start_matches('/')
        ));
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters()),
        }))
        .await
        .map_err(docker_err("listing the run's networks"))?;
    for n in networks {
        let Some(name) = n.name else { continue };
        remove_network(docker, &name, &endpoints).await?;
        done.push(format!("removed network {name}"));
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters()),
        }))
        .await
        .map_err(docker_err("listing the run's volumes"))?;
    for v in volumes.volumes.into_iter().flatten() {
        docker
            .remove_volume(
                &v.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
            .map_err(docker_err(format!("removing volume {}", v.name)))?;
        done.push(format!("removed volume {}", v.name));
    }
    Ok(done)
}

/// Removes network `name`. Docker 20.10 can keep the endpoint of a container it
/// has removed ("has active endpoints" with no container attached; seen in CI
/// after a compose down): the endpoints the network still lists, and those named
/// after `containers`, are force-deleted and the removal retried, for up to 10 s.
async fn remove_network(
    docker: &Docker,
    name: &str,
    containers: &[String],
) -> Result<(), StackError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let err = match docker.remove_network(name).await {
            Ok(()) => return Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(e) => e,
        };
        if !err.to_string().contains("active endpoints") || std::time::Instant::now() >= deadline {
            return Err(docker_err(format!("removing network {name}"))(err));
        }
        let mut names: Vec<String> = containers.to_vec();
        if let Ok(net) = docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            for (id, ep) in net.containers.unwrap_or_default() {
                names.push(ep.name.unwrap_or(id));
            }
        }
        for container in names {
            // Of a removed container the engine deletes the endpoint by its name.
            let _ = docker
                .disconnect_network(
                    name,
                    NetworkDisconnectRequest {
                        container,
                        force: Some(true),
                    },
                )
                .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The last `n` lines of a tool's output (a Python traceback of compose v1 is
/// ~100 lines; its last lines say what went wrong).
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    let skip = lines.len().saturating_sub(n);
    let mut out = lines[skip..].join("\n");
    if skip > 0 {
        out = format!("(… {skip} lines) {out}");
    }
    out
}

/// The compose command that exists here: `docker compose` (v2) or `docker-compose` (v1).
fn compose_command() -> Result<Vec<String>, StackError> {
    let works = |argv: &[&str]| {
        std::process::Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&["docker", "compose", "version"]) {
        Ok(vec!["docker".into(), "compose".into()])
    } else if works(&["docker-compose", "version"]) {
        Ok(vec!["docker-compose".into()])
    } else {
        Err(StackError::Docker {
            what: "finding a compose tool".into(),
            message: "neither `docker compose` nor `docker-compose` works on this machine".into(),
        })
    }
}

impl DockerStack {
    /// Connects to the engine; starts nothing.
    pub async fn new(
        project: String,
        source: Source,
        run_id: String,
        history: Arc<History>,
        journal: Option<Arc<crate::journal::Journal>>,
    ) -> Result<Self, StackError> {
        let docker = connect().await?;
        let compose_cmd = match source {
            Source::Compose { .. } => tokio::task::spawn_blocking(compose_command)
                .await
                .map_err(|e| StackError::Docker {
                    what: "finding a compose tool".into(),
                    message: e.to_string(),
                })??,
            Source::Attach | Source::Containers(_) => Vec::new(),
        };
        Ok(DockerStack {
            docker,
            project,
            source,
            run_id,
            history,
            state: watch::Sender::new(BTreeMap::new()),
            held: Mutex::new(HashSet::new()),
            disconnected: Mutex::new(HashMap::new()),
            published: Arc::default(),
            journal,
            events: Mutex::new(None),
            compose_cmd,
            links: Vec::new(),
            ports: crate::ports::Ports::default(),
            durable: Vec::new(),
            durability: crate::durable::Model::PosixStrict,
            layers: Arc::default(),
        })
    }

    /// Puts the data of `services` on power-loss layers of `model`, one
    /// directory each under `dir` (`dir/<service>`), given to compose as
    /// `REBOUND_DURABLE_<SERVICE>`.
    pub fn with_durable(
        mut self,
        services: &[String],
        model: crate::durable::Model,
        dir: &std::path::Path,
    ) -> Self {
        self.durable = services
            .iter()
            // Absolute: compose binds it into a container.
            .map(|s| {
                let d = dir.join(s);
                (s.clone(), std::path::absolute(&d).unwrap_or(d))
            })
            .collect();
        self.durability = model;
        self
    }

    /// Mounts the layers of the `durable` services (before any container of
    /// theirs starts: a running container never sees a mount made later). Refused
    /// with the reason where the layer cannot be under the engine's bind mounts.
    fn mount_layers(&self) -> Result<(), StackError> {
        let Some((first, _)) = self.durable.first() else {
            return Ok(());
        };
        let refuse = |message: String| StackError::StartFailed {
            service: first.clone(),
            message: format!("[stack] durable: {message}"),
        };
        if matches!(self.source, Source::Compose { keep: true, .. }) {
            return Err(refuse(
                "--keep leaves the stack running after rebound exits, and the power-loss layer lives in rebound's process: run without --keep".into(),
            ));
        }
        if let Some(host) = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty() && !h.starts_with("unix://"))
        {
            return Err(refuse(format!(
                "DOCKER_HOST={host} is another machine's engine: the power-loss layer is mounted here, and only an engine on this host can bind it into a container"
            )));
        }
        if let Err(e) = crate::durable::supported() {
            return Err(refuse(format!(
                "the power-loss layer cannot be mounted here ({e}); it needs root, /dev/fuse and the fuse filesystem (`rebound doctor`), which a container gets only with --device /dev/fuse --cap-add SYS_ADMIN"
            )));
        }
        for (service, dir) in &self.durable {
            std::fs::create_dir_all(dir).map_err(|e| StackError::StartFailed {
                service: service.clone(),
                message: format!("[stack] durable: creating {}: {e}", dir.display()),
            })?;
            // Any user of the container may create its data directory (the
            // layer gives new files the caller's uid and gid), as in /tmp.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
            self.layers.mount(
                service,
                "[stack] durable",
                dir,
                self.durability,
                self.journal.as_deref(),
            )?;
        }
        Ok(())
    }

    /// The compose variables of the layer directories.
    fn durable_env(&self) -> Vec<(String, String)> {
        self.durable
            .iter()
            .map(|(s, d)| {
                (
                    crate::scenario::durable_variable(s),
                    d.display().to_string(),
                )
            })
            .collect()
    }

    /// Gives compose the run's host ports (`REBOUND_PORT_*` variables).
    pub fn with_ports(mut self, ports: crate::ports::Ports) -> Self {
        self.ports = ports;
        self
    }

    /// Serves link faults through the `rebound proxy` services `links` name.
    pub fn with_links(mut self, links: Vec<super::plan::LinkPlan>) -> Self {
        self.links = links;
        self
    }

    /// The control APIs that may serve `link`, to try in order: the scenario's
    /// `control` address, else each of the proxy container's addresses, port 8474.
    async fn link_control(
        &self,
        link: &str,
    ) -> Result<Vec<crate::proxy::control::Control>, StackError> {
        let what = format!("link `{link}`");
        let plan = self
            .links
            .iter()
            .find(|l| l.name == link)
            .ok_or_else(|| StackError::Command {
                what: what.clone(),
                message: format!(
                    "no such link in the scenario's [[stack.link]] (links: {}); lift it by hand with `curl -X DELETE http://<proxy>:8474/links/{link}`",
                    self.links
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let super::plan::LinkRoute::Service { service, control } = &plan.route else {
            return Err(StackError::Command {
                what,
                message: "the docker backend serves links through a `proxy` compose service".into(),
            });
        };
        let addrs: Vec<std::net::SocketAddr> = match control {
            Some(a) => vec![*a],
            None => self
                .addresses(service)
                .await?
                .into_iter()
                .map(|ip| std::net::SocketAddr::new(ip, crate::proxy::control::DEFAULT_PORT))
                .collect(),
        };
        if addrs.is_empty() {
            return Err(StackError::Command {
                what,
                message: format!(
                    "the proxy service `{service}` has no network address (not running, or cut off?)"
                ),
            });
        }
        Ok(addrs
            .into_iter()
            .map(crate::proxy::control::Control::new)
            .collect())
    }

    /// Records a pause state change at once (the engine's event follows later).
    fn set_paused(&self, service: &str, paused: bool) {
        self.state.send_modify(|m| {
            if let Some(c) = m.get_mut(service) {
                c.paused = paused;
            }
        });
    }

    /// The compose project name.
    pub fn project(&self) -> &str {
        &self.project
    }

    async fn compose(&self, files: &[PathBuf], args: &[&str]) -> Result<(), StackError> {
        let cmd = &self.compose_cmd;
        let mut argv: Vec<String> = cmd[1..].to_vec();
        argv.extend(["-p".to_string(), self.project.clone()]);
        for f in files {
            argv.extend(["-f".to_string(), f.display().to_string()]);
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        let what = format!("{} {}", cmd[0], argv.join(" "));
        let out = tokio::process::Command::new(&cmd[0])
            .args(&argv)
            .env("REBOUND_RUN", &self.run_id)
            .envs(self.ports.0.iter().map(|(k, v)| (k, v.to_string())))
            .envs(self.durable_env())
            // A cancelled call (Ctrl-C during a stack-restart) must not race the heal
            // and teardown that follow: the compose process goes with it.
            .kill_on_drop(true)
            // Its own process group: a terminal's Ctrl-C goes to rebound, which
            // heals and tears down, and not to a `compose down` half-way through.
            .process_group(0)
            .output()
            .await
            .map_err(|e| StackError::Docker {
                what: what.clone(),
                message: e.to_string(),
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(StackError::Docker {
                what,
                message: last_lines(&String::from_utf8_lossy(&out.stderr), 12),
            })
        }
    }

    /// Finds the project's containers by label (or the given containers) and
    /// reads their state.
    async fn discover(&self) -> Result<(), StackError> {
        self.discover_with(false).await
    }

    /// [`Self::discover`]; with `partial`, given containers that are gone are
    /// left out instead of failing (at least one must be there).
    async fn discover_with(&self, partial: bool) -> Result<(), StackError> {
        if let Source::Containers(given) = &self.source {
            let mut found: BTreeMap<String, Ctr> = BTreeMap::new();
            for (service, name) in given {
                let info = match self
                    .docker
                    .inspect_container(name, None::<InspectContainerOptions>)
                    .await
                {
                    Ok(info) => info,
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) if partial => continue,
                    Err(e) => {
                        return Err(docker_err(format!(
                            "finding container `{name}` of service {service} (is it still there?)"
                        ))(e))
                    }
                };
                let ctr = Self::ctr_of(info);
                // Two services on one container would split its events.
                if let Some((other, _)) = found.iter().find(|(_, c)| c.id == ctr.id) {
                    return Err(StackError::Docker {
                        what: format!("service {service}"),
                        message: format!(
                            "container `{name}` is also service {other}'s: give each service its own container"
                        ),
                    });
                }
                found.insert(service.clone(), ctr);
            }
            if found.is_empty() {
                return Err(StackError::Docker {
                    what: "finding the given containers".into(),
                    message: "none of them is there any more".into(),
                });
            }
            self.state.send_replace(found);
            return Ok(());
        }
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{PROJECT_LABEL}={}", self.project)],
        )]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(docker_err("listing containers"))?;
        let mut found = BTreeMap::new();
        for c in list {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            // A label filter is exact, but check again: never touch another project.
            if labels.get(PROJECT_LABEL) != Some(&self.project) {
                continue;
            }
            let Some(service) = labels.get(SERVICE_LABEL).cloned() else {
                continue;
            };
            let info = self.inspect(&id, &service).await?;
            found.insert(
                service,
                Ctr {
                    id,
                    ..Self::ctr_of(info)
                },
            );
        }
        if found.is_empty() {
            return Err(StackError::Docker {
                what: format!(
                    "finding the containers of compose project `{}`",
                    self.project
                ),
                message: "no container carries that project label".into(),
            });
        }
        self.state.send_replace(found);
        Ok(())
    }

    /// A container's state as the engine reports it.
    fn ctr_of(info: bollard::models::ContainerInspectResponse) -> Ctr {
        let st = info.state.unwrap_or_default();
        let policy = info
            .host_config
            .and_then(|h| h.restart_policy)
            .and_then(|p| p.name);
        Ctr {
            id: info.id.unwrap_or_default(),
            running: st.running.unwrap_or(false),
            paused: st.paused.unwrap_or(false),
            restarts_by_policy: matches!(
                policy,
                Some(
                    RestartPolicyNameEnum::ALWAYS
                        | RestartPolicyNameEnum::UNLESS_STOPPED
                        | RestartPolicyNameEnum::ON_FAILURE
                )
            ),
            ..Ctr::default()
        }
    }

    fn start_events(&self) {
        let docker = self.docker.clone();
        let history = Arc::clone(&self.history);
        let state = self.state.clone();
        let published = Arc::clone(&self.published);
        // Given containers are followed by id (their events carry no compose
        // label); a project's by its label.
        let by_id: HashMap<String, String> = match &self.source {
            Source::Containers(_) => self
                .state
                .borrow()
                .iter()
                .map(|(s, c)| (c.id.clone(), s.clone()))
                .collect(),
            _ => HashMap::new(),
        };
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            if by_id.is_empty() {
                (
                    "label".to_string(),
                    vec![format!("{PROJECT_LABEL}={}", self.project)],
                )
            } else {
                ("container".to_string(), by_id.keys().cloned().collect())
            },
        ]);
        let task = tokio::spawn(async move {
            let mut stream = docker.events(Some(EventsOptions {
                filters: Some(filters),
                ..Default::default()
            }));
            while let Some(Ok(ev)) = stream.next().await {
                let action = ev.action.unwrap_or_default();
                let actor = ev.actor.unwrap_or_default();
                let attrs = actor.attributes.unwrap_or_default();
                let given = actor.id.as_ref().and_then(|id| by_id.get(id)).cloned();
                let Some(service) = given.or_else(|| {
                    by_id
                        .is_empty()
                        .then(|| attrs.get(SERVICE_LABEL).cloned())
                        .flatten()
                }) else {
                    continue;
                };
                let code = attrs.get("exitCode").and_then(|c| c.parse::<i32>().ok());
                let (lifecycle, detail) = match action.as_str() {
                    "start" => (Lifecycle::Started, None),
                    "die" => (Lifecycle::Exited, None),
                    "pause" => (Lifecycle::Paused, None),
                    "unpause" => (Lifecycle::Resumed, None),
                    a if a.starts_with("health_status") => (
                        Lifecycle::Health,
                        Some(a.trim_start_matches("health_status:").trim().to_string()),
                    ),
                    _ => continue,
                };
                state.send_modify(|m| {
                    if let Some(c) = m.get_mut(&service) {
                        match lifecycle {
                            Lifecycle::Started => {
                                c.running = true;
                                c.starts += 1;
                                c.ip = None;
                                published.lock().unwrap_or_else(|p| p.into_inner()).starts += 1;
                            }
                            Lifecycle::Exited => {
                                c.running = false;
                                c.ip = None;
                                c.paused = false;
                                c.exits += 1;
                                c.last_code = code;
                            }
                            Lifecycle::Paused => c.paused = true,
                            Lifecycle::Resumed => c.paused = false,
                            _ => {}
                        }
                    }
                });
                history.record(Event::Service {
                    service,
                    action: lifecycle,
                    pid: None,
                    code,
                    signal: None,
                    detail,
                    daemon_time_ns: ev.time_nano,
                });
            }
        });
        *self.events.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// (container port, host port) of every tcp port binding: what the container
    /// has now (random host ports resolved), and what its configuration asks for
    /// (a fixed port of a stopped container).
    fn bindings_of(info: &bollard::models::ContainerInspectResponse) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        let live = info.network_settings.as_ref().and_then(|n| n.ports.clone());
        let asked = info
            .host_config
            .as_ref()
            .and_then(|h| h.port_bindings.clone());
        for map in [live, asked] {
            for (spec, binds) in map.into_iter().flatten() {
                let Some(port) = spec
                    .strip_suffix("/tcp")
                    .and_then(|p| p.parse::<u16>().ok())
                else {
                    continue;
                };
                for b in binds.into_iter().flatten() {
                    if let Some(h) = b.host_port.and_then(|h| h.parse::<u16>().ok()) {
                        out.push((port, h));
                    }
                }
            }
        }
        out
    }

    /// Every service's published tcp ports: (host port, service, container port).
    async fn read_published(&self) -> Result<Vec<(u16, String, u16)>, StackError> {
        let mut out = Vec::new();
        for service in self.services() {
            let id = self.id(&service)?;
            let info = self.inspect(&id, &service).await?;
            for (port, host) in Self::bindings_of(&info) {
                if !out.contains(&(host, service.clone(), port)) {
                    out.push((host, service.clone(), port));
                }
            }
        }
        Ok(out)
    }

    fn id(&self, service: &str) -> Result<String, StackError> {
        self.state
            .borrow()
            .get(service)
            .map(|c| c.id.clone())
            .ok_or_else(|| StackError::UnknownService(service.to_string()))
    }

    /// The engine's view of container `id` (of `service`, for the message).
    async fn inspect(
        &self,
        id: &str,
        service: &str,
    ) -> Result<bollard::models::ContainerInspectResponse, StackError> {
        self.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(docker_err(format!("inspecting {service}")))
    }

    /// The host pid of container `id`'s init (of `service`, for the message).
    async fn pid(&self, id: &str, service: &str) -> Result<i64, StackError> {
        self.inspect(id, service)
            .await?
            .state
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
            .ok_or_else(|| StackError::NotRunning(service.to_string()))
    }

    fn secs(d: Duration) -> i32 {
        i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Undoes what faults may have left: reconnects networks, resumes paused containers.
    async fn heal_all(&self) -> Result<(), StackError> {
        let cut: Vec<(String, Vec<String>)> = self
            .disconnected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        let mut first = None;
        for (service, nets) in cut {
            if let Err(e) = self.connect(&service, &nets).await {
                first.get_or_insert(e);
            }
        }
        let paused: Vec<String> = self
            .state
            .borrow()
            .iter()
            .filter(|(_, c)| c.paused)
            .map(|(s, _)| s.clone())
            .collect();
        for service in paused {
            if let Err(e) = self.unpause(&service).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The names of the containers carrying `label` (`key=value`); none when the
    /// engine cannot say.
    async fn container_names(&self, label: &str) -> Vec<String> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| {
                c.names?
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
            })
            .collect()
    }
}

#[async_trait]
impl Stack for DockerStack {
    fn backend(&self) -> &'static str {
        "docker"
    }

    fn services(&self) -> Vec<String> {
        self.state.borrow().keys().cloned().collect()
    }

    async fn up(&self) -> Result<(), StackError> {
        if let Source::Compose { files, .. } = &self.source {
            // Images the compose file builds itself are built first (from cache
            // when nothing changed); `up` then never builds behind rebound's back.
            if files
                .iter()
                .any(|f| std::fs::read_to_string(f).is_ok_and(|t| super::plan::compose_builds(&t)))
            {
                self.compose(files, &["build"]).await.map_err(|e| match e {
                    StackError::Docker { message, .. } => StackError::Docker {
                        what: "building the images of the compose file's `build:` services".into(),
                        message,
                    },
                    other => other,
                })?;
            }
            self.mount_layers()?;
            self.compose(files, &["up", "-d", "--no-build"]).await?;
        }
        self.discover().await?;
        self.start_events();
        self.history.record(Event::StackUp);
        Ok(())
    }

    fn status(&self, service: &str) -> Result<ServiceStatus, StackError> {
        let m = self.state.borrow();
        let c = m
            .get(service)
            .ok_or_else(|| StackError::UnknownService(service.to_string()))?;
        let held = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(service);
        Ok(ServiceStatus {
            running: c.running,
            paused: c.paused,
            starts: c.starts,
            exits: c.exits,
            wanted: c.running || (c.restarts_by_policy && !held),
            last_code: c.last_code,
            last_signal: None,
        })
    }

    async fn signal(&self, service: &str, sig: Sig) -> Result<(), StackError> {
        let id = self.id(service)?;
        let signal = match sig {
            // Graceful stop (sigterm fault, after `hold`): the engine's own kill, which
            // also tells Docker not to restart the container.
            Sig::Term => {
                return self
                    .docker
                    .kill_container(
                        &id,
                        Some(KillContainerOptions {
                            signal: "SIGTERM".into(),
                        }),
                    )
                    .await
                    .map_err(docker_err(format!("sending SIGTERM to {service}")));
            }
            Sig::Kill => nix::sys::signal::Signal::SIGKILL,
            Sig::Other(s) => s,
        };
        // `docker kill` marks the container as stopped by hand, so its restart policy
        // would never apply. A crash, or a signal the service gets from outside, is
        // one the engine did not ask for: send it to the container's init from the host.
        let pid = self.pid(&id, service).await?;
        let pid = i32::try_from(pid).map_err(|_| StackError::NotRunning(service.to_string()))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).map_err(|e| {
            StackError::Signal {
                service: service.to_string(),
                signal: signal.as_str().into(),
                message: format!(
                    "host pid {pid}: {e} (rebound must run on the engine's host, as root)"
                ),
            }
        })
    }

    fn hold(&self, service: &str) -> Result<(), StackError> {
        self.id(service)?;
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.to_string());
        Ok(())
    }

    async fn stop(&self, service: &str, grace: Duration) -> Result<(), StackError> {
        let id = self.id(service)?;
        self.hold(service)?;
        self.docker
            .stop_container(
                &id,
                Some(StopContainerOptions {
                    t: Some(Self::secs(grace)),
                    signal: None,
                }),
            )
            .await
            .map_err(docker_err(format!("stopping {service}")))
    }

    async fn start(&self, service: &str) -> Result<(), StackError> {
        let id = self.id(service)?;
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(service);
        match self
            .docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            // 304: already started.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(docker_err(format!("starting {service}"))(e)),
        }
    }

    async fn pause(&self, service: &str) -> Result<(), StackError> {
        let id = self.id(service)?;
        self.docker
            .pause_container(&id)
            .await
            .map_err(docker_err(format!("pausing {service}")))?;
        self.set_paused(service, true);
        Ok(())
    }

    async fn unpause(&self, service: &str) -> Result<(), StackError> {
        let id = self.id(service)?;
        let info = self.inspect(&id, service).await?;
        if !info.state.and_then(|s| s.paused).unwrap_or(false) {
            return Ok(());
        }
        self.docker
            .unpause_container(&id)
            .await
            .map_err(docker_err(format!("resuming {service}")))?;
        self.set_paused(service, false);
        Ok(())
    }

    async fn wait_exit(
        &self,
        service: &str,
        exits: u64,
        timeout: Duration,
    ) -> Result<(), StackError> {
        let mut rx = self.state.subscribe();
        let done = tokio::time::timeout(
            timeout,
            rx.wait_for(|m| m.get(service).is_some_and(|c| c.exits > exits)),
        )
        .await
        .is_ok();
        if done {
            Ok(())
        } else {
            Err(StackError::Timeout {
                service: service.to_string(),
                what: "container exit (die event)".into(),
                after: timeout,
            })
        }
    }

    async fn restart(&self, service: &str, grace: Duration) -> Result<(), StackError> {
        let id = self.id(service)?;
        self.docker
            .restart_container(
                &id,
                Some(RestartContainerOptions {
                    t: Some(Self::secs(grace)),
                    signal: None,
                }),
            )
            .await
            .map_err(docker_err(format!("restarting {service}")))
    }

    async fn restart_all(
        &self,
        mode: StackRestartMode,
        grace: Duration,
    ) -> Result<String, StackError> {
        let t = Self::secs(grace).to_string();
        match (mode, &self.source) {
            (StackRestartMode::Parallel, _) => {
                let services = self.services();
                let n = services.len();
                let results = futures_util::future::join_all(
                    services.iter().map(|service| self.restart(service, grace)),
                )
                .await;
                results.into_iter().collect::<Result<Vec<()>, _>>()?;
                Ok(format!("{n} containers restarted at once"))
            }
            (StackRestartMode::Ordered, Source::Compose { files, .. }) => {
                self.compose(files, &["stop", "-t", &t]).await?;
                self.compose(files, &["up", "-d", "--no-build"]).await?;
                Ok("compose stop, then compose up -d (dependency order, health conditions)".into())
            }
            (StackRestartMode::DownUp, Source::Compose { files, .. }) => {
                self.compose(files, &["down", "--remove-orphans", "-t", &t])
                    .await?;
                self.compose(files, &["up", "-d", "--no-build"]).await?;
                self.discover().await?;
                Ok("compose down (volumes kept), then compose up -d".into())
            }
            (_, Source::Attach | Source::Containers(_)) => Err(StackError::Unsupported {
                backend: "docker (attached project or given containers)",
                op: "run compose stop/down on a project rebound did not bring up",
            }),
        }
    }

    async fn ensure_up(&self) -> Result<Vec<String>, StackError> {
        let Source::Compose { files, .. } = &self.source else {
            return Ok(Vec::new());
        };
        let down: Vec<String> = self
            .state
            .borrow()
            .iter()
            .filter(|(_, c)| !c.running)
            .map(|(s, _)| s.clone())
            .collect();
        // Creates what is missing and starts what is stopped; --no-recreate: a container
        // whose image was rebuilt meanwhile is left alone, never replaced mid-run.
        self.compose(files, &["up", "-d", "--no-build", "--no-recreate"])
            .await?;
        self.discover().await?;
        Ok(down)
    }

    async fn disconnect(&self, service: &str) -> Result<Vec<String>, StackError> {
        let id = self.id(service)?;
        let info = self.inspect(&id, service).await?;
        let nets: Vec<String> = info
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        for net in &nets {
            // Written ahead: a rebound killed right after the cut can still be healed.
            if let Some(j) = &self.journal {
                j.disconnected(service, net)
                    .map_err(|e| StackError::Docker {
                        what: format!("disconnecting {service} from {net}"),
                        message: e.to_string(),
                    })?;
            }
            self.docker
                .disconnect_network(
                    net,
                    NetworkDisconnectRequest {
                        container: id.clone(),
                        force: Some(true),
                    },
                )
                .await
                .map_err(docker_err(format!("disconnecting {service} from {net}")))?;
            self.disconnected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(service.to_string())
                .or_default()
                .push(net.clone());
        }
        Ok(nets)
    }

    async fn connect(&self, service: &str, networks: &[String]) -> Result<(), StackError> {
        let id = self.id(service)?;
        // Idempotent: a network the container is on already (a cut journaled but
        // never made, or a heal repeated) is skipped, not an error.
        let attached: Vec<String> = self
            .inspect(&id, service)
            .await?
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        for net in networks.iter().filter(|n| !attached.contains(n)) {
            // Compose resolves services by their name on the network: keep it as an alias.
            let endpoint = bollard::models::EndpointSettings {
                aliases: Some(vec![service.to_string()]),
                ..Default::default()
            };
            self.docker
                .connect_network(
                    net,
                    NetworkConnectRequest {
                        container: id.clone(),
                        endpoint_config: Some(endpoint),
                    },
                )
                .await
                .map_err(docker_err(format!("reconnecting {service} to {net}")))?;
        }
        if let Some(left) = self
            .disconnected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(service)
        {
            left.retain(|n| !networks.contains(n));
        }
        Ok(())
    }

    async fn reconnect(&self, service: &str) -> Result<Vec<String>, StackError> {
        let nets = self
            .disconnected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(service)
            .unwrap_or_default();
        if !nets.is_empty() {
            self.connect(service, &nets).await?;
        }
        Ok(nets)
    }

    async fn addresses(&self, service: &str) -> Result<Vec<std::net::IpAddr>, StackError> {
        let id = self.id(service)?;
        let info = self.inspect(&id, service).await?;
        Ok(info
            .network_settings
            .and_then(|n| n.networks)
            .into_iter()
            .flatten()
            .filter_map(|(_, e)| e.ip_address)
            .filter_map(|ip| ip.parse().ok())
            .collect())
    }

    async fn netns(&self, service: &str, argv: &[String]) -> Result<ExecOutput, StackError> {
        let id = self.id(service)?;
        let pid = self.pid(&id, service).await?;
        let what = format!("`{}` in the network namespace of {service}", argv.join(" "));
        // A container on the host's network (`network_mode: host`) has the host's
        // namespace: a kernel fault there would hit the whole machine. Refuse.
        let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
        if ns(&pid.to_string()).is_some_and(|n| Some(n) == ns("1")) {
            return Err(StackError::Command {
                what,
                message: format!(
                    "{service} shares the host's network namespace (network_mode: host?); rebound will not put kernel network faults on the host itself"
                ),
            });
        }
        let mut cmd = tokio::process::Command::new("nsenter");
        cmd.arg("-t")
            .arg(pid.to_string())
            .arg("-n")
            .arg("--")
            .args(argv)
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
            .await
            .map_err(|_| StackError::Command {
                what: what.clone(),
                message: "did not finish within 20 s".into(),
            })?
            .map_err(|e| StackError::Command {
                what: what.clone(),
                message: format!(
                    "cannot run nsenter (rebound must run as root on the engine's host): {e}"
                ),
            })?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(ExecOutput {
            code: i64::from(out.status.code().unwrap_or(-1)),
            output,
        })
    }

    async fn set_link(
        &self,
        link: &str,
        fault: Option<crate::proxy::LinkFault>,
        lease: Option<Duration>,
    ) -> Result<Option<crate::proxy::LinkFault>, StackError> {
        // A proxy on several networks: the first address that answers (setting a
        // fault twice is harmless).
        let mut last = None;
        for api in self.link_control(link).await? {
            match api.set(link, fault.clone(), lease).await {
                Ok(previous) => return Ok(previous),
                // Nothing there: the next address may answer.
                Err(e) if e.unreachable => last = Some(e),
                // The proxy answered: its word is final.
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        Err(StackError::Command {
            what: format!("link `{link}`"),
            message: last.map_or_else(|| "no control API".into(), |e| e.to_string()),
        })
    }

    async fn exec(&self, service: &str, argv: &[String]) -> Result<ExecOutput, StackError> {
        let id = self.id(service)?;
        let what = format!("exec {argv:?} in {service}");
        let exec = self
            .docker
            .create_exec(
                &id,
                ExecConfig {
                    cmd: Some(argv.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(docker_err(what.clone()))?;
        let mut output = String::new();
        if let bollard::exec::StartExecResults::Attached {
            output: mut stream, ..
        } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(docker_err(what.clone()))?
        {
            while let Some(Ok(chunk)) = stream.next().await {
                output.push_str(&chunk.to_string());
            }
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(docker_err(what))?
            .exit_code
            .unwrap_or(-1);
        Ok(ExecOutput { code, output })
    }

    async fn address(&self, service: &str, port: u16) -> Result<std::net::SocketAddr, StackError> {
        // The engine's events say whether it runs, without asking the engine (an
        // inspect blocks while the engine restarts the container); its address is
        // read once per start.
        let (running, cached) = {
            let m = self.state.borrow();
            let c = m
                .get(service)
                .ok_or_else(|| StackError::UnknownService(service.to_string()))?;
            (c.running, c.ip)
        };
        if !running {
            return Err(StackError::NotRunning(service.to_string()));
        }
        if let Some(ip) = cached {
            return Ok(std::net::SocketAddr::new(ip, port));
        }
        let id = self.id(service)?;
        let info = self.inspect(&id, service).await?;
        // A container that is not running (or waiting for its restart) is down: no
        // packet is sent to an address with nothing behind it (a lost SYN waits a
        // whole retransmission timeout, and the host's ARP entry with it).
        let state = info.state.as_ref();
        if !state.is_some_and(|s| s.running == Some(true) && s.restarting != Some(true)) {
            return Err(StackError::NotRunning(service.to_string()));
        }
        let ip = info
            .network_settings
            .and_then(|n| n.networks)
            .into_iter()
            .flatten()
            .filter_map(|(_, e)| e.ip_address)
            .find_map(|ip| ip.parse::<std::net::IpAddr>().ok())
            .ok_or_else(|| StackError::NotRunning(service.to_string()))?;
        self.state.send_modify(|m| {
            if let Some(c) = m.get_mut(service) {
                c.ip = Some(ip);
            }
        });
        Ok(std::net::SocketAddr::new(ip, port))
    }

    async fn behind(
        &self,
        host: std::net::SocketAddr,
    ) -> Result<Option<std::net::SocketAddr>, StackError> {
        let (starts, read_at) = {
            let p = self.published.lock().unwrap_or_else(|p| p.into_inner());
            (p.starts, p.read_at)
        };
        if read_at != Some(starts) {
            let read = self.read_published().await?;
            let mut p = self.published.lock().unwrap_or_else(|p| p.into_inner());
            // Replaced, not merged: a host port a container gave up may be
            // another one's by now. Stamped with the count read before the
            // inspects: a start during them makes the next call read again.
            p.seen = read;
            p.read_at = Some(starts);
        }
        let published = self
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .clone();
        match published.iter().find(|(h, _, _)| *h == host.port()) {
            Some((_, service, port)) if host.ip().is_loopback() || host.ip().is_unspecified() => {
                Ok(Some(self.address(service, *port).await?))
            }
            _ => Ok(None),
        }
    }

    async fn health(&self, service: &str) -> Result<Option<Health>, StackError> {
        let id = self.id(service)?;
        let info = self.inspect(&id, service).await?;
        Ok(info
            .state
            .and_then(|s| s.health)
            .and_then(|h| h.status)
            .map(|s| Health::parse(s.as_ref())))
    }

    async fn power_off(&self, services: &[String]) -> Result<String, StackError> {
        if let Some(s) = services.iter().find(|s| !self.layers.has(s)) {
            return Err(StackError::Command {
                what: format!("power-cut of {s}"),
                message: "the service is not in [stack] durable: nothing of it is on the power-loss layer".into(),
            });
        }
        let ids = services
            .iter()
            .map(|s| self.id(s))
            .collect::<Result<Vec<_>, _>>()?;
        // Held first: no restart policy may bring one back before its data is rolled back.
        for s in services {
            self.hold(s)?;
        }
        // Frozen at one instant (each container's cgroup freezer, all at once):
        // nothing more is acknowledged.
        let frozen =
            futures_util::future::join_all(ids.iter().map(|id| self.docker.pause_container(id)))
                .await;
        let abort_error = self.layers.abort(services).err();
        // SIGKILL through the engine, whatever happened above (no frozen container
        // is left): it marks the container stopped by hand, so no restart policy
        // applies, and thaws a frozen one after the signal.
        let mut kill_error = None;
        for ((service, id), frozen) in services.iter().zip(&ids).zip(&frozen) {
            let killed = self
                .docker
                .kill_container(
                    id,
                    Some(KillContainerOptions {
                        signal: "SIGKILL".into(),
                    }),
                )
                .await;
            if frozen.is_ok() {
                self.set_paused(service, false);
            }
            match killed {
                Ok(()) => {}
                // 409: not running (it died by itself meanwhile): down all the same.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => {}
                Err(e) => {
                    kill_error.get_or_insert(docker_err(format!("SIGKILLing {service}"))(e));
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
            // The container must be gone before its data is rolled back.
            let id = self.id(s)?;
            let deadline = tokio::time::Instant::now() + CLI_BOUND;
            loop {
                let info = self.inspect(&id, s).await?;
                if !info.state.and_then(|st| st.running).unwrap_or(false) {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(StackError::Timeout {
                        service: s.clone(),
                        what: "the power-cut container to stop".into(),
                        after: CLI_BOUND,
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
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
            .set_io_off_runtime(services, fault, "the service is not in [stack] durable")
            .await
    }

    fn durable_services(&self) -> Vec<String> {
        self.durable.iter().map(|(s, _)| s.clone()).collect()
    }

    fn settled(&self) {
        self.layers.checkpoint();
    }

    fn log_source(&self, service: &str) -> Option<super::logs::LogSource> {
        Some(super::logs::LogSource::Docker {
            docker: self.docker.clone(),
            id: self.id(service).ok()?,
        })
    }

    async fn teardown(&self) -> Result<(), StackError> {
        let healed = self.heal_all().await;
        if let Some(task) = self.events.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        match &self.source {
            Source::Compose { files, keep: false } => {
                let args = ["down", "-v", "--remove-orphans", "-t", "5"];
                // The project's containers by name: their endpoints may outlive them.
                let label = format!("com.docker.compose.project={}", self.project);
                let known = self.container_names(&label).await;
                // Retried once: an engine busy with the last restart can refuse it.
                let down = match self.compose(files, &args).await {
                    Ok(()) => Ok(()),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        self.compose(files, &args).await
                    }
                };
                // What a compose up killed mid-way (Ctrl-C at bring-up) may still
                // have had created after `down` listed the project, and what a
                // failed `down` left (a network whose endpoint outlived its
                // container): once the sweep leaves nothing of the project, the
                // stack is down.
                let swept = remove_labelled_known(&self.docker, &label, &known)
                    .await
                    .map(|_| ());
                let down = match (down, &swept) {
                    (Err(e), Ok(())) => {
                        tracing::warn!(
                            "compose down failed, the project was removed by its labels: {e}"
                        );
                        Ok(())
                    }
                    (down, _) => down,
                };
                // The layers once no container uses them; their data goes with the
                // stack, as its volumes do.
                let unmounted = self.layers.unmount_all(self.journal.as_ref());
                if unmounted.is_ok() {
                    for (_, dir) in &self.durable {
                        let _ = std::fs::remove_dir_all(dir);
                        if let Some(parent) = dir.parent() {
                            let _ = std::fs::remove_dir(parent); // only when empty
                        }
                    }
                }
                healed.and(down).and(swept).and(unmounted)
            }
            _ => healed,
        }
    }

    fn kill_now(&self) {
        // Only a stack rebound brought up is killed; an attached one, or given
        // containers, are left running — thawed, since a frozen container cannot
        // even be removed by its owner.
        let Source::Compose { keep, .. } = &self.source else {
            let ids: Vec<String> = self.state.borrow().values().map(|c| c.id.clone()).collect();
            if !ids.is_empty() {
                let _ =
                    bounded_cli(std::iter::once("unpause").chain(ids.iter().map(String::as_str)));
            }
            return;
        };
        // What the events saw, and what compose made that they did not yet (a
        // second Ctrl-C during bring-up).
        let label = format!("label=com.docker.compose.project={}", self.project);
        let mut ids: Vec<String> = self.state.borrow().values().map(|c| c.id.clone()).collect();
        if let Some(listed) = bounded_cli(["ps", "-aq", "--no-trunc", "--filter", label.as_str()]) {
            for id in listed.split_whitespace() {
                if !ids
                    .iter()
                    .any(|known| known.starts_with(id) || id.starts_with(known.as_str()))
                {
                    ids.push(id.to_string());
                }
            }
        }
        // A frozen container cannot die: the engine's kill (and so `rm -f`) waits for
        // it forever holding the container's lock, and the heal's unpause then waits
        // on that lock (Docker 20.10, measured). Thaw first; "not paused" errors are
        // expected for the rest.
        if !ids.is_empty() {
            let _ = bounded_cli(std::iter::once("unpause").chain(ids.iter().map(String::as_str)));
        }
        if *keep {
            if !ids.is_empty() {
                let _ = bounded_cli(std::iter::once("kill").chain(ids.iter().map(String::as_str)));
            }
            return;
        }
        // Killed and removed with their anonymous volumes, then the project's
        // networks and named volumes: nothing of a stack rebound made is left even
        // if teardown cannot run any more. Each call is bounded (a wedged engine).
        if !ids.is_empty() {
            let _ = bounded_cli(
                ["rm", "-f", "-v"]
                    .into_iter()
                    .chain(ids.iter().map(String::as_str)),
            );
        }
        for kind in ["network", "volume"] {
            let listed = bounded_cli([kind, "ls", "-q", "--filter", label.as_str()]);
            let names: Vec<String> = listed
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect();
            if !names.is_empty() {
                let _ = bounded_cli(
                    [kind, "rm"]
                        .into_iter()
                        .chain(names.iter().map(String::as_str)),
                );
            }
        }
    }
}

#[cfg(test)]
mod published_tests {
    use std::collections::HashMap;

    use bollard::models::{ContainerInspectResponse, HostConfig, NetworkSettings, PortBinding};

    use super::DockerStack;

    fn binding(port: &str) -> Option<Vec<PortBinding>> {
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(port.into()),
        }])
    }

    #[test]
    fn live_bindings_resolve_random_host_ports_and_asked_ones_cover_a_stopped_container() {
        let info = ContainerInspectResponse {
            // Now: the engine's pick for the random one.
            network_settings: Some(NetworkSettings {
                ports: Some(HashMap::from([
                    ("8080/tcp".to_string(), binding("32771")),
                    ("53/udp".to_string(), binding("32000")),
                ])),
                ..Default::default()
            }),
            // Asked: a random port (empty) and a fixed one.
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([
                    ("8080/tcp".to_string(), binding("")),
                    ("5432/tcp".to_string(), binding("15432")),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut got = DockerStack::bindings_of(&info);
        got.sort_unstable();
        assert_eq!(got, vec![(5432, 15432), (8080, 32771)]);
        // Stopped: only what was asked for, and no random port yet.
        let stopped = ContainerInspectResponse {
            network_settings: Some(NetworkSettings::default()),
            ..info
        };
        assert_eq!(DockerStack::bindings_of(&stopped), vec![(5432, 15432)]);
    }
}
