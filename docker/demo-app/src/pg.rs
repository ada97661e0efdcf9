//! PostgreSQL item store: a small pool of its own that reconnects with back-off, so
//! a database restart shows up as a bounded burst of errors, not a dead service.

use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

/// Delays between connection attempts within one request (about 1.5 s in all).
const BACKOFF_MS: [u64; 5] = [50, 100, 200, 400, 800];
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;

/// Items in table `items(id text primary key, value jsonb)`.
pub struct PgStore {
    cfg: Config,
    idle: Mutex<Vec<Client>>,
}

impl PgStore {
    /// Parses a libpq-style connection string (`host=db user=postgres dbname=postgres`).
    pub fn new(conn: &str) -> Result<Self, tokio_postgres::Error> {
        let mut cfg: Config = conn.parse()?;
        cfg.connect_timeout(Duration::from_secs(2))
            .application_name("demo-app");
        Ok(PgStore {
            cfg,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let mut last = None;
        for delay in std::iter::once(0).chain(BACKOFF_MS) {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            match self.cfg.connect(NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    return Ok(client);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt was made"))
    }

    async fn client(&self) -> Result<Client, tokio_postgres::Error> {
        loop {
            let reused = self.idle.lock().ok().and_then(|mut v| v.pop());
            match reused {
                // A connection the last restart closed is dropped, not handed out.
                Some(c) if c.is_closed() => continue,
                Some(c) => return Ok(c),
                None => return self.connect().await,
            }
        }
    }

    fn give_back(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(client);
            }
        }
    }

    /// Creates the table, retrying for up to `patience` while the database starts.
    pub async fn migrate(&self, patience: Duration) -> Result<(), tokio_postgres::Error> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let attempt = async {
                let c = self.client().await?;
                c.batch_execute(
                    "CREATE TABLE IF NOT EXISTS items (id text PRIMARY KEY, value jsonb NOT NULL)",
                )
                .await?;
                self.give_back(c);
                Ok::<(), tokio_postgres::Error>(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Durable insert (autocommit; acknowledged once PostgreSQL committed it).
    pub async fn insert(
        &self,
        id: &str,
        value: &serde_json::Value,
    ) -> Result<(), tokio_postgres::Error> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO items (id, value) VALUES ($1, ($2::text)::jsonb) ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value",
            &[&id, &value.to_string()],
        )
        .await?;
        self.give_back(c);
        Ok(())
    }

    /// Reads one item's value.
    pub async fn get(&self, id: &str) -> Result<Option<serde_json::Value>, tokio_postgres::Error> {
        let c = self.client().await?;
        let row = c
            .query_opt("SELECT value::text FROM items WHERE id = $1", &[&id])
            .await?;
        self.give_back(c);
        Ok(row.and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()))
    }

    /// `SELECT 1`: is the database usable right now?
    pub async fn ping(&self) -> Result<(), tokio_postgres::Error> {
        let c = self.client().await?;
        c.simple_query("SELECT 1").await?;
        self.give_back(c);
        Ok(())
    }
}
