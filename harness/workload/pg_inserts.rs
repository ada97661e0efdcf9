//! `postgres-inserts` workload: INSERTs of unique ids into a PostgreSQL table
//! (created if missing) through a pool of the workload's own, read back after the
//! trial.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Client, Ops, RawClient, Verified};
use crate::field::{address, FieldError};
use crate::history::OpResult;

/// `kind = "postgres-inserts"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPgInserts {
    /// Name in reports (default `inserts-<n>`).
    pub name: Option<String>,
    /// `host:port` (an IP literal; default 127.0.0.1:5432).
    pub address: Option<String>,
    /// User (default postgres).
    pub user: Option<String>,
    /// Database (default postgres).
    pub dbname: Option<String>,
    /// Table (default rebound_writes).
    pub table: Option<String>,
    /// Operations per second (default 20).
    pub rate: Option<f64>,
    /// Connections (and operations in flight) at most (default 4).
    pub concurrency: Option<usize>,
    /// Per-operation timeout (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Operations per trial at most (default 10000).
    pub max_ops: Option<u64>,
}

/// PostgreSQL INSERTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgInserts {
    /// Server.
    pub address: SocketAddr,
    /// User.
    pub user: String,
    /// Database.
    pub dbname: String,
    /// Table.
    pub table: String,
}

impl RawClient for RawPgInserts {
    super::workload_common!();

    fn client(self) -> Result<Arc<dyn Client>, FieldError> {
        let raw = self.address.as_deref().unwrap_or("127.0.0.1:5432");
        let address = address("address", raw)?;
        if !address.ip().is_loopback() {
            return Err(FieldError::new(
                "address",
                "workloads send load only to loopback addresses",
            ));
        }
        let table = self.table.unwrap_or_else(|| "rebound_writes".into());
        if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(FieldError::at(
                "table",
                &table,
                "table names use letters, digits and `_`",
            ));
        }
        Ok(Arc::new(PgInserts {
            address,
            user: self.user.unwrap_or_else(|| "postgres".into()),
            dbname: self.dbname.unwrap_or_else(|| "postgres".into()),
            table,
        }))
    }
}

impl PgInserts {
    fn pool(&self, timeout: Duration) -> PgPool {
        PgPool::new(self.address, &self.user, &self.dbname, &self.table, timeout)
    }
}

#[async_trait]
impl Client for PgInserts {
    fn stem(&self) -> &'static str {
        "inserts"
    }

    fn writes(&self) -> bool {
        true
    }

    fn open(&self, timeout: Duration) -> Arc<dyn Ops> {
        Arc::new(Session {
            pool: self.pool(timeout),
            timeout,
        })
    }

    async fn verify(&self, ids: &[String]) -> Verified {
        read_back(&self.pool(Duration::from_secs(5)), ids).await
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Session {
    pool: PgPool,
    timeout: Duration,
}

#[async_trait]
impl Ops for Session {
    async fn run_op(&self, _workload: &str, id: &str, _n: u64) -> (OpResult, Option<String>) {
        let (pool, timeout) = (&self.pool, self.timeout);
        let client = match tokio::time::timeout(timeout, pool.client()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return (OpResult::Fail, Some(format!("connect: {e}"))),
            Err(_) => return (OpResult::Fail, Some("connect: timeout".into())),
        };
        let sql = format!("INSERT INTO {} (id) VALUES ($1)", pool.table);
        match tokio::time::timeout(timeout, client.execute(&sql, &[&id])).await {
            Ok(Ok(_)) => {
                pool.give_back(client);
                (OpResult::Ok, None)
            }
            // The server refused it: not applied.
            Ok(Err(e)) if e.as_db_error().is_some() => {
                pool.give_back(client);
                (OpResult::Fail, Some(e.to_string()))
            }
            // The connection broke after sending: the commit may have happened.
            Ok(Err(e)) => (OpResult::Info, Some(e.to_string())),
            Err(_) => (OpResult::Info, Some(format!("timeout after {timeout:?}"))),
        }
    }
}

/// A PostgreSQL client pool of the workload's own: no silent reconnects hide an
/// outage, a closed connection is dropped and the next operation connects anew.
struct PgPool {
    cfg: tokio_postgres::Config,
    table: String,
    idle: Mutex<Vec<tokio_postgres::Client>>,
}

impl PgPool {
    fn new(address: SocketAddr, user: &str, dbname: &str, table: &str, timeout: Duration) -> Self {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(address.ip().to_string())
            .port(address.port())
            .user(user)
            .dbname(dbname)
            .connect_timeout(timeout)
            .application_name("rebound-workload");
        PgPool {
            cfg,
            table: table.to_string(),
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn client(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        while let Some(c) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            if !c.is_closed() {
                return Ok(c);
            }
        }
        let (client, conn) = self.cfg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())", self.table))
            .await?;
        Ok(client)
    }

    fn give_back(&self, c: tokio_postgres::Client) {
        if !c.is_closed() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(c);
            }
        }
    }
}

async fn read_back(pool: &PgPool, ids: &[String]) -> Verified {
    if ids.is_empty() {
        return Verified::default();
    }
    let found = async {
        let c = pool.client().await?;
        let rows = c
            .query(
                &format!("SELECT id FROM {} WHERE id = ANY($1)", pool.table),
                &[&ids],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>(
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<std::collections::HashSet<String>>(),
        )
    };
    match found.await {
        Ok(found) => {
            let mut missing: Vec<String> = ids
                .iter()
                .filter(|id| !found.contains(*id))
                .cloned()
                .collect();
            missing.sort();
            Verified {
                missing,
                ..Verified::default()
            }
        }
        Err(e) => Verified {
            missing: Vec::new(),
            unverifiable: ids.len() as u64,
            error: Some(e.to_string()),
        },
    }
}
