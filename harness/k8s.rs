//! `rebound k8s-job`: the shards of one scenario as a Kubernetes Indexed Job — the
//! same contract as `rebound swarm run` (`rebound swarm task --shard i/N`, the run
//! bundle on the pod's stdout), printed as a manifest for `kubectl apply`, with the
//! collection step (`kubectl logs` of each index, then `rebound k8s-collect`).
//!
//! The scenario and its compose files go in a ConfigMap, each mounted at its path
//! below `/rebound/work` relative to the files' common directory, so relative
//! references between them still hold. A docker scenario needs a Docker Engine on
//! the node: the pod mounts the node's `/var/run/docker.sock` and uses the node's
//! network (the stack's ports are the node's loopback ports); a process scenario
//! needs neither.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::scenario::{DockerSource, Plan, StackPlan};

/// Where the shipped files are mounted in the pod.
pub const WORK: &str = "/rebound/work";
/// rebound's state directory on the node, mounted at the same path in the pod.
pub const STATE: &str = "/var/lib/rebound";

/// Settings of the manifest.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Completions (shards).
    pub shards: u32,
    /// Pods at once (default: all).
    pub parallel: Option<u32>,
    /// The image with rebound (and docker-compose, for docker scenarios).
    pub image: String,
    /// Namespace.
    pub namespace: String,
}

/// The name of the Job and its ConfigMap: `rebound-<scenario>`, DNS-safe.
fn job_name(plan: &Plan) -> String {
    let clean: String = plan
        .name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut name = format!("rebound-{}", clean.trim_matches('-'));
    name.truncate(52); // room for the pods' suffixes within 63
    name.trim_end_matches('-').to_string()
}

/// The files to ship, relative to their common directory, with their text.
fn files(plan: &Plan) -> Result<Vec<(PathBuf, String)>, String> {
    let mut paths = vec![plan.source_path.clone()];
    if let StackPlan::Docker { source, .. } = &plan.stack {
        match source {
            DockerSource::Compose {
                file, overrides, ..
            } => {
                paths.push(file.clone());
                paths.extend(overrides.iter().cloned());
            }
            DockerSource::Attach { project } => {
                return Err(format!(
                    "the scenario attaches to the running project `{project}`: each pod needs a stack of its own (`compose = …`)"
                ))
            }
            DockerSource::Containers { .. } => {
                return Err("the scenario names running containers (`containers = …`): each pod needs a stack of its own (`compose = …`)".into())
            }
        }
    }
    let abs: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            std::path::absolute(p)
                .map(|a| normalize(&a))
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect::<Result<_, _>>()?;
    let mut root = abs[0].parent().unwrap_or(Path::new("/")).to_path_buf();
    while !abs.iter().all(|p| p.starts_with(&root)) {
        root = root.parent().unwrap_or(Path::new("/")).to_path_buf();
    }
    abs.iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((p.strip_prefix(&root).unwrap_or(p).to_path_buf(), text))
        })
        .collect()
}

