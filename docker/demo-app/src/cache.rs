//! Redis read-through cache over a minimal RESP client: one short-lived connection
//! per command, so a Redis restart costs cache misses, never a failed request.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A cache at `host:port`.
pub struct RedisCache {
    addr: String,
    timeout: Duration,
}

fn encode(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend(format!("${}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl RedisCache {
    /// A cache client; nothing is connected yet.
    pub fn new(addr: String) -> Self {
        RedisCache {
            addr,
            timeout: Duration::from_millis(300),
        }
    }

    /// Sends one command; returns the bulk reply (None for a nil or a status reply).
    async fn command(&self, parts: &[&[u8]]) -> std::io::Result<Option<Vec<u8>>> {
        let io = async {
            let mut stream = TcpStream::connect(&self.addr).await?;
            stream.write_all(&encode(parts)).await?;
            let mut reader = BufReader::new(stream);
            let mut header = String::new();
            reader.read_line(&mut header).await?;
            let header = header.trim_end();
            match header.as_bytes().first() {
                Some(b'$') => {
                    let len: i64 = header[1..].parse().map_err(std::io::Error::other)?;
                    let Ok(len) = usize::try_from(len) else {
                        return Ok(None);
                    };
                    let mut body = vec![0; len + 2];
                    reader.read_exact(&mut body).await?;
                    body.truncate(len);
                    Ok(Some(body))
                }
                Some(b'+' | b':') => Ok(None),
                _ => Err(std::io::Error::other(format!("redis: {header}"))),
            }
        };
        tokio::time::timeout(self.timeout, io)
            .await
            .map_err(|_| std::io::Error::other("redis: timeout"))?
    }

    /// Cached value of `key`, if any (errors count as misses for the caller to log).
    pub async fn get(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        self.command(&[b"GET", key.as_bytes()]).await
    }

    /// Stores `value` under `key` for `ttl_secs`.
    pub async fn set(&self, key: &str, value: &[u8], ttl_secs: u64) -> std::io::Result<()> {
        self.command(&[
            b"SET",
            key.as_bytes(),
            value,
            b"EX",
            ttl_secs.to_string().as_bytes(),
        ])
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_encoded_as_resp_arrays() {
        assert_eq!(
            encode(&[b"GET", b"item:a"]),
            b"*2\r\n$3\r\nGET\r\n$6\r\nitem:a\r\n".to_vec()
        );
    }

    #[tokio::test]
    async fn an_unreachable_cache_is_an_error_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let cache = RedisCache::new(format!("127.0.0.1:{port}"));
        assert!(cache.get("k").await.is_err());
    }
}
