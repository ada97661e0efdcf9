//! rebound: restart-reliability chaos testing — inject faults into a real stack,
//! measure every recovery to the millisecond, decide the SLO with honest statistics.
//!
//! Pipeline (see DESIGN.md): [`scenario`] validates a file into a [`scenario::Plan`];
//! the [`runner`] builds the [`stack`] ([`stack::build`]), follows the pure
//! [`runner::schedule`], lets the [`nemesis`] inject faults while [`probe`]s poll and
//! [`workload`]s send traffic, appends everything to the [`history`] in a
//! [`run_dir`]; the pure [`checker`] turns a trial's history into an outcome,
//! [`verdict`] decides the SLO with [`stats`], and the [`report`]ers write it down.
//! [`exit`] holds the documented exit codes.
//!
//! Where to go for a change: a fault kind is one file in `nemesis/`, a probe kind one
//! file in `probe/`, a workload kind one file in `workload/` (each plus one registry
//! line); what a backend can do is [`stack::Capabilities`]; validation is split per
//! section under `scenario/`; number formatting for every report is
//! [`report::format`]; file names of a run are [`run_dir`]; the runner is unit-tested
//! on an in-memory fake stack (`stack/fake.rs`).

#![warn(missing_docs)]

pub mod ab;
pub mod analysis;
pub mod checker;
pub mod compare;
pub mod doctor;
pub mod durable;
pub mod evidence;
pub mod exit;
pub mod explore;
pub mod field;
pub mod heal;
pub mod history;
pub mod journal;
pub mod k8s;
pub mod library;
pub mod merge;
pub mod nemesis;
pub mod planning;
pub mod ports;
pub mod probe;
pub mod proxy;
pub mod report;
pub mod run_dir;
pub mod runner;
pub mod scenario;
pub mod stack;
pub mod stats;
pub mod swarm;
pub mod verdict;
pub mod workload;

pub use library::{Error, Fault, Probe, Run, Scenario, Slo, SloFailed, Value, Workload};
