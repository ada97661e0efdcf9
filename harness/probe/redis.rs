//! `redis` probe: a fresh connection must answer RESP `PING` with `PONG` (after
//! `AUTH` when a password is given). A Redis that accepts connections while it loads
//! its dataset answers `-LOADING …`: that is down, which a tcp probe cannot tell.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{Check, Failure, RawCheck};
use crate::field::{address, FieldError};
use crate::stack::Stack;

/// `kind = "redis"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRedis {
    /// Name in reports (default `redis-<n>`).
    pub name: Option<String>,
    /// `host:port` (an IP literal; default 127.0.0.1:6379).
    pub address: Option<String>,
    /// Password for `AUTH` (default: none).
    pub password: Option<String>,
    /// Poll period (default `[run] probe-period`).
    #[serde(default, with = "humantime_serde::option")]
    pub period: Option<Duration>,
    /// Per-attempt timeout (default 1s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

/// RESP `PING` → `PONG` on a fresh connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redis {
    /// Server address.
    pub address: SocketAddr,
    /// `AUTH` password.
    pub password: Option<String>,
}

impl RawCheck for RawRedis {
    super::probe_common!();

    fn check(self, _timeout: Duration) -> Result<Arc<dyn Check>, FieldError> {
        let raw = self.address.as_deref().unwrap_or("127.0.0.1:6379");
        Ok(Arc::new(Redis {
            address: address("address", raw)?,
            password: self.password,
        }))
    }
}

/// A RESP array of bulk strings: the command `args`.
pub(crate) fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).into_bytes());
        out.extend(a.as_bytes());
        out.extend(b"\r\n");
    }
    out
}

async fn round_trip(
    conn: &mut BufReader<tokio::net::TcpStream>,
    args: &[&str],
) -> Result<String, String> {
    conn.get_mut()
        .write_all(&command(args))
        .await
        .map_err(|e| format!("{}: {e}", args[0]))?;
    let mut line = String::new();
    let n = conn
        .read_line(&mut line)
        .await
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if n == 0 {
        return Err(format!("{}: connection closed without a reply", args[0]));
    }
    Ok(line.trim_end().to_string())
}

#[async_trait]
impl Check for Redis {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn attempt(&self, _stack: &dyn Stack) -> Result<(), Failure> {
        let issued = std::time::Instant::now();
        let stream = tokio::net::TcpStream::connect(self.address)
            .await
            .map_err(|e| Failure::connect(&e, issued))?;
        let mut conn = BufReader::new(stream);
        if let Some(pw) = &self.password {
            let reply = round_trip(&mut conn, &["AUTH", pw]).await?;
            if reply != "+OK" {
                return Err(format!("AUTH: {reply}").into());
            }
        }
        match round_trip(&mut conn, &["PING"]).await?.as_str() {
            "+PONG" => Ok(()),
            other => Err(format!("PING: {other}").into()),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        assert_eq!(command(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            command(&["AUTH", "s3"]),
            b"*2\r\n$4\r\nAUTH\r\n$2\r\ns3\r\n"
        );
    }
}
