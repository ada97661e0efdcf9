//! `rebound doctor [SCENARIO]`: everything a run depends on, checked in one screen
//! — the engine (reachable, answering within a bound, its API), compose, the demo
//! images, Swarm, Chromium, the kernel's network features, privileges, the state
//! directory, host ports and disk — each ok, warning or error with the command
//! that fixes it.
//!
//! Every probe of the machine is bounded in time, and the kernel features are
//! tried in a network namespace of their own (`unshare -n`), so nothing on the
//! host is touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::scenario::{Plan, StackPlan};

/// How long the engine may take to answer before it counts as wedged.
pub const ENGINE_BOUND: Duration = Duration::from_secs(5);

/// How long one command of the checks may take.
const COMMAND_BOUND: Duration = Duration::from_secs(10);

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Works.
    Ok,
    /// Works with a limit, or is not needed by this scenario.
    Warning,
    /// The scenario cannot run (or, without a scenario, docker scenarios cannot).
    Error,
}

impl Level {
    /// `ok`, `warning`, `error`.
    pub fn word(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked (`engine`, `compose`, …).
    pub name: &'static str,
    /// Its result.
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// The command that fixes it, when there is one.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            name,
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: Option<&str>) -> Self {
        Finding {
            name,
            level: Level::Warning,
            detail: detail.into(),
            fix: fix.map(String::from),
        }
    }

    fn error(name: &'static str, detail: impl Into<String>, fix: Option<&str>) -> Self {
        Finding {
            name,
            level: Level::Error,
            detail: detail.into(),
            fix: fix.map(String::from),
        }
    }

    /// `error    engine     … → fix`, as printed.
    pub fn line(&self) -> String {
        let mut s = format!(
            "  {:<8} {:<10} {}",
            self.level.word(),
            self.name,
            self.detail
        );
        if let Some(f) = &self.fix {
            s.push_str(&format!("\n  {:<8} {:<10} fix: {f}", "", ""));
        }
        s
    }
}

/// What the checks found, in order.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    /// Every check.
    pub findings: Vec<Finding>,
}

impl Diagnosis {
    /// No error: the scenario (or any docker scenario) can run.
    pub fn can_run(&self) -> bool {
        self.findings.iter().all(|f| f.level != Level::Error)
    }

    /// The first error, for `rebound run`'s message when a stack does not come up.
    pub fn first_error(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.level == Level::Error)
    }

    /// The whole screen.
    pub fn render(&self, title: &str) -> String {
        let mut out = format!("rebound doctor · {title}\n");
        for f in &self.findings {
            out.push_str(&f.line());
            out.push('\n');
        }
        let (e, w) = (
            self.findings
                .iter()
                .filter(|f| f.level == Level::Error)
                .count(),
            self.findings
                .iter()
                .filter(|f| f.level == Level::Warning)
                .count(),
        );
        out.push_str(&if e == 0 {
            format!("  → can run ({w} warning(s))\n")
        } else {
            format!("  → cannot run: {e} error(s), {w} warning(s)\n")
        });
        out
    }
}

