//! The fault journal: what a run did to the world that must be undone — the stack it
//! brought up, each fault it injected, the networks it cut — appended and fsync'd to
//! `journal.jsonl` in the run directory *before* the act, and indexed in a per-user
//! state directory, so that `rebound heal` can undo it after rebound itself was
//! killed (SIGKILL, OOM, a CI time limit).
//!
//! State directory: `$REBOUND_STATE_DIR`, else `$XDG_STATE_HOME/rebound`, else
//! `/var/lib/rebound` for root, else `~/.local/state/rebound`. Its `runs/<run id>`
//! file holds the run directory of a run that has not ended cleanly yet; a clean end
//! removes it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::nemesis::UndoRecord;

/// The environment variable that marks every process of a process-backend service
/// (and what it forks) with its run id: `rebound heal` kills only processes that
/// carry it.
pub const RUN_ENV: &str = "REBOUND_RUN";

/// The journal's file name in a run directory.
pub const JOURNAL: &str = "journal.jsonl";

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Entry {
    /// The run began (written before the stack is brought up).
    Run(RunEntry),
    /// A fault is about to be injected; `undo` takes it back.
    Fault {
        /// Its number in this journal.
        seq: u64,
        /// What heal does.
        undo: UndoRecord,
    },
    /// docker: `service` is about to be cut off `network` (heal reconnects it).
    Disconnected {
        /// Service.
        service: String,
        /// Network name.
        network: String,
    },
    /// process: a service process was started as the leader of its own process
    /// group. Its children stay in that group; `rebound heal` kills what is left of
    /// it (the kernel's parent-death signal only reaches the leader).
    Group {
        /// Service.
        service: String,
        /// Process group id (the leader's pid).
        pgid: i32,
        /// The leader's start time in clock ticks since boot (`/proc/<pid>/stat`
        /// field 22): members started before it belong to another group of that id.
        start: u64,
    },
    /// The power-loss layer was mounted at `mountpoint` over `backing`
    /// (`rebound heal` unmounts it, lazily if busy, and clears its stash).
    Mounted {
        /// Where it is mounted.
        mountpoint: PathBuf,
        /// The directory it keeps the durable state in.
        backing: PathBuf,
    },
    /// The layer at `mountpoint` was unmounted.
    Unmounted {
        /// Where it was mounted.
        mountpoint: PathBuf,
    },
    /// Fault `seq` was healed.
    Healed {
        /// The fault's number.
        seq: u64,
    },
    /// The run ended: the stack it brought up is gone (or kept on purpose).
    End {
        /// What happened to the stack.
        stack: String,
    },
}

/// Who ran and what stack it touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEntry {
    /// Run id (the `rebound.run` label of everything it created).
    pub run_id: String,
    /// Scenario name.
    pub scenario: String,
    /// rebound's process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22), so a
    /// reused pid is not mistaken for the run.
    pub pid_start: u64,
    /// `process` or `docker`.
    pub backend: String,
    /// docker: the compose project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// docker: rebound brought the project up and must take it down (false when
    /// attaching to a running project or with `--keep`).
    #[serde(default)]
    pub owns_stack: bool,
    /// The `rebound swarm run` this run is a shard of (`$REBOUND_SWARM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<String>,
    /// docker: the containers of a `containers = {…}` stack (service → id), which
    /// `rebound heal` acts on instead of a compose project.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, String>,
}

/// The environment variable naming the `rebound swarm run` a shard belongs to.
pub const SWARM_ENV: &str = "REBOUND_SWARM";

/// The lock file a running run holds (`runs/.<run id>.lock`): whoever can lock it
/// knows that run's rebound is gone, whatever pid namespace either lives in (a
/// swarm task's rebound shares the state directory with the host, not its pids).
fn lock_path(run_id: &str) -> PathBuf {
    state_dir().join("runs").join(format!(".{run_id}.lock"))
}

/// A journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O error on a journal or index file.
    #[error("fault journal {path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The journal of a running run.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    index: PathBuf,
    next: Mutex<u64>,
    /// Faults journaled and not yet healed.
    active: Mutex<std::collections::BTreeSet<u64>>,
    /// Held locked for as long as the run lives (see [`lock_path`]).
    _lock: Option<std::fs::File>,
}

