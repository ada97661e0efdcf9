//! The validated stack section of a scenario: which backend, which services, what
//! the backend can do ([`StackPlan::capabilities`]), and the placeholders a process
//! service's command may use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{Capabilities, Capability};

/// The stack backend and its services.
#[derive(Debug, Clone)]
pub enum StackPlan {
    /// Local processes supervised by rebound.
    Process {
        /// Services in start order.
        services: Vec<ServicePlan>,
        /// Links through rebound's fault proxy (`[[stack.link]]`).
        links: Vec<LinkPlan>,
    },
    /// A compose project on the local Docker Engine.
    Docker {
        /// Where the containers come from.
        source: DockerSource,
        /// Service names read from the compose file (None when attaching).
        services: Option<Vec<String>>,
        /// Links of `rebound proxy` services (`[[stack.link]]`).
        links: Vec<LinkPlan>,
        /// Services on the power-loss layer (`durable`; compose source only).
        durable: Vec<String>,
        /// The layer's crash model.
        durability: crate::durable::Model,
    },
}

/// How the docker backend gets its stack.
#[derive(Debug, Clone, PartialEq)]
pub enum DockerSource {
    /// rebound brings the compose file up under its own project name.
    Compose {
        /// The compose file (resolved against the scenario directory).
        file: PathBuf,
        /// Files merged over it, in order.
        overrides: Vec<PathBuf>,
        /// Project name (default `rebound-<scenario>-<run>`).
        project: Option<String>,
    },
    /// An already running compose project.
    Attach {
        /// Its compose project name.
        project: String,
    },
    /// Containers someone else started (a test's testcontainers): service name →
    /// container id or name. Never torn down.
    Containers {
        /// Service → container.
        containers: BTreeMap<String, String>,
    },
}

impl StackPlan {
    /// Names of all services, in start order (None when only the running stack knows).
    pub fn service_names(&self) -> Option<Vec<String>> {
        match self {
            StackPlan::Process { services, .. } => {
                Some(services.iter().map(|s| s.name.clone()).collect())
            }
            StackPlan::Docker { services, .. } => services.clone(),
        }
    }

    /// The backend's name as written in files.
    pub fn backend(&self) -> &'static str {
        match self {
            StackPlan::Process { .. } => "process",
            StackPlan::Docker { .. } => "docker",
        }
    }

    /// Names of the links rebound's proxy serves (`[[stack.link]]`).
    pub fn link_names(&self) -> Vec<String> {
        match self {
            StackPlan::Process { links, .. } | StackPlan::Docker { links, .. } => {
                links.iter().map(|l| l.name.clone()).collect()
            }
        }
    }

    /// The links (`[[stack.link]]`).
    pub fn links(&self) -> &[LinkPlan] {
        match self {
            StackPlan::Process { links, .. } | StackPlan::Docker { links, .. } => links,
        }
    }

    /// The services whose data is on the power-loss layer (`durable-dirs`, or the
    /// docker stack's `durable`).
    pub fn durable_services(&self) -> Vec<String> {
        match self {
            StackPlan::Process { services, .. } => services
                .iter()
                .filter(|s| !s.durable_dirs.is_empty())
                .map(|s| s.name.clone())
                .collect(),
            StackPlan::Docker { durable, .. } => durable.clone(),
        }
    }

    /// What the backend can do beyond the basic primitives; validation reads it.
    pub fn capabilities(&self) -> Capabilities {
        use Capability::*;
        match self {
            StackPlan::Process { .. } => Capabilities::of(&[Link, PowerLoss]),
            StackPlan::Docker {
                source: DockerSource::Attach { .. } | DockerSource::Containers { .. },
                ..
            } => Capabilities::of(&[Restart, RestartAll, Network, Exec, Health, Netns, Link]),
            StackPlan::Docker { .. } => Capabilities::of(&[
                Restart, RestartAll, Compose, Network, Exec, Health, Netns, Link, PowerLoss,
            ]),
        }
    }
}

/// Service names of a compose file (the keys of its `services` mapping).
pub fn compose_services(text: &str) -> Result<Vec<String>, String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    if !doc.is_mapping() {
        return Err("not a YAML mapping".into());
    }
    // An override file may define only volumes or networks.
    let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) else {
        return Ok(Vec::new());
    };
    Ok(services
        .keys()
        .filter_map(|k| k.as_str().map(String::from))
        .collect())
}

/// Whether a compose file builds an image itself (a service with `build:`).
pub fn compose_builds(text: &str) -> bool {
    serde_yaml::from_str::<serde_yaml::Value>(text)
        .ok()
        .and_then(|doc| doc.get("services")?.as_mapping().cloned())
        .is_some_and(|services| services.values().any(|s| s.get("build").is_some()))
}

/// A port a compose service publishes on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// The service.
    pub service: String,
    /// Host port.
    pub host_port: u16,
    /// The container's port behind it.
    pub container_port: u16,
}

