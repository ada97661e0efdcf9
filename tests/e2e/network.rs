//! Network faults through rebound's TCP proxy, measured by a real client against a
//! real server on loopback: the latency a client sees, the rate it gets, a black
//! hole it hangs in, a reset it is told about — and, through the binary, a
//! `link-blackhole` on the path a probe takes, healed on every path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rebound::proxy::{Direction, LinkFault, Proxy};

use crate::helpers::*;

/// An echo server on loopback (one thread per connection); bounded: it stops
/// accepting after 200 connections.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in l.incoming().take(200) {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A proxy link `db` in front of an echo server, on its own runtime (kept with it).
fn echo_proxy() -> (tokio::runtime::Runtime, Proxy) {
    let rt = runtime();
    let upstream = echo_server();
    let proxy = rt
        .block_on(Proxy::bind(
            "db",
            "127.0.0.1:0".parse().expect("addr"),
            upstream,
        ))
        .expect("proxy");
    (rt, proxy)
}

/// Round trips of one byte over one connection, in ms.
fn round_trips(addr: SocketAddr, n: usize) -> Vec<f64> {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut b = [0u8; 1];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            c.write_all(b"x").expect("write");
            c.read_exact(&mut b).expect("echo");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn latency_through_the_proxy_is_the_configured_delay_at_p50() {
    let (_rt, proxy) = echo_proxy();
    let addr = proxy.local_addr();
    let clean = median(round_trips(addr, 20));
    // One way: a round trip grows by the delay; both ways: by twice the delay.
    for (direction, delay_ms, factor) in [
        (Direction::Upstream, 50u64, 1.0),
        (Direction::Downstream, 80, 1.0),
        (Direction::Both, 40, 2.0),
    ] {
        proxy.set(Some(LinkFault::Latency {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(5),
            direction,
            seed: 1,
        }));
        let slow = median(round_trips(addr, 21));
        let added = slow - clean;
        let want = delay_ms as f64 * factor;
        assert!(
            (added - want).abs() <= 5.0,
            "{direction:?} {delay_ms} ms: round trip p50 {slow:.1} ms, {added:.1} ms over the clean {clean:.1} ms, want {want} ± 5"
        );
    }
    proxy.set(None);
    let healed = median(round_trips(addr, 20));
    assert!(
        healed < clean + 5.0,
        "healed p50 {healed:.1} vs clean {clean:.1}"
    );
}

#[test]
fn bandwidth_caps_the_rate_a_client_gets() {
    let (_rt, proxy) = echo_proxy();
    proxy.set(Some(LinkFault::Bandwidth {
        bytes_per_sec: 100_000,
        direction: Direction::Downstream,
    }));
    let mut c = TcpStream::connect(proxy.local_addr()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let data = vec![7u8; 150_000];
    let mut writer = c.try_clone().expect("clone");
    let t = Instant::now();
    std::thread::spawn(move || writer.write_all(&data));
    let mut got = vec![0u8; 150_000];
    c.read_exact(&mut got).expect("echoed");
    let secs = t.elapsed().as_secs_f64();
    // 150 kB at 100 kB/s: 1.5 s (the first chunk leaves at once: at least 1.3 s,
    // whatever the load). The upper bound only catches a rate off by half or
    // more: a loaded machine delays the pieces, it never speeds them up.
    assert!(
        (1.3..3.0).contains(&secs),
        "150 kB took {secs:.2} s at 100 kB/s"
    );
    assert!(got.iter().all(|b| *b == 7));
}

#[test]
fn lifting_a_slow_link_releases_what_waits_on_it_at_once() {
    let (_rt, proxy) = echo_proxy();
    // 20 kB at 1 kB/s would take 20 s; the fault is lifted after 300 ms.
    proxy.set(Some(LinkFault::Bandwidth {
        bytes_per_sec: 1_000,
        direction: Direction::Downstream,
    }));
    let mut c = TcpStream::connect(proxy.local_addr()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let t = Instant::now();
    c.write_all(&[1u8; 20_000]).expect("write");
    std::thread::sleep(Duration::from_millis(300));
    proxy.set(None);
    let mut got = vec![0u8; 20_000];
    c.read_exact(&mut got).expect("echoed");
    let secs = t.elapsed().as_secs_f64();
    // Still slow it would take 20 s; released, well under a second after 0.3 s
    // (bound generous for a loaded machine).
    assert!(
        secs < 5.0,
        "the echo took {secs:.2} s after the slow link was lifted at 0.3 s"
    );
}

#[test]
fn a_blackhole_hangs_the_client_and_a_reset_is_seen_as_one() {
    let (_rt, proxy) = echo_proxy();
    let addr = proxy.local_addr();
    // An open connection and a new one both hang: accepted, never answered.
    let mut open = TcpStream::connect(addr).expect("connect");
    open.set_read_timeout(Some(Duration::from_millis(400)))
        .expect("timeout");
    round_trips(addr, 1);
    proxy.set(Some(LinkFault::Blackhole));
    let mut fresh = TcpStream::connect(addr).expect("a blackholed link still accepts");
    fresh
        .set_read_timeout(Some(Duration::from_millis(400)))
        .expect("timeout");
    let mut b = [0u8; 1];
    for c in [&mut open, &mut fresh] {
        c.write_all(b"x").expect("write");
        let e = c.read_exact(&mut b).expect_err("no answer in a black hole");
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e:?}"
        );
    }
    // Lifted: what was sent meanwhile is answered.
    proxy.set(None);
    for c in [&mut open, &mut fresh] {
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        c.read_exact(&mut b).expect("answered once lifted");
        assert_eq!(&b, b"x");
    }
    // Reset: the open connections are reset, and so is a new one.
    proxy.set(Some(LinkFault::Reset));
    std::thread::sleep(Duration::from_millis(100));
    // (Read without writing first: a write after the RST would consume the error
    // and the read would then see a plain end of stream.)
    for c in [&mut open, &mut fresh] {
        let e = c.read_exact(&mut b).expect_err("reset");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
    }
    let mut new = TcpStream::connect(addr).expect("connect");
    new.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let e = new.read_exact(&mut b).expect_err("reset");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
    proxy.set(None);
    assert_eq!(round_trips(addr, 3).len(), 3, "the link works again");
}

/// A reset storm (`ResetEvery`): a new connection gets through and works, and is
/// reset once it has lived `every` under the storm — an open one too; lifted, a
/// connection lives on.
#[test]
fn a_reset_storm_lets_connections_through_and_resets_each_after_every() {
    let (_rt, proxy) = echo_proxy();
    let addr = proxy.local_addr();
    let mut open = TcpStream::connect(addr).expect("connect");
    open.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut b = [0u8; 1];
    open.write_all(b"x").expect("write");
    open.read_exact(&mut b).expect("echo");
    let every = Duration::from_millis(400);
    proxy.set(Some(LinkFault::ResetEvery { every }));
    let storm = Instant::now();
    let fresh_at = Instant::now();
    let mut fresh = TcpStream::connect(addr).expect("a storm lets connections through");
    fresh
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    fresh.write_all(b"y").expect("write");
    fresh
        .read_exact(&mut b)
        .expect("it works until its time is up");
    assert_eq!(&b, b"y");
    // Both are reset `every` after the storm began / they opened: a read without
    // a write sees the RST then.
    for (c, since) in [(&mut open, storm), (&mut fresh, fresh_at)] {
        let e = c.read_exact(&mut b).expect_err("reset");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
        let lived = since.elapsed();
        // Never early; late only by scheduling (a generous bound: not a timing test).
        assert!(
            lived + Duration::from_millis(5) >= every && lived < every + Duration::from_secs(2),
            "reset after {lived:?}, every {every:?}"
        );
    }
    proxy.set(None);
    let mut calm = TcpStream::connect(addr).expect("connect");
    calm.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    std::thread::sleep(every + Duration::from_millis(200));
    calm.write_all(b"z").expect("write");
    calm.read_exact(&mut b)
        .expect("no storm: the connection lives on");
    assert_eq!(&b, b"z");
}

/// A probe that reaches demo-app through a link: blackholing the link for 1.5 s
/// makes the service unreachable (the probe times out) without touching the
/// process; when the fault lifts, recovery is measured; SIGINT mid-fault heals.
#[test]
fn a_blackholed_link_is_a_measured_outage_and_is_lifted_on_every_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, front) = (free_port(), free_port());
    let scenario = format!(
        "name = \"link\"\n{}\n\
         [[stack.link]]\nname = \"front\"\nto = \"app\"\nlisten = \"127.0.0.1:{front}\"\nupstream = \"127.0.0.1:{app}\"\n\n\
         [[fault]]\nkind = \"link-blackhole\"\ntarget = \"front\"\nduration = \"1500ms\"\n\n\
         [[probe]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{front}/healthz\"\nperiod = \"20ms\"\ntimeout = \"200ms\"\n\n\
         [slo]\nsuccess-rate = 0.5\nrecover-within = \"5s\"\n\n[run]\ntrials = 2\nwarm-up = \"200ms\"\n",
        demo_service(app, &[], "always", "0s"),
    );
    let path = write_scenario(dir.path(), &scenario);
    let out = dir.path().join("run");
    let o = run_scenario(&path, &out, &[]);
    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    let (h, rows) = read_csv(&out.join("trials.csv"));
    assert_eq!(
        column(&h, &rows, "outcome"),
        ["pass", "pass"],
        "{}",
        text(&o)
    );
    // Down for the whole black hole (1.5 s: never sooner, whatever the load), and
    // back within a second of the lift (a generous bound: load delays probes by
    // tens of milliseconds, a link that kept holding data would not recover at
    // all within the 5 s window); the service itself never restarted.
    for r in column(&h, &rows, "recovery_ms") {
        let ms: f64 = r.parse().expect("recovery");
        assert!((1500.0..2500.0).contains(&ms), "recovery {ms} ms");
    }
    assert_eq!(column(&h, &rows, "restarts"), ["0", "0"]);
    let history = std::fs::read_to_string(out.join("history.jsonl")).expect("history");
    assert!(
        history.contains("link front: blackhole lifted after 1.5s"),
        "{history}"
    );

    // Validation: a link fault names a link.
    let bad = write_scenario(
        &dir.path().join("bad"),
        &scenario.replace("target = \"front\"", "target = \"back\""),
    );
    let b = run_scenario(&bad, &dir.path().join("bad-run"), &[]);
    assert_eq!(b.status.code(), Some(3), "{}", text(&b));
    assert!(
        text(&b).contains("unknown link `back`; links are: front"),
        "{}",
        text(&b)
    );

    // SIGINT in the middle of the black hole: the run heals (lifts it) and ends 130,
    // and the port is free again (the proxy is gone with the stack).
    let long = write_scenario(
        &dir.path().join("long"),
        &scenario.replace("duration = \"1500ms\"", "duration = \"30s\""),
    );
    let child = rebound()
        .args(["run", long.to_str().expect("utf8"), "--out"])
        .arg(dir.path().join("long-run"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    let mut injected = false;
    while started.elapsed() < Duration::from_secs(20) {
        let h =
            std::fs::read_to_string(dir.path().join("long-run/history.jsonl")).unwrap_or_default();
        if h.contains("\"fault-ok\"") {
            injected = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(injected, "the black hole began");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let h = std::fs::read_to_string(dir.path().join("long-run/history.jsonl")).expect("history");
    assert!(h.contains("lifted blackhole on link front"), "{h}");
    assert!(
        TcpListener::bind(("127.0.0.1", front)).is_ok(),
        "the link's port is free after the run"
    );
}