impl Journal {
    /// Creates `run_dir/journal.jsonl` with its run entry and indexes it.
    pub fn create(run_dir: &Path, run: RunEntry) -> Result<Self, JournalError> {
        let path = run_dir.join(JOURNAL);
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| JournalError::Io { path: p, source }
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let runs = state_dir().join("runs");
        std::fs::create_dir_all(&runs).map_err(io(&runs))?;
        let index = runs.join(&run.run_id);
        let run_id = run.run_id.clone();
        // Locked before the index names the run: a reader never sees it unlocked
        // while it lives. A filesystem without locks falls back to the pid check.
        let lock = std::fs::File::create(lock_path(&run_id))
            .ok()
            .filter(|f| f.try_lock().is_ok());
        let journal = Journal {
            path,
            file: Mutex::new(file),
            index: index.clone(),
            next: Mutex::new(1),
            active: Mutex::new(std::collections::BTreeSet::new()),
            _lock: lock,
        };
        // The run entry first, then the index (written whole, by rename): whoever
        // reads the index finds a journal to read.
        journal.append(&Entry::Run(run))?;
        let abs = std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
        let tmp = runs.join(format!(".{run_id}.tmp"));
        std::fs::write(&tmp, abs.display().to_string()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &index).map_err(io(&index))?;
        Ok(journal)
    }

    /// Appends one entry and waits until it is on disk.
    fn append(&self, entry: &Entry) -> Result<(), JournalError> {
        self.write(entry, true)
    }

    /// Appends one entry; with `sync`, waits until it is on disk (a kill of rebound
    /// keeps what was written either way; only a host crash loses an unsynced line).
    fn write(&self, entry: &Entry, sync: bool) -> Result<(), JournalError> {
        let mut line = serde_json::to_string(entry).unwrap_or_default();
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(line.as_bytes())
            .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Records a fault about to be injected; returns its number for [`Self::healed`].
    pub fn fault(&self, undo: &UndoRecord) -> Result<u64, JournalError> {
        let seq = {
            let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let seq = *n;
            *n += 1;
            seq
        };
        self.append(&Entry::Fault {
            seq,
            undo: undo.clone(),
        })?;
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq);
        Ok(seq)
    }

    /// Records that fault `seq` was healed.
    pub fn healed(&self, seq: u64) -> Result<(), JournalError> {
        self.append(&Entry::Healed { seq })?;
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq);
        Ok(())
    }

    /// Records that the power-loss layer is about to be mounted at `mountpoint`
    /// over `backing` (written first: a mount rebound dies in is still healed).
    pub fn mounted(&self, mountpoint: &Path, backing: &Path) -> Result<(), JournalError> {
        self.append(&Entry::Mounted {
            mountpoint: mountpoint.to_path_buf(),
            backing: backing.to_path_buf(),
        })
    }

    /// Records that the layer at `mountpoint` was unmounted.
    pub fn unmounted(&self, mountpoint: &Path) -> Result<(), JournalError> {
        self.append(&Entry::Unmounted {
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    /// Records a process group a service was just started in (process backend).
    pub fn group(&self, service: &str, pgid: i32) -> Result<(), JournalError> {
        let start = u32::try_from(pgid)
            .ok()
            .and_then(process_start)
            .unwrap_or(0);
        // Not synced: it is written on a runtime thread at every start, where an
        // fsync stalled the probes' timers (a 74 ms gap in 1 000 SIGTERM trials),
        // and a host crash that could lose the line ends the processes too.
        self.write(
            &Entry::Group {
                service: service.to_string(),
                pgid,
                start,
            },
            false,
        )
    }

    /// Records that `service` is about to be disconnected from `network`.
    pub fn disconnected(&self, service: &str, network: &str) -> Result<(), JournalError> {
        self.append(&Entry::Disconnected {
            service: service.to_string(),
            network: network.to_string(),
        })
    }

    /// The run ended: records what became of the stack. When `stack_gone` (the
    /// stack rebound brought up was removed), faults still marked active went with
    /// it. The index entry is dropped unless a fault is still active on a stack that
    /// is still there — then `rebound heal` finishes the job.
    pub fn end(&self, stack: &str, stack_gone: bool) -> Result<(), JournalError> {
        let active: Vec<u64> = {
            let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
            if stack_gone {
                std::mem::take(&mut *a).into_iter().collect()
            } else {
                Vec::new()
            }
        };
        for seq in active {
            self.append(&Entry::Healed { seq })?;
        }
        self.append(&Entry::End {
            stack: stack.to_string(),
        })?;
        if !self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            return Ok(());
        }
        // The index first: a reader never finds the run indexed without its lock.
        let removed = match std::fs::remove_file(&self.index) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(JournalError::Io {
                path: self.index.clone(),
                source,
            }),
        };
        let _ = std::fs::remove_file(lock_path(
            &self.index.file_name().unwrap_or_default().to_string_lossy(),
        ));
        removed
    }
}

