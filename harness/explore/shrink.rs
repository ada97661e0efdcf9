//! Shrinking a failing schedule: ddmin over its faults, then simpler parameters
//! (shorter durations, earlier triggers), and how many re-runs a candidate needs
//! so that a flaky failure is not mistaken for a pass.

use std::time::Duration;

use super::schedule::{Schedule, Step, Trigger};

/// Re-runs of a candidate that would show a failure of rate `rate` at least once
/// with 95 % probability: k ≥ ln 0.05 / ln(1 − rate).
pub fn reruns_for(rate: f64) -> u32 {
    if rate >= 1.0 {
        return 1;
    }
    if rate <= 0.0 {
        return u32::MAX;
    }
    let k = (0.05f64.ln() / (1.0 - rate).ln()).ceil();
    k.max(1.0).min(f64::from(u32::MAX)) as u32
}

/// `steps` as a schedule whose first fault fires at the end of the warm-up.
pub fn first_at_start(mut steps: Vec<Step>) -> Schedule {
    if let Some(first) = steps.first_mut() {
        first.trigger = Trigger::After(Duration::ZERO);
    }
    Schedule::of(steps)
}

/// Zeller's ddmin: a smallest subsequence of `items` (order kept) for which
/// `fails` still holds, testing complements and subsets of ever finer splits.
/// `fails(items)` is assumed true and never asked.
pub async fn ddmin<T: Clone, E>(
    mut items: Vec<T>,
    mut fails: impl AsyncFnMut(Vec<T>) -> Result<bool, E>,
) -> Result<Vec<T>, E> {
    let mut n = 2usize;
    while items.len() >= 2 {
        let chunk = items.len().div_ceil(n);
        let parts: Vec<Vec<T>> = items.chunks(chunk).map(<[T]>::to_vec).collect();
        let mut reduced = false;
        // A part alone.
        for p in &parts {
            if fails(p.clone()).await? {
                items = p.clone();
                n = 2;
                reduced = true;
                break;
            }
        }
        // Everything but a part.
        if !reduced && parts.len() > 2 {
            for i in 0..parts.len() {
                let rest: Vec<T> = parts
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, p)| p.iter().cloned())
                    .collect();
                if fails(rest.clone()).await? {
                    items = rest;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if n >= items.len() {
                break;
            }
            n = (2 * n).min(items.len());
        }
    }
    Ok(items)
}

fn halve(d: Duration, min: Duration) -> Option<Duration> {
    let half = Duration::from_millis((d.as_millis() / 2) as u64);
    (d > min).then_some(half.max(min))
}

/// One-step simplifications of `s`, simplest first: each timed fault half as
/// long (not below `min`), each follow-up's delay zero or halved.
pub fn simpler(s: &Schedule, min: Duration) -> Vec<Schedule> {
    let mut out = Vec::new();
    for (i, step) in s.steps.iter().enumerate() {
        if let Some(d) = step.duration.and_then(|d| halve(d, min)) {
            let mut c = s.clone();
            c.steps[i].duration = Some(d);
            out.push(c);
        }
        if i == 0 {
            continue;
        }
        let shorter: Vec<Trigger> = match &step.trigger {
            Trigger::After(d) if !d.is_zero() => {
                let mut t = vec![Trigger::After(Duration::ZERO)];
                if let Some(h) = halve(*d, Duration::from_millis(50)) {
                    t.push(Trigger::After(h));
                }
                t
            }
            Trigger::When { event, after } if !after.is_zero() => vec![Trigger::When {
                event: event.clone(),
                after: Duration::ZERO,
            }],
            _ => Vec::new(),
        };
        for t in shorter {
            let mut c = s.clone();
            c.steps[i].trigger = t;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reruns_follow_the_rate() {
        assert_eq!(reruns_for(1.0), 1);
        // ln 0.05 / ln 0.5 = 4.32
        assert_eq!(reruns_for(0.5), 5);
        // ln 0.05 / ln 0.9 = 28.4
        assert_eq!(reruns_for(0.1), 29);
        // A rate of 0.5 missed in all 5 re-runs: 3 %.
        assert!(0.5f64.powi(5) < 0.05);
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn ddmin_finds_the_two_faults_that_matter() {
        let mut asked = 0;
        let min = run(ddmin((0..8).collect::<Vec<u32>>(), async |s: Vec<u32>| {
            asked += 1;
            Ok::<_, ()>(s.contains(&2) && s.contains(&5))
        }))
        .expect("no error");
        assert_eq!(min, vec![2, 5]);
        assert!(asked < 30, "{asked} tests");
    }

    #[test]
    fn ddmin_keeps_one_fault_when_one_is_enough() {
        let min = run(ddmin(vec!['a', 'b', 'c'], async |s: Vec<char>| {
            Ok::<_, ()>(s.contains(&'c'))
        }))
        .expect("no error");
        assert_eq!(min, vec!['c']);
    }

    #[test]
    fn simpler_halves_durations_and_delays() {
        let s = Schedule::of(vec![
            Step {
                kind: "pause-for".into(),
                target: "dep".into(),
                duration: Some(Duration::from_secs(2)),
                trigger: Trigger::After(Duration::ZERO),
            },
            Step {
                kind: "sigkill".into(),
                target: "app".into(),
                duration: None,
                trigger: Trigger::After(Duration::from_millis(500)),
            },
        ]);
        let c: Vec<String> = simpler(&s, Duration::from_millis(250))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            c,
            [
                "pause-for 1s → dep, +500ms sigkill → app",
                "pause-for 2s → dep, +0s sigkill → app",
                "pause-for 2s → dep, +250ms sigkill → app",
            ]
        );
        // Nothing left to simplify at the floor.
        let floor = Schedule::of(vec![Step {
            duration: Some(Duration::from_millis(250)),
            ..s.steps[0].clone()
        }]);
        assert!(simpler(&floor, Duration::from_millis(250)).is_empty());
    }
}
