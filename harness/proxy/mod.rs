//! The TCP fault proxy: one listener per link, forwarding every connection to its
//! upstream and applying the link's current fault to new and existing connections
//! alike — `latency` (plus seeded jitter, per direction), `bandwidth`, `blackhole`
//! (connections are accepted and nothing is answered), `reset` (every
//! connection, new or open, is closed with a TCP RST) and a reset storm (each
//! connection is reset a while after it opened). User space only, so it works on a
//! kernel without netem.
//!
//! Each direction of a connection is a pipeline: a reader stamps every chunk with
//! the time it arrived, a writer delivers it no earlier than that time plus the
//! delay (so latency does not cost throughput) and no faster than the bandwidth.
//!
//! [`control`] serves the links of a standalone proxy (`rebound proxy`, the
//! `rebound/proxy` image of the docker backend) over a small HTTP API.

pub mod control;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which way a fault acts on a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Both ways.
    #[default]
    Both,
    /// Client to upstream only (requests).
    Upstream,
    /// Upstream to client only (responses).
    Downstream,
}

impl Direction {
    fn applies(self, upstream: bool) -> bool {
        match self {
            Direction::Both => true,
            Direction::Upstream => upstream,
            Direction::Downstream => !upstream,
        }
    }
}

/// A fault on a link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum LinkFault {
    /// Every chunk is delivered `delay` ± up to `jitter` (uniform, seeded) after it
    /// arrived, in order.
    Latency {
        /// Added delay.
        #[serde(with = "humantime_serde")]
        delay: Duration,
        /// Largest deviation from `delay`.
        #[serde(with = "humantime_serde")]
        jitter: Duration,
        /// Which way.
        direction: Direction,
        /// Jitter seed.
        seed: u64,
    },
    /// At most `bytes_per_sec` per connection and direction.
    Bandwidth {
        /// The rate.
        bytes_per_sec: u64,
        /// Which way.
        direction: Direction,
    },
    /// Connections are accepted, nothing is forwarded either way; when the fault is
    /// lifted, what was sent meanwhile flows on (as after a network black hole).
    Blackhole,
    /// Every open connection is reset, and new ones are reset at once.
    Reset,
    /// A reset storm: new connections pass, and each is reset `every` after it
    /// opened (or after the storm began), so no connection lives longer.
    ResetEvery {
        /// Longest life of a connection.
        #[serde(with = "humantime_serde")]
        every: Duration,
    },
}

impl LinkFault {
    /// A short description for records.
    pub fn describe(&self) -> String {
        match self {
            LinkFault::Latency {
                delay,
                jitter,
                direction,
                ..
            } => format!("latency {delay:?} ± {jitter:?} ({direction:?})").to_lowercase(),
            LinkFault::Bandwidth {
                bytes_per_sec,
                direction,
            } => format!("bandwidth {bytes_per_sec} B/s ({direction:?})").to_lowercase(),
            LinkFault::Blackhole => "blackhole".into(),
            LinkFault::Reset => "reset".into(),
            LinkFault::ResetEvery { every } => format!("reset every {every:?}"),
        }
    }
}

/// One running link: a listener and the connections it forwards.
pub struct Proxy {
    name: String,
    local: SocketAddr,
    upstream: String,
    fault: watch::Sender<Option<LinkFault>>,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("name", &self.name)
            .field("local", &self.local)
            .field("upstream", &self.upstream)
            .finish()
    }
}