/// Where the index of unfinished runs lives (see the module docs).
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("REBOUND_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("rebound");
    }
    if nix::unistd::Uid::effective().is_root() {
        return PathBuf::from("/var/lib/rebound");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".local/state/rebound"))
        .unwrap_or_else(|| std::env::temp_dir().join("rebound-state"))
}

/// The start time of process `pid` (`/proc/<pid>/stat` field 22), None if gone.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What a journal says is still to undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Who ran.
    pub run: RunEntry,
    /// Faults injected and not healed, in injection order.
    pub faults: Vec<(u64, UndoRecord)>,
    /// Networks each service was cut off from (docker).
    pub disconnected: BTreeMap<String, Vec<String>>,
    /// The run never ended: a stack it owns may still be up.
    pub open: bool,
    /// process: the process groups its services were started in, `(service, pgid,
    /// leader start)`.
    pub groups: Vec<(String, i32, u64)>,
    /// Power-loss layers mounted and not unmounted, `(mountpoint, backing)`.
    pub mounts: Vec<(PathBuf, PathBuf)>,
}

/// Every live (not zombie) process by process group: `pgid → [(pid, start time)]`,
/// from one pass over `/proc`.
fn process_groups() -> BTreeMap<i32, Vec<(u32, u64)>> {
    let mut out: BTreeMap<i32, Vec<(u32, u64)>> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for pid in dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 3 (state), 5 (pgrp) and 22 (start time).
        let (Some(pgrp), Some(start)) = (
            fields.get(2).and_then(|g| g.parse::<i32>().ok()),
            fields.get(19).and_then(|t| t.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if fields.first() != Some(&"Z") {
            out.entry(pgrp).or_default().push((pid, start));
        }
    }
    out
}

impl Pending {
    /// The rebound process of this run is still alive.
    pub fn alive(&self) -> bool {
        if let Ok(f) = std::fs::File::open(lock_path(&self.run.run_id)) {
            match f.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) => return true,
                Ok(()) => return false,
                Err(std::fs::TryLockError::Error(_)) => {}
            }
        }
        process_start(self.run.pid) == Some(self.run.pid_start)
    }

    /// Nothing left to undo: no fault active, no stack of its own possibly up, no
    /// process left in a group its services were started in, and no power-loss
    /// layer of its still mounted.
    pub fn is_clean(&self) -> bool {
        self.faults.is_empty()
            && !(self.open && self.run.owns_stack)
            && self.leftover_processes().is_empty()
            && self.live_mounts().is_empty()
    }

    /// The journaled power-loss layers that `/proc/mounts` still shows.
    pub fn live_mounts(&self) -> Vec<(PathBuf, PathBuf)> {
        let now = crate::durable::mounts();
        self.mounts
            .iter()
            .filter(|(m, _)| now.contains(m))
            .cloned()
            .collect()
    }

    /// process: `(service, pgid, pids)` of every group that still has members,
    /// while the run never ended.
    pub fn leftover_processes(&self) -> Vec<(String, i32, Vec<u32>)> {
        if !self.open || self.groups.is_empty() {
            return Vec::new();
        }
        let live = process_groups();
        // A group id can be reused once the group is empty, by anyone: a member
        // counts only if it was started no earlier than the journaled leader and
        // carries this run's mark in its environment.
        let marked = |pid: u32| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|kv| kv == format!("{RUN_ENV}={}", self.run.run_id).as_bytes())
            })
        };
        self.groups
            .iter()
            .filter(|(_, _, start)| *start > 0)
            .filter_map(|(service, pgid, start)| {
                let pids: Vec<u32> = live
                    .get(pgid)?
                    .iter()
                    .filter(|(pid, t)| t >= start && marked(*pid))
                    .map(|(p, _)| *p)
                    .collect();
                (!pids.is_empty()).then(|| (service.clone(), *pgid, pids))
            })
            .collect()
    }
}

