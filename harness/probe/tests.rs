//! Unit tests of the probe registry and of the checks that need no stack.

use super::*;
use crate::history::{Event, History};
use crate::stack::Capabilities;
use std::any::Any;

fn plan(index: usize, table: &str) -> Result<ProbePlan, FieldError> {
    let raw: RawProbe = toml::from_str(table).expect("the table parses");
    raw.plan(&ProbeCtx {
        index,
        default_period: Duration::from_millis(50),
    })
}

#[test]
fn every_kind_gets_its_default_name_period_and_timeout() {
    let tables = [
        ("http-1", "kind = \"http\"\nurl = \"http://127.0.0.1:1/\""),
        ("tcp-2", "kind = \"tcp\"\naddress = \"127.0.0.1:1\""),
        ("postgres-3", "kind = \"postgres\""),
        (
            "exec-4",
            "kind = \"exec\"\nservice = \"db\"\ncommand = [\"true\"]",
        ),
        (
            "docker-health-5",
            "kind = \"docker-health\"\nservice = \"db\"",
        ),
    ];
    for (i, (name, table)) in tables.iter().enumerate() {
        let p = plan(i, table).unwrap_or_else(|e| panic!("{table}: {e:?}"));
        assert_eq!(p.name, *name);
        assert_eq!(p.period, Duration::from_millis(50));
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
    }
}

#[test]
fn common_keys_are_checked_for_every_kind() {
    let e = plan(
        0,
        "kind = \"tcp\"\naddress = \"127.0.0.1:1\"\nperiod = \"1ms\"",
    )
    .expect_err("1ms");
    assert_eq!(e.key, "period");
    let e = plan(0, "kind = \"postgres\"\ntimeout = \"0s\"").expect_err("0s");
    assert_eq!(e.key, "timeout");
    let e = plan(
        0,
        "kind = \"http\"\nurl = \"http://x/\"\nexpect-status = 42",
    )
    .expect_err("42");
    assert_eq!(e.key, "expect-status");
    let e = plan(0, "kind = \"tcp\"\naddress = \"nowhere\"").expect_err("address");
    assert_eq!(e.key, "address");
}

#[test]
fn only_stack_kinds_need_more_than_the_basic_primitives() {
    let exec = plan(0, "kind = \"exec\"\nservice = \"db\"\ncommand = [\"true\"]").expect("exec");
    assert_eq!(exec.check.service(), Some("db"));
    assert!(Capabilities::BASIC.lacks(exec.check.needs()).is_some());
    let tcp = plan(0, "kind = \"tcp\"\naddress = \"127.0.0.1:1\"").expect("tcp");
    assert_eq!(tcp.check.service(), None);
    assert!(Capabilities::BASIC.lacks(tcp.check.needs()).is_none());
}

/// A stack the network checks never touch.
struct NoStack;

#[async_trait]
impl Stack for NoStack {
    fn backend(&self) -> &'static str {
        "none"
    }
    fn services(&self) -> Vec<String> {
        Vec::new()
    }
    async fn up(&self) -> Result<(), crate::stack::StackError> {
        Ok(())
    }
    fn status(&self, s: &str) -> Result<crate::stack::ServiceStatus, crate::stack::StackError> {
        Err(crate::stack::StackError::UnknownService(s.into()))
    }
    async fn signal(&self, s: &str, _: crate::stack::Sig) -> Result<(), crate::stack::StackError> {
        Err(crate::stack::StackError::UnknownService(s.into()))
    }
    fn hold(&self, _: &str) -> Result<(), crate::stack::StackError> {
        Ok(())
    }
    async fn stop(&self, _: &str, _: Duration) -> Result<(), crate::stack::StackError> {
        Ok(())
    }
    async fn start(&self, _: &str) -> Result<(), crate::stack::StackError> {
        Ok(())
    }
    async fn pause(&self, _: &str) -> Result<(), crate::stack::StackError> {
        Ok(())
    }
    async fn unpause(&self, _: &str) -> Result<(), crate::stack::StackError> {
        Ok(())
    }
    async fn wait_exit(
        &self,
        _: &str,
        _: u64,
        _: Duration,
    ) -> Result<(), crate::stack::StackError> {
        Ok(())
    }
    async fn teardown(&self) -> Result<(), crate::stack::StackError> {
        Ok(())
    }
    fn kill_now(&self) {}
}

