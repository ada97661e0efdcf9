//! The append-only event log of a run (`history.jsonl`): one JSON object per line,
//! flushed as it is written, so a crash or Ctrl-C keeps everything recorded so far.
//!
//! Every record carries a sequence number, the wall clock (for people) and the
//! monotonic time since the run started (for arithmetic). Checkers read only this.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the `history.jsonl` format this build writes. 1: the first release
/// (no `format` key); 2: probe records carry `late_ns` (and `cancelled` when an
/// overlapping attempt was made moot), in start order; `run-start` carries `format`;
/// 3: `log` records (lines follow-ups wait for, explore's log templates); 4: probe
/// records carry `skipped` (ticks that started no attempt). Readers accept every
/// version up to this one.
pub const FORMAT_VERSION: u32 = 4;

/// The version of rebound writing histories (`RunStart::rebound`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn first_format() -> u32 {
    1
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Position in the file, from 1.
    pub seq: u64,
    /// Wall-clock time the record was written.
    pub time: DateTime<Utc>,
    /// Monotonic nanoseconds since the run started.
    pub elapsed_ns: u64,
    /// Trial the record belongs to (absent between trials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<u32>,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Lifecycle transitions of a service, as the backend saw them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    /// A process was spawned.
    Started,
    /// A process exited (code or signal given).
    Exited,
    /// A process could not be spawned.
    SpawnFailed,
    /// The restart policy scheduled a restart.
    RestartScheduled,
    /// Frozen (SIGSTOP).
    Paused,
    /// Resumed (SIGCONT).
    Resumed,
    /// A health status change (the status is in `detail`).
    Health,
}

/// Outcome of a client operation, as Jepsen classifies it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OpResult {
    /// Acknowledged by the service.
    Ok,
    /// Certainly not applied (refused before or by the service).
    Fail,
    /// Indeterminate: may or may not have been applied (e.g. a timeout after sending).
    Info,
}

