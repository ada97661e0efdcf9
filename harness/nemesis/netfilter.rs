//! What the kernel-level network faults share: rebound's own iptables chain in a
//! service's network namespace (created, jumped to, filled; deleted with its jumps)
//! and the traffic-control qdisc on its interface. Every command runs through
//! [`Stack::netns`] (docker: `nsenter` from the host, with the host's binaries).

use crate::stack::{ExecOutput, Stack, StackError};

/// `iptables -w 5 ARGS…` (waits for the xtables lock).
pub(crate) fn iptables(args: &[&str]) -> Vec<String> {
    ["iptables", "-w", "5"]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect()
}

/// Adds rebound's `chain` to `service`'s namespace (idempotent), jumped to from
/// each of `hooks`, with `rules` appended (each the arguments after `-A CHAIN`).
pub(crate) async fn cut(
    stack: &dyn Stack,
    service: &str,
    chain: &str,
    hooks: &[&str],
    rules: &[Vec<String>],
) -> Result<(), StackError> {
    let run = |args: Vec<String>| async move { stack.netns(service, &args).await };
    let created = run(iptables(&["-N", chain])).await?;
    if created.code != 0 && !created.output.contains("already exists") {
        return Err(StackError::Command {
            what: format!("iptables in the network namespace of {service}"),
            message: format!(
                "exit code {}: {} (kernel network faults need iptables on the engine's host: apt-get install iptables)",
                created.code,
                created.output.trim()
            ),
        });
    }
    for hook in hooks {
        if run(iptables(&["-C", hook, "-j", chain])).await?.code != 0 {
            ok(
                service,
                run(iptables(&["-I", hook, "1", "-j", chain])).await?,
            )?;
        }
    }
    for rule in rules {
        let mut args = vec!["-A", chain];
        args.extend(rule.iter().map(String::as_str));
        ok(service, run(iptables(&args)).await?)?;
    }
    Ok(())
}

/// A non-zero exit as an error naming the service.
pub(crate) fn ok(service: &str, out: ExecOutput) -> Result<(), StackError> {
    if out.code == 0 {
        Ok(())
    } else {
        Err(StackError::Command {
            what: format!("iptables in the network namespace of {service}"),
            message: format!("exit code {}: {}", out.code, out.output.trim()),
        })
    }
}

/// Removes rebound's chain and its jumps from `service`'s namespace; true when
/// there was one. A service that is not running has no namespace left to clean.
pub(crate) async fn clear(
    stack: &dyn Stack,
    service: &str,
    chain: &str,
) -> Result<bool, StackError> {
    let run = |args: Vec<String>| async move { stack.netns(service, &args).await };
    match run(iptables(&["-S", chain])).await {
        Err(StackError::NotRunning(_)) => return Ok(false),
        Err(e) => return Err(e),
        Ok(o) if o.code != 0 => return Ok(false),
        Ok(_) => {}
    }
    for hook in ["INPUT", "OUTPUT"] {
        // A jump added twice (two injections) is deleted twice.
        for _ in 0..16 {
            if run(iptables(&["-D", hook, "-j", chain])).await?.code != 0 {
                break;
            }
        }
    }
    ok(service, run(iptables(&["-F", chain])).await?)?;
    ok(service, run(iptables(&["-X", chain])).await?)?;
    Ok(true)
}

/// The interfaces of `service`'s namespace other than loopback.
pub(crate) async fn interfaces(
    stack: &dyn Stack,
    service: &str,
) -> Result<Vec<String>, StackError> {
    let out = stack
        .netns(service, &["ip", "-o", "link", "show"].map(String::from))
        .await?;
    ok(service, out.clone())?;
    // `2: eth0@if12: <BROADCAST,…` → eth0
    Ok(out
        .output
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n != "lo")
        .collect())
}

/// Replaces the root qdisc of every interface of `service` with `qdisc` (the
/// arguments after `root`), e.g. `tbf rate 1mbit burst 32kbit latency 400ms`.
pub(crate) async fn set_qdisc(
    stack: &dyn Stack,
    service: &str,
    qdisc: &[String],
) -> Result<(), StackError> {
    for dev in interfaces(stack, service).await? {
        let mut argv: Vec<String> = ["tc", "qdisc", "replace", "dev", &dev, "root"]
            .map(String::from)
            .to_vec();
        argv.extend(qdisc.iter().cloned());
        let out = stack.netns(service, &argv).await?;
        if out.code != 0 {
            return Err(StackError::Command {
                what: format!("`{}` in the network namespace of {service}", argv.join(" ")),
                message: format!("exit code {}: {}", out.code, out.output.trim()),
            });
        }
    }
    Ok(())
}

/// Deletes the root qdisc of kind `kind` (`tbf`, `netem`) from every interface of
/// `service` where one is set (the kernel's default comes back); true when one was.
pub(crate) async fn clear_qdisc(
    stack: &dyn Stack,
    service: &str,
    kind: &str,
) -> Result<bool, StackError> {
    let devs = match interfaces(stack, service).await {
        Err(StackError::NotRunning(_)) => return Ok(false),
        other => other?,
    };
    let mut cleared = false;
    for dev in devs {
        let show = stack
            .netns(
                service,
                &["tc", "qdisc", "show", "dev", &dev, "root"].map(String::from),
            )
            .await?;
        if show.output.split_whitespace().nth(1) == Some(kind) {
            ok(
                service,
                stack
                    .netns(
                        service,
                        &["tc", "qdisc", "del", "dev", &dev, "root"].map(String::from),
                    )
                    .await?,
            )?;
            cleared = true;
        }
    }
    Ok(cleared)
}