/// Runs `argv` for at most [`COMMAND_BOUND`]; (success, stdout + stderr), or None
/// when it could not start or took too long.
fn bounded(argv: &[&str]) -> Option<(bool, String)> {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + COMMAND_BOUND;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let out = child.wait_with_output().ok()?;
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                return Some((status.success(), text.trim().to_string()));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// What a docker scenario needs of the machine (all of it when no scenario is given).
#[derive(Debug, Clone, Copy)]
struct Needs {
    docker: bool,
    netns: bool,
    fuse: bool,
}

fn needs(plan: Option<&Plan>) -> Needs {
    match plan {
        None => Needs {
            docker: true,
            netns: true,
            fuse: false,
        },
        Some(p) => {
            let docker = matches!(p.stack, StackPlan::Docker { .. });
            let netns = p.faults.iter().any(|f| {
                f.steps()
                    .any(|s| s.kind.needs().contains(&crate::stack::Capability::Netns))
            });
            let fuse = !p.stack.durable_services().is_empty();
            Needs {
                docker,
                netns,
                fuse,
            }
        }
    }
}

/// The level of a missing thing: an error when the scenario needs it, else a warning.
fn needed(yes: bool) -> Level {
    if yes {
        Level::Error
    } else {
        Level::Warning
    }
}

/// Every check, for `plan` (None: what docker scenarios need in general).
pub async fn diagnose(plan: Option<&Plan>, images_script: Option<&Path>) -> Diagnosis {
    let need = needs(plan);
    let mut findings = Vec::new();
    let engine = engine(need.docker).await;
    let engine_ok = engine.level == Level::Ok;
    findings.push(engine);
    findings.push(compose(need.docker && !is_given_containers(plan)));
    if engine_ok {
        findings.push(images(plan, images_script, need.docker));
        findings.push(swarm());
    }
    findings.push(chromium());
    findings.extend(kernel(need.netns));
    findings.push(privileges(need.netns));
    findings.push(state_dir());
    findings.push(fuse(need.fuse));
    if let Some(p) = plan {
        findings.push(ports(p));
    }
    findings.push(disk(engine_ok));
    Diagnosis { findings }
}

fn is_given_containers(plan: Option<&Plan>) -> bool {
    matches!(
        plan.map(|p| &p.stack),
        Some(StackPlan::Docker {
            source: crate::scenario::DockerSource::Containers { .. }
                | crate::scenario::DockerSource::Attach { .. },
            ..
        })
    )
}

/// Where the engine is asked (`DOCKER_HOST` or the local socket).
fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

async fn engine(needed_: bool) -> Finding {
    let at = engine_address();
    let started = Instant::now();
    let asked = async {
        let docker = bollard::Docker::connect_with_local_defaults()?;
        let docker = docker.negotiate_version().await?;
        let v = docker.version().await?;
        Ok::<_, bollard::errors::Error>(v)
    };
    match tokio::time::timeout(ENGINE_BOUND, asked).await {
        Ok(Ok(v)) => Finding::ok(
            "engine",
            format!(
                "Docker Engine {} (API {}) at {at}, answered in {} ms",
                v.version.unwrap_or_default(),
                v.api_version.unwrap_or_default(),
                started.elapsed().as_millis()
            ),
        ),
        Ok(Err(e)) => Finding {
            name: "engine",
            level: needed(needed_),
            detail: format!("cannot reach the Docker Engine at {at}: {e}"),
            fix: Some(
                "start it (`dockerd &` or `systemctl start docker`); check DOCKER_HOST and that the socket is readable"
                    .into(),
            ),
        },
        Err(_) => Finding {
            name: "engine",
            level: needed(needed_),
            detail: format!(
                "the Docker Engine at {at} accepts connections but did not answer within {} s: it is wedged",
                ENGINE_BOUND.as_secs()
            ),
            fix: Some("restart it (`systemctl restart docker`, or end dockerd and start it again)".into()),
        },
    }
}

fn compose(needed_: bool) -> Finding {
    if let Some((true, v)) = bounded(&["docker", "compose", "version", "--short"]) {
        return Finding::ok("compose", format!("docker compose {v} (v2 plugin)"));
    }
    match bounded(&["docker-compose", "version", "--short"]) {
        Some((true, v)) => Finding::ok("compose", format!("docker-compose {v} (v1)")),
        _ => Finding {
            name: "compose",
            level: needed(needed_),
            detail: "neither `docker compose` nor `docker-compose` works".into(),
            fix: Some("apt-get install docker-compose".into()),
        },
    }
}

/// rebound/* images a scenario's compose files name (their `${VAR:-default}`
/// defaults), or every demo image without a scenario.
fn wanted_images(plan: Option<&Plan>) -> Option<Vec<String>> {
    let plan = plan?;
    let StackPlan::Docker {
        source: crate::scenario::DockerSource::Compose {
            file, overrides, ..
        },
        ..
    } = &plan.stack
    else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    for f in std::iter::once(file).chain(overrides) {
        let Ok(text) = crate::field::read_small_file(f) else {
            continue;
        };
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("image:") else {
                continue;
            };
            let v = rest.trim().trim_matches('"');
            let image = match v.find(":-") {
                Some(i) if v.starts_with("${") => v[i + 2..].trim_end_matches('}'),
                _ => v,
            };
            if image.starts_with("rebound/") && !out.iter().any(|o| o == image) {
                out.push(image.to_string());
            }
        }
    }
    Some(out)
}

