//! An explored schedule as data: the faults of one trial in firing order, each with
//! its trigger, and how it is written as a scenario's `[[fault]]` table with its
//! `[[fault.then]]` follow-ups (what `rebound run` replays).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a fault of a schedule fires. The first fault always fires at the end of
/// the warm-up; its trigger is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A delay after the previous fault was injected.
    After(#[serde(with = "humantime_serde")] Duration),
    /// After an event (`"db healthy"`, `"app died"`), then a delay.
    When {
        /// The event, as `when` is written.
        event: String,
        /// Delay after it.
        #[serde(with = "humantime_serde")]
        after: Duration,
    },
}

/// One fault of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Step {
    /// Fault kind (`sigkill`, `pause-for`, …).
    pub kind: String,
    /// Target service.
    pub target: String,
    /// Its `duration`, for timed kinds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub duration: Option<Duration>,
    /// When it fires (ignored for the first step).
    pub trigger: Trigger,
}

/// The faults of one trial, first to last; never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Schedule {
    /// The steps in firing order.
    pub steps: Vec<Step>,
}

fn human(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

impl Step {
    /// The step's own keys: kind, target and its duration.
    fn table(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("kind".into(), self.kind.clone().into());
        t.insert("target".into(), self.target.clone().into());
        if let Some(d) = self.duration {
            t.insert("duration".into(), human(d).into());
        }
        t
    }
}

impl Schedule {
    /// The schedule as one `[[fault]]` table with `then` follow-ups.
    pub fn to_toml(&self) -> toml::Value {
        let mut first = self.steps[0].table();
        let then: Vec<toml::Value> = self.steps[1..]
            .iter()
            .map(|s| {
                let mut t = s.table();
                match &s.trigger {
                    Trigger::After(d) => {
                        t.insert("after".into(), human(*d).into());
                    }
                    Trigger::When { event, after } => {
                        t.insert("when".into(), event.clone().into());
                        if !after.is_zero() {
                            t.insert("after".into(), human(*after).into());
                        }
                    }
                }
                toml::Value::Table(t)
            })
            .collect();
        if !then.is_empty() {
            first.insert("then".into(), toml::Value::Array(then));
        }
        toml::Value::Table(first)
    }

    /// The schedule with `steps` (the first keeps firing at warm-up end).
    pub fn of(steps: Vec<Step>) -> Self {
        Schedule { steps }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(d) = self.duration {
            write!(f, " {}", human(d))?;
        }
        write!(f, " → {}", self.target)
    }
}

impl fmt::Display for Schedule {
    /// `pause-for 1s → dep, +250ms sigkill → app, on app started +0s sigkill → dep`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            if i == 0 {
                write!(f, "{s}")?;
                continue;
            }
            match &s.trigger {
                Trigger::After(d) => write!(f, ", +{} {s}", human(*d))?,
                Trigger::When { event, after } if after.is_zero() => {
                    write!(f, ", when {event}: {s}")?
                }
                Trigger::When { event, after } => {
                    write!(f, ", when {event} +{}: {s}", human(*after))?
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(kind: &str, target: &str, duration: Option<u64>, trigger: Trigger) -> Step {
        Step {
            kind: kind.into(),
            target: target.into(),
            duration: duration.map(Duration::from_millis),
            trigger,
        }
    }

    #[test]
    fn a_schedule_is_written_as_a_fault_with_follow_ups() {
        let s = Schedule::of(vec![
            step(
                "pause-for",
                "dep",
                Some(1500),
                Trigger::After(Duration::ZERO),
            ),
            step(
                "sigkill",
                "app",
                None,
                Trigger::After(Duration::from_millis(250)),
            ),
            step(
                "sigkill",
                "dep",
                None,
                Trigger::When {
                    event: "app started".into(),
                    after: Duration::ZERO,
                },
            ),
        ]);
        let text = toml::to_string(&s.to_toml()).expect("toml");
        let back: toml::Table = text.parse().expect("parses");
        assert_eq!(back["kind"].as_str(), Some("pause-for"));
        assert_eq!(back["duration"].as_str(), Some("1s 500ms"));
        let then = back["then"].as_array().expect("then");
        assert_eq!(then[0]["after"].as_str(), Some("250ms"));
        assert_eq!(then[1]["when"].as_str(), Some("app started"));
        assert!(then[1].get("after").is_none());
        assert_eq!(
            s.to_string(),
            "pause-for 1s 500ms → dep, +250ms sigkill → app, when app started: sigkill → dep"
        );
    }
}