/// Reads the journal of `run_dir`. A torn last line (rebound killed mid-write) is
/// ignored: the act it announced was never started.
pub fn read(run_dir: &Path) -> Result<Pending, JournalError> {
    let path = run_dir.join(JOURNAL);
    let text = std::fs::read_to_string(&path).map_err(|source| JournalError::Io {
        path: path.clone(),
        source,
    })?;
    let mut run = None;
    let mut faults: Vec<(u64, UndoRecord)> = Vec::new();
    let mut disconnected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut open = true;
    let mut groups = Vec::new();
    let mut mounts: Vec<(PathBuf, PathBuf)> = Vec::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Entry>(line) else {
            continue;
        };
        match entry {
            Entry::Run(r) => run = Some(r),
            Entry::Fault { seq, undo } => faults.push((seq, undo)),
            Entry::Healed { seq } => faults.retain(|(s, _)| *s != seq),
            Entry::Disconnected { service, network } => {
                let nets = disconnected.entry(service).or_default();
                if !nets.contains(&network) {
                    nets.push(network);
                }
            }
            Entry::Group {
                service,
                pgid,
                start,
            } => groups.push((service, pgid, start)),
            Entry::Mounted {
                mountpoint,
                backing,
            } => {
                mounts.retain(|(m, _)| *m != mountpoint);
                mounts.push((mountpoint, backing));
            }
            Entry::Unmounted { mountpoint } => mounts.retain(|(m, _)| *m != mountpoint),
            Entry::End { .. } => open = false,
        }
    }
    let run = run.ok_or_else(|| JournalError::Io {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no run entry"),
    })?;
    Ok(Pending {
        run_dir: run_dir.to_path_buf(),
        run,
        faults,
        disconnected,
        open,
        groups,
        mounts,
    })
}

/// Every run in the index whose rebound process is gone and that left something
/// to undo. Dead runs with nothing left are dropped from the index on the way;
/// unreadable entries are skipped (see [`orphaned`]).
pub fn stale() -> Vec<Pending> {
    let Ok(dir) = std::fs::read_dir(state_dir().join("runs")) else {
        return Vec::new();
    };
    let mut out: Vec<Pending> = dir
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|run_dir| read(Path::new(run_dir.trim())).ok())
        .filter(|p| !p.alive())
        .filter(|p| {
            // One /proc scan per run: cleanliness looks for leftover processes.
            let clean = p.is_clean();
            if clean {
                forget(&p.run.run_id);
            }
            !clean
        })
        .collect();
    out.sort_by(|a, b| a.run.run_id.cmp(&b.run.run_id));
    out
}

/// Appends entries to the journal of a run that is over (`rebound heal`).
pub fn append_to(run_dir: &Path, entries: &[Entry]) -> Result<(), JournalError> {
    let path = run_dir.join(JOURNAL);
    let io = |source| JournalError::Io {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io)?;
    // After a torn last line (killed mid-write), start on a line of our own.
    let torn = std::fs::read(&path)
        .map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?
        .last()
        .is_some_and(|b| *b != b'\n');
    let mut text = if torn {
        "\n".to_string()
    } else {
        String::new()
    };
    for e in entries {
        text.push_str(&serde_json::to_string(e).unwrap_or_default());
        text.push('\n');
    }
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(io)
}

/// Index entries whose run directory or journal is gone or unreadable: nothing can
/// be undone from them (`rebound heal` names and drops them). (run id, run dir).
pub fn orphaned() -> Vec<(String, PathBuf)> {
    let Ok(dir) = std::fs::read_dir(state_dir().join("runs")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            let run_dir = PathBuf::from(std::fs::read_to_string(e.path()).ok()?.trim());
            // Only a journal that is gone: one that cannot be read now (permissions)
            // may still hold faults to undo.
            let gone = std::fs::metadata(run_dir.join(JOURNAL))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
            gone.then_some((name, run_dir))
        })
        .collect();
    out.sort();
    out
}

