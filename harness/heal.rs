//! `rebound heal`: undoes, from their fault journals, what runs whose rebound
//! process is gone left behind — faults not healed, stacks not torn down.

use crate::journal::{self, JournalError, Pending};

/// Why a run could not be healed.
#[derive(Debug, thiserror::Error)]
pub enum HealError {
    /// Its rebound is still running: that process heals it (Ctrl-C).
    #[error("run {run_id}: rebound (pid {pid}) is still running it; stop that process instead (Ctrl-C heals)")]
    Alive {
        /// Run id.
        run_id: String,
        /// rebound's pid.
        pid: u32,
    },
    /// An undo step or the stack's removal failed.
    #[error("run {run_id}: {source}")]
    Stack {
        /// Run id.
        run_id: String,
        /// What failed.
        source: crate::stack::StackError,
    },
    /// The journal could not be read or updated.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// One line per unfinished run: what is left and where (`rebound run` names them).
pub fn describe(p: &Pending) -> String {
    let mut left = Vec::new();
    if !p.faults.is_empty() {
        let faults: Vec<String> = p
            .faults
            .iter()
            .map(|(_, u)| format!("{} on {}", u.fault, u.target))
            .collect();
        left.push(format!("fault(s) not healed: {}", faults.join(", ")));
    }
    if p.open && p.run.owns_stack {
        left.push(format!(
            "its stack may still be up (compose project {})",
            p.run.project.as_deref().unwrap_or("?")
        ));
    }
    for (service, pgid, pids) in p.leftover_processes() {
        left.push(format!(
            "{} process(es) of service `{service}` still running (process group {pgid})",
            pids.len()
        ));
    }
    if left.is_empty() {
        left.push("it never ended".into());
    }
    format!(
        "run {} of scenario `{}` ({}), whose rebound (pid {}) is gone: {}",
        p.run.run_id,
        p.run.scenario,
        p.run_dir.display(),
        p.run.pid,
        left.join("; ")
    )
}

/// SIGKILLs what is left in the process groups of a dead process run.
fn kill_leftovers(p: &Pending) -> Vec<String> {
    let mut done = Vec::new();
    // Twice: what a leftover forks between the scan and its kill is found again.
    for _ in 0..2 {
        for (service, pgid, pids) in p.leftover_processes() {
            let mut killed = Vec::new();
            let mut failed = Vec::new();
            for pid in pids {
                let sent = i32::try_from(pid).ok().map(|raw| {
                    nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(raw),
                        nix::sys::signal::Signal::SIGKILL,
                    )
                });
                match sent {
                    Some(Ok(())) => killed.push(pid.to_string()),
                    Some(Err(e)) => failed.push(format!("{pid} ({e})")),
                    None => failed.push(pid.to_string()),
                }
            }
            if !killed.is_empty() {
                done.push(format!(
                    "killed {} leftover process(es) of service `{service}` (process group {pgid}: pid {})",
                    killed.len(),
                    killed.join(", ")
                ));
            }
            if !failed.is_empty() {
                done.push(format!(
                    "could not kill process(es) of service `{service}`: pid {}",
                    failed.join(", ")
                ));
            }
        }
        // Let the kernel reap what was killed before looking again.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if done.is_empty() {
        done.push("its services died with rebound (nothing else to undo)".into());
    }
    done
}

/// Undoes what `p` left behind, marks it healed in its journal and drops it from
/// the index. Idempotent: healing a healed run does nothing. Returns what was done.
pub async fn heal(p: &Pending) -> Result<Vec<String>, HealError> {
    if p.alive() {
        return Err(HealError::Alive {
            run_id: p.run.run_id.clone(),
            pid: p.run.pid,
        });
    }
    let undo: Vec<crate::nemesis::UndoRecord> = p.faults.iter().map(|(_, u)| u.clone()).collect();
    // Link faults are lifted through the proxy services the run's scenario names
    // (a scenario that cannot be read leaves none: lifting one then fails, saying
    // which link).
    let links = match crate::scenario::load_recorded(&p.run_dir.join(crate::run_dir::SCENARIO)) {
        Ok(plan) => plan.stack.links().to_vec(),
        Err(e) => {
            if p.faults.iter().any(|(_, u)| {
                u.steps
                    .iter()
                    .any(|s| matches!(s, crate::nemesis::UndoStep::ClearLink { .. }))
            }) {
                eprintln!("warning: run {}: {e}", p.run.run_id);
            }
            Vec::new()
        }
    };
    let done = match (p.run.backend.as_str(), &p.run.project) {
        ("docker", Some(project)) if !p.is_clean() => crate::stack::docker::heal_dead_run(
            project,
            &p.run.run_id,
            p.run.owns_stack && p.open,
            &p.run.containers,
            &undo,
            &p.disconnected,
            &links,
        )
        .await
        .map_err(|source| HealError::Stack {
            run_id: p.run.run_id.clone(),
            source,
        })?,
        // A service's leader dies with rebound (the kernel's parent-death signal);
        // what it forked stays in its process group.
        ("process", _) if !p.is_clean() => kill_leftovers(p),
        _ => Vec::new(),
    };
    let entries: Vec<journal::Entry> = p
        .faults
        .iter()
        .map(|(seq, _)| journal::Entry::Healed { seq: *seq })
        .chain(p.open.then(|| journal::Entry::End {
            stack: "healed by `rebound heal`".into(),
        }))
        .collect();
    journal::append_to(&p.run_dir, &entries)?;
    journal::forget(&p.run.run_id);
    Ok(done)
}