fn images(plan: Option<&Plan>, script: Option<&Path>, needed_: bool) -> Finding {
    let fix = "docker/images/build.sh (or `rebound images`)";
    let wanted = wanted_images(plan);
    if wanted.as_ref().is_some_and(Vec::is_empty) {
        return Finding::ok("images", "the scenario names no rebound/* image");
    }
    let states: Vec<(String, String)> = match script.filter(|s| s.is_file()) {
        Some(s) => match bounded(&[&s.display().to_string(), "--check"]) {
            Some((true, out)) => out
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(i, st)| (i.to_string(), st.to_string()))
                .collect(),
            _ => Vec::new(),
        },
        // Outside a checkout: presence only.
        None => [
            "postgres",
            "redis",
            "nginx",
            "zookeeper",
            "nats",
            "demo-app",
            "proxy",
            "rebound",
        ]
        .iter()
        .map(|n| {
            let tag = format!("rebound/{n}:latest");
            let present = bounded(&["docker", "image", "inspect", &tag]).is_some_and(|(ok, _)| ok);
            (tag, if present { "present" } else { "missing" }.to_string())
        })
        .collect(),
    };
    let relevant: Vec<&(String, String)> = states
        .iter()
        .filter(|(i, _)| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|x| x == i) || i.contains("/base:"))
        })
        .collect();
    let of = |state: &str| -> Vec<String> {
        relevant
            .iter()
            .filter(|(_, s)| s == state)
            .map(|(i, _)| {
                i.trim_start_matches("rebound/")
                    .trim_end_matches(":latest")
                    .to_string()
            })
            .collect()
    };
    let (missing, stale) = (of("missing"), of("stale"));
    let mut missing = missing;
    // A wanted image the script does not know (a user's own rebound/* tag).
    if let Some(w) = &wanted {
        for i in w {
            if !states.iter().any(|(s, _)| s == i)
                && !bounded(&["docker", "image", "inspect", i]).is_some_and(|(ok, _)| ok)
            {
                missing.push(i.clone());
            }
        }
    }
    if !missing.is_empty() {
        return Finding {
            name: "images",
            level: needed(needed_),
            detail: format!(
                "missing: {} (no registry: they are built locally)",
                missing.join(", ")
            ),
            fix: Some(fix.into()),
        };
    }
    if !stale.is_empty() {
        return Finding::warn(
            "images",
            format!(
                "older than their recipe: {} (a run uses them as they are)",
                stale.join(", ")
            ),
            Some(fix),
        );
    }
    Finding::ok(
        "images",
        format!("{} rebound/* images present and current", relevant.len()),
    )
}

fn swarm() -> Finding {
    match bounded(&["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"]) {
        Some((true, s)) if s == "inactive" => Finding::ok(
            "swarm",
            "inactive (`rebound swarm run` needs `docker swarm init`)",
        ),
        Some((true, s)) if s == "active" => {
            Finding::ok("swarm", "active: this node can run `rebound swarm run`")
        }
        Some((_, s)) => Finding::warn(
            "swarm",
            format!("state `{s}`"),
            Some("docker swarm leave --force"),
        ),
        None => Finding::warn("swarm", "`docker info` did not answer", None),
    }
}

fn chromium() -> Finding {
    for bin in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some((true, v)) = bounded(&[bin, "--version"]) {
            let v = v.lines().find(|l| l.contains("hrom")).unwrap_or(bin).trim();
            return Finding::ok("chromium", format!("{v} (the tests open reports in it)"));
        }
    }
    Finding::warn(
        "chromium",
        "not found: runs work; the tests that open the HTML report in a browser do not",
        Some("apt-get install chromium"),
    )
}

/// Tries `tc`/`iptables` in a network namespace of its own (gone afterwards).
fn in_private_netns(argv: &[&str]) -> Option<(bool, String)> {
    let mut full = vec!["unshare", "-n", "--"];
    full.extend_from_slice(argv);
    bounded(&full)
}

