//! demo-app binary: parses flags and runs the service (see the library docs).

use clap::Parser;

fn main() -> std::process::ExitCode {
    demo_app::main_with(demo_app::Args::parse())
}
