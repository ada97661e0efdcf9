//! Unit tests of scenario parsing and validation.

use super::*;
use crate::nemesis::{http::Http, pause::PauseFor, stack_restart::StackRestart};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The parameters of a fault plan of kind `T`.
fn kind<T: 'static>(plan: &FaultPlan) -> &T {
    plan.kind
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("fault kind is {}", plan.kind.name()))
}

const VALID: &str = r#"
name = "t"

[stack]
backend = "process"

[[stack.service]]
name = "app"
command = ["${rebound}", "demo-app", "--data-dir", "${run_dir}/d"]
restart = "on-failure"

[[fault]]
kind = "pause-for"
target = "app"
duration = "2s"

[[probe]]
kind = "tcp"
address = "127.0.0.1:9"

[slo]
recover-within = "3s"
p95 = "1s"

[run]
trials = 7
"#;

fn parse_str(text: &str) -> Result<Plan, ScenarioError> {
    parse(Path::new("x.toml"), text)
}

#[test]
fn a_valid_file_gets_every_default() {
    let plan = parse_str(VALID).expect("valid");
    assert_eq!(plan.run.trials, 7);
    assert_eq!(plan.run.stable_for, 3);
    assert_eq!(plan.run.observe_for, Duration::from_secs(6));
    assert_eq!(plan.slo.success_rate, 0.99);
    assert_eq!(
        plan.slo.limits,
        vec![(Quantile::P95, Duration::from_secs(1))]
    );
    assert_eq!(plan.probes[0].name, "tcp-1");
    assert_eq!(plan.probes[0].period, Duration::from_millis(50));
    assert_eq!(
        kind::<PauseFor>(&plan.faults[0]),
        &PauseFor {
            duration: Duration::from_secs(2)
        }
    );
    let StackPlan::Process { services, .. } = &plan.stack else {
        panic!("process backend expected")
    };
    assert_eq!(services[0].restart, RestartPolicy::OnFailure);
    assert_eq!(services[0].restart_backoff, Duration::from_millis(100));
}

#[test]
fn shipped_scenarios_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn unknown_key_names_the_key_and_its_line() {
    let text = VALID.replace("trials = 7", "trials = 7\ntrialz = 3");
    let err = parse_str(&text).expect_err("unknown key");
    let msg = err.to_string();
    let line = text
        .lines()
        .position(|l| l.starts_with("trialz"))
        .expect("line")
        + 1;
    assert!(msg.contains(&format!("x.toml:{line}:")), "{msg}");
    assert!(msg.contains("trialz"), "{msg}");
}

#[test]
fn unknown_key_inside_a_fault_is_named() {
    let text = VALID.replace("duration = \"2s\"", "duration = \"2s\"\ndurration = \"3s\"");
    let msg = parse_str(&text).expect_err("unknown key").to_string();
    assert!(msg.contains("durration"), "{msg}");
}

#[test]
fn bad_duration_points_at_its_line() {
    let text = VALID.replace("recover-within = \"3s\"", "recover-within = \"3 parsecs\"");
    let msg = parse_str(&text).expect_err("bad duration").to_string();
    let line = text
        .lines()
        .position(|l| l.starts_with("recover-within"))
        .expect("line")
        + 1;
    assert!(msg.contains(&format!("x.toml:{line}:")), "{msg}");
    assert!(msg.contains("slo.recover-within"), "{msg}");
}

#[test]
fn unknown_target_lists_the_services_and_the_line() {
    let text = VALID.replace("target = \"app\"", "target = \"db\"");
    let err = parse_str(&text).expect_err("unknown target");
    let line = text
        .lines()
        .position(|l| l.contains("target = \"db\""))
        .expect("line")
        + 1;
    match &err {
        ScenarioError::Invalid {
            line: Some(l),
            key,
            message,
            ..
        } => {
            assert_eq!(*l, line);
            assert_eq!(key, "fault[1].target");
            assert!(message.contains("services are: app"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn impossible_objectives_are_rejected() {
    for (from, to) in [
        (
            "recover-within = \"3s\"",
            "recover-within = \"3s\"\nsuccess-rate = 1.0",
        ),
        (
            "recover-within = \"3s\"",
            "recover-within = \"3s\"\nconfidence = 0",
        ),
        ("trials = 7", "trials = 7\nprobe-period = \"1ms\""),
        ("trials = 7", "trials = 7\nobserve-for = \"1s\""),
    ] {
        let text = VALID.replace(from, to);
        assert!(
            matches!(parse_str(&text), Err(ScenarioError::Invalid { .. })),
            "{to}"
        );
    }
    // A count of 0 is excluded by the type (NonZeroU32): a parse error at its line.
    let err = parse_str(&VALID.replace("trials = 7", "trials = 0")).expect_err("0 trials");
    let ScenarioError::Parse { key, message, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(key, "run.trials", "{err}");
    assert!(message.contains("nonzero"), "{err}");
}

#[test]
fn unknown_placeholder_is_rejected() {
    let text = VALID.replace("${run_dir}/d", "${rundir}/d");
    let msg = parse_str(&text).expect_err("placeholder").to_string();
    assert!(
        msg.contains("${rundir}") && msg.contains("${run_dir}"),
        "{msg}"
    );
}

#[test]
fn missing_probe_is_rejected() {
    let text = VALID.replace("[[probe]]\nkind = \"tcp\"\naddress = \"127.0.0.1:9\"\n", "");
    let msg = parse_str(&text).expect_err("no probe").to_string();
    assert!(msg.contains("[[probe]]"), "{msg}");
}

#[test]
fn placeholders_expand() {
    let vars = BTreeMap::from([
        ("run_dir", "/r".to_string()),
        ("rebound", "/bin/rebound".to_string()),
    ]);
    assert_eq!(expand("${run_dir}/d/${run_dir}", &vars), "/r/d//r");
    assert_eq!(expand("${rebound}", &vars), "/bin/rebound");
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse_str(&text);
    }

    #[test]
    fn any_single_line_deletion_is_either_valid_or_a_clear_error(skip in 0usize..40) {
        let text: String = VALID.lines().enumerate().filter(|(i, _)| *i != skip).map(|(_, l)| format!("{l}\n")).collect();
        if let Err(e) = parse_str(&text) {
            prop_assert!(e.to_string().starts_with("x.toml"), "{}", e);
        }
    }
}

#[test]
fn docker_only_faults_are_rejected_on_the_process_backend() {
    let text = VALID.replace(
        "kind = \"pause-for\"\ntarget = \"app\"\nduration = \"2s\"",
        "kind = \"disconnect-for\"\ntarget = \"app\"\nduration = \"2s\"",
    );
    let msg = parse_str(&text).expect_err("docker-only").to_string();
    assert!(msg.contains("needs the docker backend"), "{msg}");
}

#[test]
fn docker_targets_are_checked_against_the_compose_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  db: {image: x}\n  app: {image: y}\n",
    )
    .expect("compose");
    let text = |target: &str| {
        format!("name = \"d\"\n[stack]\nbackend = \"docker\"\ncompose = \"compose.yaml\"\n[[fault]]\nkind = \"db-restart\"\ntarget = \"{target}\"\n[[probe]]\nkind = \"docker-health\"\nservice = \"db\"\n[slo]\nrecover-within = \"5s\"\n")
    };
    let path = dir.path().join("s.toml");
    let plan = parse(&path, &text("db")).expect("valid");
    assert_eq!(
        plan.stack.service_names(),
        Some(vec!["db".to_string(), "app".to_string()])
    );
    let msg = parse(&path, &text("redis"))
        .expect_err("unknown")
        .to_string();
    assert!(msg.contains("services are: db, app"), "{msg}");
    let both = text("db").replace(
        "compose = \"compose.yaml\"",
        "compose = \"compose.yaml\"\nattach = \"p\"",
    );
    assert!(parse(&path, &both)
        .expect_err("both")
        .to_string()
        .contains("exactly one"));
}

#[test]
fn multi_word_keys_inside_tagged_tables_are_kebab_case() {
    let text = VALID.replace(
        "kind = \"tcp\"\naddress = \"127.0.0.1:9\"",
        "kind = \"http\"\nurl = \"http://127.0.0.1:9/\"\nexpect-status = 204",
    );
    let plan = parse_str(&text).expect("expect-status is accepted");
    let http = plan.probes[0]
        .check
        .as_any()
        .downcast_ref::<crate::probe::http::Http>()
        .expect("an http probe");
    assert_eq!(http.expect_status, 204);
    let snake = text.replace("expect-status", "expect_status");
    assert!(
        parse_str(&snake).is_err(),
        "snake_case keys are not part of the format"
    );
}

#[test]
fn readme_lists_every_shipped_scenario_and_exit_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        readme.contains("cargo nextest run --workspace"),
        "README must give the test command"
    );
    for code in ["| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 130 |"] {
        assert!(
            readme.contains(code),
            "exit code row {code} missing from README"
        );
    }
    for entry in std::fs::read_dir(root.join("scenarios")).expect("scenarios") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        if name.ends_with(".toml") {
            assert!(
                readme.contains(&name),
                "README does not mention scenarios/{name}"
            );
        }
    }
}

