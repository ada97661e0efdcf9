//! End-to-end tests: the real `rebound` binary against real processes (the bundled
//! demo-app), checking exit codes, files, measurement accuracy and Ctrl-C safety.

mod crash_safety;
mod docker_runs;
mod doctor;
mod explore;
mod helpers;
mod library;
mod network;
mod power_loss;
mod process_runs;
mod signals;
mod stories;
mod swarm;
mod truth;
