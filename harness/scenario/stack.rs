//! Validation of the `[stack]` section: the services of a process stack, or the
//! compose file (and its overrides) or attached project of a docker stack. Reading
//! the compose files to learn their service names is the only I/O of validation
//! besides the scenario itself; a run directory's copy skips it (`recorded`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::locate::{header_line, locate, Validator};
use super::raw::{RawService, RawStack};
use super::{
    check_placeholders, compose_services, DockerSource, ScenarioError, ServicePlan, StackPlan,
};

/// Turns the raw `[stack]` into a plan.
pub(super) fn validate(v: &Validator<'_>, raw: RawStack) -> Result<StackPlan, ScenarioError> {
    match raw {
        RawStack::Process { services, links } => {
            let services = process(v, services)?;
            let links = links_of(v, links, &services)?;
            Ok(StackPlan::Process { services, links })
        }
        RawStack::Docker {
            compose,
            compose_overrides,
            attach,
            containers,
            project,
            links,
            durable,
            durability,
        } => {
            let source = match containers {
                Some(_) if project.is_some() => {
                    return Err(v.err(
                        "stack.project",
                        locate(v.text, "project", None, 1),
                        "`project` names the compose project rebound brings up; given `containers` have none",
                    ))
                }
                Some(map) => containers_source(v, map, &compose, &attach, &compose_overrides)?,
                None => docker_source(v, compose, compose_overrides, attach, project)?,
            };
            let services = compose_service_names(v, &source)?;
            let links = proxy_links_of(v, links, services.as_deref())?;
            durable_of(
                v,
                &durable,
                durability.is_some(),
                &source,
                services.as_deref(),
            )?;
            Ok(StackPlan::Docker {
                source,
                services,
                links,
                durable,
                durability: durability.unwrap_or(crate::durable::Model::PosixStrict),
            })
        }
    }
}

/// The compose variable that holds the layer directory of a durable `service`.
pub fn durable_variable(service: &str) -> String {
    let name: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("REBOUND_DURABLE_{name}")
}

