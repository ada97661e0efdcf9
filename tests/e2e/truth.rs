//! The truth clock: demo-app writes the wall-clock instant it began to accept
//! connections (`<data-dir>/ready.log`, one `<boot> <unix ns>` line per start). These
//! helpers hold a run's recovery bracket against it — the measurement promise of
//! DESIGN.md — with bounds taken only from that clock and from the run's own history,
//! never from a fixed millisecond window.

use std::collections::BTreeMap;
use std::path::Path;

use crate::helpers::{column, read_csv};

/// The largest rate at which NTP may slew the wall clock against the monotonic
/// clock (adjtime's limit, 500 ppm). rebound derives a trial's wall-clock instants
/// from its monotonic clock anchored at `fault-ok`; demo-app reads the wall clock.
/// Over the d ns between them the two may drift apart by at most d × this.
const MAX_SLEW: f64 = 500e-6;
/// trials.csv rounds milliseconds to 3 decimals: ±0.5 µs.
const CSV_ROUNDING_NS: f64 = 1_000.0;

/// One probe attempt as recorded in `history.jsonl`.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    start_ns: u64,
    latency_ns: u64,
    late_ns: u64,
    /// Ticks before this attempt's that started no attempt.
    skipped: u64,
    ok: bool,
    /// Ended because a later attempt succeeded first: it proves nothing.
    cancelled: bool,
}

/// The instants demo-app recorded as its ready moments, in unix ns.
pub fn ready_instants(data_dir: &Path) -> Vec<i128> {
    let path = data_dir.join("ready.log");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (demo-app writes it on every start)",
            path.display()
        )
    });
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad ready.log line {l:?}"))
        })
        .collect()
}

/// What a run's history and trials.csv say about one trial.
#[derive(Debug)]
struct Trial {
    inject_unix_ns: i128,
    inject_elapsed_ns: u64,
    recovery_ns: f64,
    lower_ns: f64,
    attempts: Vec<Attempt>,
}