/// The host ports a compose file publishes, with `${VAR}`, `${VAR:-default}` and
/// `${VAR-default}` filled from `env` as compose does; entries it cannot read
/// (ranges, unset variables without a default) are left out.
pub fn compose_ports(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<PublishedPort> {
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return Vec::new();
    };
    let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, svc) in services {
        let (Some(service), Some(ports)) = (
            name.as_str(),
            svc.get("ports").and_then(|p| p.as_sequence()),
        ) else {
            continue;
        };
        for entry in ports {
            let pair = match entry {
                serde_yaml::Value::String(s) => short_port(&interpolate(s, env)),
                serde_yaml::Value::Mapping(m) => {
                    let num = |k: &str| match m.get(k)? {
                        serde_yaml::Value::Number(n) => u16::try_from(n.as_u64()?).ok(),
                        serde_yaml::Value::String(s) => interpolate(s, env).parse().ok(),
                        _ => None,
                    };
                    num("published").zip(num("target"))
                }
                _ => None,
            };
            if let Some((host_port, container_port)) = pair {
                out.push(PublishedPort {
                    service: service.to_string(),
                    host_port,
                    container_port,
                });
            }
        }
    }
    out
}

/// `[ip:]host:container[/proto]` → (host, container).
fn short_port(s: &str) -> Option<(u16, u16)> {
    let s = s.split('/').next()?;
    let mut parts = s.rsplitn(3, ':');
    let container = parts.next()?.parse().ok()?;
    let host = parts.next()?.parse().ok()?;
    Some((host, container))
}

/// Compose's variable substitution, for the forms the demo files use.
fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let body = &rest[i + 2..i + j];
        let value = if let Some((var, default)) = body.split_once(":-") {
            env(var)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.into())
        } else if let Some((var, default)) = body.split_once('-') {
            env(var).unwrap_or_else(|| default.into())
        } else {
            env(body).unwrap_or_default()
        };
        out.push_str(&value);
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

/// `[[stack.link]]`: a connection path that runs through rebound's fault proxy —
/// the service under test connects to the proxy, which forwards to the dependency.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkPlan {
    /// Link name, the target of link faults.
    pub name: String,
    /// The service that connects (documentation; checked to exist).
    pub from: Option<String>,
    /// The service connected to (documentation; checked to exist).
    pub to: Option<String>,
    /// Where the proxy runs.
    pub route: LinkRoute,
}

/// Where a link's proxy runs.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkRoute {
    /// In rebound's own process (process backend).
    Local {
        /// Where the proxy listens (loopback).
        listen: std::net::SocketAddr,
        /// Where it forwards to (loopback).
        upstream: std::net::SocketAddr,
    },
    /// In a compose service running `rebound proxy` (docker backend).
    Service {
        /// The compose service.
        service: String,
        /// Its control API (None: the container's address, port 8474).
        control: Option<std::net::SocketAddr>,
    },
}

/// One supervised process.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// Service name.
    pub name: String,
    /// argv with placeholders (expanded at start).
    pub command: Vec<String>,
    /// Extra environment (placeholders expanded at start).
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute or relative to the scenario directory).
    pub workdir: Option<PathBuf>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// First restart delay.
    pub restart_backoff: Duration,
    /// Largest restart delay.
    pub restart_max_backoff: Duration,
    /// SIGTERM → SIGKILL grace when rebound stops it.
    pub stop_grace: Duration,
    /// Directories under rebound's power-loss layer for the run (placeholders
    /// expanded at start; relative to the scenario directory).
    pub durable_dirs: Vec<PathBuf>,
    /// The layer's crash model.
    pub durability: crate::durable::Model,
}

/// What the supervisor does when a service exits on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Stay down (rebound's heal starts it after the trial).
    #[default]
    Never,
    /// Restart when the exit was not a clean `exit 0` (signals count as failures).
    OnFailure,
    /// Always restart.
    Always,
}

/// Placeholders allowed in service commands, env and workdir.
pub const PLACEHOLDERS: &[&str] = &["rebound", "run_dir", "scenario_dir"];

pub(crate) fn check_placeholders(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated placeholder in `{s}`"));
        };
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `${{{name}}}`; known: {}",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("${{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Expands `${rebound}`, `${run_dir}` and `${scenario_dir}` (validated beforehand).
pub fn expand(s: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = s.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_are_read_with_compose_variable_defaults() {
        let text = r#"
services:
  redis:
    ports: ["127.0.0.1:${REBOUND_REDIS_PORT:-16379}:6379", "6380:6380/tcp"]
  db:
    ports:
      - target: 5432
        published: "${DB_PORT-15432}"
  app:
    ports: ["8080", "${UNSET}:9000"]
"#;
        let env = |k: &str| (k == "REBOUND_REDIS_PORT").then(|| "17000".to_string());
        let ports = compose_ports(text, &env);
        let seen: Vec<(&str, u16, u16)> = ports
            .iter()
            .map(|p| (p.service.as_str(), p.host_port, p.container_port))
            .collect();
        assert_eq!(
            seen,
            [
                ("redis", 17000, 6379),
                ("redis", 6380, 6380),
                ("db", 15432, 5432)
            ]
        );
        assert!(compose_ports("not: [valid", &env).is_empty());
    }
}
