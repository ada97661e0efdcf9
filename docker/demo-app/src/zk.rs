//! ZooKeeper registration: an ephemeral znode that names this instance (seed 002).
//!
//! Like a Kafka broker under `/brokers/ids`, demo-app registers an ephemeral node at
//! start. After a hard kill the old session still owns the node until ZooKeeper
//! expires it (the session timeout), so the restarted instance sees `NodeExists`
//! and is not ready until then. A graceful stop closes the session and the node
//! goes at once. This module retries and logs every `NodeExists` so the delay is
//! visible in the container log as well as in rebound's measurement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Pause between attempts while the node exists or ZooKeeper is unreachable.
const RETRY: Duration = Duration::from_millis(250);

/// The registration's state, shared with the HTTP handlers.
#[derive(Default)]
pub struct Registration {
    registered: AtomicBool,
    /// Human-readable reason while not registered.
    status: Mutex<String>,
    /// The client holding the session; dropped (session closed) on shutdown.
    client: Mutex<Option<zookeeper_client::Client>>,
    /// Set by [`Registration::close`]: a closed session is not re-registered.
    closing: AtomicBool,
    /// `--plant give-up-on-node-exists`: the file counting starts in a row that
    /// met `NodeExists` before they registered.
    streak_file: Option<std::path::PathBuf>,
}

/// Starts in a row that met `NodeExists` after which the planted bug gives up.
const GIVE_UP_AFTER: u32 = 2;

impl Registration {
    /// A registration with the planted bug `give-up-on-node-exists`: a start
    /// that meets `NodeExists` when the previous start also met it (and was
    /// killed before it registered: two hard kills within the session timeout)
    /// gives up registering for good. `streak_file` keeps the count across starts.
    pub fn giving_up_on_node_exists(streak_file: std::path::PathBuf) -> Self {
        Registration {
            streak_file: Some(streak_file),
            ..Registration::default()
        }
    }

    /// The planted bug's count of starts in a row that met `NodeExists`.
    fn streak(&self) -> u32 {
        self.streak_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn set_streak(&self, n: u32) {
        if let Some(f) = &self.streak_file {
            if let Err(e) = std::fs::write(f, format!("{n}\n")) {
                eprintln!("demo-app: writing {}: {e}", f.display());
            }
        }
    }

    /// Whether the ephemeral node is ours.
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::SeqCst)
    }

    /// Why it is not (or "registered ...").
    pub fn status(&self) -> String {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set_status(&self, s: String) {
        if let Ok(mut g) = self.status.lock() {
            *g = s;
        }
    }

    /// Closes the session (a graceful stop): ZooKeeper deletes the node at once.
    pub async fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let client = self.client.lock().ok().and_then(|mut c| c.take());
        if client.is_some() {
            drop(client);
            // The close request is sent by the session task: give it a moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
            eprintln!("demo-app: zookeeper session closed");
        }
    }
}

/// Registers `path` (ephemeral, data = `id`) at `servers`, retrying until it
/// succeeds; registers again if the session later expires (the node is gone then).
pub async fn register(
    servers: String,
    path: String,
    id: String,
    session_timeout: Duration,
    reg: Arc<Registration>,
) {
    loop {
        let mut watcher = register_once(&servers, &path, &id, session_timeout, &reg).await;
        loop {
            let state = watcher.changed().await;
            if state.is_terminated() {
                break;
            }
        }
        if reg.closing.load(Ordering::SeqCst) {
            return;
        }
        reg.registered.store(false, Ordering::SeqCst);
        if let Ok(mut c) = reg.client.lock() {
            c.take();
        }
        let msg = format!("zookeeper session ended; {path} is gone, registering again");
        eprintln!("demo-app: {msg}");
        reg.set_status(msg);
    }
}

async fn register_once(
    servers: &str,
    path: &str,
    id: &str,
    session_timeout: Duration,
    reg: &Registration,
) -> zookeeper_client::StateWatcher {
    let started = Instant::now();
    let mut node_exists = 0u32;
    reg.set_status(format!("connecting to zookeeper at {servers}"));
    loop {
        let client = match zookeeper_client::Client::connector()
            .with_session_timeout(session_timeout)
            .with_connection_timeout(Duration::from_secs(2))
            .connect(servers)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                reg.set_status(format!("zookeeper at {servers} unreachable: {e}"));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if let Some(parent) = path
            .rsplit_once('/')
            .map(|(p, _)| p)
            .filter(|p| !p.is_empty())
        {
            let opts = zookeeper_client::CreateMode::Persistent
                .with_acls(zookeeper_client::Acls::anyone_all());
            if let Err(e) = client.mkdir(parent, &opts).await {
                if !matches!(e, zookeeper_client::Error::NodeExists) {
                    reg.set_status(format!("creating {parent}: {e}"));
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        let opts =
            zookeeper_client::CreateMode::Ephemeral.with_acls(zookeeper_client::Acls::anyone_all());
        loop {
            match client.create(path, id.as_bytes(), &opts).await {
                Ok(_) => {
                    let waited = started.elapsed();
                    let msg = format!(
                        "registered {path} (session 0x{:x}, timeout {:?}) after {} NodeExists in {:.3}s",
                        client.session_id().0,
                        client.session_timeout(),
                        node_exists,
                        waited.as_secs_f64()
                    );
                    eprintln!("demo-app: {msg}");
                    reg.set_status(msg);
                    reg.set_streak(0);
                    let watcher = client.state_watcher();
                    if let Ok(mut c) = reg.client.lock() {
                        *c = Some(client);
                    }
                    reg.registered.store(true, Ordering::SeqCst);
                    return watcher;
                }
                Err(zookeeper_client::Error::NodeExists) => {
                    node_exists += 1;
                    if node_exists == 1 && reg.streak_file.is_some() {
                        let streak = reg.streak() + 1;
                        reg.set_streak(streak);
                        if streak >= GIVE_UP_AFTER {
                            let msg = format!(
                                "NodeExists in {streak} starts in a row: giving up on {path} for good (planted bug give-up-on-node-exists)"
                            );
                            eprintln!("demo-app: {msg}");
                            reg.set_status(msg);
                            return std::future::pending().await;
                        }
                    }
                    let msg = format!(
                        "NodeExists: {path} is still held by an earlier session (waiting for it to expire, {:.1}s so far)",
                        started.elapsed().as_secs_f64()
                    );
                    if node_exists == 1 || node_exists.is_multiple_of(8) {
                        eprintln!("demo-app: {msg}");
                    }
                    reg.set_status(msg);
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => {
                    reg.set_status(format!("creating {path}: {e}"));
                    tokio::time::sleep(RETRY).await;
                    break; // reconnect
                }
            }
        }
    }
}