#[test]
fn workloads_send_load_only_to_loopback() {
    let with = |w: &str| VALID.replace("[slo]", &format!("{w}\n[slo]"));
    let ok = with("[[workload]]\nkind = \"http-writes\"\nurl = \"http://127.0.0.1:8/items\"\nread-url = \"http://localhost:8/items/{id}\"");
    let plan = parse_str(&ok).expect("loopback is fine");
    assert_eq!(plan.workloads[0].name, "writes-1");
    assert!(plan.workloads[0].client.writes());
    for bad in [
        "[[workload]]\nkind = \"reads\"\nurl = \"http://10.0.0.8/\"",
        "[[workload]]\nkind = \"postgres-inserts\"\naddress = \"192.168.1.2:5432\"",
        "[[workload]]\nkind = \"http-writes\"\nurl = \"http://127.0.0.1:8/items\"\nread-url = \"http://127.0.0.1:8/items\"",
        "[[workload]]\nkind = \"reads\"\nurl = \"http://127.0.0.1/\"\nrate = 0",
    ] {
        let err = parse_str(&with(bad)).expect_err(bad).to_string();
        assert!(err.contains("workload[1]"), "{err}");
    }
}

#[test]
fn stack_restart_targets_every_service_and_needs_compose_for_ordered_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  db: {image: x}\n  app: {image: y}\n",
    )
    .expect("compose");
    let path = dir.path().join("s.toml");
    let text = |source: &str, mode: &str| {
        format!("name = \"d\"\n[stack]\nbackend = \"docker\"\n{source}\n[[fault]]\nkind = \"stack-restart\"\nmode = \"{mode}\"\n[[probe]]\nkind = \"docker-health\"\nservice = \"db\"\n[slo]\nrecover-within = \"5s\"\n")
    };
    let plan = parse(&path, &text("compose = \"compose.yaml\"", "down-up")).expect("valid");
    assert_eq!(plan.faults[0].target, ALL_SERVICES);
    assert_eq!(
        kind::<StackRestart>(&plan.faults[0]),
        &StackRestart {
            mode: StackRestartMode::DownUp,
            grace: Duration::from_secs(10)
        }
    );
    assert!(parse(&path, &text("attach = \"p\"", "parallel")).is_ok());
    for mode in ["ordered", "down-up"] {
        let msg = parse(&path, &text("attach = \"p\"", mode))
            .expect_err("attach cannot run compose")
            .to_string();
        assert!(msg.contains("need `compose"), "{msg}");
    }
    let msg = parse(&path, &text("compose = \"compose.yaml\"", "sideways"))
        .expect_err("unknown mode")
        .to_string();
    assert!(msg.contains("sideways"), "{msg}");
    // It acts on the whole stack: a target is an error, not silently ignored.
    let with_target = text("compose = \"compose.yaml\"", "parallel").replace(
        "mode = \"parallel\"",
        "mode = \"parallel\"\ntarget = \"db\"",
    );
    assert!(parse(&path, &with_target).is_err());
    // Not on the process backend.
    let process = VALID.replace(
        "kind = \"pause-for\"\ntarget = \"app\"\nduration = \"2s\"",
        "kind = \"stack-restart\"",
    );
    let msg = parse_str(&process).expect_err("docker only").to_string();
    assert!(msg.contains("needs the docker backend"), "{msg}");
}

#[test]
fn http_fault_body_check_and_verify_within_are_read() {
    let text = VALID
        .replace(
            "kind = \"pause-for\"\ntarget = \"app\"\nduration = \"2s\"",
            "kind = \"http\"\ntarget = \"app\"\nurl = \"http://127.0.0.1:9/admin/restore\"\nexpect-status = 500\nexpect-body = '\"rolled_back\":true'",
        )
        .replace(
            "[slo]",
            "[[workload]]\nkind = \"http-writes\"\nurl = \"http://127.0.0.1:9/items\"\nread-url = \"http://127.0.0.1:9/items/{id}\"\nverify-within = \"20s\"\n[slo]",
        );
    let plan = parse_str(&text).expect("valid");
    assert!(matches!(
        kind::<Http>(&plan.faults[0]),
        Http { expect_status: Some(500), expect_body: Some(b), .. } if b == "\"rolled_back\":true"
    ));
    let writes = plan.workloads[0]
        .client
        .as_any()
        .downcast_ref::<crate::workload::http_writes::HttpWrites>()
        .expect("http-writes");
    assert_eq!(writes.verify_within, Duration::from_secs(20));
}

