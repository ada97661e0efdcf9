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
    },
    /// A compose project on the local Docker Engine.
    Docker {
        /// Where the containers come from.
        source: DockerSource,
        /// Service names read from the compose file (None when attaching).
        services: Option<Vec<String>>,
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
}

impl StackPlan {
    /// Names of all services, in start order (None when only the running stack knows).
    pub fn service_names(&self) -> Option<Vec<String>> {
        match self {
            StackPlan::Process { services } => {
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

    /// What the backend can do beyond the basic primitives; validation reads it.
    pub fn capabilities(&self) -> Capabilities {
        use Capability::*;
        match self {
            StackPlan::Process { .. } => Capabilities::BASIC,
            StackPlan::Docker {
                source: DockerSource::Attach { .. },
                ..
            } => Capabilities::of(&[Restart, RestartAll, Network, Exec, Health]),
            StackPlan::Docker { .. } => {
                Capabilities::of(&[Restart, RestartAll, Compose, Network, Exec, Health])
            }
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