impl Proxy {
    /// Listens on `listen` and forwards to `upstream` (`host:port`, resolved again
    /// for every connection, so a dependency that comes back at a new address is
    /// found).
    pub async fn bind(
        name: &str,
        listen: SocketAddr,
        upstream: impl std::fmt::Display,
    ) -> std::io::Result<Proxy> {
        let upstream = upstream.to_string();
        let listener = TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let (fault, _) = watch::channel(None);
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let fault = fault.clone();
            let upstream = upstream.clone();
            let conns = Arc::clone(&conns);
            tokio::spawn(async move {
                let mut serial = 0u64;
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        // Out of descriptors, say: do not spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    serial += 1;
                    let rx = fault.subscribe();
                    let task = tokio::spawn(connection(client, upstream.clone(), rx, serial));
                    let mut all = conns.lock().unwrap_or_else(|p| p.into_inner());
                    all.retain(|t| !t.is_finished());
                    all.push(task);
                }
            })
        };
        Ok(Proxy {
            name: name.to_string(),
            local,
            upstream,
            fault,
            accept,
            conns,
        })
    }

    /// The link's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Where it forwards to (`host:port`).
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Sets (or, with None, lifts) the link's fault; returns the previous one.
    pub fn set(&self, fault: Option<LinkFault>) -> Option<LinkFault> {
        self.fault.send_replace(fault)
    }

    /// The current fault.
    pub fn fault(&self) -> Option<LinkFault> {
        self.fault.borrow().clone()
    }

    /// Stops listening and closes every connection.
    pub fn shutdown(&self) {
        self.accept.abort();
        for t in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Closes a socket with RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

fn is_blackhole(f: &Option<LinkFault>) -> bool {
    matches!(f, Some(LinkFault::Blackhole))
}

fn is_reset(f: &Option<LinkFault>) -> bool {
    matches!(f, Some(LinkFault::Reset))
}

/// Waits while the link is blackholed; false when it is reset meanwhile.
async fn pass(rx: &mut watch::Receiver<Option<LinkFault>>) -> bool {
    loop {
        let now = rx.borrow_and_update().clone();
        if is_reset(&now) {
            return false;
        }
        if !is_blackhole(&now) {
            return true;
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}

async fn connection(
    client: TcpStream,
    upstream: String,
    mut rx: watch::Receiver<Option<LinkFault>>,
    serial: u64,
) {
    let _ = client.set_nodelay(true);
    // A connection accepted during a black hole waits; one its client gives up on
    // meanwhile is dropped (never forwarded once the hole lifts).
    loop {
        if !is_blackhole(&rx.borrow_and_update()) {
            break;
        }
        tokio::select! {
            c = rx.changed() => if c.is_err() { return; },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
                match socket2::SockRef::from(&client).peek(&mut probe) {
                    Ok(0) => return,
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return,
                    _ => {}
                }
            }
        }
    }
    if !pass(&mut rx).await {
        reset(&client);
        return;
    }
    let server = match tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect(upstream.as_str()),
    )
    .await
    {
        Ok(Ok(server)) => server,
        // The upstream refuses or does not answer: the client's accepted
        // connection is reset (it cannot see a refusal: its connect succeeded).
        _ => {
            reset(&client);
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let client = Arc::new(client);
    let server = Arc::new(server);
    let mut up = AbortOnDrop::spawn(direction(
        Arc::clone(&client),
        Arc::clone(&server),
        rx.clone(),
        true,
        serial,
    ));
    let mut down = AbortOnDrop::spawn(direction(
        Arc::clone(&server),
        Arc::clone(&client),
        rx.clone(),
        false,
        serial,
    ));
    // A reset ends both directions at once, with RST on both sockets; a storm
    // does so once the connection has lived `every` under it.
    let mut storm_rx = rx.clone();
    let reset_now = async {
        loop {
            let now = storm_rx.borrow_and_update().clone();
            let changed = match now {
                Some(LinkFault::Reset) => return,
                Some(LinkFault::ResetEvery { every }) => tokio::select! {
                    () = tokio::time::sleep(every) => return,
                    c = storm_rx.changed() => c,
                },
                _ => storm_rx.changed().await,
            };
            if changed.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let reset_hit = tokio::select! {
        biased;
        () = reset_now => true,
        _ = async { let _ = tokio::join!(&mut up.0, &mut down.0); } => false,
    };
    // The directions also stop on a reset, and may have stopped first: either way
    // the sockets, closed when this returns (the last holder), close with an RST.
    if reset_hit || is_reset(&rx.borrow()) {
        reset(&client);
        reset(&server);
    }
}

/// A task that ends when its handle is dropped (a connection's two directions end
/// with the connection, and the connection with the proxy).
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    fn spawn(f: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        AbortOnDrop(tokio::spawn(f))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One direction: read chunks from `from`, deliver them to `to` under the fault.
async fn direction(
    from: Arc<TcpStream>,
    to: Arc<TcpStream>,
    rx: watch::Receiver<Option<LinkFault>>,
    upstream: bool,
    serial: u64,
) {
    // Bounded in chunks of at most 16 KiB: at most 1 MiB in flight per direction.
    let (tx, mut queue) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    // The peer ended with an RST (or an error), not a FIN: pass that on as an RST.
    let aborted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut read_rx = rx.clone();
    let reader = {
        let from = Arc::clone(&from);
        let aborted = Arc::clone(&aborted);
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                if !pass(&mut read_rx).await {
                    return;
                }
                // Wait for data, or for the fault to change (a blackhole stops reading).
                let n = tokio::select! {
                    r = from.readable() => {
                        if r.is_err() { return; }
                        match from.try_read(&mut buf) {
                            Ok(0) => { drop(tx); return; }
                            Ok(n) => n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                            Err(_) => {
                                aborted.store(true, std::sync::atomic::Ordering::SeqCst);
                                return;
                            }
                        }
                    }
                    c = read_rx.changed() => { if c.is_err() { return; } continue; }
                };
                if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    };
    let mut write_rx = rx;
    let writer = async move {
        // Jitter: seeded by the fault's seed, the connection and the direction, so
        // the same schedule replays the same delays.
        let stream = serial.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(upstream);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(stream);
        let mut last_seed = None;
        // Bandwidth pacing: the earliest instant the next byte may leave.
        let mut next_free = Instant::now();
        while let Some((arrived, chunk)) = queue.recv().await {
            // One jitter draw per chunk, in [-1, 1].
            let draw: f64 = rng.random_range(-1.0..=1.0);
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                // The fault as it is now decides when the next piece may leave; when
                // it changes while a piece waits, the piece is planned again (a
                // lifted fault releases it at once).
                let fault = write_rx.borrow_and_update().clone();
                let mut due = arrived;
                let mut piece = rest.len();
                match &fault {
                    Some(LinkFault::Latency {
                        delay,
                        jitter,
                        direction,
                        seed: s,
                    }) if direction.applies(upstream) => {
                        if last_seed != Some(*s) {
                            rng = rand_chacha::ChaCha8Rng::seed_from_u64(s ^ stream);
                            last_seed = Some(*s);
                        }
                        let d = (delay.as_secs_f64() + draw * jitter.as_secs_f64()).max(0.0);
                        due += Duration::from_secs_f64(d);
                    }
                    Some(LinkFault::Bandwidth {
                        bytes_per_sec,
                        direction,
                    }) if direction.applies(upstream) && *bytes_per_sec > 0 => {
                        // Pieces of a twentieth of a second, so a slow rate paces
                        // evenly and a lifted fault takes effect within 50 ms.
                        piece = piece.min((*bytes_per_sec / 20).max(1) as usize);
                        due = due.max(next_free);
                    }
                    _ => {}
                }
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    c = write_rx.changed() => {
                        if c.is_err() { return; }
                        continue;
                    }
                }
                if !pass(&mut write_rx).await {
                    return;
                }
                if write_all(&to, &rest[..piece]).await.is_err() {
                    return;
                }
                if let Some(LinkFault::Bandwidth { bytes_per_sec, .. }) = &fault {
                    if *bytes_per_sec > 0 {
                        next_free = due.max(Instant::now())
                            + Duration::from_secs_f64(piece as f64 / *bytes_per_sec as f64);
                    }
                }
                rest = &rest[piece..];
            }
        }
        // The other side closed its sending half: pass the FIN on — unless the
        // link is being reset or the peer aborted, which must reach the other
        // peer as an RST, not a FIN.
        if is_reset(&write_rx.borrow()) || aborted.load(std::sync::atomic::Ordering::SeqCst) {
            reset(&to);
        } else {
            let _ = shutdown_write(&to);
        }
    };
    tokio::join!(reader, writer);
}

async fn write_all(to: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn shutdown_write(to: &TcpStream) -> std::io::Result<()> {
    socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write)
}
