//! What a trial's behaviour looked like, as coverage features explore keeps a
//! schedule for (a new per-service sequence of died/started/healthy with exit
//! codes, a probe failing a new way, a new log template, a new outcome and
//! recovery-time bucket), and
//! the failure mode a failing trial belongs to (what failed and how, numbers and
//! ids masked), so that the same bug found twice is one mode.

use std::collections::BTreeSet;

use crate::checker::{Outcome, TrialResult};
use crate::history::{Event, Lifecycle, Record};

/// Most lifecycle events of one service kept in its sequence feature.
const MAX_SEQUENCE: usize = 12;

/// `text` with numbers and ids masked: every alphanumeric token holding a digit
/// becomes `#` (or, for a number with a unit such as `500ms`, `#ms`), except a
/// three-digit status after `HTTP` or `status`; hex ids and their groups (4+
/// characters with a digit, as in a UUID, or `0x…`) too.
pub fn mask(text: &str) -> String {
    let mut out = String::new();
    let mut prev_word = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if !c.is_ascii_alphanumeric() {
            out.push(c);
            chars.next();
            continue;
        }
        let mut end = i;
        while let Some(&(j, c)) = chars.peek() {
            // A decimal point inside a number belongs to it.
            let dot = c == '.'
                && text[i..j]
                    .chars()
                    .last()
                    .is_some_and(|l| l.is_ascii_digit())
                && text[j + 1..]
                    .chars()
                    .next()
                    .is_some_and(|n| n.is_ascii_digit());
            if !(c.is_ascii_alphanumeric() || dot) {
                break;
            }
            end = j + c.len_utf8();
            chars.next();
        }
        let token = &text[i..end];
        let digits = token.chars().filter(char::is_ascii_digit).count();
        let status = token.len() == 3
            && digits == 3
            && ("100".."600").contains(&token)
            && matches!(prev_word.to_ascii_lowercase().as_str(), "http" | "status");
        if digits == 0 || status {
            out.push_str(token);
        } else if (token.len() >= 4 && token.chars().all(|c| c.is_ascii_hexdigit()))
            || (token.len() > 2
                && token.starts_with("0x")
                && token[2..].chars().all(|c| c.is_ascii_hexdigit()))
        {
            out.push('#');
        } else {
            // Digit runs (with their decimal point) become one `#`; letters stay.
            let mut in_number = false;
            for c in token.chars() {
                if c.is_ascii_digit() || (in_number && c == '.') {
                    if !in_number {
                        out.push('#');
                    }
                    in_number = true;
                } else {
                    out.push(c);
                    in_number = false;
                }
            }
        }
        prev_word = token.to_string();
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
            Event::Log {
                service,
                template: Some(t),
                ..
            } => {
                out.insert(format!("log {service}: {t}"));
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
/// `None` for a trial that passed or could not be decided, and for one that
/// recovered late only because its faults lasted long: explore counts a late
/// recovery from the end of the last fault's effect, against `recover_within_ms`
/// (a schedule of long faults is not a bug of the stack).
pub fn failure_mode(
    result: &TrialResult,
    records: &[Record],
    recover_within_ms: f64,
) -> Option<String> {
    if result.outcome != Outcome::Fail {
        return None;
    }
    if let (Some(rec), false) = (result.recovery_ms, result.reason.starts_with("lost ")) {
        let first = records
            .iter()
            .find(|r| matches!(r.event, Event::FaultOk { .. }))
            .map(|r| r.elapsed_ns);
        let last_end = records
            .iter()
            .rev()
            .find(|r| matches!(r.event, Event::FaultEnd { .. }))
            .map(|r| r.elapsed_ns);
        if let (Some(a), Some(b)) = (first, last_end) {
            let effects_ms = b.saturating_sub(a) as f64 / 1e6;
            if rec - effects_ms <= recover_within_ms {
                return None;
            }
        }
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
        // One bug, one mode: durations and ids in quotes or paths are masked too.
        assert_eq!(mask("after 250 ms"), mask("after 312 ms"));
        assert_eq!(
            mask("GET /items/\"3f2a9c81\": status 404"),
            "GET /items/\"#\": status 404"
        );
        assert_eq!(mask("os error 111"), "os error #");
    }

    #[test]
    fn buckets_double_from_250_ms() {
        assert_eq!(bucket(10.0), "<250ms");
        assert_eq!(bucket(300.0), "<500ms");
        assert_eq!(bucket(1999.0), "<2000ms");
    }
}