/// Everything that can happen in a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// The run began.
    RunStart {
        /// Version of the history format ([`FORMAT_VERSION`]; absent, i.e. 1, in
        /// histories of the first release).
        #[serde(default = "first_format")]
        format: u32,
        /// Scenario name.
        scenario: String,
        /// Run id.
        run_id: String,
        /// The rebound version that ran it (empty in histories before it was kept).
        #[serde(default)]
        rebound: String,
        /// Seed of the schedule.
        seed: u64,
        /// Trials planned (the maximum in sequential mode).
        trials: u32,
        /// Sequential mode: stop as soon as the success rate is decided.
        #[serde(default)]
        sequential: bool,
    },
    /// Every service was started.
    StackUp,
    /// All probes reached a stable streak.
    SteadyState {
        /// How long it took.
        waited_ms: f64,
    },
    /// A trial began (warm-up follows).
    TrialStart {
        /// Fault kind.
        fault: String,
        /// Target service.
        target: String,
    },
    /// The nemesis is about to inject.
    FaultInvoke {
        /// Fault kind.
        fault: String,
        /// Target service.
        target: String,
    },
    /// The fault is injected: `t_inject`, where the recovery clock starts.
    FaultOk {
        /// What was done.
        detail: String,
    },
    /// The fault could not be injected.
    FaultFail {
        /// Why.
        error: String,
    },
    /// The fault's effect is confirmed over (the target died, or a timed fault was
    /// lifted): only probes started after this count towards recovery.
    FaultEnd {
        /// What was observed.
        detail: String,
    },
    /// Heal begins (always, also on timeout and Ctrl-C).
    HealInvoke,
    /// Heal done.
    HealOk {
        /// What was done.
        detail: String,
    },
    /// Heal failed.
    HealFail {
        /// Why.
        error: String,
    },
    /// One probe attempt, recorded when it completed.
    Probe {
        /// Probe name.
        probe: String,
        /// Whether it succeeded.
        ok: bool,
        /// Monotonic nanoseconds when the attempt started.
        start_ns: u64,
        /// How long the attempt took.
        latency_ns: u64,
        /// How late the attempt started after its scheduled tick (a busy machine
        /// delays timers): the bracket may be wider than the period by this much.
        #[serde(default)]
        late_ns: u64,
        /// Ticks of the probe's period since the previous attempt's tick that started
        /// no attempt (the loop was more than a period late, or as many attempts as
        /// allowed were in flight): each widens the bracket by one more period.
        #[serde(default, skip_serializing_if = "is_zero")]
        skipped: u32,
        /// The attempt was cancelled before it ended (a later one succeeded, or the
        /// probe stopped): it proves nothing and no checker counts it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cancelled: bool,
        /// How long after `start_ns` the failure proves the service not ready (a
        /// refused connect: when it was issued); absent: at the start (every other
        /// failure, and every history before this field).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof_ns: Option<u64>,
        /// Failure description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A service lifecycle transition.
    Service {
        /// Service name.
        service: String,
        /// Transition.
        action: Lifecycle,
        /// Process id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        /// Exit code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        /// Terminating signal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// Free text (restart delay, spawn error, health status, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// When the backend itself saw it (Docker: the daemon's wall clock, ns since the epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        daemon_time_ns: Option<i64>,
    },
    /// A line a service logged that a follow-up waits for, or (explore) the
    /// first line of its template in the trial.
    Log {
        /// Service name.
        service: String,
        /// The line, as logged (cut at 1000 characters).
        line: String,
        /// Its template (numbers and ids masked), when recorded as a new one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<String>,
    },
    /// A client operation is about to be sent.
    OpInvoke {
        /// Workload name.
        workload: String,
        /// The operation's unique id.
        id: String,
    },
    /// A client operation completed.
    OpComplete {
        /// Workload name.
        workload: String,
        /// The operation's id.
        id: String,
        /// ok (acknowledged), fail (certainly not applied) or info (indeterminate).
        result: OpResult,
        /// Monotonic nanoseconds when it was sent.
        start_ns: u64,
        /// How long it took.
        latency_ns: u64,
        /// Why it failed or is indeterminate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The acknowledged writes of a workload were read back after the trial.
    Verify {
        /// Workload name.
        workload: String,
        /// Ids read back.
        checked: u64,
        /// Ids the store does not have.
        missing: Vec<String>,
        /// Ids that could not be read (the read itself failed).
        unverifiable: u64,
        /// The first read error, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A trial ended.
    TrialEnd {
        /// True when Ctrl-C cut the trial short (it is not counted).
        interrupted: bool,
    },
    /// The run ended.
    RunEnd {
        /// True when interrupted.
        interrupted: bool,
        /// Why the run stopped before its planned trials, if it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stopped_early: Option<String>,
    },
}

impl Event {
    /// A service lifecycle event carrying no pid, exit code or signal.
    pub fn service(service: &str, action: Lifecycle, detail: Option<String>) -> Self {
        Event::Service {
            service: service.to_string(),
            action,
            pid: None,
            code: None,
            signal: None,
            detail,
            daemon_time_ns: None,
        }
    }
}

/// Errors reading or writing a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// I/O on the history file.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The history was written by a newer rebound.
    #[error("{path}: history format {found} is newer than this rebound reads ({FORMAT_VERSION}); use a newer rebound", path = path.display())]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        found: u32,
    },
    /// A line is not a valid record.
    #[error("{path}:{line}: not a history record: {source}", path = path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// What a trial's records are handed to as they are written ([`History::begin_trial`]).
pub type Tap = Box<dyn FnMut(&Record) + Send>;

struct Sink {
    out: Option<BufWriter<File>>,
    seq: u64,
    /// Every record, in an in-memory history.
    kept: Option<Vec<Record>>,
    tap: Option<Tap>,
    write_error: Option<std::io::Error>,
}

/// The writer side of a history: thread-safe, shared by every task of a run.
pub struct History {
    started: Instant,
    trial: AtomicU32,
    sink: Mutex<Sink>,
    path: Option<PathBuf>,
    /// Every service lifecycle record, log record and probe attempt that was
    /// not cancelled, as it is written, to whoever listens (follow-up faults
    /// triggered by an event).
    lifecycle: tokio::sync::broadcast::Sender<Record>,
}

impl History {
    /// Creates `path` (truncating) and starts the run clock.
    pub fn create(path: &Path) -> Result<Self, HistoryError> {
        let file = File::create(path).map_err(|source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::with_sink(
            Some(BufWriter::new(file)),
            Some(path.to_path_buf()),
        ))
    }

    /// A history kept in memory only, every record of it (tests, short-lived
    /// helpers such as heal): [`History::records`] returns them.
    pub fn in_memory() -> Self {
        let h = Self::with_sink(None, None);
        h.lock().kept = Some(Vec::new());
        h
    }

    /// Every record of an in-memory history so far (empty for a file history).
    pub fn records(&self) -> Vec<Record> {
        self.lock().kept.clone().unwrap_or_default()
    }

    fn with_sink(out: Option<BufWriter<File>>, path: Option<PathBuf>) -> Self {
        History {
            started: Instant::now(),
            trial: AtomicU32::new(0),
            sink: Mutex::new(Sink {
                out,
                seq: 0,
                kept: None,
                tap: None,
                write_error: None,
            }),
            path,
            lifecycle: tokio::sync::broadcast::channel(4096).0,
        }
    }

    /// Every service lifecycle record, log record and uncancelled probe attempt
    /// written from now on (a lagging receiver loses the oldest).
    pub fn lifecycle(&self) -> tokio::sync::broadcast::Receiver<Record> {
        self.lifecycle.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        // A panicking writer cannot leave the sink half-updated in a way that matters:
        // keep recording rather than lose the rest of the run.
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Monotonic nanoseconds since the run started, of the instant `at`.
    pub fn ns_at(&self, at: std::time::Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Monotonic nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Appends an event, flushes it, and returns the record.
    pub fn record(&self, event: Event) -> Record {
        // Read under the lock: a record is tagged with the trial whose tap gets it.
        let mut sink = self.lock();
        let trial = match self.trial.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        };
        let record = Record {
            seq: 0,
            time: Utc::now(),
            elapsed_ns: self.now_ns(),
            trial,
            event,
        };
        let record = Self::append(&mut sink, record);
        let trigger = match &record.event {
            Event::Service { .. } | Event::Log { .. } => true,
            Event::Probe { cancelled, .. } => !cancelled,
            _ => false,
        };
        if trigger && self.lifecycle.receiver_count() > 0 {
            let _ = self.lifecycle.send(record.clone());
        }
        record
    }

    /// Appends a record made elsewhere (`merge` replays the records of several runs)
    /// with the next sequence number; returns it as written.
    pub fn replay(&self, record: Record) -> Record {
        Self::append(&mut self.lock(), record)
    }

    fn append(sink: &mut Sink, mut record: Record) -> Record {
        sink.seq += 1;
        record.seq = sink.seq;
        if let Some(out) = sink.out.as_mut() {
            let res = serde_json::to_writer(&mut *out, &record)
                .map_err(std::io::Error::other)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush());
            if let Err(e) = res {
                sink.write_error.get_or_insert(e);
            }
        }
        if let Some(tap) = sink.tap.as_mut() {
            tap(&record);
        }
        if let Some(c) = sink.kept.as_mut() {
            c.push(record.clone());
        }
        record
    }

    /// Tags following records with `trial` and hands each of them to `tap` as it is
    /// written (the runner's bounded [`Capture`](crate::checker::Capture)).
    pub fn begin_trial(&self, trial: u32, tap: Option<Tap>) {
        let mut sink = self.lock();
        self.trial.store(trial, Ordering::SeqCst);
        sink.tap = tap;
    }

    /// The trial records are tagged with now, if any.
    pub fn current_trial(&self) -> Option<u32> {
        match self.trial.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// Stops tagging records and drops the trial's tap.
    pub fn end_trial(&self) {
        let mut sink = self.lock();
        self.trial.store(0, Ordering::SeqCst);
        sink.tap = None;
    }

    /// The first write error, if any write failed (the run goes on; the caller reports it).
    pub fn take_write_error(&self) -> Option<HistoryError> {
        let e = self.lock().write_error.take()?;
        Some(HistoryError::Io {
            path: self.path.clone().unwrap_or_default(),
            source: e,
        })
    }
}

/// Reads a `history.jsonl`. A torn last line (the writer was killed mid-line) is
/// ignored; a bad line anywhere else is an error.
pub fn load(path: &Path) -> Result<Vec<Record>, HistoryError> {
    let mut out = Vec::new();
    read(path, |r| out.push(r))?;
    Ok(out)
}

/// Reads a `history.jsonl` record by record, handing each to `each`, in memory
/// bounded by the longest line; errors as [`load`].
pub fn read(path: &Path, mut each: impl FnMut(Record)) -> Result<(), HistoryError> {
    let io = |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // A line that does not parse is an error only if another line follows it.
    let mut bad: Option<(usize, serde_json::Error)> = None;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some((line, source)) = bad.take() {
            return Err(HistoryError::Corrupt {
                path: path.to_path_buf(),
                line,
                source,
            });
        }
        match serde_json::from_str::<Record>(&line) {
            Ok(Record {
                event: Event::RunStart { format, .. },
                ..
            }) if format > FORMAT_VERSION => {
                return Err(HistoryError::NewerFormat {
                    path: path.to_path_buf(),
                    found: format,
                })
            }
            Ok(r) => each(r),
            Err(source) => bad = Some((i + 1, source)),
        }
    }
    Ok(())
}

/// Splits a run's records into finished trials: `(trial number, its records)`,
/// leaving out trials cut short by an interruption.
pub fn finished_trials(records: &[Record]) -> Vec<(u32, Vec<Record>)> {
    let mut trials: Vec<(u32, Vec<Record>)> = Vec::new();
    for r in records {
        let Some(t) = r.trial else { continue };
        match trials.last_mut() {
            Some((n, recs)) if *n == t => recs.push(r.clone()),
            _ => trials.push((t, vec![r.clone()])),
        }
    }
    trials.retain(|(_, recs)| {
        recs.iter()
            .any(|r| matches!(r.event, Event::TrialEnd { interrupted: false }))
    });
    trials
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_start_carries_the_format_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        let h = History::create(&path).expect("create");
        let start = |format| Event::RunStart {
            format,
            scenario: "s".into(),
            run_id: "r".into(),
            rebound: VERSION.into(),
            seed: 1,
            trials: 1,
            sequential: false,
        };
        h.record(start(FORMAT_VERSION));
        // A replayed record keeps its own time and gets the next sequence number.
        let mut other = h.record(Event::StackUp);
        other.time = DateTime::<Utc>::MIN_UTC;
        let replayed = h.replay(other.clone());
        assert_eq!(replayed.seq, 3);
        assert_eq!(replayed.time, other.time);
        drop(h);
        let back = load(&path).expect("load");
        assert!(matches!(
            back[0].event,
            Event::RunStart {
                format: FORMAT_VERSION,
                ..
            }
        ));
        assert_eq!(back.len(), 3);

        // The first release wrote no `format`: it reads as version 1.
        let old = r#"{"seq":1,"time":"2026-01-01T00:00:00Z","elapsed_ns":0,"type":"run-start","scenario":"s","run_id":"r","seed":1,"trials":1}"#;
        std::fs::write(&path, format!("{old}\n")).expect("write");
        assert!(matches!(
            load(&path).expect("v1")[0].event,
            Event::RunStart { format: 1, .. }
        ));

        let newer = old.replace("\"seed\"", "\"format\":99,\"seed\"");
        std::fs::write(&path, format!("{newer}\n")).expect("write");
        let e = load(&path).expect_err("newer");
        assert!(e.to_string().contains("format 99 is newer"), "{e}");
    }

    #[test]
    fn records_round_trip_through_the_file_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        let h = History::create(&path).expect("create");
        h.record(Event::StackUp);
        let tapped = std::sync::Arc::new(Mutex::new(Vec::new()));
        let into = std::sync::Arc::clone(&tapped);
        h.begin_trial(
            1,
            Some(Box::new(move |r| into.lock().expect("tap").push(r.clone()))),
        );
        h.record(Event::FaultOk {
            detail: "SIGKILL".into(),
        });
        h.record(Event::TrialEnd { interrupted: false });
        h.end_trial();
        h.record(Event::StackUp);
        // The tap got the trial's records, and none after it ended.
        let captured = tapped.lock().expect("tap").clone();
        assert_eq!(captured.len(), 2);
        drop(h);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"{\"seq\":5,\"ti").expect("torn");
        let loaded = load(&path).expect("load");
        assert_eq!(loaded.len(), 4);
        assert_eq!(loaded[1], captured[0]);
        assert_eq!(loaded[0].trial, None);
        assert_eq!(loaded[1].trial, Some(1));
        assert!(loaded
            .windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].elapsed_ns <= w[1].elapsed_ns));
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        std::fs::write(&path, "garbage\n{\"seq\":1}\n").expect("write");
        let err = load(&path).expect_err("corrupt");
        assert!(err.to_string().contains(":1:"), "{err}");
    }

    #[test]
    fn interrupted_trials_are_not_finished() {
        let all: Vec<Record> = [(1u32, false), (2, true)]
            .into_iter()
            .map(|(t, interrupted)| Record {
                seq: u64::from(t),
                time: Utc::now(),
                elapsed_ns: 0,
                trial: Some(t),
                event: Event::TrialEnd { interrupted },
            })
            .collect();
        let done = finished_trials(&all);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, 1);
    }
}