#[test]
fn every_field_story_has_a_scenario_and_a_readme_row() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let mut stories: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(root.join("scenarios")).expect("scenarios") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let plan = load(&path).unwrap_or_else(|e| panic!("{e}"));
            if let Some(story) = plan.story {
                let file = path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .to_string();
                stories.push((story, file));
            }
        }
    }
    for seed in ["seed 000", "seed 001", "seed 002", "seed 003", "seed 004"] {
        let files: Vec<&String> = stories
            .iter()
            .filter(|(s, _)| s.starts_with(seed))
            .map(|(_, f)| f)
            .collect();
        assert!(!files.is_empty(), "no scenario tells {seed}");
        let section = readme
            .split("## Field stories")
            .nth(1)
            .expect("README has a Field stories section");
        for f in files {
            assert!(
                section.contains(f.as_str()),
                "Field stories table lacks {f}"
            );
        }
    }
}

#[test]
fn a_tcp_probe_on_a_published_port_is_warned_about_and_names_the_better_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  redis:\n    image: r\n    ports: [\"127.0.0.1:${REBOUND_LINT_TEST_PORT:-16379}:6379\"]\n",
    )
    .expect("write");
    let scenario = |probe: &str| {
        format!(
            "name = \"lint\"\n[stack]\nbackend = \"docker\"\ncompose = \"compose.yaml\"\n\
             [[fault]]\nkind = \"sigkill\"\ntarget = \"redis\"\n\
             [[probe]]\n{probe}\n[slo]\nsuccess-rate = 0.5\nrecover-within = \"5s\"\n"
        )
    };
    let path = dir.path().join("s.toml");
    let plan = parse(
        &path,
        &scenario("kind = \"tcp\"\naddress = \"127.0.0.1:16379\""),
    )
    .expect("valid");
    let warnings = lint(&plan);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("published port 16379 of service `redis`")
            && warnings[0].contains("`service = \"redis\"` with `port = 6379`"),
        "{warnings:?}"
    );
    for quiet in [
        "kind = \"tcp\"\nservice = \"redis\"\nport = 6379",
        "kind = \"tcp\"\naddress = \"127.0.0.1:16380\"",
        "kind = \"redis\"\naddress = \"127.0.0.1:16379\"",
    ] {
        let plan = parse(&path, &scenario(quiet)).expect("valid");
        assert_eq!(lint(&plan), Vec::<String>::new(), "{quiet}");
    }
}

#[test]
fn a_duration_past_the_limit_is_an_error_at_its_key_and_line_not_a_panic() {
    let text = "name = \"x\"\n[stack]\nbackend = \"process\"\n[[stack.service]]\nname = \"app\"\ncommand = [\"true\"]\n\
                [[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n[[fault]]\nkind = \"pause-for\"\ntarget = \"app\"\nduration = \"400d\"\n\
                [[probe]]\nkind = \"tcp\"\naddress = \"127.0.0.1:9\"\n[slo]\nrecover-within = \"300000000000y\"\n";
    let e = parse(Path::new("x.toml"), text).expect_err("too long");
    let ScenarioError::Parse {
        line, key, message, ..
    } = &e
    else {
        panic!("{e:?}")
    };
    // The first too-long value in file order of the tables: fault[2].duration.
    assert_eq!((key.as_str(), *line), ("fault[2].duration", 13), "{e}");
    assert!(message.contains("longer than the limit"), "{message}");
    let fixed = text.replace("\"400d\"", "\"4s\"");
    let e = parse(Path::new("x.toml"), &fixed).expect_err("still too long");
    assert!(
        e.to_string().contains("x.toml:18:") && e.to_string().contains("slo.recover-within"),
        "{e}"
    );
    let fine = fixed.replace("\"300000000000y\"", "\"2m\"");
    parse(Path::new("x.toml"), &fine).expect("valid");
}

/// Values a careless or hostile edit may leave in a scenario.
const HOSTILE: &[&str] = &[
    "\"300000000000y\"",
    "\"0s\"",
    "\"-1s\"",
    "0",
    "-1",
    "18446744073709551616",
    "4294967296",
    "1e308",
    "true",
    "[]",
    "{}",
    "\"\"",
    "\"${nope}\"",
    "\"\\u0000\"",
    "\"/dev/zero\"",
    "0.0",
    "1.5",
    "\"99999999999999999999ms\"",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    /// Any shipped scenario with one value replaced by a hostile one: validation
    /// never panics, and a rejection names the file.
    #[test]
    fn a_shipped_scenario_with_any_value_mutated_never_panics(
        file in 0usize..64,
        line in 0usize..200,
        value in 0usize..HOSTILE.len(),
    ) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .expect("scenarios")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let path = &files[file % files.len()];
        let text = std::fs::read_to_string(path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        // Replace the value of the first `key = value` line at or after `line`.
        let Some(i) = (0..lines.len())
            .map(|k| (line + k) % lines.len())
            .find(|&k| lines[k].contains(" = ") && !lines[k].trim_start().starts_with('#'))
        else {
            return Ok(());
        };
        let key = lines[i].split(" = ").next().unwrap_or_default();
        let mutated: String = lines
            .iter()
            .enumerate()
            .map(|(k, l)| if k == i { format!("{key} = {}\n", HOSTILE[value]) } else { format!("{l}\n") })
            .collect();
        let result = std::panic::catch_unwind(|| parse(path, &mutated).map(|_| ()));
        prop_assert!(result.is_ok(), "panicked on {}:{}: {key} = {}", path.display(), i + 1, HOSTILE[value]);
        if let Ok(Err(e)) = result {
            prop_assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");
        }
    }
}