/// `a/b/../c` → `a/c` (the compose path of a scenario is often `../docker/…`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A ConfigMap key for a relative path (`docker/demo/compose.yaml` → `docker.demo.compose.yaml`).
fn key(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The manifest: a ConfigMap with the files and the Indexed Job, then the
/// collection step as comments.
pub fn job(plan: &Plan, opts: &JobOptions) -> Result<String, String> {
    if opts.shards == 0 {
        return Err("--shards must be at least 1".into());
    }
    crate::swarm::check_plan(plan).map_err(|e| e.to_string())?;
    let parallel = opts.parallel.unwrap_or(opts.shards).clamp(1, opts.shards);
    let name = job_name(plan);
    let ns = &opts.namespace;
    let n = opts.shards;
    let docker = matches!(plan.stack, StackPlan::Docker { .. });
    let files = files(plan)?;
    let scenario = format!("{WORK}/{}", files[0].0.display());
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# rebound k8s-job: {n} shard(s) of scenario `{}` as an Indexed Job.",
        plan.name
    );
    let _ = writeln!(y, "# Apply: kubectl apply -f this.yaml");
    let _ = writeln!(y, "---");
    let _ = writeln!(y, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-files\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: rebound\n    rebound.scenario: {name}\ndata:");
    for (rel, text) in &files {
        // `|2`: the indentation is stated, so a file whose first line is indented
        // keeps it.
        let _ = writeln!(y, "  {}: |2", key(rel));
        for line in text.lines() {
            if line.is_empty() {
                let _ = writeln!(y);
            } else {
                let _ = writeln!(y, "    {line}");
            }
        }
    }
    let _ = writeln!(y, "---");
    let _ = writeln!(y, "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: rebound\n    rebound.scenario: {name}\nspec:\n  completionMode: Indexed\n  completions: {n}\n  parallelism: {parallel}\n  backoffLimit: 0\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: rebound\n        rebound.scenario: {name}\n    spec:\n      restartPolicy: Never\n      # Time for a stopped shard to heal its faults and tear its stack down.\n      terminationGracePeriodSeconds: {}", crate::swarm::STOP_GRACE.as_secs());
    if docker {
        let _ = writeln!(y, "      # The stack's host ports are the node's loopback ports; signals go to its\n      # containers by host pid, as `rebound run` sends them on the engine's host.\n      hostNetwork: true\n      hostPID: true\n      dnsPolicy: ClusterFirstWithHostNet");
    }
    let _ = writeln!(y, "      containers:\n        - name: shard\n          image: {}\n          imagePullPolicy: IfNotPresent", opts.image);
    let _ = writeln!(y, "          # JOB_COMPLETION_INDEX is 0-based; shards are 1-based.\n          command: [\"/bin/sh\", \"-c\"]\n          args:\n            - >-\n              exec /usr/local/bin/rebound swarm task {scenario}\n              --shard $((JOB_COMPLETION_INDEX + 1))/{n}\n              --out {STATE}/k8s/{name}/shard-$((JOB_COMPLETION_INDEX + 1))");
    // The pod is the shard itself (a swarm task starts a sibling container instead).
    let _ = writeln!(
        y,
        "          env:\n            - name: REBOUND_STATE_DIR\n              value: {STATE}\n            - name: {}\n              value: \"1\"",
        crate::swarm::INNER_ENV
    );
    if docker {
        let _ = writeln!(y, "          securityContext:\n            capabilities:\n              add: [\"KILL\", \"NET_ADMIN\", \"SYS_ADMIN\", \"SYS_PTRACE\"]");
    }
    let _ = writeln!(y, "          volumeMounts:");
    for (rel, _) in &files {
        let _ = writeln!(
            y,
            "            - name: files\n              mountPath: {WORK}/{}\n              subPath: {}\n              readOnly: true",
            rel.display(),
            key(rel)
        );
    }
    let _ = writeln!(
        y,
        "            - name: state\n              mountPath: {STATE}"
    );
    if docker {
        let _ = writeln!(
            y,
            "            - name: docker\n              mountPath: /var/run/docker.sock"
        );
    }
    let _ = writeln!(y, "      volumes:\n        - name: files\n          configMap:\n            name: {name}-files");
    let _ = writeln!(y, "        - name: state\n          hostPath:\n            # The node's rebound state, at the same path in the pod: the shard's run\n            # directory and journal stay on the node, and `rebound heal` there undoes\n            # what a killed pod left.\n            path: {STATE}\n            type: DirectoryOrCreate");
    if docker {
        let _ = writeln!(y, "        - name: docker\n          hostPath:\n            path: /var/run/docker.sock\n            type: Socket");
    }
    let _ = writeln!(
        y,
        "# Collect, once the Job is complete (each pod's log ends with its run bundle):"
    );
    let _ = writeln!(
        y,
        "#   kubectl wait -n {ns} --for=condition=complete --timeout=24h job/{name}\n#   (a shard that ends in error, exit 3, 4 or 130, fails the Job at once: `kubectl get job -n {ns} {name}` says so)"
    );
    let _ = writeln!(y, "#   for i in $(seq 0 {}); do", n - 1);
    let _ = writeln!(y, "#     kubectl logs -n {ns} -l batch.kubernetes.io/job-completion-index=$i,job-name={name} --tail=-1 > shard-$((i + 1)).log");
    let _ = writeln!(y, "#   done");
    let _ = writeln!(
        y,
        "#   rebound k8s-collect shard-*.log --out reports/{}/k8s",
        plan.name
    );
    let _ = writeln!(
        y,
        "#   kubectl delete -n {ns} job/{name} configmap/{name}-files"
    );
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_indexed_job_for_a_docker_scenario_matches_its_golden_copy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("scenarios")).unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::write(
            dir.path().join("docker/compose.yaml"),
            "  # an indented first line\nservices:\n  app:\n    image: rebound/demo-app:latest\n    ports: [\"127.0.0.1:${REBOUND_PORT_APP:-18081}:8080\"]\n\n  db:\n    image: rebound/postgres:latest\n",
        )
        .unwrap();
        let text = "name = \"Golden_Kill.v2\"\n[stack]\nbackend = \"docker\"\ncompose = \"../docker/compose.yaml\"\n\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n[[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:${port:app}/healthz\"\n\n[slo]\nsuccess-rate = 0.5\nrecover-within = \"10s\"\n";
        let path = dir.path().join("scenarios/golden.toml");
        std::fs::write(&path, text).unwrap();
        let plan = crate::scenario::load(&path).unwrap();
        plan.ports.release();
        let y = job(
            &plan,
            &JobOptions {
                shards: 3,
                parallel: Some(2),
                image: "registry.example/rebound:0.1".into(),
                namespace: "chaos".into(),
            },
        )
        .unwrap();
        // Every document parses as YAML, and the ConfigMap holds the files as written.
        use serde::Deserialize;
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&y)
            .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
            .filter(|v| !v.is_null())
            .collect();
        assert_eq!(docs.len(), 2, "a ConfigMap and a Job");
        assert!(docs.iter().all(|d| d.get("kind").is_some()), "{y}");
        let data = &docs[0]["data"];
        assert_eq!(
            data["docker.compose.yaml"].as_str(),
            Some(
                std::fs::read_to_string(dir.path().join("docker/compose.yaml"))
                    .unwrap()
                    .as_str()
            )
        );
        assert_eq!(data["scenarios.golden.toml"].as_str(), Some(text));
        insta::assert_snapshot!(y);
    }

    #[test]
    fn a_process_scenario_needs_no_docker_socket_and_bad_counts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = "name = \"p\"\n[stack]\nbackend = \"process\"\n[[stack.service]]\nname = \"app\"\ncommand = [\"${rebound}\", \"demo-app\", \"--port\", \"${port:app}\"]\n\n[[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\n[[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:${port:app}/healthz\"\n\n[slo]\nsuccess-rate = 0.5\nrecover-within = \"10s\"\n";
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        let plan = crate::scenario::load(&path).unwrap();
        plan.ports.release();
        let opts = JobOptions {
            shards: 2,
            parallel: None,
            image: "r".into(),
            namespace: "default".into(),
        };
        let y = job(&plan, &opts).unwrap();
        assert!(
            !y.contains("docker.sock") && !y.contains("hostNetwork"),
            "{y}"
        );
        assert!(y.contains("parallelism: 2"));
        assert!(y.contains("mountPath: /rebound/work/p.toml"));
        let e = job(&plan, &JobOptions { shards: 0, ..opts }).unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
    }
}
