//! A run's schedule as data: which trials this run (or shard) executes, and for each
//! its warm-up and the faults to inject with the trigger of each. Pure and seeded:
//! the same seed and shard give the same schedule, so a run can be replayed and
//! shards of one run together cycle through the faults exactly as one run would.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::FaultOrder;

/// When an injection fires within its trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// At the end of the trial's warm-up. The fault's follow-ups
    /// (`[[fault.then]]`, [`crate::nemesis::FaultPlan::then`]) each fire a delay
    /// after the previous fault was injected; event triggers — a service died,
    /// became healthy, a log line — are still to come.
    WarmUpEnd,
}

/// One fault of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    /// Index into the plan's faults.
    pub fault: usize,
    /// When it fires.
    pub trigger: Trigger,
}

/// One trial as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialSchedule {
    /// Trial number within this run, from 1.
    pub number: u32,
    /// Trial number across all shards of the run, from 1.
    pub global: u64,
    /// Steady state before the first injection (warm-up plus its jitter).
    pub warm_up: Duration,
    /// The faults drawn for the trial, in firing order; at least one. Today
    /// exactly one: its follow-ups (`[[fault.then]]`) come from its plan
    /// ([`crate::nemesis::FaultPlan::then`]), not from here.
    pub injections: Vec<Injection>,
}

/// Which trials a shard takes and how they are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// Number of faults in the plan (at least 1).
    pub faults: usize,
    /// Round-robin or random fault order.
    pub order: FaultOrder,
    /// Warm-up before each injection.
    pub warm_up: Duration,
    /// Upper bound of the random extra warm-up.
    pub jitter: Duration,
    /// Trials of the whole run (all shards).
    pub total: u32,
    /// This shard `(i, n)`, 1-based; `(1, 1)` when not sharded.
    pub shard: (u32, u32),
}

/// How many of `total` trials shard `(i, n)` runs: every n-th trial starting at i.
pub fn shard_trials(total: u32, (index, count): (u32, u32)) -> u32 {
    total / count + u32::from(index <= total % count)
}

/// The schedule of a shard, lazily: one [`TrialSchedule`] per trial it runs.
pub fn schedule(spec: ScheduleSpec, seed: u64) -> impl Iterator<Item = TrialSchedule> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (index, count) = spec.shard;
    let jitter_ns = u64::try_from(spec.jitter.as_nanos()).unwrap_or(u64::MAX);
    (1..=shard_trials(spec.total, spec.shard)).map(move |number| {
        // Shard i/n runs the global trials i, i + n, i + 2n, …
        let global = u64::from(number - 1) * u64::from(count) + u64::from(index);
        // The draw order (fault, then jitter) is the one runs have always used, so a
        // recorded seed replays the same trials.
        let fault = match spec.order {
            FaultOrder::RoundRobin => ((global - 1) % spec.faults as u64) as usize,
            FaultOrder::Random => rng.random_range(0..spec.faults),
        };
        let extra = if jitter_ns == 0 {
            0
        } else {
            rng.random_range(0..jitter_ns)
        };
        TrialSchedule {
            number,
            global,
            warm_up: spec.warm_up + Duration::from_nanos(extra),
            injections: vec![Injection {
                fault,
                trigger: Trigger::WarmUpEnd,
            }],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(order: FaultOrder, total: u32, shard: (u32, u32)) -> ScheduleSpec {
        ScheduleSpec {
            faults: 3,
            order,
            warm_up: Duration::from_millis(100),
            jitter: Duration::from_millis(50),
            total,
            shard,
        }
    }

    fn faults(s: impl Iterator<Item = TrialSchedule>) -> Vec<usize> {
        s.map(|t| t.injections[0].fault).collect()
    }

    #[test]
    fn round_robin_cycles_through_the_faults_in_file_order() {
        let s = faults(schedule(spec(FaultOrder::RoundRobin, 7, (1, 1)), 1));
        assert_eq!(s, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn shard_2_of_3_runs_trials_2_5_8_and_the_shards_cover_the_run_once() {
        let s: Vec<u64> = schedule(spec(FaultOrder::RoundRobin, 9, (2, 3)), 1)
            .map(|t| t.global)
            .collect();
        assert_eq!(s, [2, 5, 8]);
        for total in [1, 2, 7, 10, 11] {
            let mut all: Vec<(u64, usize)> = (1..=3)
                .flat_map(|i| {
                    schedule(spec(FaultOrder::RoundRobin, total, (i, 3)), 9)
                        .map(|t| (t.global, t.injections[0].fault))
                })
                .collect();
            all.sort_unstable();
            let one: Vec<(u64, usize)> = schedule(spec(FaultOrder::RoundRobin, total, (1, 1)), 9)
                .map(|t| (t.global, t.injections[0].fault))
                .collect();
            assert_eq!(all, one, "{total} trials in 3 shards");
        }
        assert_eq!(shard_trials(10, (1, 3)), 4);
        assert_eq!(shard_trials(10, (3, 3)), 3);
    }

    #[test]
    fn the_same_seed_replays_the_same_schedule_and_another_differs() {
        let a: Vec<TrialSchedule> = schedule(spec(FaultOrder::Random, 30, (1, 1)), 42).collect();
        let b: Vec<TrialSchedule> = schedule(spec(FaultOrder::Random, 30, (1, 1)), 42).collect();
        let c: Vec<TrialSchedule> = schedule(spec(FaultOrder::Random, 30, (1, 1)), 43).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let drawn = faults(a.clone().into_iter());
        assert!((0..3).all(|f| drawn.contains(&f)), "{drawn:?}");
        for t in &a {
            assert!(t.warm_up >= Duration::from_millis(100));
            assert!(t.warm_up < Duration::from_millis(150));
            assert_eq!(t.injections.len(), 1);
            assert_eq!(t.injections[0].trigger, Trigger::WarmUpEnd);
        }
    }

    #[test]
    fn no_jitter_means_exactly_the_warm_up() {
        let mut s = spec(FaultOrder::Random, 5, (1, 1));
        s.jitter = Duration::ZERO;
        assert!(schedule(s, 3).all(|t| t.warm_up == Duration::from_millis(100)));
    }
}
