//! demo-app: the system under test that rebound ships — an HTTP service with durable writes.
//!
//! Endpoints: `GET /healthz` (200 once listening), `GET /readyz` (200 when its
//! database answers), `POST /items` (durable write, then 201 with the item id),
//! `GET /items/{id}`. Items live in an fsynced file (default) or in PostgreSQL
//! (`--postgres`), read through a Redis cache when `--redis` is given. Start-up can be delayed
//! (`--startup-delay`) and can fail on purpose (`--fail-start-probability`): they are
//! the ground truth rebound's accuracy and verdict tests measure against. On SIGTERM
//! the service stops accepting, finishes in-flight requests and exits 0.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};

pub mod broker;
pub mod cache;
pub mod deps;
pub mod pg;
pub mod sqlite;
pub mod zk;

use broker::Broker;
use cache::RedisCache;
use pg::PgStore;
use sqlite::SqliteStore;
use zk::Registration;

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
    /// Store items in PostgreSQL (libpq keywords: "host=db user=postgres dbname=postgres").
    #[arg(long)]
    pub postgres: Option<String>,
    /// Read items through a Redis cache at host:port.
    #[arg(long)]
    pub redis: Option<String>,
    /// UNSAFE, for proving rebound catches data loss: acknowledge file-store writes
    /// before they are written; a background flush writes them every 250 ms, so a
    /// SIGKILL loses the writes acknowledged since the last flush.
    #[arg(long)]
    pub ack_before_fsync: bool,
    /// UNSAFE, for power-loss tests: write each item to the file-store and
    /// acknowledge it without fsync. A SIGKILL loses nothing (the kernel's page cache
    /// keeps the write); a power cut loses what was not yet written back.
    #[arg(long, conflicts_with = "ack_before_fsync")]
    pub no_fsync: bool,
    /// Store each item in its own file, as an application writing documents does:
    /// `<data-dir>/items/<id>.json` written to a temporary name, fsynced, renamed
    /// into place and its directory fsynced before the write is acknowledged.
    #[arg(long, conflicts_with_all = ["sqlite", "postgres", "ack_before_fsync", "no_fsync"])]
    pub file_per_item: bool,
    /// UNSAFE, for power-loss tests: with --file-per-item, acknowledge without
    /// fsyncing the directory after the rename. A SIGKILL loses nothing; a power
    /// cut can lose the rename, and with it the acknowledged item.
    #[arg(long, requires = "file_per_item")]
    pub no_dir_fsync: bool,
    /// Store items in SQLite (`<data-dir>/items.db`), with `POST /admin/backup` and a
    /// hot-swap `POST /admin/restore` that needs no restart.
    #[arg(long, conflicts_with = "postgres")]
    pub sqlite: bool,
    /// With --sqlite: SQLite's `synchronous` (off, normal, full, extra; default
    /// full). `off` acknowledges a commit before it is on disk: a SIGKILL loses
    /// nothing (the page cache keeps it), a power cut does. `full` in SQLite's
    /// rollback-journal mode does not fsync the directory after deleting the
    /// journal; `extra` does.
    #[arg(long, default_value = "full", value_parser = ["off", "normal", "full", "extra"], requires = "sqlite")]
    pub sqlite_synchronous: String,
    /// With --sqlite: write the backup `latest` this often (e.g. "2s").
    #[arg(long, value_parser = humantime::parse_duration, requires = "sqlite")]
    pub backup_every: Option<Duration>,
    /// With --sqlite: fill an empty database with this many items at start-up.
    #[arg(long, default_value_t = 0, requires = "sqlite")]
    pub seed_items: u64,
    /// Publish every stored item to NATS JetStream at this URL; a write is
    /// acknowledged only after the broker stored the message.
    #[arg(long)]
    pub publish: Option<String>,
    /// Worker mode: consume items from NATS JetStream at this URL (durable
    /// consumer) and store them; `GET /items/{id}` then shows processed items.
    #[arg(long, conflicts_with = "publish")]
    pub consume: Option<String>,
    /// ZooKeeper servers (host:port[,host:port]) to register with.
    #[arg(long, requires = "register")]
    pub zookeeper: Option<String>,
    /// Ephemeral znode this instance registers (e.g. /workers/1); not ready until it owns it.
    #[arg(long, requires = "zookeeper")]
    pub register: Option<String>,
    /// ZooKeeper session timeout to ask for (the server bounds it by its tick time).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "6s")]
    pub zk_session_timeout: Duration,
    /// Read a secret from this URL at start-up; exit 1 if it cannot be read.
    #[arg(long)]
    pub secret_from: Option<String>,
    /// Serve a secret at `GET /secrets/NAME` (NAME=VALUE; repeatable).
    #[arg(long = "secret", value_parser = deps::parse_secret)]
    pub secrets: Vec<(String, String)>,
    /// An upstream `/readyz` depends on: `http://…` answering 2xx or
    /// `tcp://host:port` accepting (repeatable).
    #[arg(long = "require")]
    pub requires: Vec<String>,
    /// Plant a known restart bug, an explore target (off by default; repeatable).
    #[arg(long = "plant", value_enum)]
    pub plant: Vec<Plant>,
}

