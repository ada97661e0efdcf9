//! `postgres` probe: a fresh connection must answer `SELECT 1` (tokio-postgres never
//! reconnects by itself, so an outage stays visible).

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Check, Failure, RawCheck};
use crate::field::{address, FieldError};
use crate::stack::Stack;

/// `kind = "postgres"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPostgres {
    /// Name in reports (default `postgres-<n>`).
    pub name: Option<String>,
    /// `host:port` (an IP literal; default 127.0.0.1:5432).
    pub address: Option<String>,
    /// User (default postgres).
    pub user: Option<String>,
    /// Database (default postgres).
    pub dbname: Option<String>,
    /// Poll period (default `[run] probe-period`).
    #[serde(default, with = "humantime_serde::option")]
    pub period: Option<Duration>,
    /// Per-attempt timeout (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// Fresh connection + `SELECT 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postgres {
    /// Server address.
    pub address: SocketAddr,
    /// User.
    pub user: String,
    /// Database.
    pub dbname: String,
    /// Connect timeout.
    pub timeout: Duration,
}

impl RawCheck for RawPostgres {
    super::probe_common!();

    fn check(self, timeout: Duration) -> Result<Arc<dyn Check>, FieldError> {
        let raw = self.address.as_deref().unwrap_or("127.0.0.1:5432");
        Ok(Arc::new(Postgres {
            address: address("address", raw)?,
            user: self.user.unwrap_or_else(|| "postgres".into()),
            dbname: self.dbname.unwrap_or_else(|| "postgres".into()),
            timeout,
        }))
    }
}

#[async_trait]
impl Check for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn attempt(&self, _stack: &dyn Stack) -> Result<(), Failure> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(self.address.ip().to_string())
            .port(self.address.port())
            .user(&self.user)
            .dbname(&self.dbname)
            .connect_timeout(self.timeout)
            .application_name("rebound-probe");
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| Failure::from(format!("connect: {e}")))?;
        let driver = tokio::spawn(conn);
        let res = client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| format!("query: {e}"));
        drop(client);
        driver.abort();
        Ok(res?)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
