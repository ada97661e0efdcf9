//! `redis-writes` workload: `SADD`s of unique ids into one Redis set over
//! connections of the workload's own, read back after the trial with
//! `SMISMEMBER`. A Redis that replies to a write has applied it in memory; whether
//! it survives a crash is what `appendfsync` decides, and what the read-back
//! shows.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Client, Ops, RawClient, Verified};
use crate::field::{address, FieldError};
use crate::history::OpResult;
use crate::probe::redis::command;

/// Ids asked about in one `SMISMEMBER` of the read-back.
const VERIFY_CHUNK: usize = 500;

/// `kind = "redis-writes"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRedisWrites {
    /// Name in reports (default `writes-<n>`).
    pub name: Option<String>,
    /// `host:port` (an IP literal on loopback; default 127.0.0.1:6379).
    pub address: Option<String>,
    /// The set the ids are added to (default `rebound:writes`).
    pub key: Option<String>,
    /// Password for `AUTH` (default: none).
    pub password: Option<String>,
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

/// Redis `SADD`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisWrites {
    /// Server.
    pub address: SocketAddr,
    /// The set.
    pub key: String,
    /// `AUTH` password.
    pub password: Option<String>,
}

impl RawClient for RawRedisWrites {
    super::workload_common!();

    fn client(self) -> Result<Arc<dyn Client>, FieldError> {
        let raw = self.address.as_deref().unwrap_or("127.0.0.1:6379");
        let address = address("address", raw)?;
        if !address.ip().is_loopback() {
            return Err(FieldError::new(
                "address",
                "workloads send load only to loopback addresses",
            ));
        }
        let key = self.key.unwrap_or_else(|| "rebound:writes".into());
        if key.is_empty() || key.len() > 256 || key.chars().any(|c| c.is_control()) {
            return Err(FieldError::at(
                "key",
                &key,
                "a key is 1 to 256 characters, none of them control characters",
            ));
        }
        Ok(Arc::new(RedisWrites {
            address,
            key,
            password: self.password,
        }))
    }
}