#[tokio::test]
async fn tcp_and_http_checks_tell_a_listener_from_a_closed_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        // Two connections: the tcp check's, then the http check's request.
        for _ in 0..2 {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_millis(200), sock.read(&mut buf)).await;
            let _ = sock
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);

    let tcp = plan(
        0,
        &format!("kind = \"tcp\"\naddress = \"127.0.0.1:{port}\""),
    )
    .expect("tcp");
    assert_eq!(tcp.check.attempt(&NoStack).await, Ok(()));
    let http = plan(
        0,
        &format!("kind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\nexpect-status = 204"),
    )
    .expect("http");
    assert_eq!(http.check.attempt(&NoStack).await, Ok(()));
    server.await.expect("server");

    let refused = plan(
        0,
        &format!("kind = \"tcp\"\naddress = \"127.0.0.1:{closed_port}\""),
    )
    .expect("tcp");
    let e = refused.check.attempt(&NoStack).await.expect_err("closed");
    assert!(e.message.contains("refused"), "{e}");
    assert!(
        e.proof.is_some(),
        "a refused connect proves the service down when it was issued"
    );
    let http = plan(
        0,
        &format!("kind = \"http\"\nurl = \"http://127.0.0.1:{closed_port}/\""),
    )
    .expect("http");
    let e = http.check.attempt(&NoStack).await.expect_err("closed");
    assert!(e.message.starts_with("connect: "), "{e}");
    assert!(
        e.proof.is_none(),
        "inside an HTTP client: only the start, {e}"
    );
}

/// A one-connection RESP server that answers every command with `reply`.
async fn resp_server(reply: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 256];
        while let Ok(n) = sock.read(&mut buf).await {
            if n == 0 || sock.write_all(reply.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    port
}

#[tokio::test]
async fn redis_check_wants_pong_and_reads_loading_as_down() {
    let up = resp_server("+PONG\r\n").await;
    let p = plan(
        0,
        &format!("kind = \"redis\"\naddress = \"127.0.0.1:{up}\""),
    )
    .expect("redis");
    assert_eq!(p.name, "redis-1");
    assert_eq!(p.check.attempt(&NoStack).await, Ok(()));

    let loading = resp_server("-LOADING Redis is loading the dataset in memory\r\n").await;
    let p = plan(
        0,
        &format!("kind = \"redis\"\naddress = \"127.0.0.1:{loading}\""),
    )
    .expect("redis");
    let e = p.check.attempt(&NoStack).await.expect_err("loading");
    assert!(e.message.contains("LOADING"), "{e}");
    assert!(
        e.proof.is_none(),
        "an error reply proves the service down only at the start"
    );
}

/// First attempt hangs for `hang`, every later one succeeds at once.
#[derive(Debug)]
struct HangsOnce {
    calls: std::sync::atomic::AtomicUsize,
    hang: Duration,
}

#[async_trait]
impl Check for HangsOnce {
    fn kind(&self) -> &'static str {
        "hangs-once"
    }
    async fn attempt(&self, _stack: &dyn Stack) -> Result<(), Failure> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(self.hang).await;
            return Err("hung".into());
        }
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[tokio::test]
async fn a_hanging_attempt_does_not_delay_the_next_and_is_cancelled_by_its_success() {
    let hang = Duration::from_secs(5);
    let plan = ProbePlan {
        name: "p".into(),
        check: Arc::new(HangsOnce {
            calls: Default::default(),
            hang,
        }),
        period: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
    };
    let history = Arc::new(History::in_memory());
    history.begin_trial(1, None);
    let prober = Arc::new(Prober::new(plan, Arc::new(NoStack)));
    let mut set = ProbeSet::start(&[prober], &history);
    let first = set.attempts.recv().await.expect("an attempt");
    set.stop().await;
    assert!(
        first.ok,
        "the first attempt sent on is the success: {first:?}"
    );
    history.end_trial();
    let records = history.records();
    let probes: Vec<&Event> = records
        .iter()
        .map(|r| &r.event)
        .filter(|e| matches!(e, Event::Probe { .. }))
        .collect();
    // Recorded in start order: the hanging attempt first, cancelled by the success
    // long before its own end.
    let Event::Probe {
        cancelled,
        latency_ns,
        start_ns,
        ..
    } = probes[0]
    else {
        unreachable!()
    };
    assert!(*cancelled, "{probes:?}");
    assert!(*latency_ns < hang.as_nanos() as u64, "{probes:?}");
    assert!(*start_ns < first.start_ns);
    let Event::Probe { ok, .. } = probes[1] else {
        unreachable!()
    };
    assert!(*ok, "{probes:?}");
}