/// Drops `run_id` from the index (after `rebound heal` undid everything).
pub fn forget(run_id: &str) {
    let _ = std::fs::remove_file(state_dir().join("runs").join(run_id));
    let _ = std::fs::remove_file(lock_path(run_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_entry(pid: u32) -> RunEntry {
        RunEntry {
            run_id: "20261202T000000Z-abcd".into(),
            scenario: "s".into(),
            pid,
            pid_start: process_start(pid).unwrap_or(0),
            backend: "docker".into(),
            project: Some("p".into()),
            owns_stack: true,
            swarm: None,
            containers: BTreeMap::new(),
        }
    }

    #[test]
    fn an_unhealed_fault_and_an_open_stack_are_pending_until_healed_and_ended() {
        let state = tempfile::tempdir().expect("tempdir");
        std::env::set_var("REBOUND_STATE_DIR", state.path());
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::create(dir.path(), run_entry(std::process::id())).expect("journal");
        let a = j
            .fault(&UndoRecord::restore("pause-for", "db"))
            .expect("fault");
        j.disconnected("db", "p_default").expect("disconnected");
        j.disconnected("db", "p_default").expect("twice");
        let b = j
            .fault(&UndoRecord::restore("sigkill", "app"))
            .expect("fault");
        j.healed(b).expect("healed");
        let p = read(dir.path()).expect("read");
        assert_eq!(p.faults.len(), 1);
        assert_eq!((p.faults[0].0, p.faults[0].1.target.as_str()), (a, "db"));
        assert_eq!(p.disconnected["db"], ["p_default"]);
        assert!(p.open && p.alive(), "this process wrote it and is alive");
        assert!(
            stale().is_empty(),
            "a live run is not stale, whatever it has pending"
        );
        // A torn last line (killed mid-write) is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL))
            .and_then(|mut f| f.write_all(b"{\"op\":\"fau"))
            .expect("torn");
        assert_eq!(read(dir.path()).expect("read").faults.len(), 1);
        // What `rebound heal` appends after a torn line still reads back.
        append_to(dir.path(), &[Entry::Healed { seq: a }]).expect("append");
        assert!(read(dir.path()).expect("read").faults.is_empty());
        j.end("removed", true).expect("end");
        let p = read(dir.path()).expect("read");
        assert!(p.is_clean(), "{p:?}");
        assert!(
            !state.path().join("runs").join(&p.run.run_id).exists(),
            "a clean end leaves no index entry"
        );
        std::env::remove_var("REBOUND_STATE_DIR");
    }

    #[test]
    fn a_run_holding_its_lock_is_alive_whatever_its_pid_says_and_gone_once_dropped() {
        let state = tempfile::tempdir().expect("state");
        std::env::set_var("REBOUND_STATE_DIR", state.path());
        let dir = tempfile::tempdir().expect("tempdir");
        // As a swarm task's rebound looks from the host: a pid of another namespace.
        let mut entry = run_entry(std::process::id());
        entry.pid_start = u64::MAX;
        let j = Journal::create(dir.path(), entry).expect("journal");
        j.fault(&UndoRecord::restore("pause-for", "db"))
            .expect("fault");
        assert!(read(dir.path()).expect("read").alive(), "its lock is held");
        assert!(stale().is_empty());
        drop(j); // the process died: the kernel lets go of the lock
        assert!(!read(dir.path()).expect("read").alive());
        assert_eq!(stale().len(), 1);
        std::env::remove_var("REBOUND_STATE_DIR");
    }

    #[test]
    fn a_run_whose_process_is_gone_is_not_alive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut entry = run_entry(std::process::id());
        entry.pid_start += 1; // the same pid, started at another time: reused
        std::fs::write(
            dir.path().join(JOURNAL),
            format!(
                "{}\n",
                serde_json::to_string(&Entry::Run(entry)).expect("json")
            ),
        )
        .expect("write");
        assert!(!read(dir.path()).expect("read").alive());
    }

    #[test]
    fn a_journaled_process_group_with_a_live_member_is_left_over_until_it_dies() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let entry_id = run_entry(std::process::id()).run_id;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(RUN_ENV, &entry_id)
            .process_group(0)
            .spawn()
            .expect("sleep");
        // The same group without the run's mark is somebody else's.
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep");
        // Until they exec, the forks still carry this process's environment (no
        // mark): wait for both to be `sleep` (a loaded machine is slow to get there).
        for pid in [child.id(), stranger.id()] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::read(format!("/proc/{pid}/cmdline"))
                .map_or(true, |c| !c.starts_with(b"sleep\0"))
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{pid} never exec'd sleep"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let pgid = i32::try_from(child.id()).expect("pid");
        let mut entry = run_entry(std::process::id());
        entry.backend = "process".into();
        entry.owns_stack = false;
        let lines = [
            Entry::Run(entry),
            Entry::Group {
                service: "app".into(),
                pgid,
                start: process_start(child.id()).expect("start"),
            },
        ];
        let text: String = lines
            .iter()
            .map(|e| serde_json::to_string(e).expect("json") + "\n")
            .collect();
        std::fs::write(dir.path().join(JOURNAL), &text).expect("write");
        let mut p = read(dir.path()).expect("read");
        assert_eq!(
            p.leftover_processes(),
            vec![("app".to_string(), pgid, vec![child.id()])]
        );
        let stranger_pgid = i32::try_from(stranger.id()).expect("pid");
        p.groups.push((
            "other".into(),
            stranger_pgid,
            process_start(stranger.id()).expect("start"),
        ));
        assert_eq!(p.leftover_processes().len(), 1, "only the marked group");
        stranger.kill().expect("kill");
        stranger.wait().expect("reap");
        p.groups.pop();
        assert!(!p.is_clean());
        // A group recorded with a later leader start is another group of that id.
        let mut later = p.clone();
        later.groups[0].2 += 1_000_000;
        assert!(later.leftover_processes().is_empty());
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert!(p.leftover_processes().is_empty());
        assert!(p.is_clean());
    }
}