fn kernel(needed_: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let qdisc = |kind: &str| {
        let cmd = format!("ip link set lo up && tc qdisc add dev lo root {kind}");
        in_private_netns(&["sh", "-c", &cmd])
    };
    match qdisc("netem delay 1ms") {
        Some((true, _)) => out.push(Finding::ok("netem", "the kernel has netem")),
        Some((false, why)) => out.push(Finding::warn(
            "netem",
            format!(
                "the kernel has no netem qdisc ({}): not needed — rebound's latency-for and loss-for use iptables and the proxy's link faults",
                why.lines().last().unwrap_or("").trim()
            ),
            None,
        )),
        None => out.push(Finding::warn("netem", "cannot try (`unshare -n` and `tc` needed)", Some("apt-get install iproute2"))),
    }
    match qdisc("tbf rate 1mbit burst 32kbit latency 50ms") {
        Some((true, _)) => out.push(Finding::ok(
            "tbf",
            "the kernel shapes bandwidth (tbf): bandwidth-for works",
        )),
        Some((false, why)) => out.push(Finding {
            name: "tbf",
            level: needed(needed_),
            detail: format!(
                "no tbf qdisc ({}): bandwidth-for cannot run",
                why.lines().last().unwrap_or("").trim()
            ),
            fix: Some("a kernel with sch_tbf (modprobe sch_tbf)".into()),
        }),
        None => out.push(Finding {
            name: "tbf",
            level: needed(needed_),
            detail: "cannot try (`unshare -n` and `tc` needed)".into(),
            fix: Some("apt-get install iproute2 util-linux".into()),
        }),
    }
    match in_private_netns(&["iptables", "-w", "-L", "-n"]) {
        Some((true, _)) => out.push(Finding::ok(
            "iptables",
            "iptables works in a network namespace: partition-for, loss-for, latency-for",
        )),
        other => out.push(Finding {
            name: "iptables",
            level: needed(needed_),
            detail: format!(
                "iptables does not work in a network namespace{}",
                other
                    .map(|(_, w)| format!(" ({})", w.lines().last().unwrap_or("").trim()))
                    .unwrap_or_default()
            ),
            fix: Some("apt-get install iptables".into()),
        }),
    }
    out
}

fn privileges(needed_: bool) -> Finding {
    if nix::unistd::geteuid().is_root() {
        return Finding::ok(
            "privileges",
            "root: nsenter into containers' network namespaces works",
        );
    }
    Finding {
        name: "privileges",
        level: needed(needed_),
        detail: "not root: faults that enter a container's network namespace (partition-for, loss-for, latency-for, bandwidth-for) cannot run".into(),
        fix: Some("run rebound as root (sudo -E rebound …)".into()),
    }
}

fn state_dir() -> Finding {
    let dir: PathBuf = crate::journal::state_dir();
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let writable = std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    if writable {
        Finding::ok(
            "state",
            format!(
                "{} is writable (journals of unfinished runs, port leases)",
                dir.display()
            ),
        )
    } else {
        Finding::error(
            "state",
            format!(
                "{} is not writable: rebound cannot journal its faults",
                dir.display()
            ),
            Some("set REBOUND_STATE_DIR to a writable directory"),
        )
    }
}

/// FUSE for the power-loss layer, tried for real: a throwaway mount takes one
/// unsynced write, is cut (the write must be gone), and is unmounted.
fn fuse(needed_: bool) -> Finding {
    const FIX: &str = "modprobe fuse and run rebound as root; inside a container: --device /dev/fuse --cap-add SYS_ADMIN";
    let why = match crate::durable::supported() {
        Err(why) => format!("the power-loss layer cannot mount: {why}"),
        Ok(()) => match fuse_trial() {
            Ok(()) => {
                return Finding::ok(
                    "fuse",
                    "FUSE mounts work: the power-loss layer mounts, drops an unsynced write on a cut and unmounts",
                )
            }
            Err(why) => format!("the power-loss layer failed a trial mount: {why}"),
        },
    };
    Finding {
        name: "fuse",
        level: needed(needed_),
        detail: format!("{why} (durable-dirs and [stack] durable cannot run)"),
        fix: Some(FIX.into()),
    }
}

