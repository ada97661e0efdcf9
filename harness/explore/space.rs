//! The fault space of an explore session (services × the kinds the backend can
//! inject × parameter ranges, narrowed by `[explore]`) and the two ways schedules
//! are drawn from it: at random, and by mutating a kept schedule (add, drop,
//! retarget a fault, shift a trigger, change a duration). Follow-ups lean towards
//! the service the previous fault hit and its own events: a fault that lands
//! while a service recovers. Every draw comes from one seeded generator, so a
//! seed replays the same sequence of schedules.

use std::time::Duration;

use rand::seq::IndexedRandom;
use rand::Rng;

use super::schedule::{Schedule, Step, Trigger};

/// Kinds that take a `duration`.
const TIMED: &[&str] = &["stop-for", "pause-for", "disconnect-for"];

/// Delays a follow-up may fire after the previous fault.
const DELAYS_MS: &[u64] = &[0, 100, 250, 500, 1000, 2000];

/// Delays after an event.
const EVENT_DELAYS_MS: &[u64] = &[0, 100, 300, 1000];

/// Durations of timed faults (capped by `max-duration`).
const DURATIONS_MS: &[u64] = &[500, 1000, 2000, 4000, 8000];

/// One (kind, target) the backend accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Fault kind.
    pub kind: String,
    /// Target service.
    pub target: String,
}

/// What schedules are drawn from.
#[derive(Debug, Clone)]
pub struct Space {
    /// Every (kind, target) that validated on this stack.
    pub cells: Vec<Cell>,
    /// Events a follow-up may wait for (`"app died"`, `"db healthy"`).
    pub events: Vec<String>,
    /// Durations a timed fault may get.
    pub durations: Vec<Duration>,
    /// Delays a follow-up may get, each below the observation window.
    pub delays: Vec<Duration>,
    /// Most faults in a schedule.
    pub max_faults: usize,
}

/// Whether `kind` takes a duration.
pub fn timed(kind: &str) -> bool {
    TIMED.contains(&kind)
}

impl Space {
    /// The space over `cells`; events are every service's died/started (on
    /// `docker` also healthy: health checks) and every probe's down/up;
    /// `max_duration` caps timed faults, `window` (the observation window) caps
    /// follow-up delays.
    pub fn new(
        cells: Vec<Cell>,
        services: &[String],
        probes: &[String],
        docker: bool,
        max_duration: Duration,
        window: Duration,
        max_faults: usize,
    ) -> Self {
        let mut events = Vec::new();
        for s in services {
            events.push(format!("{s} died"));
            events.push(format!("{s} started"));
            if docker {
                events.push(format!("{s} healthy"));
            }
        }
        for p in probes {
            events.push(format!("probe {p} down"));
            events.push(format!("probe {p} up"));
        }
        let mut durations: Vec<Duration> = DURATIONS_MS
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            .filter(|d| *d <= max_duration)
            .collect();
        if durations.is_empty() {
            durations.push(max_duration);
        }
        let delays = DELAYS_MS
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            // Timed follow-ups fire one after the other and must all fire
            // within the window: even the longest chain of the longest delay.
            .filter(|d| *d * (max_faults.max(2) as u32 + 1) < window)
            .collect();
        Space {
            cells,
            events,
            durations,
            delays,
            max_faults,
        }
    }

    fn step(&self, rng: &mut impl Rng, cell: &Cell, prev: Option<&Step>) -> Step {
        Step {
            kind: cell.kind.clone(),
            target: cell.target.clone(),
            duration: timed(&cell.kind).then(|| *self.durations.choose(rng).expect("non-empty")),
            trigger: match prev {
                None => Trigger::After(Duration::ZERO),
                Some(p) => self.trigger(rng, &p.target),
            },
        }
    }

