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
        let jump = jump(hook, chain);
        let check: Vec<&str> = ["-C", hook].into_iter().chain(jump).collect();
        if run(iptables(&check)).await?.code != 0 {
            let insert: Vec<&str> = ["-I", hook, "1"].into_iter().chain(jump).collect();
            ok(service, run(iptables(&insert)).await?)?;
        }
    }
    for rule in rules {
        let mut args = vec!["-A", chain];
        args.extend(rule.iter().map(String::as_str));
        ok(service, run(iptables(&args)).await?)?;
    }
    Ok(())
}

/// The jump from `hook` to rebound's chain: loopback traffic inside the service
/// (its own healthcheck, a sidecar on localhost) is never touched.
fn jump<'a>(hook: &str, chain: &'a str) -> [&'a str; 5] {
    let dev = if hook == "OUTPUT" { "-o" } else { "-i" };
    ["!", dev, "lo", "-j", chain]
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
        // Only "no such chain" means there is nothing to undo; any other failure
        // (the xtables lock, a missing binary) must not be read as healed.
        Ok(o) if o.code != 0 && o.output.contains("No chain/target/match by that name") => {
            return Ok(false)
        }
        Ok(o) => ok(service, o)?,
    }
    for hook in ["INPUT", "OUTPUT"] {
        let jump = jump(hook, chain);
        let delete: Vec<&str> = ["-D", hook].into_iter().chain(jump).collect();
        // A jump added twice (two injections) is deleted twice.
        for _ in 0..16 {
            if run(iptables(&delete)).await?.code != 0 {
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

/// The handle of every root qdisc rebound sets: heal deletes only qdiscs with it.
pub const QDISC_HANDLE: &str = "1bd:";

/// The root qdisc of `dev` as `tc qdisc show` prints it: `(kind, handle)`.
async fn root_qdisc(
    stack: &dyn Stack,
    service: &str,
    dev: &str,
) -> Result<(String, String), StackError> {
    let show = stack
        .netns(
            service,
            &["tc", "qdisc", "show", "dev", dev, "root"].map(String::from),
        )
        .await?;
    ok(service, show.clone())?;
    // `qdisc noqueue 0: root refcnt 2` / `qdisc tbf 1bd: root refcnt 2 rate …`
    let mut words = show.output.split_whitespace().skip(1);
    Ok((
        words.next().unwrap_or_default().to_string(),
        words.next().unwrap_or_default().to_string(),
    ))
}

/// Sets `qdisc` (its kind and arguments, e.g. `tbf rate … burst … latency …`) as
/// the root qdisc of every interface of `service`, under rebound's handle. An
/// interface whose root qdisc is not the default (`noqueue`) or rebound's own is
/// refused: heal could not give it back.
pub(crate) async fn set_qdisc(
    stack: &dyn Stack,
    service: &str,
    qdisc: &[String],
) -> Result<(), StackError> {
    for dev in interfaces(stack, service).await? {
        let (kind, handle) = root_qdisc(stack, service, &dev).await?;
        if kind != "noqueue" && handle != QDISC_HANDLE {
            return Err(StackError::Command {
                what: format!("the root qdisc of {dev} in {service}"),
                message: format!(
                    "is `{kind}` (handle {handle}), set by someone else: rebound replaces only the default `noqueue`"
                ),
            });
        }
        let mut argv: Vec<String> = [
            "tc",
            "qdisc",
            "replace",
            "dev",
            &dev,
            "root",
            "handle",
            QDISC_HANDLE,
        ]
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

/// Deletes the root qdisc of kind `kind` (`tbf`, `netem`) that rebound set (its
/// handle) from every interface of `service` (the kernel's default comes back);
/// true when there was one.
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
        let (k, handle) = root_qdisc(stack, service, &dev).await?;
        if k == kind && handle == QDISC_HANDLE {
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
