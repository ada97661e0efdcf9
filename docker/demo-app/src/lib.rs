//! demo-app: the system under test that rebound ships — an HTTP service with durable writes.
//!
//! Endpoints: `GET /healthz` (200 once ready), `POST /items` (append + fsync, then
//! 201 with the item id), `GET /items/{id}`. Start-up can be delayed
//! (`--startup-delay`) and can fail on purpose (`--fail-start-probability`): they are
//! the ground truth rebound's accuracy and verdict tests measure against. On SIGTERM
//! the service stops accepting, finishes in-flight requests and exits 0.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};

/// Command-line flags of demo-app.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "demo-app",
    about = "rebound's demo service: HTTP with durable writes"
)]
pub struct Args {
    /// TCP port to listen on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind (loopback by default; containers pass 0.0.0.0).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Directory holding `items.log` (created if missing).
    #[arg(long, default_value = "./demo-data")]
    pub data_dir: PathBuf,
    /// Sleep this long before listening (e.g. "300ms"): a known start-up time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub startup_delay: Duration,
    /// Exit 1 at start-up with this probability. Applies to restarts only: the first
    /// start in a fresh data directory always succeeds, so the stack can come up.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    pub fail_start_probability: f64,
}

fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|e| format!("not a number: {e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("probability must be within [0, 1], got {p}"))
    }
}

/// Errors that stop demo-app from starting.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory or its log could not be used.
    #[error("data directory {path}: {source}")]
    Data {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Start-up failed on purpose (`--fail-start-probability`).
    #[error("start-up failure injected (--fail-start-probability {0})")]
    InjectedStartFailure(f64),
}

/// One stored item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    /// Unique id (client-chosen or generated).
    pub id: String,
    /// Arbitrary JSON payload.
    #[serde(default)]
    pub value: serde_json::Value,
}

/// Body of `POST /items`: the id is optional.
#[derive(Debug, Deserialize)]
struct NewItem {
    id: Option<String>,
    #[serde(default)]
    value: serde_json::Value,
}

/// Append-only, fsynced item log with an in-memory index.
struct Store {
    log: Mutex<(File, HashMap<String, serde_json::Value>)>,
    next_id: AtomicU64,
}

impl Store {
    fn open(dir: &Path) -> Result<(Self, u64), AppError> {
        let data_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AppError::Data { path, source }
        };
        std::fs::create_dir_all(dir).map_err(data_err(dir))?;
        let path = dir.join("items.log");
        let mut index = HashMap::new();
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                let line = line.map_err(data_err(&path))?;
                // A torn last line (crash mid-append) is skipped: it was never acknowledged.
                if let Ok(item) = serde_json::from_str::<Item>(&line) {
                    index.insert(item.id, item.value);
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(data_err(&path))?;
        let boots = bump_boot_count(dir).map_err(data_err(dir))?;
        let next = index.len() as u64 + 1;
        Ok((
            Store {
                log: Mutex::new((file, index)),
                next_id: AtomicU64::new(next),
            },
            boots,
        ))
    }

    fn insert(&self, item: Item) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut guard = self
            .log
            .lock()
            .map_err(|_| std::io::Error::other("store lock poisoned"))?;
        guard.0.write_all(&line)?;
        guard.0.sync_data()?;
        guard.1.insert(item.id, item.value);
        Ok(())
    }

    fn get(&self, id: &str) -> Option<serde_json::Value> {
        self.log.lock().ok()?.1.get(id).cloned()
    }
}

/// Counts starts in `boot-count` so that restarts can be told from the first start.
fn bump_boot_count(dir: &Path) -> std::io::Result<u64> {
    let path = dir.join("boot-count");
    let previous = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    std::fs::write(&path, format!("{}\n", previous + 1))?;
    Ok(previous + 1)
}

fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/items", post(create_item))
        .route("/items/{id}", get(read_item))
        .with_state(store)
}

async fn create_item(
    State(store): State<Arc<Store>>,
    Json(new): Json<NewItem>,
) -> Result<(StatusCode, Json<Item>), (StatusCode, String)> {
    // A generated id never lands on an item a client stored under the same name.
    let id = match new.id {
        Some(id) => id,
        None => loop {
            let candidate = store.next_id.fetch_add(1, Ordering::Relaxed).to_string();
            if store.get(&candidate).is_none() {
                break candidate;
            }
        },
    };
    let item = Item {
        id,
        value: new.value,
    };
    let stored = item.clone();
    // fsync is blocking: keep it off the async workers.
    tokio::task::spawn_blocking(move || store.insert(stored))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(item)))
}

async fn read_item(
    State(store): State<Arc<Store>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Item>, StatusCode> {
    store
        .get(&id)
        .map(|value| Json(Item { id, value }))
        .ok_or(StatusCode::NOT_FOUND)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers the default disposition (terminate) still applies.
        _ => std::future::pending::<()>().await,
    }
}

/// Runs demo-app until SIGTERM/SIGINT. Returns an error if start-up fails.
pub async fn run(args: Args) -> Result<(), AppError> {
    let (store, boots) = Store::open(&args.data_dir)?;
    if boots > 1
        && args.fail_start_probability > 0.0
        && rand::random::<f64>() < args.fail_start_probability
    {
        return Err(AppError::InjectedStartFailure(args.fail_start_probability));
    }
    tokio::time::sleep(args.startup_delay).await;
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })?;
    eprintln!("demo-app: listening on {addr} (boot {boots})");
    axum::serve(listener, router(Arc::new(store)))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| AppError::Bind { addr, source })?;
    eprintln!("demo-app: shut down gracefully");
    Ok(())
}

/// Entry point shared by the `demo-app` binary and `rebound demo-app`: builds a
/// runtime, runs the service and maps the result to a process exit code.
pub fn main_with(args: Args) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo-app: cannot start runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-app: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_survive_reopen_and_torn_lines_are_skipped() {
        let dir = tempfile_dir();
        let (store, boots) = Store::open(&dir).expect("open");
        assert_eq!(boots, 1);
        store
            .insert(Item {
                id: "a".into(),
                value: serde_json::json!(1),
            })
            .expect("insert");
        drop(store);
        // Simulate a crash in the middle of an append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("items.log"))
            .expect("log");
        f.write_all(b"{\"id\":\"b\",\"val").expect("torn write");
        let (store, boots) = Store::open(&dir).expect("reopen");
        assert_eq!(boots, 2);
        assert_eq!(store.get("a"), Some(serde_json::json!(1)));
        assert_eq!(store.get("b"), None);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn probability_flag_rejects_out_of_range() {
        assert!(parse_probability("1.5").is_err());
        assert!(parse_probability("x").is_err());
        assert_eq!(parse_probability("0.25"), Ok(0.25));
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "demo-app-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