    /// The cell of a follow-up to `prev`: half the time `prev`'s own cell again
    /// (a fault that lands while its first one's service is still recovering —
    /// where restart bugs live), else any cell.
    fn follow_cell<'s>(&'s self, rng: &mut impl Rng, prev: &Step) -> &'s Cell {
        let again = self
            .cells
            .iter()
            .find(|c| c.kind == prev.kind && c.target == prev.target);
        match again {
            Some(c) if rng.random_bool(0.5) => c,
            _ => self.cells.choose(rng).expect("a space has cells"),
        }
    }

    /// A follow-up's trigger after a fault on `target`: half on a timer, half on
    /// an event (when there are events), and then half the time an event of
    /// `target` itself (its restart, its health) or a probe's.
    fn trigger(&self, rng: &mut impl Rng, target: &str) -> Trigger {
        let delay = self.delays.choose(rng).copied().unwrap_or_default();
        if rng.random_bool(0.5) || self.events.is_empty() {
            return Trigger::After(delay);
        }
        let ms = *EVENT_DELAYS_MS.choose(rng).expect("non-empty");
        let own: Vec<&String> = self
            .events
            .iter()
            .filter(|e| e.starts_with(&format!("{target} ")) || e.starts_with("probe "))
            .collect();
        let event = match own.choose(rng) {
            Some(e) if rng.random_bool(0.5) => (*e).clone(),
            _ => self.events.choose(rng).expect("non-empty").clone(),
        };
        Trigger::When {
            event,
            after: Duration::from_millis(ms),
        }
    }

    /// A schedule of 1 to `max_faults` faults drawn at random.
    pub fn random(&self, rng: &mut impl Rng) -> Schedule {
        let n = rng.random_range(1..=self.max_faults);
        let mut steps: Vec<Step> = Vec::with_capacity(n);
        for _ in 0..n {
            let step = match steps.last() {
                None => {
                    let cell = self.cells.choose(rng).expect("a space has cells");
                    self.step(rng, cell, None)
                }
                Some(prev) => {
                    let cell = self.follow_cell(rng, prev);
                    self.step(rng, cell, Some(prev))
                }
            };
            steps.push(step);
        }
        Schedule::of(steps)
    }

    /// `s` changed in one way: a fault added or dropped, retargeted, its trigger
    /// shifted or its duration changed.
    pub fn mutate(&self, rng: &mut impl Rng, s: &Schedule) -> Schedule {
        let mut steps = s.steps.clone();
        let i = rng.random_range(0..steps.len());
        match rng.random_range(0..5u8) {
            // Add a fault after a random position.
            0 if steps.len() < self.max_faults => {
                let at = rng.random_range(1..=steps.len());
                let cell = self.follow_cell(rng, &steps[at - 1]);
                let step = self.step(rng, cell, Some(&steps[at - 1]));
                steps.insert(at, step);
            }
            // Drop one.
            1 if steps.len() > 1 => {
                steps.remove(i);
                steps[0].trigger = Trigger::After(Duration::ZERO);
            }
            // Retarget: another cell of the same kind, else any cell.
            2 => {
                let same: Vec<&Cell> = self
                    .cells
                    .iter()
                    .filter(|c| c.kind == steps[i].kind && c.target != steps[i].target)
                    .collect();
                let cell = same
                    .choose(rng)
                    .copied()
                    .unwrap_or_else(|| self.cells.choose(rng).expect("a space has cells"));
                let trigger = steps[i].trigger.clone();
                steps[i] = self.step(rng, cell, None);
                steps[i].trigger = trigger;
            }
            // Shift a follow-up's trigger.
            3 if steps.len() > 1 => {
                let j = rng.random_range(1..steps.len());
                steps[j].trigger = self.trigger(rng, &steps[j - 1].target.clone());
            }
            // Another duration (or, for an untimed fault, a new trigger / a new fault).
            _ => {
                if steps[i].duration.is_some() {
                    steps[i].duration = Some(*self.durations.choose(rng).expect("non-empty"));
                } else if i > 0 {
                    steps[i].trigger = self.trigger(rng, &steps[i - 1].target.clone());
                } else {
                    let cell = self.cells.choose(rng).expect("a space has cells");
                    steps[0] = self.step(rng, cell, None);
                }
            }
        }
        Schedule::of(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn space() -> Space {
        let cells = ["sigkill", "pause-for"]
            .iter()
            .flat_map(|k| {
                ["app", "dep"].iter().map(|t| Cell {
                    kind: k.to_string(),
                    target: t.to_string(),
                })
            })
            .collect();
        Space::new(
            cells,
            &["app".into(), "dep".into()],
            &["ready".into()],
            false,
            Duration::from_secs(2),
            Duration::from_secs(10),
            3,
        )
    }

    #[test]
    fn draws_stay_inside_the_space() {
        let sp = space();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut s = sp.random(&mut rng);
        for _ in 0..500 {
            s = if rng.random_bool(0.5) {
                sp.random(&mut rng)
            } else {
                sp.mutate(&mut rng, &s)
            };
            assert!((1..=3).contains(&s.steps.len()), "{s}");
            assert_eq!(s.steps[0].trigger, Trigger::After(Duration::ZERO));
            for st in &s.steps {
                assert!(sp
                    .cells
                    .iter()
                    .any(|c| c.kind == st.kind && c.target == st.target));
                assert_eq!(st.duration.is_some(), timed(&st.kind), "{s}");
                assert!(st.duration.is_none_or(|d| d <= Duration::from_secs(2)));
                if let Trigger::When { event, .. } = &st.trigger {
                    assert!(sp.events.contains(event), "{event}");
                    assert!(!event.ends_with("healthy"), "no health events on process");
                }
            }
        }
    }

    #[test]
    fn follow_ups_lean_towards_the_service_still_recovering() {
        let sp = space();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut again, mut own_event, mut pairs, mut events) = (0, 0, 0, 0);
        for _ in 0..2000 {
            let s = sp.random(&mut rng);
            for w in s.steps.windows(2) {
                pairs += 1;
                if w[0].kind == w[1].kind && w[0].target == w[1].target {
                    again += 1;
                }
                if let Trigger::When { event, .. } = &w[1].trigger {
                    events += 1;
                    if event.starts_with(&format!("{} ", w[0].target)) {
                        own_event += 1;
                    }
                }
            }
        }
        // Uniform over 4 cells would repeat a quarter of the time; the bias
        // adds half of the rest (5/8). Events of the previous target: 2 of 6
        // at random, 5/12 with the bias (half of the draws among its own 2
        // and the probes' 2).
        let again = f64::from(again) / f64::from(pairs);
        let own = f64::from(own_event) / f64::from(events);
        assert!(again > 0.55 && again < 0.70, "repeated cell {again:.2}");
        assert!(own > 0.36, "own events {own:.2}");
    }

    #[test]
    fn the_same_seed_draws_the_same_schedules() {
        let sp = space();
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..50).map(|_| sp.random(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        assert_ne!(draw(9), draw(10));
    }
}
