//! Fault injection: turns a [`FaultPlan`] into actions on a [`Stack`], in three
//! steps the runner records: `inject` (instant: `t_inject`), `effect` (waits until
//! the fault has taken effect and, for timed faults, lifts it), and `heal`
//! (idempotent: puts the target back to running whatever happened before).

use std::time::Duration;

use crate::scenario::{DbRestartMode, FaultKind, FaultPlan, StackRestartMode, ALL_SERVICES};
use crate::stack::{Sig, Stack, StackError};

/// How long a killed process may take to be reaped before the fault counts as unconfirmed.
const DEATH_TIMEOUT: Duration = Duration::from_secs(10);

/// Name of the file `disk-fill` creates (and heal removes) in the filled directory.
pub const DISK_FILL_FILE: &str = ".rebound-disk-fill";

/// What `inject` observed, needed by `effect`.
#[derive(Debug, Clone)]
pub struct Armed {
    exits_before: u64,
    networks: Vec<String>,
}

/// Runs an argv in the target and turns a non-zero exit into an error.
async fn exec_ok(stack: &dyn Stack, target: &str, argv: &[String]) -> Result<String, StackError> {
    let out = stack.exec(target, argv).await?;
    if out.code == 0 {
        Ok(out.output)
    } else {
        Err(StackError::Docker {
            what: format!("`{}` in {target}", argv.join(" ")),
            message: format!("exit code {}: {}", out.code, out.output.trim()),
        })
    }
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn fill_file(dir: &str) -> String {
    format!("{}/{DISK_FILL_FILE}", dir.trim_end_matches('/'))
}

/// Performs the fault's instantaneous action; its success is `t_inject`.
pub async fn inject(fault: &FaultPlan, stack: &dyn Stack) -> Result<(Armed, String), StackError> {
    let target = fault.target.as_str();
    let exits_before = if target == ALL_SERVICES {
        0
    } else {
        stack.status(target)?.exits
    };
    let mut networks = Vec::new();
    let detail = match &fault.kind {
        FaultKind::Sigkill => {
            stack.signal(target, Sig::Kill).await?;
            format!("SIGKILL sent to {target}")
        }
        FaultKind::Sigterm { grace } => {
            stack.hold(target)?;
            stack.signal(target, Sig::Term).await?;
            format!("SIGTERM sent to {target} (SIGKILL after {grace:?})")
        }
        FaultKind::Signal { signal } => {
            stack.signal(target, Sig::Other(*signal)).await?;
            format!("{} sent to {target}", signal.as_str())
        }
        FaultKind::StopFor { duration, grace } => {
            stack.stop(target, *grace).await?;
            format!("{target} stopped for {duration:?}")
        }
        FaultKind::PauseFor { duration } => {
            stack.pause(target).await?;
            format!("{target} paused for {duration:?}")
        }
        // Blocking engine calls run in `effect`: the request itself is t_inject.
        FaultKind::Restart { grace } => format!("docker restart {target} (grace {grace:?})"),
        FaultKind::DbRestart { mode, .. } => {
            format!("pg_ctl stop -m {} in {target}", mode_name(*mode))
        }
        FaultKind::DisconnectFor { duration } => {
            networks = stack.disconnect(target).await?;
            format!("{target} cut off {networks:?} for {duration:?}")
        }
        FaultKind::Exec { command } => {
            exec_ok(stack, target, command).await?;
            format!("exec {command:?} in {target}: exit 0")
        }
        // The request is t_inject; its response (in `effect`) opens the recovery gate,
        // so an endpoint that blocks service while it works (a restore) is measured.
        FaultKind::Http { url, method, .. } => format!("{method} {url}"),
        FaultKind::StackRestart { mode, grace } => format!(
            "restart every service ({}, grace {grace:?})",
            stack_mode_name(*mode)
        ),
        FaultKind::DiskFill {
            path,
            leave_bytes,
            duration,
        } => {
            let (filled, free) = fill_disk(stack, target, path, *leave_bytes).await?;
            format!("filled {filled} bytes under {path} in {target}, {free} left free, for {duration:?}")
        }
    };
    Ok((
        Armed {
            exits_before,
            networks,
        },
        detail,
    ))
}

async fn free_bytes(stack: &dyn Stack, target: &str, path: &str) -> Result<u64, StackError> {
    let df = exec_ok(stack, target, &argv(&["df", "-B1", "--output=avail", path])).await?;
    df.lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .ok_or_else(|| StackError::Docker {
            what: format!("reading free space of {path} in {target}"),
            message: format!("unexpected df output: {}", df.trim()),
        })
}

/// Grows one filler file with `fallocate` until at most `leave` bytes are free.
/// The service keeps writing meanwhile, so a request for all free space can fail:
/// halve it and measure again, a bounded number of times.
async fn fill_disk(
    stack: &dyn Stack,
    target: &str,
    path: &str,
    leave: u64,
) -> Result<(u64, u64), StackError> {
    const ATTEMPTS: usize = 16;
    let file = fill_file(path);
    let mut filled: u64 = 0;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let free = free_bytes(stack, target, path).await?;
        let mut want = free.saturating_sub(leave);
        if want < 4096 {
            return Ok((filled, free));
        }
        while want >= 4096 {
            let cmd = argv(&[
                "fallocate",
                "-o",
                &filled.to_string(),
                "-l",
                &want.to_string(),
                &file,
            ]);
            match exec_ok(stack, target, &cmd).await {
                Ok(_) => {
                    filled += want;
                    break;
                }
                Err(e) => {
                    last_error = Some(e);
                    want /= 2;
                }
            }
        }
    }
    let free = free_bytes(stack, target, path).await?;
    if free.saturating_sub(leave) < 4096 * 1024 {
        return Ok((filled, free));
    }
    Err(last_error.unwrap_or_else(|| StackError::Docker {
        what: format!("filling {path} in {target}"),
        message: format!("{free} bytes still free after {ATTEMPTS} attempts"),
    }))
}