/// `(line, key, message)` of a parse error.
fn parse_error(text: &str) -> (usize, String, String) {
    match parse_str(text) {
        Err(ScenarioError::Parse {
            line, key, message, ..
        }) => (line, key, message),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

#[test]
fn a_type_error_inside_a_tagged_table_names_its_dotted_key_and_its_own_line() {
    let text = VALID.replace("restart = \"on-failure\"", "restart = true");
    let (line, key, message) = parse_error(&text);
    assert_eq!(key, "stack.service[1].restart", "{message}");
    assert_eq!(line, line_of(&text, "restart = true"), "{message}");
    assert!(message.contains("invalid type"), "{message}");

    let text = VALID.replace("duration = \"2s\"", "duration = 5");
    let (line, key, message) = parse_error(&text);
    assert_eq!(key, "fault[1].duration", "{message}");
    assert_eq!(line, line_of(&text, "duration = 5"), "{message}");

    // The second of two probes, under its own header.
    let text = VALID.replace(
        "address = \"127.0.0.1:9\"\n",
        "address = \"127.0.0.1:9\"\n\n[[probe]]\nkind = \"tcp\"\naddress = \"127.0.0.1:9\"\nperiod = [1]\n",
    );
    let (line, key, message) = parse_error(&text);
    assert_eq!(key, "probe[2].period", "{message}");
    assert_eq!(line, line_of(&text, "period = [1]"), "{message}");
}

#[test]
fn a_missing_field_names_the_table_it_is_missing_from_at_its_header() {
    let text = VALID.replace("target = \"app\"\n", "");
    let (line, key, message) = parse_error(&text);
    assert_eq!(key, "fault[1]", "{message}");
    assert_eq!(line, line_of(&text, "[[fault]]"), "{message}");
    assert!(message.contains("missing field `target`"), "{message}");

    let text = VALID.replace("recover-within = \"3s\"\n", "");
    let (line, key, message) = parse_error(&text);
    assert_eq!(key, "slo", "{message}");
    assert_eq!(line, line_of(&text, "[slo]"), "{message}");

    let text = VALID.replace("name = \"t\"\n", "");
    let (_, key, message) = parse_error(&text);
    assert_eq!(key, "(top level)", "{message}");
    assert!(message.contains("missing field `name`"), "{message}");
}

#[test]
fn echoed_keys_and_values_are_escaped_and_truncated() {
    let long = "k".repeat(100_000);
    let text = VALID.replace("trials = 7", &format!("{long} = 7"));
    let e = parse_str(&text).expect_err("unknown key").to_string();
    assert!(e.len() < 1_000, "{} bytes", e.len());
    assert!(e.contains('…'), "{e}");
    let text = VALID.replace("name = \"app\"", "name = \"a\\u001b[2Jb\"");
    let e = parse_str(&text).expect_err("bad name").to_string();
    assert!(!e.contains('\u{1b}'), "{e:?}");
    assert_eq!(tidy("a\nb", 10), "a\\nb");
    assert_eq!(tidy("abcdef", 3), "abc…");
    assert_eq!(tidy("a\u{202e}b", 20), "a\\u{202e}b");
}

#[test]
fn the_same_key_follows_the_same_rule_in_every_table() {
    let workdir = VALID.replace(
        "restart = \"on-failure\"",
        "restart = \"on-failure\"\nworkdir = \"${nowhere}/x\"",
    );
    let msg = parse_str(&workdir).expect_err("workdir").to_string();
    assert!(
        msg.contains("workdir") && msg.contains("${nowhere}"),
        "{msg}"
    );

    let fault = |extra: &str| {
        VALID.replace(
            "kind = \"pause-for\"\ntarget = \"app\"\nduration = \"2s\"",
            &format!("kind = \"http\"\ntarget = \"app\"\nurl = \"http://127.0.0.1:9/x\"\n{extra}"),
        )
    };
    for (extra, key) in [
        ("expect-status = 0", "expect-status"),
        ("timeout = \"0s\"", "timeout"),
    ] {
        let msg = parse_str(&fault(extra)).expect_err(extra).to_string();
        assert!(msg.contains(&format!("fault[1].{key}")), "{extra}: {msg}");
    }
    let reads = |extra: &str| {
        format!(
            "{VALID}\n[[workload]]\nkind = \"reads\"\nurl = \"http://127.0.0.1:9/x\"\n{extra}\n"
        )
    };
    for (extra, key) in [
        ("expect-status = 0", "expect-status"),
        ("timeout = \"0s\"", "timeout"),
    ] {
        let msg = parse_str(&reads(extra)).expect_err(extra).to_string();
        assert!(
            msg.contains(&format!("workload[1].{key}")),
            "{extra}: {msg}"
        );
    }
}

const TWO_SERVICES: &str = r#"
name = "t"

[stack]
backend = "process"

[[stack.service]]
name = "app"
command = ["demo-app"]

[stack.service.env]
PORT = "1"

[[stack.service]]
name = "db"
command = ["demo-app"]

[[fault]]
kind = "sigkill"
target = "app"

[[probe]]
kind = "tcp"
service = "db"
port = 9

[slo]
recover-within = "3s"
"#;

#[test]
fn errors_in_stack_tables_point_at_their_own_table() {
    // The error is in the [stack] table itself.
    for bad in ["backend = \"bogus\"", "backend = 5"] {
        let text = TWO_SERVICES.replace("backend = \"process\"", bad);
        let (line, key, message) = parse_error(&text);
        assert_eq!(key, "stack.backend", "{bad}: {message}");
        assert_eq!(line, line_of(&text, bad), "{bad}: {message}");
    }
    // An integer in the second service's argv: the element, the key, its line.
    let text = TWO_SERVICES.replacen(
        "name = \"db\"\ncommand = [\"demo-app\"]",
        "name = \"db\"\ncommand = [\"demo-app\", 8080]",
        1,
    );
    let (line, key, message) = parse_error(&text);
    assert_eq!(key, "stack.service[2].command[2]", "{message}");
    assert_eq!(line, line_of(&text, "8080"), "{message}");
    // A bad value in a sub-table of the first service, not the second's lines.
    let text = TWO_SERVICES.replace("PORT = \"1\"", "PORT = 1");
    let (line, key, message) = parse_error(&text);
    assert_eq!(key, "stack.service[1].env.PORT", "{message}");
    assert_eq!(line, line_of(&text, "PORT = 1"), "{message}");
    // A key missing in the second service names that service at its header.
    let text = TWO_SERVICES.replace("name = \"db\"\n", "");
    let (line, key, message) = parse_error(&text);
    assert_eq!(key, "stack.service[2]", "{message}");
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[stack.service]]")
        .nth(1)
        .map(|(i, _)| i + 1);
    assert_eq!(Some(line), second, "{message}");
    assert!(message.contains("missing field `name`"), "{message}");
    // Service tables under the docker backend: their header, not a probe's
    // `service = …` line.
    let text = TWO_SERVICES.replace(
        "backend = \"process\"",
        "backend = \"docker\"\ncompose = \"c.yaml\"",
    );
    let (line, key, message) = parse_error(&text);
    assert_eq!(key, "stack.service", "{message}");
    assert_eq!(line, line_of(&text, "[[stack.service]]"), "{message}");
}

#[test]
fn a_huge_bad_array_is_reported_quickly() {
    let argv: Vec<String> = (0..50_000).map(|i| format!("\"a{i}\"")).collect();
    let text = TWO_SERVICES.replacen(
        "command = [\"demo-app\"]",
        &format!("command = [{}, 1]", argv.join(", ")),
        1,
    );
    let started = std::time::Instant::now();
    let e = parse_str(&text).expect_err("an integer in argv");
    // A bound that only catches the quadratic search it replaced (minutes).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{e}"
    );
    assert!(e.to_string().contains("stack"), "{e}");
}

