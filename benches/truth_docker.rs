//! Truth-clock benchmark: how close rebound's recovery brackets come to the instant a
//! service itself says it was ready, per probe kind, on the docker backend (and on
//! the process backend for comparison). Not part of CI: it restarts containers for
//! many minutes. Run it with
//!
//! ```text
//! cargo bench --bench truth-docker -- [--trials 30] [--only redis | --case redis-sigkill] [--keep DIR]
//! ```
//!
//! Truth clocks: Redis's own log lines (1 ms resolution) — "Ready to accept
//! connections" for the probes that need an answer; for tcp probes, which can only
//! see a listening socket, the interval from "Redis is starting" to "Server
//! initialized" (Redis listens between the two, in any version; errors are taken
//! from the later line) — and demo-app's `ready_unix_ns` (its "listening" line on docker, its
//! `ready.log` on the process backend; read right after `listen(2)`). Each case is
//! one rebound run; a run with several probes is checked once per probe, each
//! probe's bracket computed from its own attempts by rebound's own checker.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rebound::analysis::check_config;
use rebound::checker::check_trial;
use rebound::runner::RunOptions;

const MAX_SLEW: f64 = 500e-6;

/// A ready instant as a service logged it: (unix ns, how much later the real
/// instant may be — the log's resolution).
type Instant = (i128, i128);

/// Where a case's truth comes from.
#[derive(Clone, Copy)]
enum Clock {
    /// Redis's log line in the `redis` container, 1 ms resolution.
    Redis,
    /// demo-app's "listening … ready_unix_ns N" line in the `app` container.
    DemoAppLog,
    /// demo-app's `ready.log` in the run directory (process backend).
    DemoAppFile,
}

