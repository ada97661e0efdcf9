//! rebound in a Rust program: PostgreSQL and the demo app started with
//! testcontainers, PostgreSQL SIGKILLed 5 times under writes, and the SLO
//! asserted: more than half of the restarts back within 10 s at 95 % confidence
//! (which 5 clean trials prove) and no acknowledged write lost. For a release
//! qualification, raise `trials` and `success_rate` (20 trials prove 86 %).
//!
//! Run it after `docker/images/build.sh`: `cargo run --example postgres_sigkill`.

#[path = "common/pg_app.rs"]
mod pg_app;

use std::time::Duration;

use rebound::{Fault, Probe, Scenario, Slo, Workload};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tag = format!("example-{}", std::process::id());
    let stack = pg_app::PgApp::start(&tag).await?;
    let app = format!("http://127.0.0.1:{}", stack.app_port);
    let run = Scenario::new("pg-sigkill-example")
        .description("PostgreSQL SIGKILLed under writes through the demo app")
        .containers(stack.ids())
        .fault(Fault::sigkill("db"))
        .probe(Probe::http(format!("{app}/readyz")).set("period", Duration::from_millis(20)))
        .probe(Probe::tcp("db", 5432))
        .workload(
            Workload::http_writes(format!("{app}/items"), format!("{app}/items/{{id}}"))
                .set("rate", 50.0),
        )
        .slo(
            Slo::recover_within(Duration::from_secs(10))
                .success_rate(0.5)
                .max_lost_writes(0),
        )
        .trials(5)
        .run_setting("warm-up", Duration::from_secs(1))
        .print_summary(true)
        .run()
        .await?;
    println!("lost writes: {}", run.lost_writes());
    run.assert_slo();
    Ok(())
}