/// Restart bugs demo-app can be told to have, for `rebound explore` to find.
/// Each fails only under a combination or a timing of faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Plant {
    /// Checks each `--require` once when it restarts (not at its first start in a
    /// fresh data directory); one that does not answer then is remembered as down
    /// forever, so `/readyz` never recovers. A restart of the
    /// app alone, or an outage of the dependency alone, is harmless: only the app
    /// (re)starting while the dependency is down (killed, stopped, paused) sticks.
    StickyDependency,
    /// With `--register`: a start that meets `NodeExists` when the previous start
    /// met it too (the worker hard-killed twice within its session timeout) gives
    /// up registering for good, so it is never ready. One kill, or two far apart,
    /// recovers once the old session expires.
    GiveUpOnNodeExists,
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
    /// The database could not be reached or prepared at start-up.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The SQLite store could not be opened.
    #[error("sqlite store: {0}")]
    Sqlite(#[from] sqlite::SqliteError),
    /// The secret named by `--secret-from` could not be read.
    #[error("cannot read secret: {0}")]
    Secret(String),
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
    /// Acknowledged lines not yet written (`--ack-before-fsync` only).
    pending: Mutex<Vec<u8>>,
    /// Whether an insert fsyncs before it is acknowledged (not with `--no-fsync`).
    fsync: bool,
    /// `--file-per-item`: the items directory, and whether a rename into it is
    /// followed by a directory fsync.
    per_item: Option<(PathBuf, bool)>,
}

/// The file name of item `id` (`--file-per-item`): the id itself when it is made
/// of letters, digits, `-` and `_`, else its bytes in hex.
fn item_file(id: &str) -> String {
    if !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        format!("{id}.json")
    } else {
        let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
        format!("x{hex}.json")
    }
}