#[test]
fn links_are_checked_and_link_faults_target_them() {
    let link = "\n[[stack.link]]\nname = \"front\"\nto = \"app\"\nlisten = \"127.0.0.1:18091\"\nupstream = \"127.0.0.1:18090\"\n";
    let with_link = VALID.replace("\n[[fault]]", &format!("{link}\n[[fault]]"));
    let fault =
        "kind = \"link-latency\"\ntarget = \"front\"\nlatency = \"100ms\"\nduration = \"1s\"";
    let text = with_link.replace(
        "kind = \"pause-for\"\ntarget = \"app\"\nduration = \"2s\"",
        fault,
    );
    let plan = parse_str(&text).expect("a link fault on a link");
    assert_eq!(plan.stack.link_names(), ["front"]);
    assert_eq!(plan.faults[0].kind.name(), "link-latency");
    let msg = |t: &str| parse_str(t).expect_err("invalid").to_string();
    // A link fault names a link, not a service; without links it says what to add.
    let m = msg(&text.replace("target = \"front\"", "target = \"app\""));
    assert!(m.contains("unknown link `app`; links are: front"), "{m}");
    let m = msg(&text.replace(link, "\n"));
    assert!(m.contains("add a [[stack.link]] named `front`"), "{m}");
    // Links stay on loopback, have distinct names and real services.
    let m = msg(&text.replace(
        "listen = \"127.0.0.1:18091\"",
        "listen = \"10.0.0.1:18091\"",
    ));
    assert!(m.contains("stay on loopback"), "{m}");
    let m = msg(&text.replace("listen = \"127.0.0.1:18091\"", "listen = \"localhost\""));
    assert!(m.contains("is not an address"), "{m}");
    let m = msg(&text.replace("to = \"app\"", "to = \"db\""));
    assert!(m.contains("unknown service `db`"), "{m}");
    let m = msg(&text.replace(
        "upstream = \"127.0.0.1:18090\"",
        "upstream = \"127.0.0.1:18091\"",
    ));
    assert!(m.contains("must differ from listen"), "{m}");
    let twice = text.replace(link, &format!("{link}{link}"));
    assert!(msg(&twice).contains("link names must be unique"));
    // Parameters: jitter above latency, zero rate.
    let m = msg(&text.replace(
        "latency = \"100ms\"",
        "latency = \"100ms\"\njitter = \"200ms\"",
    ));
    assert!(m.contains("larger than latency"), "{m}");
    let bw = text.replace(
        fault,
        "kind = \"link-bandwidth\"\ntarget = \"front\"\nbytes-per-sec = 0\nduration = \"1s\"",
    );
    assert!(msg(&bw).contains("must be at least 1"));
}

#[test]
fn power_cut_needs_data_on_the_layer_and_takes_an_optional_target() {
    let cut = VALID.replace(
        "kind = \"pause-for\"\ntarget = \"app\"\nduration = \"2s\"",
        "kind = \"power-cut\"",
    );
    let m = parse_str(&cut).expect_err("nothing durable").to_string();
    assert!(m.contains("none is: name them with durable-dirs"), "{m}");
    let durable = cut.replace(
        "restart = \"on-failure\"",
        "restart = \"on-failure\"\ndurable-dirs = [\"${run_dir}/d\"]",
    );
    let plan = parse_str(&durable).expect("power-cut without a target");
    assert_eq!(plan.faults[0].target, ALL_SERVICES);
    assert_eq!(plan.faults[0].kind.name(), "power-cut");

    // docker: `durable` services, each bound through its variable by a compose file.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  db: {image: x}\n  web: {image: y}\n",
    )
    .expect("compose");
    std::fs::write(
        dir.path().join("durable.yaml"),
        "services:\n  db: {volumes: [\"${REBOUND_DURABLE_DB}:/data\"]}\n",
    )
    .expect("override");
    let docker = |stack: &str, target: &str| {
        format!("name = \"d\"\n[stack]\nbackend = \"docker\"\n{stack}\n[[fault]]\nkind = \"power-cut\"\n{target}\n[[probe]]\nkind = \"docker-health\"\nservice = \"db\"\n[slo]\nrecover-within = \"5s\"\n")
    };
    let err = |stack: &str, target: &str| {
        parse(&dir.path().join("s.toml"), &docker(stack, target))
            .expect_err(stack)
            .to_string()
    };
    let m = err("compose = \"compose.yaml\"", "target = \"db\"");
    assert!(m.contains("name them with [stack] durable"), "{m}");
    let m = err(
        "compose = \"compose.yaml\"\ndurable = [\"db\"]",
        "target = \"db\"",
    );
    assert!(
        m.contains("no compose file uses ${REBOUND_DURABLE_DB}"),
        "{m}"
    );
    let m = err(
        "compose = \"compose.yaml\"\ndurable = [\"cache\"]",
        "target = \"db\"",
    );
    assert!(m.contains("no service `cache`"), "{m}");
    let bound =
        "compose = \"compose.yaml\"\ncompose-overrides = [\"durable.yaml\"]\ndurable = [\"db\"]";
    let m = err(bound, "target = \"web\"");
    assert!(
        m.contains(
            "`web` has no data on the power-loss layer ([stack] durable); those that do: db"
        ),
        "{m}"
    );
    let plan = parse(&dir.path().join("s.toml"), &docker(bound, "")).expect("docker power-cut");
    assert_eq!(plan.stack.durable_services(), ["db"]);
    let m = err("attach = \"p\"\ndurable = [\"db\"]", "target = \"db\"");
    assert!(
        m.contains("`durable` needs a compose file rebound brings up"),
        "{m}"
    );
    let m = err(
        "compose = \"compose.yaml\"\ndurability = \"ext4-like\"",
        "target = \"db\"",
    );
    assert!(m.contains("names none"), "{m}");
}

