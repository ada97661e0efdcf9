//! What a trial's behaviour looked like, as coverage features explore keeps a
//! schedule for (a new per-service sequence of died/started/healthy with exit
//! codes, a probe failing a new way, a new outcome and recovery-time bucket), and
//! the failure mode a failing trial belongs to (what failed and how, numbers and
//! ids masked), so that the same bug found twice is one mode.

use std::collections::BTreeSet;

use crate::checker::{Outcome, TrialResult};
use crate::history::{Event, Lifecycle, Record};

/// Most lifecycle events of one service kept in its sequence feature.
const MAX_SEQUENCE: usize = 12;

/// `text` with numbers and ids masked: runs of digits (with a decimal part)
/// become `#`, except three-digit HTTP statuses; hex ids of 8+ characters too.
pub fn mask(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive(|c: char| c.is_whitespace() || c == ',' || c == ':') {
        let core = word.trim_end_matches(|c: char| c.is_whitespace() || c == ',' || c == ':');
        let tail = &word[core.len()..];
        let is_status = core.len() == 3
            && core.chars().all(|c| c.is_ascii_digit())
            && ("100".."600").contains(&core);
        let hex_id = core.len() >= 8
            && core.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
            && core.chars().any(|c| c.is_ascii_digit());
        if is_status {
            out.push_str(word);
        } else if hex_id {
            out.push('#');
            out.push_str(tail);
        } else {
            let mut prev_digit = false;
            for c in core.chars() {
                let digit = c.is_ascii_digit() || (prev_digit && c == '.');
                if digit {
                    if !prev_digit {
                        out.push('#');
                    }
                } else {
                    out.push(c);
                }
                prev_digit = digit;
            }
            out.push_str(tail);
        }
    }
    out
}

/// Recovery-time bucket: powers of two from 250 ms.
fn bucket(ms: f64) -> String {
    let mut edge = 250.0;
    while ms >= edge && edge < 1.0e7 {
        edge *= 2.0;
    }
    format!("<{}ms", edge as u64)
}

/// The coverage features of one trial (from its records and result).
pub fn features(result: &TrialResult, records: &[Record]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    out.insert(format!(
        "outcome {} {}",
        result.outcome.word(),
        result.recovery_ms.map_or("never".into(), bucket)
    ));
    // Per service: the lifecycle sequence after the first fault.
    let mut seqs: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    let invoked = records
        .iter()
        .position(|r| matches!(r.event, Event::FaultInvoke { .. }))
        .unwrap_or(records.len());
    for r in &records[invoked..] {
        match &r.event {
            Event::Service {
                service,
                action,
                code,
                signal,
                detail,
                ..
            } => {
                let step = match action {
                    Lifecycle::Exited => match (code, signal) {
                        (_, Some(s)) => format!("died(sig {s})"),
                        (Some(c), None) => format!("died({c})"),
                        _ => "died".into(),
                    },
                    Lifecycle::Started => "started".into(),
                    Lifecycle::Health => match detail.as_deref() {
                        Some(d) => d.to_string(),
                        None => continue,
                    },
                    Lifecycle::RestartScheduled => continue,
                    other => format!("{other:?}").to_lowercase(),
                };
                let seq = seqs.entry(service.as_str()).or_default();
                // Repeated health reports say nothing new.
                if seq.last() != Some(&step) && seq.len() < MAX_SEQUENCE {
                    seq.push(step);
                }
            }
            Event::Probe {
                probe,
                ok: false,
                cancelled: false,
                error: Some(e),
                ..
            } => {
                out.insert(format!("probe {probe} {}", mask(e)));
            }
            _ => {}
        }
    }
    for (service, seq) in seqs {
        out.insert(format!("service {service}: {}", seq.join(" > ")));
    }
    out
}

/// The failure mode of a failing trial: what failed (not recovered, recovered
/// late, lost writes) and the last probe error before the window ended, masked.
/// `None` for a trial that passed or could not be decided.
pub fn failure_mode(result: &TrialResult, records: &[Record]) -> Option<String> {
    if result.outcome != Outcome::Fail {
        return None;
    }
    let what = if result.reason.starts_with("lost ") {
        "lost acknowledged writes"
    } else if result.reason.starts_with("not recovered") {
        "never recovered"
    } else if result.reason.contains("later than recover-within") {
        "recovered too late"
    } else {
        "failed"
    };
    let last_error = records.iter().rev().find_map(|r| match &r.event {
        Event::Probe {
            probe,
            ok: false,
            cancelled: false,
            error: Some(e),
            ..
        } => Some(format!("{probe}: {}", mask(e))),
        _ => None,
    });
    Some(match last_error {
        Some(e) if what != "lost acknowledged writes" => format!("{what} ({e})"),
        _ => what.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_ids_are_masked_statuses_kept() {
        assert_eq!(
            mask("HTTP 503 after 1234.5 ms: connection refused (os error 111)"),
            "HTTP 503 after # ms: connection refused (os error #)"
        );
        assert_eq!(mask("item 3f2a9c81 missing"), "item # missing");
        assert_eq!(mask("timed out after 500ms"), "timed out after #ms");
    }

    #[test]
    fn buckets_double_from_250_ms() {
        assert_eq!(bucket(10.0), "<250ms");
        assert_eq!(bucket(300.0), "<500ms");
        assert_eq!(bucket(1999.0), "<2000ms");
    }
}