/// Longest part of a response body quoted in a fault's detail.
const BODY_QUOTE: usize = 400;

async fn http_call(
    url: &str,
    method: &str,
    body: Option<&str>,
    (expect, expect_body): (Option<u16>, Option<&str>),
    timeout: Duration,
) -> Result<String, StackError> {
    let fail = |message: String| StackError::Docker {
        what: format!("{method} {url}"),
        message,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let mut req = client.request(method.clone(), url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let quoted: String = text.trim().chars().take(BODY_QUOTE).collect();
    let ok = expect.map_or(status.is_success(), |e| status.as_u16() == e);
    if !ok {
        return Err(fail(format!("status {status}: {quoted}")));
    }
    if let Some(want) = expect_body {
        if !text.contains(want) {
            return Err(fail(format!(
                "status {status}, but the body does not contain `{want}`: {quoted}"
            )));
        }
    }
    Ok(format!("{method} {url} → {}: {quoted}", status.as_u16()))
}

/// Waits for the fault to take effect (the target died) or lifts a timed fault
/// after its duration. Its completion opens the recovery gate.
pub async fn effect(
    fault: &FaultPlan,
    armed: Armed,
    stack: &dyn Stack,
) -> Result<String, StackError> {
    let target = fault.target.as_str();
    match &fault.kind {
        FaultKind::Sigkill => {
            stack
                .wait_exit(target, armed.exits_before, DEATH_TIMEOUT)
                .await?;
            Ok(format!("{target} died"))
        }
        FaultKind::Sigterm { grace } => {
            let escalated = if stack
                .wait_exit(target, armed.exits_before, *grace)
                .await
                .is_err()
            {
                stack.signal(target, Sig::Kill).await?;
                stack
                    .wait_exit(target, armed.exits_before, DEATH_TIMEOUT)
                    .await?;
                true
            } else {
                false
            };
            stack.start(target).await?;
            Ok(if escalated {
                format!("{target} ignored SIGTERM for {grace:?}, SIGKILLed, started again")
            } else {
                format!("{target} exited on SIGTERM, started again")
            })
        }
        FaultKind::StopFor { duration, .. } => {
            tokio::time::sleep(*duration).await;
            stack.start(target).await?;
            Ok(format!("{target} started after {duration:?}"))
        }
        FaultKind::PauseFor { duration } => {
            tokio::time::sleep(*duration).await;
            stack.unpause(target).await?;
            Ok(format!("{target} resumed after {duration:?}"))
        }
        FaultKind::Restart { grace } => {
            stack.restart(target, *grace).await?;
            stack
                .wait_exit(target, armed.exits_before, DEATH_TIMEOUT)
                .await?;
            Ok(format!("{target} restarted"))
        }
        FaultKind::DisconnectFor { duration } => {
            tokio::time::sleep(*duration).await;
            stack.connect(target, &armed.networks).await?;
            Ok(format!("{target} reconnected after {duration:?}"))
        }
        FaultKind::DbRestart { mode, pgdata } => {
            let mut cmd = argv(&["pg_ctl", "stop", "-m", mode_name(*mode), "-w"]);
            // Without -D, pg_ctl uses the container's $PGDATA.
            if let Some(dir) = pgdata {
                cmd.extend(argv(&["-D", dir]));
            }
            exec_ok(stack, target, &cmd).await?;
            Ok(format!(
                "postgres stopped ({}) in {target}; its supervisor starts it again",
                mode_name(*mode)
            ))
        }
        FaultKind::DiskFill { path, duration, .. } => {
            tokio::time::sleep(*duration).await;
            exec_ok(stack, target, &argv(&["rm", "-f", &fill_file(path)])).await?;
            Ok(format!("freed {path} in {target} after {duration:?}"))
        }
        FaultKind::StackRestart { mode, grace } => stack.restart_all(*mode, *grace).await,
        FaultKind::Http {
            url,
            method,
            body,
            expect_status,
            expect_body,
            timeout,
        } => {
            http_call(
                url,
                method,
                body.as_deref(),
                (*expect_status, expect_body.as_deref()),
                *timeout,
            )
            .await
        }
        FaultKind::Exec { .. } | FaultKind::Signal { .. } => Ok("delivered".into()),
    }
}

fn stack_mode_name(mode: StackRestartMode) -> &'static str {
    match mode {
        StackRestartMode::Parallel => "parallel",
        StackRestartMode::Ordered => "ordered",
        StackRestartMode::DownUp => "down-up",
    }
}

fn mode_name(mode: DbRestartMode) -> &'static str {
    match mode {
        DbRestartMode::Fast => "fast",
        DbRestartMode::Immediate => "immediate",
    }
}