/// The second attempt blocks its thread (a starved runtime) for `block`; every
/// attempt succeeds.
#[derive(Debug)]
struct BlocksOnce {
    calls: std::sync::atomic::AtomicUsize,
    block: Duration,
}

#[async_trait]
impl Check for BlocksOnce {
    fn kind(&self) -> &'static str {
        "blocks-once"
    }
    async fn attempt(&self, _stack: &dyn Stack) -> Result<(), Failure> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            std::thread::sleep(self.block);
        }
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[tokio::test]
async fn ticks_skipped_by_a_starved_loop_are_recorded_so_every_slot_is_accounted_for() {
    let period = Duration::from_millis(10);
    let plan = ProbePlan {
        name: "p".into(),
        check: Arc::new(BlocksOnce {
            calls: Default::default(),
            block: Duration::from_millis(55),
        }),
        period,
        timeout: Duration::from_secs(1),
    };
    let history = Arc::new(History::in_memory());
    history.begin_trial(1, None);
    let prober = Arc::new(Prober::new(plan, Arc::new(NoStack)));
    let mut set = ProbeSet::start(&[prober], &history);
    for _ in 0..6 {
        set.attempts.recv().await.expect("an attempt");
    }
    set.stop().await;
    history.end_trial();
    let dues: Vec<(u64, u32)> = history
        .records()
        .iter()
        .filter_map(|r| match r.event {
            Event::Probe {
                start_ns,
                late_ns,
                skipped,
                cancelled: false,
                ..
            } => Some((start_ns - late_ns, skipped)),
            _ => None,
        })
        .collect();
    assert!(
        dues.iter().any(|&(_, s)| s >= 1),
        "a 55 ms block of a 10 ms loop skips ticks: {dues:?}"
    );
    let per = period.as_nanos() as i128;
    for w in dues.windows(2) {
        let gap = i128::from(w[1].0) - i128::from(w[0].0);
        let slots = 1 + i128::from(w[1].1);
        assert!(
            (gap - slots * per).abs() < per / 2,
            "ticks {gap} ns apart, recorded as {slots} slot(s): {dues:?}"
        );
    }
}

/// First attempt panics, every later one succeeds.
#[derive(Debug, Default)]
struct PanicsOnce {
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Check for PanicsOnce {
    fn kind(&self) -> &'static str {
        "panics-once"
    }
    async fn attempt(&self, _stack: &dyn Stack) -> Result<(), Failure> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            panic!("scripted panic in a check");
        }
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[tokio::test]
async fn a_panicking_check_is_a_failed_attempt_and_the_loop_goes_on() {
    let plan = ProbePlan {
        name: "p".into(),
        check: Arc::new(PanicsOnce::default()),
        period: Duration::from_millis(5),
        timeout: Duration::from_secs(1),
    };
    let history = Arc::new(History::in_memory());
    let prober = Arc::new(Prober::new(plan, Arc::new(NoStack)));
    let mut set = ProbeSet::start(&[prober], &history);
    let first = set.attempts.recv().await.expect("an attempt");
    let second = set.attempts.recv().await.expect("another attempt");
    set.stop().await;
    assert!(!first.ok);
    assert!(
        first
            .error
            .as_deref()
            .is_some_and(|e| e.contains("panicked")),
        "{first:?}"
    );
    assert!(second.ok, "{second:?}");
}