#[test]
fn disk_faults_need_the_layer_and_check_their_error_ops_path_and_delay() {
    let with = |fault: &str| {
        VALID
            .replace(
                "kind = \"pause-for\"\ntarget = \"app\"\nduration = \"2s\"",
                fault,
            )
            .replace(
                "restart = \"on-failure\"",
                "restart = \"on-failure\"\ndurable-dirs = [\"${run_dir}/d\"]",
            )
    };
    let plan = parse_str(&with("kind = \"io-error-for\"\nduration = \"3s\""))
        .expect("io-error-for with defaults");
    let f = plan.faults[0]
        .kind
        .as_any()
        .downcast_ref::<crate::nemesis::io_error::IoFor>()
        .expect("IoFor");
    assert_eq!(plan.faults[0].target, ALL_SERVICES);
    assert_eq!(
        f.fault.describe(),
        "write/fsync operations fail with EIO",
        "EIO on writes and fsyncs by default"
    );
    let plan = parse_str(&with(
        "kind = \"io-latency-for\"\ntarget = \"app\"\ndelay = \"20ms\"\nduration = \"1s\"\nops = [\"fsync\", \"open\"]\npath = \"./wal/\"",
    ))
    .expect("io-latency-for");
    assert_eq!(plan.faults[0].kind.name(), "io-latency-for");
    let f = plan.faults[0]
        .kind
        .as_any()
        .downcast_ref::<crate::nemesis::io_error::IoFor>()
        .expect("IoFor");
    assert_eq!(
        f.fault.describe(),
        "fsync/open operations under wal wait 20ms"
    );

    let bad = |fault: &str| parse_str(&with(fault)).expect_err(fault).to_string();
    let m = bad("kind = \"io-error-for\"\nerror = \"EPERM\"\nduration = \"1s\"");
    assert!(
        m.contains("unknown error `EPERM`; one of EIO, ENOSPC, EROFS"),
        "{m}"
    );
    let m = bad("kind = \"io-error-for\"\nops = [\"sync\"]\nduration = \"1s\"");
    assert!(m.contains("unknown operation class `sync`"), "{m}");
    let m = bad("kind = \"io-error-for\"\npath = \"../etc\"\nduration = \"1s\"");
    assert!(m.contains("without `..`"), "{m}");
    let m = bad("kind = \"io-error-for\"\npath = \"/var\"\nduration = \"1s\"");
    assert!(
        m.contains("relative to the service's durable directory"),
        "{m}"
    );
    let m = bad("kind = \"io-latency-for\"\ndelay = \"1m\"\nduration = \"2m\"");
    assert!(m.contains("at most 10s per operation"), "{m}");
    let m = bad("kind = \"io-error-for\"\nduration = \"0s\"");
    assert!(m.contains("duration must be greater than 0"), "{m}");
    // Without durable-dirs there is no layer to fail.
    let m = parse_str(&VALID.replace(
        "kind = \"pause-for\"\ntarget = \"app\"\nduration = \"2s\"",
        "kind = \"io-error-for\"\nduration = \"1s\"",
    ))
    .expect_err("no layer")
    .to_string();
    assert!(m.contains("none is: name them with durable-dirs"), "{m}");
}

#[test]
fn record_log_names_a_service_and_a_regular_expression() {
    let ok = VALID.replace("[run]\n", "[run]\nrecord-log = { app = \"PANIC|redo\" }\n");
    assert!(ok.contains("record-log"), "VALID has a [run] table");
    let plan = parse_str(&ok).expect("record-log");
    assert_eq!(plan.run.record_log.len(), 1);
    assert!(plan.run.record_log[0]
        .1
        .is_match("LOG:  redo starts at 0/1"));
    let m = parse_str(&VALID.replace("[run]\n", "[run]\nrecord-log = { nope = \"x\" }\n"))
        .expect_err("unknown service")
        .to_string();
    assert!(m.contains("unknown service `nope`"), "{m}");
    let m = parse_str(&VALID.replace("[run]\n", "[run]\nrecord-log = { app = \"(\" }\n"))
        .expect_err("bad regex")
        .to_string();
    assert!(m.contains("not a regular expression"), "{m}");
}

#[test]
fn kernel_network_faults_need_the_docker_backend() {
    let text = VALID.replace(
        "kind = \"pause-for\"\ntarget = \"app\"\nduration = \"2s\"",
        "kind = \"partition-for\"\ngroups = [[\"app\"], [\"db\"]]\nduration = \"2s\"",
    );
    let m = parse_str(&text).expect_err("process backend").to_string();
    assert!(
        m.contains("needs the docker backend: the process backend cannot enter a service's network namespace"),
        "{m}"
    );
}

#[test]
fn docker_links_name_a_proxy_service_of_the_compose_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  db: {image: x}\n  app: {image: y}\n  proxy: {image: rebound/proxy}\n",
    )
    .expect("compose");
    let link =
        "[[stack.link]]\nname = \"app-db\"\nproxy = \"proxy\"\nfrom = \"app\"\nto = \"db\"\n";
    let text = format!("name = \"d\"\n[stack]\nbackend = \"docker\"\ncompose = \"compose.yaml\"\n{link}[[fault]]\nkind = \"link-reset\"\ntarget = \"app-db\"\nevery = \"500ms\"\nduration = \"5s\"\n[[probe]]\nkind = \"docker-health\"\nservice = \"db\"\n[slo]\nrecover-within = \"5s\"\n");
    let path = dir.path().join("s.toml");
    let plan = parse(&path, &text).expect("valid");
    assert_eq!(plan.stack.link_names(), ["app-db"]);
    assert_eq!(
        plan.stack.links()[0].route,
        crate::scenario::LinkRoute::Service {
            service: "proxy".into(),
            control: None
        }
    );
    let msg = |t: &str| parse(&path, t).expect_err("invalid").to_string();
    let m = msg(&text.replace("proxy = \"proxy\"", "proxy = \"toxi\""));
    assert!(
        m.contains("no service `toxi`; services are: db, app, proxy"),
        "{m}"
    );
    let m = msg(&text.replace("to = \"db\"", "to = \"redis\""));
    assert!(m.contains("no service `redis`"), "{m}");
    let m = msg(&text.replace(
        "proxy = \"proxy\"",
        "proxy = \"proxy\"\ncontrol = \"proxy:8474\"",
    ));
    assert!(
        m.contains("is not an address such as 127.0.0.1:18474"),
        "{m}"
    );
    let ok = parse(
        &path,
        &text.replace(
            "proxy = \"proxy\"",
            "proxy = \"proxy\"\ncontrol = \"127.0.0.1:18474\"",
        ),
    )
    .expect("a published control port");
    assert_eq!(
        ok.stack.links()[0].route,
        crate::scenario::LinkRoute::Service {
            service: "proxy".into(),
            control: Some("127.0.0.1:18474".parse().unwrap())
        }
    );
    // The proxy's command holds the addresses, not the scenario.
    let m = msg(&text.replace(
        "proxy = \"proxy\"",
        "proxy = \"proxy\"\nlisten = \"0.0.0.0:5432\"",
    ));
    assert!(m.contains("unknown field `listen`"), "{m}");
    let m = msg(&text.replace(link, &format!("{link}{link}")));
    assert!(m.contains("link names must be unique"), "{m}");
    let m = msg(&text.replace("name = \"app-db\"", "name = \"app db\""));
    assert!(m.contains("letters, digits"), "{m}");
    let m = msg(&text.replace("every = \"500ms\"", "every = \"0s\""));
    assert!(m.contains("every"), "{m}");
}

