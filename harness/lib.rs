//! rebound: restart-reliability chaos testing — inject faults into a real stack,
//! measure every recovery to the millisecond, decide the SLO with honest statistics.
//!
//! Pipeline (see DESIGN.md): [`scenario`] validates a file into a [`scenario::Plan`];
//! the [`runner`] brings the [`stack`] up, lets the [`nemesis`] inject faults while
//! [`probe`]s poll, appends everything to the [`history`]; the pure [`checker`] turns a
//! trial's history into an outcome, [`verdict`] decides the SLO with [`stats`], and the
//! [`report`]ers write it down. [`exit`] holds the documented exit codes.

pub mod analysis;
pub mod checker;
pub mod compare;
pub mod exit;
pub mod field;
pub mod history;
pub mod merge;
pub mod nemesis;
pub mod probe;
pub mod report;
pub mod run_dir;
pub mod runner;
pub mod scenario;
pub mod stack;
pub mod stats;
pub mod verdict;
pub mod workload;
