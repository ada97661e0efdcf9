//! Following the services' log lines while a run lasts (a process's log file, a
//! container's log stream) and recording the lines that matter into the
//! history: those a `when = "SERVICE log /pattern/"` follow-up waits for, and
//! for explore the first line of each log template (numbers and ids masked) a
//! service prints in a trial.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::Stack;
use crate::history::{Event, History};

/// Where a service's log lines can be read.
pub enum LogSource {
    /// A file the service appends to (process backend).
    File(PathBuf),
    /// A container's log stream (docker backend).
    Docker {
        /// The engine.
        docker: bollard::Docker,
        /// The container.
        id: String,
    },
}

/// Which lines are recorded.
#[derive(Debug, Clone, Default)]
pub struct LogPolicy {
    /// Per service, the patterns of `when = "SERVICE log /pattern/"` follow-ups:
    /// a matching line is recorded (and so can fire the follow-up).
    pub patterns: HashMap<String, Vec<regex::Regex>>,
    /// Per service, the patterns of `[run] record-log`: matching lines are kept
    /// in the history, with a budget of their own (a chatty one cannot use up
    /// the lines a follow-up waits for).
    pub record: HashMap<String, Vec<regex::Regex>>,
    /// Services whose new templates are recorded, each first one per trial.
    pub templates: HashSet<String>,
}

/// Most templates recorded for one service in one trial (a service that prints
/// ids the mask misses cannot flood the history).
const TEMPLATES_PER_TRIAL: usize = 64;

/// Most matching lines recorded for one service in one trial (a broad
/// pattern cannot flood the history).
const MATCHES_PER_TRIAL: usize = 200;

/// Longest line kept (the rest is cut).
const MAX_LINE: usize = 1000;

impl LogPolicy {
    /// Whether anything is to be followed.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.record.is_empty() && self.templates.is_empty()
    }

    fn services(&self) -> Vec<String> {
        let mut s: Vec<String> = self
            .patterns
            .keys()
            .chain(self.record.keys())
            .chain(self.templates.iter())
            .cloned()
            .collect();
        s.sort();
        s.dedup();
        s
    }
}