#[test]
fn follow_up_faults_are_parsed_in_order_and_checked_like_faults() {
    let then = "\n[[fault.then]]\nafter = \"1s\"\nkind = \"sigkill\"\ntarget = \"app\"\n\n[[fault.then]]\nafter = \"500ms\"\nkind = \"sigterm\"\ntarget = \"app\"\n";
    let text = VALID.replace("duration = \"2s\"\n", &format!("duration = \"2s\"\n{then}"));
    let plan = parse_str(&text).expect("follow-ups");
    let f = &plan.faults[0];
    assert_eq!(f.kind.name(), "pause-for");
    let steps: Vec<(&str, std::time::Duration)> = f
        .then
        .iter()
        .map(|t| (t.fault.kind.name(), t.after))
        .collect();
    assert_eq!(
        steps,
        [
            ("sigkill", std::time::Duration::from_secs(1)),
            ("sigterm", std::time::Duration::from_millis(500))
        ]
    );
    assert_eq!(f.steps().count(), 3);
    let msg = |t: &str| parse_str(t).expect_err("invalid").to_string();
    // A follow-up's target is checked, and the error names its table.
    let m = msg(&text.replacen(
        "target = \"app\"\n\n[[fault.then]]",
        "target = \"db\"\n\n[[fault.then]]",
        1,
    ));
    assert!(
        m.contains("fault.then[1].target") && m.contains("unknown target `db`"),
        "{m}"
    );
    let m = msg(&text.replacen("after = \"1s\"\n", "", 1));
    assert!(m.contains("missing field `after`"), "{m}");
    let m = msg(&text.replacen("after = \"1s\"", "after = \"soon\"", 1));
    assert!(m.contains("not a duration"), "{m}");
    let m = msg(&text.replacen("kind = \"sigkill\"", "kind = \"sigkil\"", 1));
    assert!(m.contains("sigkil"), "{m}");
    let nested = text.replace(
        "kind = \"sigterm\"",
        "kind = \"sigterm\"\nthen = [{ after = \"1s\", kind = \"sigkill\", target = \"app\" }]",
    );
    assert!(msg(&nested).contains("cannot have follow-ups of its own"));
    // Timed follow-ups must fire within the observation window.
    let late = text.replacen("after = \"1s\"", "after = \"9s\"", 1);
    assert!(msg(&late).contains("observed for"), "{}", msg(&late));
    // `when`: a service event; its service exists; `after` then defaults to 0.
    let on = text.replacen("after = \"1s\"", "when = \"app started\"", 1);
    let plan = parse_str(&on).expect("when");
    let t = &plan.faults[0].then[0];
    assert_eq!(t.after, std::time::Duration::ZERO);
    assert_eq!(
        t.when.as_ref().map(|w| w.to_string()).as_deref(),
        Some("app started")
    );
    let m = msg(&on.replace("when = \"app started\"", "when = \"db started\""));
    assert!(
        m.contains("unknown service `db`") && m.contains("fault.then[1].when"),
        "{m}"
    );
    let m = msg(&on.replace("when = \"app started\"", "when = \"app ready\""));
    assert!(m.contains("died, started or healthy"), "{m}");
    // `when = "probe NAME down|up"`: the probe exists (VALID's is `tcp-1`).
    let probe = on.replace("when = \"app started\"", "when = \"probe tcp-1 up\"");
    let plan = parse_str(&probe).expect("probe when");
    let w = plan.faults[0].then[0].when.as_ref().expect("when");
    assert_eq!(w.event, crate::nemesis::ServiceEvent::ProbeUp);
    assert_eq!(w.to_string(), "probe tcp-1 up");
    let m = msg(&probe.replace("probe tcp-1 up", "probe ready up"));
    assert!(
        m.contains("unknown probe `ready`") && m.contains("probes are: tcp-1"),
        "{m}"
    );
    let m = msg(&probe.replace("probe tcp-1 up", "probe tcp-1 sideways"));
    assert!(m.contains("probe NAME down"), "{m}");
    // `when = "SERVICE log /PATTERN/"`: a regular expression between slashes.
    let log = on.replace(
        "when = \"app started\"",
        "when = \"app log /ready in [0-9]+ ms/\"",
    );
    let plan = parse_str(&log).expect("log when");
    let w = plan.faults[0].then[0].when.as_ref().expect("when");
    assert_eq!(w.event, crate::nemesis::ServiceEvent::Log);
    assert_eq!(w.to_string(), "app log /ready in [0-9]+ ms/");
    let m = msg(&log.replace("/ready in [0-9]+ ms/", "/ready (/"));
    assert!(
        m.contains("not a regular expression (unclosed group)") && m.contains("fault[1].then[1]"),
        "{m}"
    );
    let m = msg(&log.replace("/ready in [0-9]+ ms/", "ready"));
    assert!(m.contains("SERVICE log /PATTERN/"), "{m}");
    let m = msg(&log.replace("app log", "db log"));
    assert!(m.contains("unknown service `db`"), "{m}");
}

#[test]
fn explore_table_defaults_and_errors() {
    let plan = parse_str(VALID).expect("valid");
    assert_eq!(
        plan.explore.kinds,
        ["sigkill", "sigterm", "stop-for", "pause-for"]
    );
    assert_eq!(plan.explore.targets, ["app"]);
    // A quarter of recover-within (3 s).
    assert_eq!(plan.explore.max_duration, Duration::from_millis(750));
    assert_eq!(plan.explore.max_faults, 3);
    let narrowed = format!(
        "{VALID}\n[explore]\nkinds = [\"sigkill\"]\nmax-duration = \"1s\"\nmax-faults = 2\n"
    );
    let plan = parse_str(&narrowed).expect("valid");
    assert_eq!(plan.explore.kinds, ["sigkill"]);
    assert_eq!(plan.explore.max_duration, Duration::from_secs(1));
    assert_eq!(plan.explore.max_faults, 2);
    for (table, key, says) in [
        (
            "kinds = [\"explode\"]",
            "explore.kinds",
            "explore draws from sigkill",
        ),
        ("targets = [\"db\"]", "explore.targets", "services are: app"),
        ("max-faults = 9", "explore.max-faults", "between 1 and 8"),
        (
            "max-duration = \"10ms\"",
            "explore.max-duration",
            "at least 100ms",
        ),
    ] {
        let text = format!("{VALID}\n[explore]\n{table}\n");
        match parse_str(&text).expect_err(table) {
            ScenarioError::Invalid {
                key: k,
                message,
                line,
                ..
            } => {
                assert_eq!(k, key);
                assert!(message.contains(says), "{message}");
                assert_eq!(line, Some(text.lines().count()), "{table}");
            }
            other => panic!("{table}: unexpected {other:?}"),
        }
    }
    let unknown = format!("{VALID}\n[explore]\nbudget = \"5m\"\n");
    assert!(parse_str(&unknown).is_err(), "unknown keys are refused");
}