/// The docker stack's `durable` services: only with a compose file rebound brings
/// up (the layer is mounted before a container starts), each a service of it, each
/// bound by some compose file through its variable (else the layer would hold no
/// data of it).
fn durable_of(
    v: &Validator<'_>,
    durable: &[String],
    model_given: bool,
    source: &DockerSource,
    services: Option<&[String]>,
) -> Result<(), ScenarioError> {
    let text = v.text;
    if durable.is_empty() {
        if model_given {
            return Err(v.err(
                "stack.durability",
                locate(text, "durability", None, 1),
                "durability applies to `durable` services, and this stack names none",
            ));
        }
        return Ok(());
    }
    let line = locate(text, "durable", None, 1);
    let DockerSource::Compose {
        file, overrides, ..
    } = source
    else {
        return Err(v.err(
            "stack.durable",
            line,
            "the power-loss layer must be mounted before a container starts: `durable` needs a compose file rebound brings up (`compose`), not `attach` or `containers`",
        ));
    };
    let mut seen = HashSet::new();
    for name in durable {
        if !seen.insert(name) {
            return Err(v.err("stack.durable", line, format!("`{name}` is named twice")));
        }
        if let Some(known) = services {
            if !known.iter().any(|s| s == name) {
                return Err(v.err(
                    "stack.durable",
                    line,
                    format!(
                        "the compose file has no service `{name}`; services are: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        if v.recorded {
            continue;
        }
        let var = durable_variable(name);
        let bound = std::iter::once(file)
            .chain(overrides)
            .any(|f| crate::field::read_small_file(f).is_ok_and(|t| t.contains(&var)));
        if !bound {
            return Err(v.err(
                "stack.durable",
                line,
                format!(
                    "no compose file uses ${{{var}}}: bind it over `{name}`'s data directory (volumes: [\"${{{var}}}:/its/data\"], as docker/demo/durable-db.yaml does), else the layer holds none of its data"
                ),
            ));
        }
    }
    Ok(())
}

/// A link name not seen before (and not empty); records it.
fn unique_name(seen: &mut HashSet<String>, name: &str) -> Result<(), String> {
    if name.is_empty() || !seen.insert(name.to_string()) {
        return Err(format!(
            "link names must be unique and not empty (`{name}`)"
        ));
    }
    Ok(())
}

/// The `[[stack.link]]` tables: unique names, loopback addresses, services that exist.
fn links_of(
    v: &Validator<'_>,
    links: Vec<super::raw::RawLink>,
    services: &[ServicePlan],
) -> Result<Vec<super::LinkPlan>, ScenarioError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, l) in links.into_iter().enumerate() {
        let err = |key: &str, value: Option<&str>, msg: String| {
            v.err_in("[[stack.link]]", i, key, value, msg)
        };
        unique_name(&mut seen, &l.name)
            .map_err(|m| err("name", Some(&format!("\"{}\"", l.name)), m))?;
        let addr = |key: &str, text: &str| -> Result<std::net::SocketAddr, ScenarioError> {
            let a: std::net::SocketAddr = text.parse().map_err(|_| {
                err(
                    key,
                    Some(&format!("\"{text}\"")),
                    format!("`{text}` is not an address such as 127.0.0.1:15433"),
                )
            })?;
            if !a.ip().is_loopback() {
                return Err(err(
                    key,
                    Some(&format!("\"{text}\"")),
                    format!("`{text}`: links of the process backend stay on loopback (127.0.0.1)"),
                ));
            }
            Ok(a)
        };
        let listen = addr("listen", &l.listen)?;
        let upstream = addr("upstream", &l.upstream)?;
        if listen == upstream {
            return Err(err(
                "upstream",
                None,
                "upstream must differ from listen (the proxy would forward to itself)".into(),
            ));
        }
        for (key, svc) in [("from", &l.from), ("to", &l.to)] {
            if let Some(name) = svc {
                if !services.iter().any(|s| &s.name == name) {
                    return Err(err(
                        key,
                        Some(&format!("\"{name}\"")),
                        format!(
                            "unknown service `{name}`; services are: {}",
                            services
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        out.push(super::LinkPlan {
            name: l.name,
            from: l.from,
            to: l.to,
            route: super::LinkRoute::Local { listen, upstream },
        });
    }
    Ok(out)
}

/// The `[[stack.link]]` tables of a docker stack: unique names, a proxy service
/// (and `from`/`to`) that the compose file has, a control address if given.
fn proxy_links_of(
    v: &Validator<'_>,
    links: Vec<super::raw::RawProxyLink>,
    services: Option<&[String]>,
) -> Result<Vec<super::LinkPlan>, ScenarioError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, l) in links.into_iter().enumerate() {
        let err = |key: &str, value: Option<&str>, msg: String| {
            v.err_in("[[stack.link]]", i, key, value, msg)
        };
        unique_name(&mut seen, &l.name)
            .map_err(|m| err("name", Some(&format!("\"{}\"", l.name)), m))?;
        if !crate::proxy::control::valid_link_name(&l.name) {
            return Err(err(
                "name",
                Some(&format!("\"{}\"", l.name)),
                format!(
                    "`{}`: a proxy's link names are letters, digits, `-`, `_` and `.` (as in its --link NAME=LISTEN=UPSTREAM)",
                    l.name
                ),
            ));
        }
        for (key, svc) in [
            ("proxy", Some(&l.proxy)),
            ("from", l.from.as_ref()),
            ("to", l.to.as_ref()),
        ] {
            let (Some(name), Some(known)) = (svc, services) else {
                continue;
            };
            if !known.iter().any(|s| s == name) {
                return Err(err(
                    key,
                    Some(&format!("\"{name}\"")),
                    format!(
                        "the compose file has no service `{name}`; services are: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        let control = match &l.control {
            None => None,
            Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|_| {
                err(
                    "control",
                    Some(&format!("\"{text}\"")),
                    format!("`{text}` is not an address such as 127.0.0.1:18474"),
                )
            })?),
        };
        out.push(super::LinkPlan {
            name: l.name,
            from: l.from,
            to: l.to,
            route: super::LinkRoute::Service {
                service: l.proxy,
                control,
            },
        });
    }
    Ok(out)
}

/// The `[[stack.service]]` tables of a process stack.
fn process(
    v: &Validator<'_>,
    services: Vec<RawService>,
) -> Result<Vec<ServicePlan>, ScenarioError> {
    let text = v.text;
    if services.is_empty() {
        return Err(v.err(
            "stack.service",
            header_line(text, "[stack]", 0),
            "at least one [[stack.service]] is required",
        ));
    }
    let mut seen = HashSet::new();
    let mut plans = Vec::new();
    for (i, s) in services.into_iter().enumerate() {
        if !seen.insert(s.name.clone()) {
            return Err(v.err_in(
                "[[stack.service]]",
                i,
                "name",
                Some(&s.name),
                format!("duplicate service name `{}`", s.name),
            ));
        }
        if s.command.is_empty() || s.command[0].is_empty() {
            return Err(v.err_in(
                "[[stack.service]]",
                i,
                "command",
                None,
                "command must name a program",
            ));
        }
        // Every field that expands placeholders checks them the same way.
        for arg in &s.command {
            check_placeholders(arg)
                .map_err(|m| v.err_in("[[stack.service]]", i, "command", None, m))?;
        }
        for value in s.env.values() {
            check_placeholders(value)
                .map_err(|m| v.err_in("[[stack.service]]", i, "env", None, m))?;
        }
        if let Some(w) = &s.workdir {
            check_placeholders(&w.display().to_string())
                .map_err(|m| v.err_in("[[stack.service]]", i, "workdir", None, m))?;
        }
        for d in &s.durable_dirs {
            check_placeholders(&d.display().to_string())
                .map_err(|m| v.err_in("[[stack.service]]", i, "durable-dirs", None, m))?;
        }
        if s.durability.is_some() && s.durable_dirs.is_empty() {
            return Err(v.err_in(
                "[[stack.service]]",
                i,
                "durability",
                None,
                "durability applies to durable-dirs, and this service names none",
            ));
        }
        let backoff = s.restart_backoff.unwrap_or(Duration::from_millis(100));
        let max_backoff = s
            .restart_max_backoff
            .unwrap_or(Duration::from_secs(60))
            .max(backoff);
        plans.push(ServicePlan {
            name: s.name,
            command: s.command,
            env: s.env,
            workdir: s.workdir,
            restart: s.restart,
            restart_backoff: backoff,
            restart_max_backoff: max_backoff,
            stop_grace: s.stop_grace.unwrap_or(crate::nemesis::DEFAULT_GRACE),
            durable_dirs: s.durable_dirs,
            durability: s.durability.unwrap_or(crate::durable::Model::PosixStrict),
        });
    }
    Ok(plans)
}

/// `containers = { service = "id or name" }`: alone, at least one, names as
/// compose's.
fn containers_source(
    v: &Validator<'_>,
    map: BTreeMap<String, String>,
    compose: &Option<PathBuf>,
    attach: &Option<String>,
    overrides: &[PathBuf],
) -> Result<DockerSource, ScenarioError> {
    let line = locate(v.text, "containers", None, 1);
    if compose.is_some() || attach.is_some() || !overrides.is_empty() {
        return Err(v.err(
            "stack.containers",
            line,
            "`containers` names the stack's containers itself: give it without `compose`, `compose-overrides` or `attach`",
        ));
    }
    if map.is_empty() {
        return Err(v.err(
            "stack.containers",
            line,
            "`containers` needs at least one `service = \"container id or name\"`",
        ));
    }
    for (service, id) in &map {
        if service.is_empty()
            || !service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(v.err(
                "stack.containers",
                line,
                format!("service names use letters, digits, `-`, `_` and `.`, not `{service}`"),
            ));
        }
        if id.trim().is_empty() {
            return Err(v.err(
                "stack.containers",
                line,
                format!("service `{service}`: empty container id"),
            ));
        }
    }
    Ok(DockerSource::Containers { containers: map })
}

/// Where a docker stack comes from: a compose file (with overrides) or a project.
fn docker_source(
    v: &Validator<'_>,
    compose: Option<PathBuf>,
    compose_overrides: Vec<PathBuf>,
    attach: Option<String>,
    project: Option<String>,
) -> Result<DockerSource, ScenarioError> {
    let (path, text) = (v.path, v.text);
    let at = header_line(text, "[stack]", 0);
    let resolve = |f: PathBuf| {
        if f.is_absolute() {
            f
        } else {
            path.parent().unwrap_or(Path::new("")).join(f)
        }
    };
    Ok(match (compose, attach) {
        (Some(file), None) => {
            if let Some(p) = &project {
                if p.is_empty() || !p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
                    return Err(v.err("stack.project", locate(text, "project", None, 1), "compose project names use lower-case letters, digits, `-` and `_`"));
                }
            }
            DockerSource::Compose {
                file: resolve(file),
                overrides: compose_overrides.into_iter().map(resolve).collect(),
                project,
            }
        }
        (None, Some(project)) if compose_overrides.is_empty() => DockerSource::Attach { project },
        (None, Some(_)) => return Err(v.err("stack.compose-overrides", locate(text, "compose-overrides", None, 1), "overrides apply to `compose`, not to `attach`")),
        _ => return Err(v.err("stack", at, "backend \"docker\" needs exactly one of `compose = \"file\"` or `attach = \"project\"`")),
    })
}

/// Services of the merged compose project (the union over every file); None when
/// only the running project knows (attach, or a run directory's copy).
fn compose_service_names(
    v: &Validator<'_>,
    source: &DockerSource,
) -> Result<Option<Vec<String>>, ScenarioError> {
    let text = v.text;
    Ok(match source {
        DockerSource::Compose { .. } if v.recorded => None,
        DockerSource::Compose {
            file, overrides, ..
        } => {
            // Services of the merged project: the union over every file.
            let mut names: Vec<String> = Vec::new();
            for (key, f) in std::iter::once(("compose", file))
                .chain(overrides.iter().map(|o| ("compose-overrides", o)))
            {
                let line = locate(text, key, None, 1);
                let body = crate::field::read_small_file(f).map_err(|e| {
                    v.err(
                        format!("stack.{key}"),
                        line,
                        format!("cannot read {}: {e}", f.display()),
                    )
                })?;
                let found = compose_services(&body).map_err(|e| {
                    v.err(
                        format!("stack.{key}"),
                        line,
                        format!("{}: not a compose file: {e}", f.display()),
                    )
                })?;
                for n in found {
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
            }
            Some(names)
        }
        DockerSource::Attach { .. } => None,
        DockerSource::Containers { containers } => Some(containers.keys().cloned().collect()),
    })
}