/// `line`'s template: numbers and ids masked as in explore's failure modes
/// ([`crate::explore::signature::mask`]), whitespace collapsed, so two lines
/// that differ only in a pid, a port, a duration or a session id have one.
pub fn template(line: &str) -> String {
    crate::explore::signature::mask(&line.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Per trial, the templates already recorded.
#[derive(Default)]
struct Seen {
    trial: Option<u32>,
    templates: HashSet<String>,
    matched: usize,
    recorded: usize,
}

fn consider(history: &History, policy: &LogPolicy, service: &str, line: &str, seen: &mut Seen) {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return;
    }
    let line: String = line.chars().take(MAX_LINE).collect();
    let trial = history.current_trial();
    if trial != seen.trial {
        seen.trial = trial;
        seen.templates.clear();
        seen.matched = 0;
        seen.recorded = 0;
    }
    let matched = seen.matched < MATCHES_PER_TRIAL
        && policy
            .patterns
            .get(service)
            .is_some_and(|ps| ps.iter().any(|p| p.is_match(&line)));
    seen.matched += usize::from(matched);
    let recorded = !matched
        && seen.recorded < MATCHES_PER_TRIAL
        && policy
            .record
            .get(service)
            .is_some_and(|ps| ps.iter().any(|p| p.is_match(&line)));
    seen.recorded += usize::from(recorded);
    let mut template_new = None;
    if policy.templates.contains(service)
        && trial.is_some()
        && seen.templates.len() < TEMPLATES_PER_TRIAL
    {
        let t = template(&line);
        if seen.templates.insert(t.clone()) {
            template_new = Some(t);
        }
    }
    if matched || recorded || template_new.is_some() {
        history.record(Event::Log {
            service: service.to_string(),
            line,
            template: template_new,
        });
    }
}

/// Follows every service `policy` names until the returned tasks are aborted.
pub fn follow(
    stack: Arc<dyn Stack>,
    history: Arc<History>,
    policy: LogPolicy,
) -> Vec<tokio::task::JoinHandle<()>> {
    if policy.is_empty() {
        return Vec::new();
    }
    let policy = Arc::new(policy);
    policy
        .services()
        .into_iter()
        .map(|service| {
            let (stack, history, policy) = (
                Arc::clone(&stack),
                Arc::clone(&history),
                Arc::clone(&policy),
            );
            tokio::spawn(async move { follow_one(stack, history, policy, service).await })
        })
        .collect()
}

async fn follow_one(
    stack: Arc<dyn Stack>,
    history: Arc<History>,
    policy: Arc<LogPolicy>,
    service: String,
) {
    let mut seen = Seen::default();
    // Docker: the last line's timestamp, so a re-opened stream skips what was
    // read; lines from before the run (an attached project's past) are not read.
    let started = chrono::Utc::now().fixed_offset();
    let mut last_ts: Option<chrono::DateTime<chrono::FixedOffset>> = None;
    // File: how far it was read, and the start of a line not ended yet.
    let mut offset: u64 = 0;
    let mut partial: Vec<u8> = Vec::new();
    loop {
        match stack.log_source(&service) {
            None => tokio::time::sleep(Duration::from_millis(200)).await,
            Some(LogSource::File(path)) => {
                let read = {
                    let path = path.clone();
                    let from = offset;
                    tokio::task::spawn_blocking(move || read_from(&path, from)).await
                };
                if let Ok(Some((bytes, new_offset))) = read {
                    if new_offset < offset {
                        partial.clear();
                    }
                    offset = new_offset;
                    partial.extend_from_slice(&bytes);
                    while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=i).collect();
                        let line = String::from_utf8_lossy(&line);
                        consider(&history, &policy, &service, &line, &mut seen);
                    }
                    // A line this long is cut here: its start is considered now.
                    if partial.len() > 64 * 1024 {
                        let line = String::from_utf8_lossy(&partial).into_owned();
                        consider(&history, &policy, &service, &line, &mut seen);
                        partial.clear();
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some(LogSource::Docker { docker, id }) => {
                // Lines up to the last one read come again (`since` has whole
                // seconds): skipped, but only those, as stdout and stderr lines
                // may arrive slightly out of order.
                let cutoff = last_ts;
                let since = last_ts.unwrap_or(started).timestamp();
                let opts = bollard::query_parameters::LogsOptionsBuilder::default()
                    .follow(true)
                    .stdout(true)
                    .stderr(true)
                    .timestamps(true)
                    .since(i32::try_from(since).unwrap_or(0))
                    .build();
                let mut stream = docker.logs(&id, Some(opts));
                while let Some(item) = stream.next().await {
                    let Ok(out) = item else { break };
                    let text = String::from_utf8_lossy(&out.into_bytes()).into_owned();
                    for raw in text.lines() {
                        let parsed = raw.split_once(' ').and_then(|(ts, line)| {
                            Some((chrono::DateTime::parse_from_rfc3339(ts).ok()?, line))
                        });
                        let line = match parsed {
                            Some((t, _)) if cutoff.is_some_and(|c| t <= c) => continue,
                            Some((t, _)) if t < started => continue,
                            Some((t, line)) => {
                                last_ts = Some(last_ts.map_or(t, |l| l.max(t)));
                                line
                            }
                            // No timestamp (a partial frame): the line as it came.
                            None => raw,
                        };
                        consider(&history, &policy, &service, line, &mut seen);
                    }
                }
                // The container stopped (its stream ended) or the engine dropped
                // it: open it again once it runs.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Bytes of `path` from `from` on, and the new offset (from 0 again when the
/// file was truncated or replaced); `None` when it does not exist yet.
fn read_from(path: &std::path::Path, from: u64) -> Option<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = if len < from { 0 } else { from };
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::new();
    f.take(1 << 20).read_to_end(&mut buf).ok()?;
    let n = buf.len() as u64;
    Some((buf, from + n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_mask_what_varies() {
        let a = template("registered /workers/worker-1 (session 0x1a2b3c, timeout 6s) after 3 NodeExists in 5.102s");
        let b = template("registered /workers/worker-1 (session 0xffee01, timeout 6s) after 12 NodeExists in 0.4s");
        assert_eq!(a, b);
        assert_eq!(
            a,
            "registered /workers/worker-# (session #, timeout #s) after # NodeExists in #s"
        );
        assert_ne!(
            template("NodeExists: /workers/worker-1 is still held"),
            template("giving up on /workers/worker-1 for good")
        );
        assert_eq!(
            template("pid 4242 listening on 127.0.0.1:18087"),
            "pid # listening on #:#"
        );
        assert_eq!(
            template("request 3f2a9c1e-77b0-4c1d-9a52-0c6d5e7f8a91 done"),
            "request #-#-#-#-# done"
        );
        assert_eq!(template("  "), "");
    }

    #[test]
    fn a_chatty_record_log_pattern_cannot_use_up_the_lines_a_follow_up_waits_for() {
        let history = History::in_memory();
        history.begin_trial(1, None);
        let re = |p: &str| vec![regex::Regex::new(p).unwrap()];
        let policy = LogPolicy {
            patterns: HashMap::from([("db".to_string(), re("ready to accept"))]),
            record: HashMap::from([("db".to_string(), re("fsync|ready"))]),
            ..Default::default()
        };
        let mut seen = Seen::default();
        for i in 0..1000 {
            consider(
                &history,
                &policy,
                "db",
                &format!("could not fsync {i}"),
                &mut seen,
            );
        }
        consider(
            &history,
            &policy,
            "db",
            "ready to accept connections",
            &mut seen,
        );
        let lines: Vec<String> = history
            .records()
            .into_iter()
            .filter_map(|r| match r.event {
                Event::Log { line, .. } => Some(line),
                _ => None,
            })
            .collect();
        assert_eq!(lines.len(), MATCHES_PER_TRIAL + 1, "the budget holds");
        assert_eq!(lines.last().unwrap(), "ready to accept connections");
        // Both patterns match it: it is recorded once (the count above), under
        // the follow-up's budget.
        assert_eq!((seen.matched, seen.recorded), (1, MATCHES_PER_TRIAL));
    }
}