struct Case {
    name: &'static str,
    stack: String,
    fault: &'static str,
    warm_up: &'static str,
    probes: Vec<(&'static str, String)>,
    clock: Clock,
}

fn cases() -> Vec<Case> {
    let root = env!("CARGO_MANIFEST_DIR");
    let redis_stack =
        format!("backend = \"docker\"\ncompose = \"{root}/benches/truth-docker/redis.yaml\"");
    let demo_stack = format!("backend = \"docker\"\ncompose = \"{root}/docker/demo/compose.yaml\"");
    let redis_probes = || {
        vec![
            (
                "tcp, published port",
                "kind = \"tcp\"\naddress = \"127.0.0.1:16399\"\nperiod = \"10ms\"".to_string(),
            ),
            (
                "tcp, service + port",
                "kind = \"tcp\"\nservice = \"redis\"\nport = 6379\nperiod = \"10ms\"".to_string(),
            ),
            (
                "redis",
                "kind = \"redis\"\naddress = \"127.0.0.1:16399\"\nperiod = \"10ms\"".to_string(),
            ),
        ]
    };
    let exec_probe = || {
        vec![(
            "exec (redis-cli ping)",
            "kind = \"exec\"\nservice = \"redis\"\ncommand = [\"redis-cli\", \"ping\"]\nperiod = \"10ms\"".to_string(),
        )]
    };
    let app_probes = || {
        vec![
            (
                "http through nginx",
                "kind = \"http\"\nurl = \"http://127.0.0.1:${port:http}/healthz\"\nperiod = \"20ms\""
                    .to_string(),
            ),
            (
                "http direct",
                "kind = \"http\"\nurl = \"http://127.0.0.1:${port:app}/healthz\"\nperiod = \"20ms\""
                    .to_string(),
            ),
        ]
    };
    let process_stack = format!(
        "backend = \"process\"\n[[stack.service]]\nname = \"app\"\ncommand = [\"{}\", \"demo-app\", \"--port\", \"18085\", \"--data-dir\", \"${{run_dir}}/data/app\", \"--startup-delay\", \"200ms\"]\nrestart = \"always\"\nrestart-backoff = \"100ms\"\nrestart-max-backoff = \"100ms\"",
        env!("CARGO_BIN_EXE_rebound")
    );
    // A SIGKILL needs 10 s of uptime before it so that Docker's restart back-off
    // (doubled on every crash, reset after 10 s up) stays at its first step.
    vec![
        Case {
            name: "redis-sigkill",
            stack: redis_stack.clone(),
            fault: "kind = \"sigkill\"\ntarget = \"redis\"",
            warm_up: "10s",
            probes: redis_probes(),
            clock: Clock::Redis,
        },
        Case {
            name: "redis-sigkill-exec",
            stack: redis_stack.clone(),
            fault: "kind = \"sigkill\"\ntarget = \"redis\"",
            warm_up: "10s",
            probes: exec_probe(),
            clock: Clock::Redis,
        },
        Case {
            name: "redis-restart",
            stack: redis_stack.clone(),
            fault: "kind = \"restart\"\ntarget = \"redis\"",
            warm_up: "1s",
            probes: redis_probes(),
            clock: Clock::Redis,
        },
        Case {
            name: "redis-restart-exec",
            stack: redis_stack,
            fault: "kind = \"restart\"\ntarget = \"redis\"",
            warm_up: "1s",
            probes: exec_probe(),
            clock: Clock::Redis,
        },
        Case {
            name: "app-sigkill",
            stack: demo_stack.clone(),
            fault: "kind = \"sigkill\"\ntarget = \"app\"",
            warm_up: "10s",
            probes: app_probes(),
            clock: Clock::DemoAppLog,
        },
        Case {
            name: "app-restart",
            stack: demo_stack,
            fault: "kind = \"restart\"\ntarget = \"app\"",
            warm_up: "1s",
            probes: app_probes(),
            clock: Clock::DemoAppLog,
        },
        Case {
            name: "process-sigkill",
            stack: process_stack,
            fault: "kind = \"sigkill\"\ntarget = \"app\"",
            warm_up: "300ms",
            probes: vec![(
                "http (process backend)",
                "kind = \"http\"\nurl = \"http://127.0.0.1:18085/healthz\"\nperiod = \"5ms\""
                    .to_string(),
            )],
            clock: Clock::DemoAppFile,
        },
    ]
}

/// One probe's figures over a case.
struct Row {
    case: &'static str,
    probe: &'static str,
    truth: &'static str,
    period_ms: f64,
    trials: usize,
    inside: usize,
    early: usize,
    errors_ms: Vec<f64>,
    widths_ms: Vec<f64>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let trials: u32 = value("--trials").map_or(30, |v| v.parse().expect("--trials N"));
    let only = value("--only");
    let exact = value("--case");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // `--keep DIR`: leave the run directories there to look at.
    let kept = value("--keep").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().expect("tempdir");
    let work = kept.as_deref().unwrap_or(temp.path());
    let mut rows = Vec::new();
    for case in cases() {
        if only.as_deref().is_some_and(|o| !case.name.contains(o))
            || exact.as_deref().is_some_and(|e| case.name != e)
        {
            continue;
        }
        eprintln!("== {} ({trials} trials)", case.name);
        rows.extend(run_case(&runtime, &case, trials, work));
    }
    print_table(&rows);
}

fn run_case(runtime: &tokio::runtime::Runtime, case: &Case, trials: u32, work: &Path) -> Vec<Row> {
    let probes: String = case
        .probes
        .iter()
        .enumerate()
        .map(|(i, (_, t))| format!("[[probe]]\nname = \"p{i}\"\n{t}\n\n"))
        .collect();
    let text = format!(
        "name = \"truth-{}\"\n[stack]\n{}\n\n[[fault]]\n{}\n\n{probes}[slo]\nsuccess-rate = 0.5\nrecover-within = \"30s\"\n\n[run]\nwarm-up = \"{}\"\nstartup-timeout = \"120s\"\nstable-for = 1\n",
        case.name, case.stack, case.fault, case.warm_up
    );
    let path = work.join(format!("{}.toml", case.name));
    std::fs::write(&path, &text).expect("write scenario");
    let plan = rebound::scenario::parse(&path, &text).expect("a valid scenario");
    let out = work.join(case.name);
    let docker = !matches!(case.clock, Clock::DemoAppFile);
    let opts = RunOptions {
        trials: Some(trials),
        out: Some(out.clone()),
        reports_root: work.to_path_buf(),
        progress: true,
        print_summary: false,
        keep: docker,
        ..RunOptions::default()
    };
    let outcome = runtime.block_on(rebound::runner::run(&plan, &opts));
    let run_id = match &outcome {
        Ok(o) => o.summary.run_id.clone(),
        Err(e) => {
            eprintln!("   run failed: {e}");
            // The run kept its stack (to read the logs): remove what it made.
            let id = rebound::history::load(&out.join("history.jsonl"))
                .ok()
                .and_then(|r| {
                    r.iter().find_map(|r| match &r.event {
                        rebound::history::Event::RunStart { run_id, .. } => Some(run_id.clone()),
                        _ => None,
                    })
                });
            if let (true, Some(id)) = (docker, id) {
                remove_run(&id);
            }
            return Vec::new();
        }
    };
    // A tcp probe can only see a socket listening: its truth is the interval in
    // which Redis calls listen(2) (from "Redis is starting" to "Server initialized"),
    // not "Ready to accept connections" (after loading its data, when PING answers).
    let (truths, listening): (Vec<Instant>, Vec<Instant>) = match case.clock {
        Clock::Redis => {
            let logs = logs(&container(&run_id, "redis"));
            (
                redis_truth(&logs, "Ready to accept connections"),
                redis_listening(&logs),
            )
        }
        Clock::DemoAppLog => (app_log_truth(&container(&run_id, "app")), Vec::new()),
        Clock::DemoAppFile => (app_file_truth(&out.join("data/app/ready.log")), Vec::new()),
    };
    if docker {
        remove_run(&run_id);
    }
    let records = rebound::history::load(&out.join("history.jsonl")).expect("history");
    let finished = rebound::history::finished_trials(&records);
    let mut rows = Vec::new();
    for (i, (label, _)) in case.probes.iter().enumerate() {
        let mut cfg = check_config(&plan);
        cfg.probes = vec![format!("p{i}")];
        let tcp = label.starts_with("tcp") && !listening.is_empty();
        let truths = if tcp { &listening } else { &truths };
        let mut row = Row {
            case: case.name,
            probe: label,
            truth: match case.clock {
                Clock::Redis if tcp => "listening",
                Clock::Redis => "ready",
                _ => "listening",
            },
            period_ms: plan.probes[i].period.as_secs_f64() * 1e3,
            trials: 0,
            inside: 0,
            early: 0,
            errors_ms: Vec::new(),
            widths_ms: Vec::new(),
        };
        for (n, recs) in &finished {
            let t = check_trial(*n, recs, &cfg);
            let (Some(injected), Some(rec), Some(low)) =
                (t.injected_at, t.recovery_ms, t.recovery_lower_ms)
            else {
                eprintln!("   {label}, trial {n}: no recovery measured: {}", t.reason);
                continue;
            };
            let inject_ns = i128::from(injected.timestamp_nanos_opt().expect("time"));
            let Some(&(at, res)) = truths
                .iter()
                .filter(|(at, res)| at + res > inject_ns)
                .min_by_key(|(at, _)| *at)
            else {
                eprintln!(
                    "   {label}, trial {n}: no ready instant after the fault in the service's log"
                );
                continue;
            };
            let truth_ms = (at - inject_ns) as f64 / 1e6;
            let res_ms = res as f64 / 1e6;
            let slack = 1e-3 + MAX_SLEW * rec;
            row.trials += 1;
            if low - slack <= truth_ms + res_ms && truth_ms <= rec + slack {
                row.inside += 1;
            }
            if rec + slack < truth_ms {
                row.early += 1;
            }
            // From the latest written instant (an interval's end; a point's own
            // millisecond).
            let reference_ms = truth_ms + (res_ms - 1.0).max(0.0);
            row.errors_ms.push(rec - reference_ms);
            row.widths_ms.push(rec - low);
        }
        rows.push(row);
    }
    rows
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn print_table(rows: &[Row]) {
    println!("\n| case | probe | truth | period | truth inside | recovered before truth | error p50 | error p95 | error max | width p50 |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} ms | {} of {} | {} | {:+.1} ms | {:+.1} ms | {:+.1} ms | {:.1} ms |",
            r.case,
            r.probe,
            r.truth,
            r.period_ms,
            r.inside,
            r.trials,
            r.early,
            quantile(&r.errors_ms, 0.5),
            quantile(&r.errors_ms, 0.95),
            quantile(&r.errors_ms, 1.0),
            quantile(&r.widths_ms, 0.5),
        );
    }
}

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn container(run_id: &str, service: &str) -> String {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=rebound.run={run_id}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
    ])
}

