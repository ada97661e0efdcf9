//! Fault injection: turns a [`FaultPlan`] into actions on a [`Stack`], in three
//! steps the runner records: `inject` (instant: `t_inject`), `effect` (waits until
//! the fault has taken effect and, for timed faults, lifts it), and `heal`
//! (idempotent: puts the target back to running whatever happened before).

use std::time::Duration;

use crate::scenario::{DbRestartMode, FaultKind, FaultPlan};
use crate::stack::{Sig, Stack, StackError};

/// How long a killed process may take to be reaped before the fault counts as unconfirmed.
const DEATH_TIMEOUT: Duration = Duration::from_secs(10);

/// What `inject` observed, needed by `effect`.
#[derive(Debug, Clone)]
pub struct Armed {
    exits_before: u64,
    networks: Vec<String>,
}

/// Performs the fault's instantaneous action; its success is `t_inject`.
pub async fn inject(fault: &FaultPlan, stack: &dyn Stack) -> Result<(Armed, String), StackError> {
    let target = fault.target.as_str();
    let exits_before = stack.status(target)?.exits;
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
            let out = stack.exec(target, command).await?;
            if out.code != 0 {
                return Err(StackError::Docker {
                    what: format!("exec {command:?} in {target}"),
                    message: format!("exit code {}: {}", out.code, out.output.trim()),
                });
            }
            format!("exec {command:?} in {target}: exit 0")
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
            let argv: Vec<String> = ["pg_ctl", "stop", "-D", pgdata, "-m", mode_name(*mode), "-w"]
                .map(String::from)
                .to_vec();
            let out = stack.exec(target, &argv).await?;
            if out.code != 0 {
                return Err(StackError::Docker {
                    what: format!("{} in {target}", argv.join(" ")),
                    message: format!("exit code {}: {}", out.code, out.output.trim()),
                });
            }
            Ok(format!(
                "postgres stopped ({}) in {target}; its supervisor starts it again",
                mode_name(*mode)
            ))
        }
        FaultKind::Exec { .. } => Ok("command finished".into()),
    }
}

fn mode_name(mode: DbRestartMode) -> &'static str {
    match mode {
        DbRestartMode::Fast => "fast",
        DbRestartMode::Immediate => "immediate",
    }
}

/// Restores the target whatever state the trial left it in: resumes it if frozen,
/// starts it if it is down and its restart policy did not bring it back.
pub async fn heal(fault: &FaultPlan, stack: &dyn Stack) -> Result<String, StackError> {
    let target = fault.target.as_str();
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
    Ok(if done.is_empty() {
        "nothing to heal".into()
    } else {
        done.join(", ")
    })
}