fn trials(run_dir: &Path) -> Result<BTreeMap<u64, Trial>, String> {
    let (header, rows) = read_csv(&run_dir.join("trials.csv"));
    let numbers = |name: &str| -> Vec<Option<f64>> {
        column(&header, &rows, name)
            .iter()
            .map(|v| v.parse().ok())
            .collect()
    };
    let (ids, rec, low) = (
        numbers("trial"),
        numbers("recovery_ms"),
        numbers("recovery_lower_ms"),
    );
    let mut injects: BTreeMap<u64, (i128, u64)> = BTreeMap::new();
    let mut attempts: BTreeMap<u64, Vec<Attempt>> = BTreeMap::new();
    for line in crate::docker_runs::history_lines(run_dir) {
        let Some(trial) = line["trial"].as_u64() else {
            continue;
        };
        match line["type"].as_str() {
            Some("fault-ok") => {
                let time: chrono::DateTime<chrono::Utc> = line["time"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .ok_or("fault-ok without a time")?;
                let unix = i128::from(time.timestamp_nanos_opt().ok_or("time out of range")?);
                let elapsed = line["elapsed_ns"].as_u64().ok_or("no elapsed_ns")?;
                injects.insert(trial, (unix, elapsed));
            }
            Some("probe") => attempts.entry(trial).or_default().push(Attempt {
                start_ns: line["start_ns"].as_u64().ok_or("no start_ns")?,
                latency_ns: line["latency_ns"].as_u64().ok_or("no latency_ns")?,
                late_ns: line["late_ns"].as_u64().unwrap_or(0),
                skipped: line["skipped"].as_u64().unwrap_or(0),
                ok: line["ok"].as_bool().ok_or("no ok")?,
                cancelled: line["cancelled"].as_bool().unwrap_or(false),
            }),
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let id = id.ok_or("trial id")? as u64;
        let (inject_unix_ns, inject_elapsed_ns) = *injects
            .get(&id)
            .ok_or_else(|| format!("trial {id}: no fault-ok in the history"))?;
        let (Some(r), Some(l)) = (rec[i], low[i]) else {
            return Err(format!("trial {id}: no recovery measured"));
        };
        out.insert(
            id,
            Trial {
                inject_unix_ns,
                inject_elapsed_ns,
                recovery_ns: r * 1e6,
                lower_ns: l * 1e6,
                attempts: attempts.remove(&id).unwrap_or_default(),
            },
        );
    }
    Ok(out)
}

/// A ready instant as a service's own clock gave it: somewhere in
/// `[at_unix_ns, at_unix_ns + resolution_ns]` (a log truncated to milliseconds has
/// a resolution of 1 ms).
#[derive(Debug, Clone, Copy)]
pub struct Truth {
    /// The instant as written, in unix ns.
    pub at_unix_ns: i128,
    /// How much later the real instant may be than the written one.
    pub resolution_ns: i128,
}

/// Checks every trial of a demo-app run against demo-app's `ready.log`
/// (see [`check_bracket_against`]).
pub fn check_bracket(
    run_dir: &Path,
    data_dir: &Path,
    period_ms: f64,
    min_recovery_ms: f64,
) -> Result<f64, String> {
    let truths: Vec<Truth> = ready_instants(data_dir)
        .into_iter()
        .map(|at_unix_ns| Truth {
            at_unix_ns,
            resolution_ns: 0,
        })
        .collect();
    check_bracket_against(run_dir, &truths, period_ms, min_recovery_ms)
}

/// Checks every trial of a run against a service's own ready instants:
/// - the first ready instant after `t_inject` lies in `[recovery_lower, recovery]`;
/// - recovery is at least `min_recovery_ms` (the service's known start-up delay);
/// - the bracket is no wider than the probe's `period_ms` (once more for each
///   attempt in between that was cancelled and each tick the loop skipped) plus the
///   successful attempt's own latency plus how late its tick fired (all from the
///   history).
///
/// Returns the largest bracket width in ms, or what failed.
pub fn check_bracket_against(
    run_dir: &Path,
    truths: &[Truth],
    period_ms: f64,
    min_recovery_ms: f64,
) -> Result<f64, String> {
    let mut widest: f64 = 0.0;
    for (id, t) in trials(run_dir)? {
        let truth = truths
            .iter()
            .filter(|r| r.at_unix_ns + r.resolution_ns > t.inject_unix_ns)
            .min_by_key(|r| r.at_unix_ns)
            .ok_or_else(|| format!("trial {id}: the service never became ready after t_inject"))?;
        let earliest = (truth.at_unix_ns - t.inject_unix_ns) as f64;
        let latest = earliest + truth.resolution_ns as f64;
        let slack = CSV_ROUNDING_NS + MAX_SLEW * t.recovery_ns;
        if !(t.lower_ns - slack <= latest && earliest <= t.recovery_ns + slack) {
            return Err(format!(
                "trial {id}: the service was ready {:.3} ms after t_inject, outside the bracket [{:.3}, {:.3}] ms",
                earliest / 1e6,
                t.lower_ns / 1e6,
                t.recovery_ns / 1e6
            ));
        }
        if t.recovery_ns < min_recovery_ms * 1e6 {
            return Err(format!(
                "trial {id}: recovery {:.3} ms is shorter than the start-up delay {min_recovery_ms} ms",
                t.recovery_ns / 1e6
            ));
        }
        // The successful attempt is the one whose completion is recovered_at.
        let rec_elapsed = t.inject_elapsed_ns as f64 + t.recovery_ns;
        let success = t
            .attempts
            .iter()
            .filter(|a| a.ok)
            .min_by(|a, b| {
                let d = |x: &Attempt| ((x.start_ns + x.latency_ns) as f64 - rec_elapsed).abs();
                d(a).total_cmp(&d(b))
            })
            .ok_or_else(|| format!("trial {id}: no successful probe attempt in the history"))?;
        let end = (success.start_ns + success.latency_ns) as f64;
        if (end - rec_elapsed).abs() > CSV_ROUNDING_NS {
            return Err(format!(
                "trial {id}: no attempt completed at recovered_at (nearest {:.3} ms away)",
                (end - rec_elapsed).abs() / 1e6
            ));
        }
        let width = t.recovery_ns - t.lower_ns;
        // One period from the last failure to the success — one more for each
        // attempt started in between that a faster later one cancelled (it proves
        // nothing either way), and one more for each tick the loop skipped (it was
        // later than a whole period: the history says how many).
        let lower_elapsed = t.inject_elapsed_ns as f64 + t.lower_ns;
        let after_lower = |a: &&Attempt| {
            a.start_ns as f64 > lower_elapsed + CSV_ROUNDING_NS && a.start_ns <= success.start_ns
        };
        let cancelled = t
            .attempts
            .iter()
            .filter(after_lower)
            .filter(|a| a.cancelled && a.start_ns < success.start_ns)
            .count();
        let skipped: u64 = t
            .attempts
            .iter()
            .filter(after_lower)
            .map(|a| a.skipped)
            .sum();
        let periods = 1 + cancelled as u64 + skipped;
        let allowed =
            periods as f64 * period_ms * 1e6 + (success.latency_ns + success.late_ns) as f64;
        if width > allowed + CSV_ROUNDING_NS {
            return Err(format!(
                "trial {id}: bracket {:.3} ms is wider than {periods} period(s) of {period_ms} ms ({cancelled} attempt(s) in between cancelled, {skipped} tick(s) skipped) + the attempt's latency {:.3} ms + its tick's lateness {:.3} ms",
                width / 1e6,
                success.latency_ns as f64 / 1e6,
                success.late_ns as f64 / 1e6
            ));
        }
        widest = widest.max(width / 1e6);
    }
    Ok(widest)
}