fn logs(container: &str) -> String {
    let o = Command::new("docker")
        .args(["logs", container])
        .output()
        .expect("docker logs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Lines with `line`, as in "7:M 02 Dec 2026 06:40:01.123 * Ready to accept
/// connections tcp" → (ns, 1 ms).
fn redis_truth(logs: &str, line: &str) -> Vec<(i128, i128)> {
    logs.lines()
        .filter(|l| l.contains(line))
        .filter_map(|l| {
            let stamp = l.split_once(' ')?.1.get(..24)?;
            chrono::NaiveDateTime::parse_from_str(stamp, "%d %b %Y %H:%M:%S%.3f").ok()
        })
        .filter_map(|t| t.and_utc().timestamp_nanos_opt())
        .map(|ns| (i128::from(ns), 1_000_000))
        .collect()
}

/// The interval in which Redis starts listening, per start: from its "Redis is
/// starting" line to its "Server initialized" line (+1 ms, the log's resolution).
fn redis_listening(logs: &str) -> Vec<(i128, i128)> {
    let mut out = Vec::new();
    let mut starting = None;
    for l in logs.lines() {
        if l.contains("Redis is starting") {
            starting = redis_truth(l, "Redis is starting").first().map(|t| t.0);
        } else if l.contains("Server initialized") {
            if let (Some(from), Some(&(to, _))) = (
                starting.take(),
                redis_truth(l, "Server initialized").first(),
            ) {
                out.push((from, to - from + 1_000_000));
            }
        }
    }
    out
}

/// demo-app's "… ready_unix_ns 1764657601123456789)" → (ns, 0).
fn app_log_truth(container: &str) -> Vec<(i128, i128)> {
    logs(container)
        .lines()
        .filter_map(|l| l.split("ready_unix_ns ").nth(1))
        .filter_map(|rest| rest.trim_end_matches(')').trim().parse().ok())
        .map(|ns| (ns, 0))
        .collect()
}

/// demo-app's `ready.log`: `<boot> <unix ns>` per start.
fn app_file_truth(path: &Path) -> Vec<(i128, i128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .map(|ns| (ns, 0))
        .collect()
}

/// Removes everything the run labelled (it ran with `keep` so the logs could be read).
fn remove_run(run_id: &str) {
    let label = format!("label=rebound.run={run_id}");
    let ids = docker(&["ps", "-aq", "--filter", &label]);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.lines());
        docker(&args);
    }
    for kind in ["network", "volume"] {
        for n in docker(&[kind, "ls", "-q", "--filter", &label]).lines() {
            docker(&[kind, "rm", n]);
        }
    }
    // A pause between cases lets the engine settle.
    std::thread::sleep(Duration::from_secs(1));
}
