//! Seed 003's bulk load on PostgreSQL, with its data directory on a plain host
//! directory and on rebound's power-loss layer: `pgbench` initialising its tables
//! (client-side COPY, rows per second) and a stream of single-row INSERT
//! transactions, each fsynced before it is acknowledged (transactions per
//! second). Needs root, /dev/fuse, Docker and the demo images
//! (`docker/images/build.sh`). Not part of CI. Run it with
//!
//! ```text
//! cargo bench --bench pg_bulk_load -- [--scale 10] [--seconds 10] [--runs 3]
//! ```
//!
//! Each run measures the plain directory, then the layer, each on a fresh
//! PostgreSQL; the figures are the medians of the runs (every run is printed).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{arg, plain_and_layered};

fn docker(args: &[&str]) -> Result<String, String> {
    let o = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// A PostgreSQL container whose data is `dir`, removed when dropped.
struct Pg(String);

impl Pg {
    fn start(dir: &Path) -> Result<Pg, String> {
        let volume = format!("{}:/var/lib/postgresql/data", dir.display());
        let id = docker(&[
            "run",
            "-d",
            "--label",
            &format!("rebound.run=bench-pg-{}", std::process::id()),
            "-v",
            &volume,
            "rebound/postgres:latest",
        ])?;
        let pg = Pg(id);
        let deadline = Instant::now() + Duration::from_secs(120);
        while docker(&["exec", &pg.0, "pg_isready", "-h", "127.0.0.1", "-q"]).is_err() {
            if Instant::now() > deadline {
                return Err("PostgreSQL not ready within 120 s".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(pg)
    }

    fn pgbench(&self, args: &[&str]) -> Result<(String, f64), String> {
        let mut all = vec![
            "exec",
            &self.0,
            "pgbench",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ];
        all.extend_from_slice(args);
        all.push("postgres");
        let t = Instant::now();
        let out = docker(&all)?;
        Ok((out, t.elapsed().as_secs_f64()))
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.0]);
    }
}

/// Rows per second of the load, then transactions per second of the inserts,
/// on a fresh cluster in `dir`.
fn measure(dir: &Path, scale: u64, seconds: u64) -> Result<(f64, f64), String> {
    std::fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The image's postgres user owns what it creates under the volume.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .map_err(|e| e.to_string())?;
    let pg = Pg::start(dir)?;
    // d: drop, t: create tables, g: generate rows client-side (COPY).
    let (_, load) = pg.pgbench(&["-i", "-I", "dtg", "-s", &scale.to_string(), "-q"])?;
    // p: primary keys (untimed), so each update finds its row by index.
    pg.pgbench(&["-i", "-I", "p", "-s", &scale.to_string(), "-q"])?;
    let (out, _) = pg.pgbench(&["-N", "-c", "4", "-T", &seconds.to_string(), "-n"])?;
    let tps = out
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("no tps in pgbench's output: {out}"))?;
    Ok(((scale * 100_000) as f64 / load, tps))
}

/// The median of `values` (not empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    let scale = arg("--scale", 10);
    let seconds = arg("--seconds", 10);
    let runs = arg("--runs", 3).max(1);
    let (plain, layer, layered) = plain_and_layered("pg_bulk_load");
    let mut measured = Vec::new();
    for run in 1..=runs {
        let fresh = |root: &Path| root.join(format!("run-{run}"));
        let one = measure(&fresh(plain.path()), scale, seconds)
            .and_then(|p| Ok((p, measure(&fresh(layered.path()), scale, seconds)?)));
        match one {
            Ok(((p_rows, p_tps), (l_rows, l_tps))) => {
                eprintln!(
                    "run {run}/{runs}: load {p_rows:.0} vs {l_rows:.0} rows/s ({:.0} %), \
                     commits {p_tps:.0} vs {l_tps:.0} tx/s ({:.0} %)",
                    100.0 * l_rows / p_rows,
                    100.0 * l_tps / p_tps
                );
                measured.push((p_rows, p_tps, l_rows, l_tps));
            }
            Err(e) => {
                // Unmounted before any exit: `process::exit` would leave the mount behind.
                drop(layer);
                eprintln!("pg_bulk_load bench: {e}");
                std::process::exit(1);
            }
        }
    }
    drop(layer);
    let pick = |f: fn(&(f64, f64, f64, f64)) -> f64| median(measured.iter().map(f).collect());
    let (p_rows, p_tps) = (pick(|m| m.0), pick(|m| m.1));
    let (l_rows, l_tps) = (pick(|m| m.2), pick(|m| m.3));
    let (r_rows, r_tps) = (pick(|m| m.2 / m.0), pick(|m| m.3 / m.1));
    println!(
        "{:<44} {:>10} {:>10} {:>7}",
        format!("PostgreSQL 15 (pgbench), median of {runs}"),
        "plain",
        "layer",
        "ratio"
    );
    println!(
        "{:<44} {p_rows:>10.0} {l_rows:>10.0} {:>6.0}%",
        format!("load {} rows, COPY (rows/s)", scale * 100_000),
        100.0 * r_rows
    );
    println!(
        "{:<44} {p_tps:>10.0} {l_tps:>10.0} {:>6.0}%",
        format!("simple-update, 4 clients, {seconds} s (tx/s)"),
        100.0 * r_tps
    );
}
