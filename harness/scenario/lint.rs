//! Warnings about a valid scenario that will measure something other than what its
//! author likely meant (`rebound validate` and `rebound run` print them; they never
//! stop a run).

use std::net::IpAddr;

use super::{DockerSource, Plan, StackPlan};
use crate::probe::tcp::{Target, Tcp, DEFAULT_HOLD};
use crate::stack::plan::{compose_ports, PublishedPort};

/// Every warning for `plan`, one line each.
pub fn lint(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let published = published_ports(plan);
    for probe in &plan.probes {
        let Some(tcp) = probe.check.as_any().downcast_ref::<Tcp>() else {
            continue;
        };
        let Target::Address(addr) = tcp.target else {
            continue;
        };
        let local = addr.ip().is_loopback() || addr.ip() == IpAddr::from([0, 0, 0, 0]);
        let Some(port) = published
            .iter()
            .find(|p| local && p.host_port == addr.port())
        else {
            continue;
        };
        let hold = match tcp.hold {
            Some(h) => format!("hold = \"{}\"", humantime::format_duration(h)),
            None => format!("the default hold of {DEFAULT_HOLD:?}"),
        };
        out.push(format!(
            "probe `{name}`: {addr} is the published port {host} of service `{svc}`: Docker's port proxy accepts connections there before `{svc}` listens, so a tcp probe can see a recovery that has not happened (rebound counts a connection the proxy closes within {hold} as down). `service = \"{svc}\"` with `port = {target}` connects to the container itself, with no proxy in between",
            name = probe.name,
            host = port.host_port,
            svc = port.service,
            target = port.container_port,
        ));
    }
    out
}

/// The host ports the scenario's compose files publish (none for other stacks or
/// when a file cannot be read; validation already read them once).
fn published_ports(plan: &Plan) -> Vec<PublishedPort> {
    let StackPlan::Docker {
        source: DockerSource::Compose {
            file, overrides, ..
        },
        ..
    } = &plan.stack
    else {
        return Vec::new();
    };
    let env = |k: &str| {
        plan.ports
            .get(k)
            .map(|p| p.to_string())
            .or_else(|| std::env::var(k).ok())
    };
    std::iter::once(file)
        .chain(overrides)
        .filter_map(|f| crate::field::read_small_file(f).ok())
        .flat_map(|text| compose_ports(&text, &env))
        .collect()
}