fn fuse_trial() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("rebound-doctor-fuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = (|| {
        let mut layer =
            crate::durable::Layer::mount(&dir, &dir, crate::durable::Model::PosixStrict)
                .map_err(|e| e.to_string())?;
        let file = dir.join("unsynced");
        let wrote = std::fs::write(&file, b"gone after the cut")
            .map_err(|e| format!("writing through the layer: {e}"));
        let cut = layer.cut().map_err(|e| e.to_string());
        let unmounted = layer.unmount().map_err(|e| e.to_string());
        wrote?;
        cut?;
        unmounted?;
        if file.exists() {
            return Err("an unsynced file survived the cut".into());
        }
        Ok(())
    })();
    let _ = crate::durable::force_unmount(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn ports(plan: &Plan) -> Finding {
    if plan.ports.0.is_empty() {
        return Finding::ok("ports", "the scenario takes no host port of its own");
    }
    // Parsing drew them free (or took them pinned from the environment): say which.
    Finding::ok(
        "ports",
        format!("host ports free for the run: {}", plan.ports.describe()),
    )
}

fn disk(engine_ok: bool) -> Finding {
    let root = engine_ok
        .then(|| bounded(&["docker", "info", "--format", "{{.DockerRootDir}}"]))
        .flatten()
        .filter(|(ok, _)| *ok)
        .map(|(_, d)| d)
        .unwrap_or_else(|| ".".into());
    let free_kib = bounded(&["df", "-Pk", &root]).and_then(|(ok, out)| {
        ok.then(|| {
            out.lines()
                .nth(1)?
                .split_whitespace()
                .nth(3)?
                .parse::<u64>()
                .ok()
        })
        .flatten()
    });
    match free_kib {
        Some(k) if k >= 2 * 1024 * 1024 => Finding::ok(
            "disk",
            format!("{:.1} GiB free under {root}", k as f64 / 1048576.0),
        ),
        Some(k) => Finding::warn(
            "disk",
            format!(
                "only {} MiB free under {root}: image builds and database volumes may fill it",
                k / 1024
            ),
            Some("docker system prune (removes unused images and volumes)"),
        ),
        None if !std::path::Path::new(&root).exists() => Finding::warn(
            "disk",
            format!(
                "cannot read free space under {root}: the engine's data directory is not visible from here (rebound runs in another root, container or machine than the engine)"
            ),
            None,
        ),
        None => Finding::warn("disk", format!("cannot read free space under {root}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_screen_says_what_failed_and_how_to_fix_it() {
        let d = Diagnosis {
            findings: vec![
                Finding::ok("engine", "Docker Engine 20.10"),
                Finding::warn("netem", "no netem", None),
                Finding::error(
                    "compose",
                    "neither works",
                    Some("apt-get install docker-compose"),
                ),
            ],
        };
        assert!(!d.can_run());
        assert_eq!(d.first_error().map(|f| f.name), Some("compose"));
        let s = d.render("this machine");
        assert!(s.contains("  error    compose    neither works\n"), "{s}");
        assert!(s.contains("fix: apt-get install docker-compose"), "{s}");
        assert!(s.contains("cannot run: 1 error(s), 1 warning(s)"), "{s}");
        let fine = Diagnosis {
            findings: vec![
                Finding::ok("engine", "x"),
                Finding::warn("netem", "no", None),
            ],
        };
        assert!(fine.can_run());
        assert!(fine.render("t").contains("can run (1 warning(s))"));
    }

    #[test]
    fn images_are_read_from_the_compose_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let compose = dir.path().join("c.yaml");
        std::fs::write(
            &compose,
            "services:\n  db:\n    image: ${REBOUND_POSTGRES_IMAGE:-rebound/postgres:latest}\n  x:\n    image: \"busybox\"\n  app:\n    image: rebound/demo-app:latest\n",
        )
        .expect("write");
        let text = format!(
            "name = \"d\"\n[stack]\nbackend = \"docker\"\ncompose = \"{}\"\n[[fault]]\nkind = \"sigkill\"\ntarget = \"db\"\n[[probe]]\nkind = \"tcp\"\nservice = \"db\"\nport = 5432\n[slo]\nrecover-within = \"5s\"\n",
            compose.display()
        );
        let plan = crate::scenario::parse(Path::new("d.toml"), &text).expect("valid");
        assert_eq!(
            wanted_images(Some(&plan)),
            Some(vec![
                "rebound/postgres:latest".to_string(),
                "rebound/demo-app:latest".to_string()
            ])
        );
        assert_eq!(wanted_images(None), None);
    }
}