/// Period of the background flush in `--ack-before-fsync` mode.
const UNSAFE_FLUSH_PERIOD: Duration = Duration::from_millis(250);

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
        let created = !path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(data_err(&path))?;
        if created {
            // A new file's name is durable only once its directory is fsynced.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(data_err(dir))?;
        }
        let boots = bump_boot_count(dir).map_err(data_err(dir))?;
        Ok((
            Store {
                log: Mutex::new((file, index)),
                pending: Mutex::new(Vec::new()),
                fsync: true,
                per_item: None,
            },
            boots,
        ))
    }

    /// Switches to one file per item in `<dir>/items` (`--file-per-item`).
    fn per_item(&mut self, dir: &Path, dir_fsync: bool) -> std::io::Result<()> {
        let items = dir.join("items");
        if !items.exists() {
            std::fs::create_dir_all(&items)?;
            File::open(dir)?.sync_all()?;
        }
        self.per_item = Some((items, dir_fsync));
        Ok(())
    }

    /// Write to a temporary name, fsync, rename into place, fsync the directory
    /// (unless `--no-dir-fsync`).
    fn insert_file(items: &Path, dir_fsync: bool, item: &Item) -> std::io::Result<()> {
        let name = item_file(&item.id);
        let tmp = items.join(format!(".{name}.tmp"));
        let body = serde_json::to_vec(&item.value).map_err(std::io::Error::other)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, items.join(&name))?;
        if dir_fsync {
            File::open(items)?.sync_all()?;
        }
        Ok(())
    }

    fn insert(&self, item: Item) -> std::io::Result<()> {
        if let Some((items, dir_fsync)) = &self.per_item {
            return Self::insert_file(items, *dir_fsync, &item);
        }
        let mut line = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut guard = self
            .log
            .lock()
            .map_err(|_| std::io::Error::other("store lock poisoned"))?;
        guard.0.write_all(&line)?;
        if self.fsync {
            guard.0.sync_data()?;
        }
        guard.1.insert(item.id, item.value);
        Ok(())
    }

    /// Acknowledges before anything reaches the disk (unsafe mode).
    fn insert_unsafe(&self, item: Item) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.pending
            .lock()
            .map_err(|_| std::io::Error::other("store lock poisoned"))?
            .extend(line);
        self.log
            .lock()
            .map_err(|_| std::io::Error::other("store lock poisoned"))?
            .1
            .insert(item.id, item.value);
        Ok(())
    }

    /// Writes and fsyncs what unsafe mode acknowledged so far.
    fn flush_pending(&self) -> std::io::Result<()> {
        let batch = std::mem::take(
            &mut *self
                .pending
                .lock()
                .map_err(|_| std::io::Error::other("store lock poisoned"))?,
        );
        if batch.is_empty() {
            return Ok(());
        }
        let mut guard = self
            .log
            .lock()
            .map_err(|_| std::io::Error::other("store lock poisoned"))?;
        guard.0.write_all(&batch)?;
        guard.0.sync_data()
    }

    fn get(&self, id: &str) -> Option<serde_json::Value> {
        if let Some((items, _)) = &self.per_item {
            let bytes = std::fs::read(items.join(item_file(id))).ok()?;
            return serde_json::from_slice(&bytes).ok();
        }
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

/// Everything a request handler needs.
struct AppState {
    files: Store,
    ack_before_fsync: bool,
    pg: Option<PgStore>,
    sqlite: Option<SqliteStore>,
    cache: Option<RedisCache>,
    /// Where stored items are published (`--publish`) or consumed from (`--consume`).
    broker: Option<Broker>,
    /// Publish on insert (app) rather than consume (worker).
    publishes: bool,
    zk: Option<Arc<Registration>>,
    secrets: HashMap<String, String>,
    requires: Vec<String>,
    /// `--plant sticky-dependency`: a dependency found down at start-up, for good.
    sticky_down: Option<String>,
}

type Failure = (StatusCode, String);

fn internal(e: impl std::fmt::Display) -> Failure {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// How long an item stays in the cache.
const CACHE_TTL_SECS: u64 = 60;

impl AppState {
    async fn insert(self: &Arc<Self>, item: Item) -> Result<(), Failure> {
        self.store(item.clone()).await?;
        if self.publishes {
            if let Some(b) = &self.broker {
                let payload = serde_json::to_vec(&item).map_err(internal)?;
                b.publish(payload).await.map_err(internal)?;
            }
        }
        Ok(())
    }

    /// Stores durably in whichever store is configured (no publishing).
    async fn store(self: &Arc<Self>, item: Item) -> Result<(), Failure> {
        if self.sqlite.is_some() {
            let me = Arc::clone(self);
            let stored = item.clone();
            tokio::task::spawn_blocking(move || {
                let Some(db) = &me.sqlite else {
                    return Ok(());
                };
                db.insert(&stored.id, &stored.value.to_string())
            })
            .await
            .map_err(internal)?
            .map_err(internal)?;
            self.cache_put(&item).await;
            return Ok(());
        }
        match &self.pg {
            Some(pg) => pg.insert(&item.id, &item.value).await.map_err(internal)?,
            None => {
                // fsync is blocking: keep it off the async workers.
                let me = Arc::clone(self);
                let stored = item.clone();
                tokio::task::spawn_blocking(move || {
                    if me.ack_before_fsync {
                        me.files.insert_unsafe(stored)
                    } else {
                        me.files.insert(stored)
                    }
                })
                .await
                .map_err(internal)?
                .map_err(internal)?;
            }
        }
        self.cache_put(&item).await;
        Ok(())
    }

    async fn get(self: &Arc<Self>, id: &str) -> Result<Option<serde_json::Value>, Failure> {
        let key = format!("item:{id}");
        if let Some(cache) = &self.cache {
            // A cache that is down costs a miss, never the request.
            match cache.get(&key).await {
                Ok(Some(bytes)) => {
                    if let Ok(v) = serde_json::from_slice(&bytes) {
                        return Ok(Some(v));
                    }
                }
                Ok(None) => {}
                Err(e) => eprintln!("demo-app: cache miss ({e})"),
            }
        }
        let value = if self.sqlite.is_some() {
            let me = Arc::clone(self);
            let key = id.to_string();
            let text = tokio::task::spawn_blocking(move || match &me.sqlite {
                Some(db) => db.get(&key),
                None => Ok(None),
            })
            .await
            .map_err(internal)?
            .map_err(internal)?;
            text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
        } else {
            match &self.pg {
                Some(pg) => pg.get(id).await.map_err(internal)?,
                None => self.files.get(id),
            }
        };
        if let Some(v) = &value {
            self.cache_put(&Item {
                id: id.to_string(),
                value: v.clone(),
            })
            .await;
        }
        Ok(value)
    }

    async fn cache_put(&self, item: &Item) {
        if let Some(cache) = &self.cache {
            if let Err(e) = cache
                .set(
                    &format!("item:{}", item.id),
                    item.value.to_string().as_bytes(),
                    CACHE_TTL_SECS,
                )
                .await
            {
                eprintln!("demo-app: cache write skipped ({e})");
            }
        }
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/items", post(create_item))
        .route("/items/{id}", get(read_item))
        .route("/admin/backup", post(backup))
        .route("/admin/restore", post(restore))
        .route("/admin/digest", get(digest))
        .route("/secrets/{name}", get(secret))
        .with_state(state)
}

async fn ready(State(state): State<Arc<AppState>>) -> Result<&'static str, Failure> {
    if let Some(pg) = &state.pg {
        pg.ping().await.map_err(internal)?;
    }
    if state.sqlite.is_some() {
        sqlite_call(Arc::clone(&state), |db| db.ping())
            .await
            .map(drop)
            .map_err(|(s, j)| (s, j.0.to_string()))?;
    }
    if let Some(zk) = &state.zk {
        if !zk.is_registered() {
            return Err(internal(zk.status()));
        }
    }
    if let Some(b) = &state.broker {
        b.ping().await.map_err(internal)?;
    }
    if let Some(why) = &state.sticky_down {
        return Err(internal(why));
    }
    for r in &state.requires {
        deps::check(r).await.map_err(internal)?;
    }
    Ok("ready\n")
}

async fn secret(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<String, Failure> {
    state
        .secrets
        .get(&name)
        .cloned()
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no secret {name}\n")))
}

/// Body of the admin endpoints.
#[derive(Debug, Deserialize, Default)]
struct BackupName {
    #[serde(alias = "name")]
    backup: Option<String>,
}

fn sqlite_failure(e: sqlite::SqliteError) -> JsonFailure {
    use sqlite::SqliteError as E;
    let status = match &e {
        E::BadName(_) => StatusCode::BAD_REQUEST,
        E::NoBackup(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let rolled_back = matches!(e, E::RolledBack { .. });
    (
        status,
        Json(serde_json::json!({
            "restored": false,
            "rolled_back": rolled_back,
            "error": e.to_string(),
        })),
    )
}

type JsonFailure = (StatusCode, Json<serde_json::Value>);
type JsonResult = Result<Json<serde_json::Value>, JsonFailure>;

fn json_error(status: StatusCode, e: impl std::fmt::Display) -> JsonFailure {
    (status, Json(serde_json::json!({"error": e.to_string()})))
}

async fn sqlite_call<T: Serialize + Send + 'static>(
    state: Arc<AppState>,
    f: impl FnOnce(&SqliteStore) -> Result<T, sqlite::SqliteError> + Send + 'static,
) -> JsonResult {
    let out = tokio::task::spawn_blocking(move || match &state.sqlite {
        Some(db) => f(db).map_err(sqlite_failure),
        None => Err(json_error(
            StatusCode::NOT_FOUND,
            "this instance has no SQLite store (--sqlite)",
        )),
    })
    .await
    .map_err(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, e))??;
    serde_json::to_value(out)
        .map(Json)
        .map_err(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, e))
}

async fn backup(State(state): State<Arc<AppState>>, body: Option<Json<BackupName>>) -> JsonResult {
    let name = body
        .and_then(|b| b.0.backup)
        .unwrap_or_else(|| "manual".into());
    sqlite_call(state, move |db| db.backup(&name)).await
}

async fn restore(State(state): State<Arc<AppState>>, body: Option<Json<BackupName>>) -> JsonResult {
    let name = body
        .and_then(|b| b.0.backup)
        .unwrap_or_else(|| "latest".into());
    let res = sqlite_call(state, move |db| db.restore(&name)).await;
    match &res {
        Ok(r) => eprintln!("demo-app: restore: {}", r.0),
        Err((_, e)) => eprintln!("demo-app: restore: {}", e.0),
    }
    res
}

async fn digest(State(state): State<Arc<AppState>>) -> JsonResult {
    sqlite_call(state, |db| db.digest()).await
}

async fn create_item(
    State(state): State<Arc<AppState>>,
    Json(new): Json<NewItem>,
) -> Result<(StatusCode, Json<Item>), Failure> {
    // Generated ids are random: they never land on an id a client chose.
    let id = new
        .id
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let item = Item {
        id,
        value: new.value,
    };
    state.insert(item.clone()).await?;
    Ok((StatusCode::CREATED, Json(item)))
}

async fn read_item(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Item>, Failure> {
    match state.get(&id).await? {
        Some(value) => Ok(Json(Item { id, value })),
        None => Err((StatusCode::NOT_FOUND, format!("no item {id}\n"))),
    }
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

/// File in the data directory with one line per start: `<boot> <unix ns>`, the wall
/// clock instant the socket began to accept connections.
pub const READY_LOG: &str = "ready.log";

fn unix_ns_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn record_ready(dir: &Path, boots: u64, ready_ns: u128) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(READY_LOG))?;
    // One write(2) per line, so a reader never sees half a line of a finished start.
    f.write_all(format!("{boots} {ready_ns}\n").as_bytes())
}

/// Runs demo-app until SIGTERM/SIGINT. Returns an error if start-up fails.
pub async fn run(args: Args) -> Result<(), AppError> {
    let (mut store, boots) = Store::open(&args.data_dir)?;
    store.fsync = !args.no_fsync;
    if args.file_per_item {
        store
            .per_item(&args.data_dir, !args.no_dir_fsync)
            .map_err(|source| AppError::Data {
                path: args.data_dir.join("items"),
                source,
            })?;
        if args.no_dir_fsync {
            eprintln!("demo-app: UNSAFE: acknowledging renamed item files without a directory fsync (--no-dir-fsync)");
        }
    }
    if boots > 1
        && args.fail_start_probability > 0.0
        && rand::random::<f64>() < args.fail_start_probability
    {
        return Err(AppError::InjectedStartFailure(args.fail_start_probability));
    }
    tokio::time::sleep(args.startup_delay).await;
    if let Some(url) = &args.secret_from {
        // The Vault pattern: no secret, no start (the restart policy retries).
        let secret = deps::fetch_secret(url).await.map_err(AppError::Secret)?;
        eprintln!("demo-app: read secret from {url} ({} bytes)", secret.len());
    }
    let sqlite = if args.sqlite {
        let db = SqliteStore::open_with(&args.data_dir, &args.sqlite_synchronous)?;
        if args.sqlite_synchronous != "full" {
            eprintln!("demo-app: SQLite synchronous = {}", args.sqlite_synchronous);
        }
        let seeded = db.seed(args.seed_items)?;
        if seeded > 0 {
            eprintln!("demo-app: seeded {seeded} items");
        }
        Some(db)
    } else {
        None
    };
    let zk = match (&args.zookeeper, &args.register) {
        (Some(servers), Some(path)) => {
            let reg = Arc::new(if args.plant.contains(&Plant::GiveUpOnNodeExists) {
                Registration::giving_up_on_node_exists(args.data_dir.join("node-exists-streak"))
            } else {
                Registration::default()
            });
            let id = format!("{}:{}", args.bind, args.port);
            tokio::spawn(zk::register(
                servers.clone(),
                path.clone(),
                id,
                args.zk_session_timeout,
                Arc::clone(&reg),
            ));
            Some(reg)
        }
        _ => None,
    };
    let pg = match &args.postgres {
        Some(conn) => {
            let pg = PgStore::new(conn)?;
            // The database may still be starting: wait for it rather than crash-loop.
            pg.migrate(Duration::from_secs(30)).await?;
            Some(pg)
        }
        None => None,
    };
    let mut sticky_down = None;
    // The first start in a fresh data directory waits for its dependencies as
    // `/readyz` does (so the stack comes up); the bug is in restarts.
    if boots > 1 && args.plant.contains(&Plant::StickyDependency) {
        for r in &args.requires {
            // One quick look, as a cached DNS lookup or a feature flag read once.
            let quick = tokio::time::timeout(Duration::from_millis(500), deps::check(r))
                .await
                .unwrap_or_else(|_| Err(format!("{r}: no answer within 500ms")));
            if let Err(e) = quick {
                eprintln!(
                    "demo-app: {e} at start-up: remembered as down (planted bug sticky-dependency)"
                );
                sticky_down = Some(format!("{r} was down at start-up (sticky)"));
                break;
            }
        }
    }
    let state = AppState {
        sticky_down,
        files: store,
        ack_before_fsync: args.ack_before_fsync,
        pg,
        sqlite,
        cache: args.redis.clone().map(RedisCache::new),
        broker: args
            .publish
            .clone()
            .or_else(|| args.consume.clone())
            .map(Broker::new),
        publishes: args.publish.is_some(),
        zk,
        secrets: args.secrets.iter().cloned().collect(),
        requires: args.requires.clone(),
    };
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })?;
    // The truth clock: the instant connections are accepted, read from the wall clock
    // right after listen(2), in the log and in `<data-dir>/ready.log`. Tests hold
    // rebound's recovery bracket against it.
    let ready_ns = unix_ns_now();
    eprintln!("demo-app: listening on {addr} (boot {boots}, ready_unix_ns {ready_ns})");
    record_ready(&args.data_dir, boots, ready_ns).map_err(|source| AppError::Data {
        path: args.data_dir.join(READY_LOG),
        source,
    })?;
    let state = Arc::new(state);
    if args.consume.is_some() {
        let worker = Arc::clone(&state);
        tokio::spawn(async move {
            // A registered worker only: the znode says who does the work.
            if let Some(zk) = &worker.zk {
                while !zk.is_registered() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let Some(broker) = &worker.broker else { return };
            broker
                .consume(|payload| {
                    let w = Arc::clone(&worker);
                    async move {
                        let item: Item =
                            serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                        w.store(item).await.map_err(|(_, e)| e)
                    }
                })
                .await;
        });
    }
    if let Some(every) = args.backup_every {
        let b = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let s = Arc::clone(&b);
                let res = tokio::task::spawn_blocking(move || {
                    s.sqlite.as_ref().map(|db| db.backup("latest"))
                })
                .await;
                if let Ok(Some(Err(e))) = res {
                    eprintln!("demo-app: periodic backup failed: {e}");
                }
            }
        });
    }
    if args.no_fsync {
        eprintln!("demo-app: UNSAFE: acknowledging file-store writes without fsync (--no-fsync)");
    }
    if state.ack_before_fsync {
        eprintln!(
            "demo-app: UNSAFE: acknowledging writes before they are durable (--ack-before-fsync)"
        );
        let flusher = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(UNSAFE_FLUSH_PERIOD).await;
                let s = Arc::clone(&flusher);
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || s.files.flush_pending()).await
                {
                    eprintln!("demo-app: flush failed: {e}");
                }
            }
        });
    }
    axum::serve(listener, router(Arc::clone(&state)))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| AppError::Bind { addr, source })?;
    // A graceful stop keeps what unsafe mode acknowledged.
    state
        .files
        .flush_pending()
        .map_err(|source| AppError::Data {
            path: args.data_dir.clone(),
            source,
        })?;
    if let Some(zk) = &state.zk {
        zk.close().await;
    }
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
