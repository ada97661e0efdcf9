//! Dependencies of a service in a chain (seed 004): secrets fetched at start-up
//! and upstream services its readiness depends on.
//!
//! `--secret-from URL` is the Vault pattern: the secret is read once at start and
//! the process exits 1 if it cannot be (its restart policy retries). `--require`
//! names upstreams (`http://…` answering 2xx, or `tcp://host:port` accepting) that
//! `/readyz` checks on every call, so readiness propagates down the chain.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Per-call timeout of dependency checks.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A minimal HTTP/1.0 GET (no TLS, no redirects): returns status and body.
pub async fn http_get(url: &str) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = hostport.split(':').next().unwrap_or(hostport);
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let call = async {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let mut buf = Vec::new();
        s.take(1 << 20)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let text = String::from_utf8_lossy(&buf);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("{url}: not an HTTP response"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(TIMEOUT, call)
        .await
        .map_err(|_| format!("{url}: no answer within {TIMEOUT:?}"))?
}

/// Checks one upstream: `http://…` must answer 2xx, `tcp://host:port` must accept.
pub async fn check(target: &str) -> Result<(), String> {
    if let Some(addr) = target.strip_prefix("tcp://") {
        tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("{target}: no answer within {TIMEOUT:?}"))?
            .map_err(|e| format!("{target}: {e}"))?;
        return Ok(());
    }
    let (status, body) = http_get(target).await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("{target}: {status} {}", body.trim()))
    }
}

/// Reads a secret once; an error means the service must not start.
pub async fn fetch_secret(url: &str) -> Result<String, String> {
    let (status, body) = http_get(url).await?;
    if status == 200 {
        Ok(body.trim().to_string())
    } else {
        Err(format!("{url}: {status} {}", body.trim()))
    }
}

/// Parses `NAME=VALUE` (a secret served at `/secrets/NAME`).
pub fn parse_secret(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse() {
        assert_eq!(
            parse_secret("db=pw=1"),
            Ok(("db".to_string(), "pw=1".to_string()))
        );
        assert!(parse_secret("=x").is_err());
        assert!(parse_secret("novalue").is_err());
    }

    #[tokio::test]
    async fn checks_fail_on_closed_ports_and_bad_urls() {
        // Bind then drop: the port is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        assert!(check(&format!("tcp://127.0.0.1:{port}")).await.is_err());
        assert!(check(&format!("http://127.0.0.1:{port}/x")).await.is_err());
        assert!(check("https://example.invalid/").await.is_err());
    }
}