#[test]
fn host_ports_of_the_text_and_of_the_compose_files_are_taken_recorded_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  app:\n    image: a\n    ports: [\"127.0.0.1:${REBOUND_PORT_APP:-18081}:8080\", \"127.0.0.1:${REBOUND_PORT_ADMIN:-18099}:9000\"]\n",
    )
    .expect("write");
    let text = "name = \"ports\"\n[stack]\nbackend = \"docker\"\ncompose = \"compose.yaml\"\n\
                [[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\
                [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:${port:app}/healthz\"\n\
                [slo]\nsuccess-rate = 0.5\nrecover-within = \"5s\"\n";
    let path = dir.path().join("s.toml");
    let plan = parse(&path, text).expect("valid");
    plan.ports.release();
    let app = plan.ports.get("REBOUND_PORT_APP").expect("app port");
    let admin = plan
        .ports
        .get("REBOUND_PORT_ADMIN")
        .expect("the compose file's port");
    assert!(crate::ports::RANGE.contains(&app) && crate::ports::RANGE.contains(&admin));
    assert_ne!(app, admin);
    assert_eq!(
        plan.source_text, text,
        "the recorded text keeps its placeholders"
    );
    // The lint sees the published port with the run's value.
    assert!(lint(&plan).is_empty());
    // A run directory's copy reads back with the recorded ports, or without them.
    let run = dir.path().join("run");
    let rd = crate::run_dir::RunDir::create(&run, &plan.source_text).expect("run dir");
    rd.write_ports(&plan.ports).expect("ports.json");
    let back = load_recorded(&rd.scenario()).expect("recorded");
    assert_eq!(back.ports, plan.ports);
    std::fs::remove_file(run.join(crate::run_dir::PORTS)).expect("rm");
    assert!(
        load_recorded(&rd.scenario()).is_ok(),
        "a copy without ports.json"
    );
    // A bad placeholder is named.
    let e = parse(&path, &text.replace("${port:app}", "${port:a b}"))
        .expect_err("bad name")
        .to_string();
    assert!(e.contains("host ports: `${port:a b}`"), "{e}");
}

#[test]
fn a_pinned_host_port_is_the_environment_value() {
    std::env::set_var("REBOUND_PORT_PINNED_TEST", "18123");
    let text =
        "name = \"pin\"\n[stack]\nbackend = \"process\"\n[[stack.service]]\nname = \"app\"\n\
                command = [\"x\", \"--port\", \"${port:pinned-test}\"]\n\
                [[fault]]\nkind = \"sigkill\"\ntarget = \"app\"\n\
                [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:${port:pinned-test}/\"\n\
                [slo]\nsuccess-rate = 0.5\nrecover-within = \"5s\"\n";
    let plan = parse_str(text).expect("valid");
    assert_eq!(plan.ports.get("REBOUND_PORT_PINNED_TEST"), Some(18123));
    let StackPlan::Process { services, .. } = &plan.stack else {
        panic!("process stack")
    };
    assert_eq!(services[0].command, ["x", "--port", "18123"]);
    std::env::set_var("REBOUND_PORT_PINNED_TEST", "http");
    let e = parse_str(text).expect_err("not a port").to_string();
    assert!(
        e.contains("REBOUND_PORT_PINNED_TEST=http is not a port number"),
        "{e}"
    );
    std::env::remove_var("REBOUND_PORT_PINNED_TEST");
}

#[test]
fn given_containers_are_the_services_and_stand_alone() {
    let text = |stack: &str, probe: &str| {
        format!(
            "name = \"c\"\n[stack]\nbackend = \"docker\"\n{stack}\n[[fault]]\nkind = \"sigkill\"\ntarget = \"db\"\n[[probe]]\n{probe}\n[slo]\nrecover-within = \"5s\"\n"
        )
    };
    let ok = parse_str(&text(
        "containers = { db = \"abc123\", app = \"my-app\" }",
        "kind = \"http\"\nservice = \"app\"\nport = 8080\npath = \"/readyz\"",
    ))
    .expect("valid");
    assert_eq!(
        ok.stack.service_names(),
        Some(vec!["app".to_string(), "db".to_string()])
    );
    let http = ok.probes[0]
        .check
        .as_any()
        .downcast_ref::<crate::probe::http::Http>()
        .expect("http");
    assert_eq!(
        http.target,
        crate::probe::http::Target::Service {
            service: "app".into(),
            port: 8080,
            path: "/readyz".into()
        }
    );
    for (stack, probe, words) in [
        (
            "containers = { db = \"a\" }\ncompose = \"x.yaml\"",
            "kind = \"tcp\"\nservice = \"db\"\nport = 1",
            "without `compose`",
        ),
        (
            "containers = {}",
            "kind = \"tcp\"\nservice = \"db\"\nport = 1",
            "at least one",
        ),
        (
            "containers = { db = \" \" }",
            "kind = \"tcp\"\nservice = \"db\"\nport = 1",
            "empty container id",
        ),
        (
            "containers = { db = \"a\" }",
            "kind = \"http\"\nservice = \"web\"\nport = 80",
            "unknown service `web`",
        ),
        (
            "containers = { db = \"a\" }",
            "kind = \"http\"\nservice = \"db\"\nport = 80\npath = \"readyz\"",
            "a path starts with `/`",
        ),
        (
            "containers = { db = \"a\" }",
            "kind = \"http\"\nurl = \"http://127.0.0.1:1/\"\npath = \"/x\"",
            "`path` goes with `service`",
        ),
    ] {
        let e = parse_str(&text(stack, probe)).expect_err(words).to_string();
        assert!(e.contains(words), "{stack} / {probe}: {e}");
    }
}

#[test]
fn durable_dirs_take_placeholders_and_a_model_only_with_dirs() {
    let with = |extra: &str| {
        VALID.replace(
            "restart = \"on-failure\"",
            &format!("restart = \"on-failure\"\n{extra}"),
        )
    };
    let plan = parse_str(&with(
        "durable-dirs = [\"${run_dir}/db\"]\ndurability = \"ext4-like\"",
    ))
    .expect("durable-dirs");
    let StackPlan::Process { services, .. } = &plan.stack else {
        panic!("a process stack");
    };
    assert_eq!(services[0].durable_dirs, [PathBuf::from("${run_dir}/db")]);
    assert_eq!(services[0].durability, crate::durable::Model::Ext4Like);
    let msg = parse_str(&with("durable-dirs = [\"${nowhere}/db\"]"))
        .expect_err("unknown placeholder")
        .to_string();
    assert!(
        msg.contains("durable-dirs") && msg.contains("${nowhere}"),
        "{msg}"
    );
    let msg = parse_str(&with("durability = \"posix-strict\""))
        .expect_err("a model without dirs")
        .to_string();
    assert!(
        msg.contains("durability") && msg.contains("names none"),
        "{msg}"
    );
    let msg = parse_str(&with("durable-dirs = [\"/x\"]\ndurability = \"lazy\""))
        .expect_err("an unknown model")
        .to_string();
    assert!(msg.contains("lazy") || msg.contains("durability"), "{msg}");
}