#[async_trait]
impl Client for RedisWrites {
    fn stem(&self) -> &'static str {
        "writes"
    }

    fn writes(&self) -> bool {
        true
    }

    fn open(&self, timeout: Duration) -> Arc<dyn Ops> {
        Arc::new(Session {
            plan: self.clone(),
            timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn verify(&self, ids: &[String]) -> Verified {
        read_back(self, ids, Duration::from_secs(5)).await
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One connection.
type Conn = BufReader<TcpStream>;

/// A reply, as far as these commands need one read.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// `+…`.
    Simple(String),
    /// `-…`: the server refused the command.
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `*n` of integers.
    Integers(Vec<i64>),
}

/// Why a command got no reply.
#[derive(Debug)]
enum Broken {
    /// Before the command was sent: certainly not applied.
    Connect(String),
    /// After it was sent: it may have been applied.
    Lost(String),
}

async fn read_line(conn: &mut Conn) -> Result<String, String> {
    let mut line = String::new();
    match conn.read_line(&mut line).await {
        Ok(0) => Err("connection closed without a reply".into()),
        Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn integer(line: &str) -> Result<i64, String> {
    line.parse()
        .map_err(|_| format!("not a RESP integer: {line:?}"))
}

async fn read_reply(conn: &mut Conn) -> Result<Reply, String> {
    let line = read_line(conn).await?;
    let (tag, rest) = line.split_at(line.len().min(1));
    match tag {
        "+" => Ok(Reply::Simple(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => Ok(Reply::Integer(integer(rest)?)),
        "*" => {
            let n = integer(rest)?;
            let mut items = Vec::with_capacity(n.clamp(0, VERIFY_CHUNK as i64) as usize);
            for _ in 0..n.max(0) {
                let item = read_line(conn).await?;
                match item.strip_prefix(':') {
                    Some(v) => items.push(integer(v)?),
                    None => return Err(format!("an array item that is not an integer: {item:?}")),
                }
            }
            Ok(Reply::Integers(items))
        }
        _ => Err(format!("not a RESP reply: {line:?}")),
    }
}

/// Whether an idle connection is still open (the server did not close it since).
fn still_open(conn: &Conn) -> bool {
    if !conn.buffer().is_empty() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(
        conn.get_ref().try_read(&mut byte),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    )
}

/// A fresh connection, authenticated when a password is given.
async fn connect(plan: &RedisWrites, timeout: Duration) -> Result<Conn, Broken> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(plan.address))
        .await
        .map_err(|_| Broken::Connect(format!("connect: timeout after {timeout:?}")))?
        .map_err(|e| Broken::Connect(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::new(stream);
    if let Some(pw) = &plan.password {
        // Nothing is written before AUTH is answered: a failure is a refusal.
        match send(&mut conn, &["AUTH", pw], timeout).await {
            Ok(Reply::Simple(ok)) if ok == "OK" => {}
            Ok(other) => return Err(Broken::Connect(format!("AUTH: {other:?}"))),
            Err(Broken::Lost(e) | Broken::Connect(e)) => {
                return Err(Broken::Connect(format!("AUTH: {e}")))
            }
        }
    }
    Ok(conn)
}

/// Sends one command and reads its reply, within `timeout`.
async fn send(conn: &mut Conn, args: &[&str], timeout: Duration) -> Result<Reply, Broken> {
    let exchange = async {
        conn.get_mut()
            .write_all(&command(args))
            .await
            .map_err(|e| e.to_string())?;
        read_reply(conn).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(Broken::Lost(format!("{}: {e}", args[0]))),
        Err(_) => Err(Broken::Lost(format!("timeout after {timeout:?}"))),
    }
}

/// One trial's connections: no silent reconnect hides an outage; a connection
/// that broke is dropped and the next operation connects anew.
struct Session {
    plan: RedisWrites,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
}

impl Session {
    async fn conn(&self) -> Result<Conn, Broken> {
        while let Some(c) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            if still_open(&c) {
                return Ok(c);
            }
        }
        connect(&self.plan, self.timeout).await
    }

    fn give_back(&self, c: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(c);
        }
    }
}

#[async_trait]
impl Ops for Session {
    async fn run_op(&self, _workload: &str, id: &str, _n: u64) -> (OpResult, Option<String>) {
        let mut conn = match self.conn().await {
            Ok(c) => c,
            Err(Broken::Connect(e) | Broken::Lost(e)) => return (OpResult::Fail, Some(e)),
        };
        match send(&mut conn, &["SADD", &self.plan.key, id], self.timeout).await {
            Ok(Reply::Integer(_)) => {
                self.give_back(conn);
                (OpResult::Ok, None)
            }
            // LOADING, MISCONF, READONLY, OOM …: refused, not applied.
            Ok(Reply::Error(e)) => {
                self.give_back(conn);
                (OpResult::Fail, Some(e))
            }
            Ok(other) => (OpResult::Info, Some(format!("SADD: {other:?}"))),
            Err(Broken::Lost(e)) => (OpResult::Info, Some(e)),
            Err(Broken::Connect(e)) => (OpResult::Fail, Some(e)),
        }
    }
}

async fn read_back(plan: &RedisWrites, ids: &[String], timeout: Duration) -> Verified {
    if ids.is_empty() {
        return Verified::default();
    }
    let unverifiable = |e: String| Verified {
        missing: Vec::new(),
        unverifiable: ids.len() as u64,
        error: Some(e),
    };
    let mut conn = match connect(plan, timeout).await {
        Ok(c) => c,
        Err(Broken::Connect(e) | Broken::Lost(e)) => return unverifiable(e),
    };
    let mut missing = Vec::new();
    for chunk in ids.chunks(VERIFY_CHUNK) {
        let mut args = vec!["SMISMEMBER", plan.key.as_str()];
        args.extend(chunk.iter().map(String::as_str));
        match send(&mut conn, &args, timeout).await {
            Ok(Reply::Integers(found)) if found.len() == chunk.len() => missing.extend(
                chunk
                    .iter()
                    .zip(found)
                    .filter(|(_, f)| *f == 0)
                    .map(|(id, _)| id.clone()),
            ),
            Ok(other) => return unverifiable(format!("SMISMEMBER: {other:?}")),
            Err(Broken::Connect(e) | Broken::Lost(e)) => return unverifiable(e),
        }
    }
    missing.sort();
    Verified {
        missing,
        ..Verified::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A RESP server that answers each command it reads, on any connection,
    /// with the next of `replies`; once they are used up it closes the
    /// connection of the next command without a reply.
    async fn server(replies: &'static [&'static str]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let next = Arc::clone(&next);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(reply) = replies.get(i) else { return };
                        if sock.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn plan(address: SocketAddr) -> RedisWrites {
        RedisWrites {
            address,
            key: "k".into(),
            password: None,
        }
    }

    #[tokio::test]
    async fn a_reply_is_an_ack_an_error_a_refusal_and_a_closed_connection_unknown() {
        let ops = plan(server(&[":1\r\n", "-LOADING Redis is loading\r\n"]).await)
            .open(Duration::from_millis(500));
        assert_eq!(ops.run_op("w", "a", 1).await.0, OpResult::Ok);
        let (result, error) = ops.run_op("w", "b", 2).await;
        assert_eq!(result, OpResult::Fail, "{error:?}");
        assert!(error.expect("message").starts_with("LOADING"));
        // The server closes the connection of the third SADD without a reply:
        // it was sent, so it may have been applied.
        let (result, error) = ops.run_op("w", "c", 3).await;
        assert_eq!(result, OpResult::Info, "{error:?}");
    }

    #[tokio::test]
    async fn nobody_listening_is_a_refusal_and_a_silent_server_a_timeout() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let ops = plan(free).open(Duration::from_millis(300));
        assert_eq!(ops.run_op("w", "a", 1).await.0, OpResult::Fail);
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let ops = plan(silent.local_addr().expect("addr")).open(Duration::from_millis(300));
        let (result, error) = ops.run_op("w", "a", 1).await;
        assert_eq!(result, OpResult::Info);
        assert!(error.expect("message").starts_with("timeout"));
    }

    #[tokio::test]
    async fn the_read_back_names_the_ids_the_set_does_not_hold() {
        let ids = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let v = read_back(
            &plan(server(&["*3\r\n:1\r\n:0\r\n:1\r\n"]).await),
            &ids,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(v.missing, vec!["b".to_string()]);
        assert_eq!(v.unverifiable, 0);
        let v = read_back(
            &plan(server(&["-ERR unknown command\r\n"]).await),
            &ids,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(v.unverifiable, 3);
        assert!(v.missing.is_empty());
        assert!(v.error.expect("error").contains("unknown command"));
    }

    #[test]
    fn a_remote_address_or_a_bad_key_is_refused() {
        let raw = |t: &str| -> Result<Arc<dyn Client>, FieldError> {
            toml::from_str::<RawRedisWrites>(t).expect("table").client()
        };
        assert!(raw("address = \"127.0.0.1:16379\"\nkey = \"acks\"").is_ok());
        let e = raw("address = \"10.0.0.1:6379\"").expect_err("remote");
        assert_eq!(e.key, "address");
        assert!(e.message.contains("loopback"), "{e:?}");
        let e = raw("key = \"a\\nb\"").expect_err("control character");
        assert_eq!(e.key, "key");
    }
}
