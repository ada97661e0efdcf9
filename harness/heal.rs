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
    /// A power-loss layer could not be unmounted.
    #[error("run {run_id}: {source}")]
    Unmount {
        /// Run id.
        run_id: String,
        /// What failed.
        source: crate::durable::DurableError,
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
    for (mountpoint, _) in p.live_mounts() {
        left.push(format!(
            "its power-loss layer is still mounted at {}",
            mountpoint.display()
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
    let mut done = done;
    // After the services are gone (nothing holds a file of the layer open any more).
    let mut unmounted = Vec::new();
    let mut first_error = None;
    for (mountpoint, backing) in &p.mounts {
        match crate::durable::heal_mount(mountpoint, backing) {
            Ok((was, warning)) => {
                if let Some(w) = warning {
                    done.push(w);
                }
                if was {
                    done.push(format!(
                        "unmounted the power-loss layer at {}",
                        mountpoint.display()
                    ));
                }
                unmounted.push(journal::Entry::Unmounted {
                    mountpoint: mountpoint.clone(),
                });
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(source) = first_error {
        // The run stays pending (`rebound heal` again once the mount lets go).
        journal::append_to(&p.run_dir, &unmounted)?;
        return Err(HealError::Unmount {
            run_id: p.run.run_id.clone(),
            source,
        });
    }
    let entries: Vec<journal::Entry> = unmounted
        .into_iter()
        .chain(
            p.faults
                .iter()
                .map(|(seq, _)| journal::Entry::Healed { seq: *seq }),
        )
        .chain(p.open.then(|| journal::Entry::End {
            stack: "healed by `rebound heal`".into(),
        }))
        .collect();
    journal::append_to(&p.run_dir, &entries)?;
    journal::forget(&p.run.run_id);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::{Layer, Model, STASH};
    use crate::journal::{Journal, RunEntry};

    /// A run that died with its power-loss layer mounted (the layer's daemon is
    /// left running, as a killed rebound's mount is left in the kernel): heal
    /// unmounts it, the backing directory reads, and the run is no longer pending.
    #[tokio::test]
    async fn heal_unmounts_a_layer_a_dead_run_left_mounted() {
        let state = tempfile::tempdir().expect("state");
        std::env::set_var("REBOUND_STATE_DIR", state.path());
        let run_dir = tempfile::tempdir().expect("run dir");
        let data = tempfile::tempdir().expect("data");
        std::fs::write(data.path().join("durable"), b"kept").expect("seed");
        let entry = RunEntry {
            run_id: "20261204T000000Z-heal".into(),
            scenario: "s".into(),
            pid: std::process::id(),
            pid_start: u64::MAX, // not this process: the run's rebound is gone
            backend: "process".into(),
            project: None,
            owns_stack: false,
            swarm: None,
            containers: Default::default(),
        };
        let journal = Journal::create(run_dir.path(), entry).expect("journal");
        let mountpoint = data.path().canonicalize().expect("canonical");
        journal
            .mounted(&mountpoint, &mountpoint)
            .expect("journal the mount");
        let layer = Layer::mount(&mountpoint, &mountpoint, Model::PosixStrict).expect("mount");
        std::fs::write(mountpoint.join("unsynced"), b"written, never fsynced").expect("write");
        std::fs::remove_file(mountpoint.join("durable")).expect("unlink (stashed)");
        std::mem::forget(layer);
        drop(journal); // rebound died: the kernel lets go of its lock

        let stale = crate::journal::stale();
        assert_eq!(stale.len(), 1, "a live mount keeps the run pending");
        assert_eq!(stale[0].live_mounts().len(), 1);
        assert!(
            describe(&stale[0]).contains("still mounted at"),
            "{}",
            describe(&stale[0])
        );
        let done = heal(&stale[0]).await.expect("heal");
        assert!(
            done.iter()
                .any(|d| d.starts_with("unmounted the power-loss layer")),
            "{done:?}"
        );
        assert!(
            !crate::durable::mounts().contains(&mountpoint),
            "still mounted"
        );
        let mut names: Vec<String> = std::fs::read_dir(&mountpoint)
            .expect("the backing directory reads")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["unsynced"],
            "every write kept, no stash ({STASH}) left"
        );
        assert!(
            crate::journal::stale().is_empty(),
            "healed runs are not pending"
        );
        // Healing again does nothing.
        let p = crate::journal::read(run_dir.path()).expect("read");
        assert!(p.is_clean(), "{p:?}");
        std::env::remove_var("REBOUND_STATE_DIR");
    }
}