#[test]
fn enough_attempts_may_be_in_flight_to_cover_a_whole_timeout() {
    let ms = Duration::from_millis;
    assert_eq!(in_flight_bound(ms(20), ms(1000)), 51);
    assert_eq!(in_flight_bound(ms(50), ms(30)), 2);
    assert_eq!(in_flight_bound(ms(5), ms(10_000)), MAX_IN_FLIGHT);
}

#[tokio::test]
async fn a_tcp_probe_takes_an_address_or_a_service_and_port() {
    assert_eq!(
        plan(0, "kind = \"tcp\"\nservice = \"db\"")
            .expect_err("no port")
            .key,
        "port"
    );
    assert_eq!(
        plan(0, "kind = \"tcp\"\nport = 1")
            .expect_err("no service")
            .key,
        "service"
    );
    let both = "kind = \"tcp\"\naddress = \"127.0.0.1:1\"\nservice = \"db\"\nport = 1";
    assert_eq!(plan(0, both).expect_err("both").key, "address");
    // The stack says where a service's port is: here (no docker) this host.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let p = plan(
        0,
        &format!("kind = \"tcp\"\nservice = \"db\"\nport = {port}"),
    )
    .expect("valid");
    assert_eq!(p.check.service(), Some("db"));
    assert_eq!(p.check.attempt(&NoStack).await, Ok(()));
}

/// A server that accepts `n` connections and closes each at once, as Docker's port
/// proxy does when nothing listens behind it.
async fn closing_server(n: usize) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        for _ in 0..n {
            let (sock, _) = listener.accept().await.expect("accept");
            drop(sock);
        }
    });
    port
}

#[tokio::test]
async fn a_connection_closed_within_the_hold_is_down_one_kept_open_is_up() {
    let closing = closing_server(2).await;
    let held = plan(
        0,
        &format!("kind = \"tcp\"\naddress = \"127.0.0.1:{closing}\"\nhold = \"200ms\""),
    )
    .expect("tcp");
    let e = held
        .check
        .attempt(&NoStack)
        .await
        .expect_err("closed at once");
    assert!(e.message.contains("closed by the other side"), "{e}");
    assert!(
        e.proof.is_none(),
        "a close proves the service down only at the start"
    );
    // Without a hold the same accept is up: what the proxy makes a plain connect see.
    let bare = plan(
        0,
        &format!("kind = \"tcp\"\naddress = \"127.0.0.1:{closing}\""),
    )
    .expect("tcp");
    assert_eq!(bare.check.attempt(&NoStack).await, Ok(()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let open = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(sock);
    });
    let held = plan(
        0,
        &format!("kind = \"tcp\"\naddress = \"127.0.0.1:{open}\"\nhold = \"20ms\""),
    )
    .expect("tcp");
    assert_eq!(held.check.attempt(&NoStack).await, Ok(()));
    server.abort();
}

#[test]
fn the_hold_defaults_to_5ms_only_for_a_fixed_address_on_docker() {
    let tcp = |text: &str| {
        let p = plan(0, text).expect("tcp");
        p.check
            .as_any()
            .downcast_ref::<super::tcp::Tcp>()
            .expect("a tcp check")
            .clone()
    };
    let published = tcp("kind = \"tcp\"\naddress = \"127.0.0.1:16379\"");
    assert_eq!(published.hold_on("docker"), super::tcp::DEFAULT_HOLD);
    assert_eq!(published.hold_on("process"), Duration::ZERO);
    let own = tcp("kind = \"tcp\"\nservice = \"redis\"\nport = 6379");
    assert_eq!(own.hold_on("docker"), Duration::ZERO);
    let set = tcp("kind = \"tcp\"\naddress = \"127.0.0.1:1\"\nhold = \"0s\"");
    assert_eq!(set.hold_on("docker"), Duration::ZERO);
    let e = plan(
        0,
        "kind = \"tcp\"\naddress = \"127.0.0.1:1\"\nhold = \"2s\"",
    )
    .expect_err("hold past the timeout");
    assert_eq!(e.key, "hold", "{e:?}");
}