/// Restores the target whatever state the trial left it in: reconnects cut
/// networks, resumes it if frozen, frees a filled disk, starts it if it is down and
/// its restart policy did not bring it back.
pub async fn heal(fault: &FaultPlan, stack: &dyn Stack) -> Result<String, StackError> {
    let target = fault.target.as_str();
    if target == ALL_SERVICES {
        let started = stack.ensure_up().await?;
        return Ok(if started.is_empty() {
            "every service is up".into()
        } else {
            format!("started {}", started.join(", "))
        });
    }
    let status = stack.status(target)?;
    let mut done = Vec::new();
    let nets = stack.reconnect(target).await?;
    if !nets.is_empty() {
        done.push(format!("reconnected {target} to {nets:?}"));
    }
    if status.paused {
        stack.unpause(target).await?;
        done.push(format!("resumed {target}"));
    }
    if !stack.status(target)?.running {
        stack.start(target).await?;
        done.push(format!("started {target}"));
    }
    if let FaultKind::DiskFill { path, .. } = &fault.kind {
        exec_ok(stack, target, &argv(&["rm", "-f", &fill_file(path)])).await?;
        done.push(format!("removed {}", fill_file(path)));
    }
    Ok(if done.is_empty() {
        "nothing to heal".into()
    } else {
        done.join(", ")
    })
}
