//! Unit tests of the fault registry and undo records (no stack needed).

use super::*;
use crate::stack::Capabilities;

/// One table per kind, as a user writes it.
const EVERY_KIND: &[(&str, &str)] = &[
    ("sigkill", "target = \"app\""),
    ("sigterm", "target = \"app\"\ngrace = \"1s\""),
    ("signal", "target = \"app\"\nsignal = \"hup\""),
    ("stop-for", "target = \"app\"\nduration = \"1s\""),
    ("restart", "target = \"app\""),
    ("pause-for", "target = \"app\"\nduration = \"1s\""),
    ("disconnect-for", "target = \"app\"\nduration = \"1s\""),
    ("db-restart", "target = \"db\"\nmode = \"immediate\""),
    (
        "disk-fill",
        "target = \"db\"\npath = \"/var/lib\"\nduration = \"1s\"",
    ),
    ("http", "target = \"app\"\nurl = \"http://127.0.0.1:1/x\""),
    ("exec", "target = \"app\"\ncommand = [\"true\"]"),
    ("stack-restart", "mode = \"parallel\""),
    (
        "link-latency",
        "target = \"db\"\nlatency = \"100ms\"\nduration = \"1s\"",
    ),
    (
        "link-bandwidth",
        "target = \"db\"\nbytes-per-sec = 1000\nduration = \"1s\"",
    ),
    ("link-blackhole", "target = \"db\"\nduration = \"1s\""),
    (
        "loss-for",
        "target = \"db\"\nprobability = 0.3\nduration = \"1s\"",
    ),
    (
        "bandwidth-for",
        "target = \"db\"\nbytes-per-sec = 100000\nduration = \"1s\"",
    ),
    (
        "latency-for",
        "target = \"db\"\nlatency = \"100ms\"\nduration = \"1s\"",
    ),
    (
        "partition-for",
        "groups = [[\"app\"], [\"db\"]]\nduration = \"1s\"",
    ),
    ("link-reset", "target = \"db\"\nduration = \"1s\""),
];

fn docker() -> PlanCtx {
    use Capability::*;
    PlanCtx {
        backend: "docker",
        capabilities: Capabilities::of(&[Restart, RestartAll, Compose, Network, Exec, Health]),
    }
}

fn plan(kind: &str, body: &str, ctx: &PlanCtx) -> Result<FaultPlan, FieldError> {
    let raw: RawFault =
        toml::from_str(&format!("kind = \"{kind}\"\n{body}")).expect("the table parses");
    raw.plan(ctx)
}

#[test]
fn every_registered_kind_parses_under_its_own_name() {
    for (kind, body) in EVERY_KIND {
        let p = plan(kind, body, &docker()).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert_eq!(p.kind.name(), *kind);
        let undo = p.kind.undo(&p.target);
        assert_eq!(undo.fault, *kind);
        assert!(!undo.steps.is_empty(), "{kind} has nothing to undo");
    }
}

#[test]
fn a_kind_rejects_keys_of_another_kind() {
    let e = toml::from_str::<RawFault>("kind = \"sigkill\"\ntarget = \"a\"\nduration = \"1s\"")
        .expect_err("sigkill has no duration");
    assert!(e.to_string().contains("unknown field `duration`"), "{e}");
}

#[test]
fn kinds_check_their_own_values() {
    let ctx = docker();
    let e = plan("pause-for", "target = \"a\"\nduration = \"0s\"", &ctx).expect_err("zero");
    assert_eq!(e.key, "duration");
    let e = plan("signal", "target = \"a\"\nsignal = \"SIGNOPE\"", &ctx).expect_err("signal");
    assert_eq!(e.key, "signal");
    assert!(e.message.contains("not a signal name"), "{e:?}");
    let e = plan(
        "disk-fill",
        "target = \"a\"\npath = \"rel\"\nduration = \"1s\"",
        &ctx,
    )
    .expect_err("relative");
    assert_eq!(e.key, "path");
    let e = plan(
        "http",
        "target = \"a\"\nurl = \"http://127.0.0.1:1/\"\nmethod = \"NO PE\"",
        &ctx,
    )
    .expect_err("method");
    assert_eq!(e.key, "method");
    let e = plan("exec", "target = \"a\"\ncommand = []", &ctx).expect_err("empty");
    assert_eq!(e.key, "command");
}

#[test]
fn compose_modes_need_the_compose_capability() {
    use Capability::*;
    let attached = PlanCtx {
        backend: "docker",
        capabilities: Capabilities::of(&[Restart, RestartAll, Network, Exec, Health]),
    };
    assert!(plan("stack-restart", "mode = \"parallel\"", &attached).is_ok());
    let e = plan("stack-restart", "mode = \"ordered\"", &attached).expect_err("ordered");
    assert_eq!(e.key, "mode");
    assert!(plan("stack-restart", "mode = \"down-up\"", &docker()).is_ok());
}

#[test]
fn only_signal_stop_and_pause_kinds_run_on_the_basic_primitives() {
    let basic: Vec<&str> = EVERY_KIND
        .iter()
        .filter_map(|(kind, body)| {
            let p = plan(kind, body, &docker()).expect("valid");
            Capabilities::BASIC
                .lacks(p.kind.needs())
                .is_none()
                .then_some(*kind)
        })
        .collect();
    assert_eq!(
        basic,
        [
            "sigkill",
            "sigterm",
            "signal",
            "stop-for",
            "pause-for",
            "http"
        ]
    );
}

#[test]
fn undo_records_restore_the_target_and_are_plain_data() {
    let fill = plan(
        "disk-fill",
        "target = \"db\"\npath = \"/data/\"\nduration = \"1s\"",
        &docker(),
    )
    .expect("valid");
    let undo = fill.kind.undo(&fill.target);
    assert_eq!(
        undo.steps.last(),
        Some(&UndoStep::RemoveFile {
            service: "db".into(),
            path: format!("/data/{DISK_FILL_FILE}")
        })
    );
    assert_eq!(
        undo.steps[..3],
        UndoRecord::restore("disk-fill", "db").steps[..]
    );
    let json = serde_json::to_string(&undo).expect("serialise");
    let back: UndoRecord = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, undo);
    assert!(json.contains("\"step\":\"remove-file\""), "{json}");

    let all = plan("stack-restart", "", &docker()).expect("valid");
    assert_eq!(all.target, ALL_SERVICES);
    assert_eq!(all.kind.undo(&all.target).steps, [UndoStep::EnsureUp]);
}

#[test]
fn partition_groups_are_checked_and_undone_in_every_service() {
    let ctx = docker();
    let p = plan(
        "partition-for",
        "groups = [[\"app\"], [\"db\", \"redis\"]]\nduration = \"5s\"",
        &ctx,
    )
    .expect("valid");
    assert_eq!(p.target, ALL_SERVICES);
    assert_eq!(p.kind.services(), ["app", "db", "redis"]);
    let undo = p.kind.undo(&p.target);
    assert_eq!(
        undo.steps,
        ["app", "db", "redis"].map(|s| UndoStep::ClearChain {
            service: s.into(),
            chain: partition::CHAIN.into(),
        })
    );
    for (groups, why) in [
        ("[[\"app\"]]", "at least two groups"),
        ("[[\"app\"], []]", "none empty"),
        ("[[\"app\"], [\"app\", \"db\"]]", "`app` is in two groups"),
    ] {
        let e = plan(
            "partition-for",
            &format!("groups = {groups}\nduration = \"5s\""),
            &ctx,
        )
        .expect_err(groups);
        assert!(e.message.contains(why), "{groups}: {}", e.message);
    }
}
