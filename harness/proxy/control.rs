//! The control API of a standalone proxy (`rebound proxy`, the `rebound/proxy`
//! image): plain HTTP/1.1 with JSON bodies, so rebound, a test or `curl` can set and
//! lift link faults. Every fault may carry a lease: the proxy lifts it by itself
//! when the lease runs out, so a fault outlives a killed rebound by a bounded time
//! even before `rebound heal` runs.
//!
//! - `GET /health` → `ok`
//! - `GET /links` → `[{"name", "listen", "upstream", "fault"}]`
//! - `PUT /links/NAME` with `{"fault": {...} | null, "lease": "20s"}` → `{"previous": ...}`
//! - `DELETE /links/NAME` → `{"previous": ...}` (lifts the fault)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{LinkFault, Proxy};

/// The port the `rebound/proxy` image serves its control API on.
pub const DEFAULT_PORT: u16 = 8474;

/// Largest request head or body the API reads.
const MAX_REQUEST: usize = 64 * 1024;

/// One link as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkState {
    /// Link name.
    pub name: String,
    /// Where the proxy listens.
    pub listen: String,
    /// Where it forwards to.
    pub upstream: String,
    /// The fault on it now.
    pub fault: Option<LinkFault>,
}

/// Body of `PUT /links/NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetFault {
    /// The new fault (null lifts).
    pub fault: Option<LinkFault>,
    /// Lift it by itself after this long unless it was changed meanwhile.
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
}

/// Reply to a change: the fault that was on the link before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetReply {
    /// The previous fault.
    pub previous: Option<LinkFault>,
}

/// The links a control API serves.
pub struct Links {
    proxies: Vec<Proxy>,
    /// Changes per link; a lease lifts only the change it was given with.
    generation: Mutex<HashMap<String, u64>>,
    log: bool,
}

impl Links {
    /// Serves `proxies`; with `log`, every change is printed to stderr.
    pub fn new(proxies: Vec<Proxy>, log: bool) -> Arc<Self> {
        Arc::new(Links {
            proxies,
            generation: Mutex::default(),
            log,
        })
    }

    /// Every link and its fault.
    pub fn states(&self) -> Vec<LinkState> {
        self.proxies
            .iter()
            .map(|p| LinkState {
                name: p.name().to_string(),
                listen: p.local_addr().to_string(),
                upstream: p.upstream().to_string(),
                fault: p.fault(),
            })
            .collect()
    }

    /// Sets (None: lifts) the fault on `link`, with an optional lease; None when no
    /// such link exists, else the previous fault.
    pub fn set(
        self: &Arc<Self>,
        link: &str,
        fault: Option<LinkFault>,
        lease: Option<Duration>,
    ) -> Option<Option<LinkFault>> {
        let proxy = self.proxies.iter().find(|p| p.name() == link)?;
        // The generation and the fault change together: a lease lifts only the
        // change it came with, never a later one.
        let (generation, previous) = {
            let mut all = self.generation.lock().unwrap_or_else(|p| p.into_inner());
            let g = all.entry(link.to_string()).or_default();
            *g += 1;
            (*g, proxy.set(fault.clone()))
        };
        let what = fault
            .as_ref()
            .map_or_else(|| "lifted".to_string(), LinkFault::describe);
        self.say(&match (&fault, lease) {
            (Some(_), Some(l)) => format!("link {link}: {what} (lease {l:?})"),
            _ => format!("link {link}: {what}"),
        });
        if let (Some(_), Some(lease)) = (fault, lease) {
            let links = Arc::clone(self);
            let link = link.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(lease).await;
                let lifted = {
                    let all = links.generation.lock().unwrap_or_else(|p| p.into_inner());
                    all.get(&link) == Some(&generation)
                        && links
                            .proxies
                            .iter()
                            .find(|p| p.name() == link)
                            .map(|p| p.set(None))
                            .is_some()
                };
                if lifted {
                    links.say(&format!("link {link}: lease of {lease:?} ran out, lifted"));
                }
            });
        }
        Some(previous)
    }

    fn say(&self, line: &str) {
        if self.log {
            eprintln!(
                "{} rebound proxy: {line}",
                chrono::Utc::now().format("%H:%M:%S%.3f")
            );
        }
    }
}

/// Serves the control API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, links: Arc<Links>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let links = Arc::clone(&links);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, &links)).await;
        });
    }
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Reads what the client sent next onto `into`; an error when it closed before
/// `what` ended.
async fn read_more(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    into: &mut Vec<u8>,
    what: &str,
) -> Result<(), (u16, String)> {
    let n = stream
        .read(chunk)
        .await
        .map_err(|e| (400, format!("{e}\n")))?;
    if n == 0 {
        return Err((400, format!("connection closed before the {what} ended\n")));
    }
    into.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn read_request(stream: &mut TcpStream) -> Result<Request, (u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_REQUEST {
            return Err((413, "request head too large\n".into()));
        }
        read_more(stream, &mut chunk, &mut buf, "request").await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (method, path) = match (first.next(), first.next()) {
        (Some(m), Some(p)) => (m.to_string(), p.to_string()),
        _ => return Err((400, "malformed request line".into())),
    };
    // The query string, if any, is not part of the route.
    let path = path.split('?').next().unwrap_or_default().to_string();
    let mut length = 0usize;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v
                    .trim()
                    .parse()
                    .map_err(|_| (400, "bad Content-Length".to_string()))?;
            }
            if k.trim().eq_ignore_ascii_case("transfer-encoding") {
                return Err((
                    411,
                    "send the body with a Content-Length (chunked bodies are not read)\n".into(),
                ));
            }
        }
    }
    if length > MAX_REQUEST {
        return Err((413, "body too large\n".into()));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        read_more(stream, &mut chunk, &mut body, "body").await?;
    }
    body.truncate(length);
    Ok(Request { method, path, body })
}

/// Answers one request (one per connection).
async fn handle(mut stream: TcpStream, links: &Arc<Links>) {
    let (status, body) = match read_request(&mut stream).await {
        Ok(req) => route(&req, links),
        Err(e) => e,
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        _ => "Error",
    };
    let kind = if body.starts_with(['{', '[']) {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn route(req: &Request, links: &Arc<Links>) -> (u16, String) {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/health") => (200, "ok\n".into()),
        ("GET", "/links") => json(&links.states()),
        (method @ ("PUT" | "DELETE"), path) if path.starts_with("/links/") => {
            let name = &path["/links/".len()..];
            let change = if method == "DELETE" {
                SetFault {
                    fault: None,
                    lease: None,
                }
            } else {
                match serde_json::from_slice::<SetFault>(&req.body) {
                    Ok(c) => c,
                    Err(e) => return (400, format!("body: {e}\n")),
                }
            };
            match links.set(name, change.fault, change.lease) {
                Some(previous) => json(&SetReply { previous }),
                None => (
                    404,
                    format!(
                        "no link `{name}`; links are: {}\n",
                        links
                            .states()
                            .iter()
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        (_, "/health" | "/links") => (405, "method not allowed\n".into()),
        (_, path) if path.starts_with("/links/") => (405, "method not allowed\n".into()),
        (_, path) => (404, format!("no route {path}\n")),
    }
}

fn json<T: Serialize>(v: &T) -> (u16, String) {
    match serde_json::to_string(v) {
        Ok(body) => (200, body),
        Err(e) => (500, format!("{e}\n")),
    }
}

/// Why a call to a proxy's control API failed.
#[derive(Debug, thiserror::Error)]
#[error("the fault proxy's control API at {addr}: {message}")]
pub struct ControlError {
    /// Where the API was called.
    pub addr: SocketAddr,
    /// What went wrong.
    pub message: String,
    /// Nothing answered there (refused, unreachable, timed out): another address
    /// of the proxy may; an answer from the proxy itself is never retried.
    pub unreachable: bool,
}

/// A client of a proxy's control API.
#[derive(Debug, Clone)]
pub struct Control {
    addr: SocketAddr,
    client: reqwest::Client,
}

impl Control {
    /// The API at `addr`; every call gives up after 5 s (1 s to connect).
    pub fn new(addr: SocketAddr) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            // An address that does not answer at once is not the one to use.
            .connect_timeout(Duration::from_secs(1))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Control { addr, client }
    }

    fn err(&self, message: impl std::fmt::Display) -> ControlError {
        ControlError {
            addr: self.addr,
            message: message.to_string(),
            unreachable: false,
        }
    }

    /// A request that got no answer.
    fn send_err(&self, e: reqwest::Error) -> ControlError {
        ControlError {
            unreachable: e.is_connect() || e.is_timeout(),
            ..self.err(e)
        }
    }

    async fn check(&self, r: reqwest::Response) -> Result<reqwest::Response, ControlError> {
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        Err(self.err(format!("{status}: {}", text.trim())))
    }

    /// Every link of the proxy and its fault.
    pub async fn links(&self) -> Result<Vec<LinkState>, ControlError> {
        let r = self
            .client
            .get(format!("http://{}/links", self.addr))
            .send()
            .await
            .map_err(|e| self.send_err(e))?;
        self.check(r).await?.json().await.map_err(|e| self.err(e))
    }

    /// Sets (None: lifts) the fault on `link`; returns the previous one.
    pub async fn set(
        &self,
        link: &str,
        fault: Option<LinkFault>,
        lease: Option<Duration>,
    ) -> Result<Option<LinkFault>, ControlError> {
        let r = self
            .client
            .put(format!("http://{}/links/{link}", self.addr))
            .json(&SetFault { fault, lease })
            .send()
            .await
            .map_err(|e| self.send_err(e))?;
        let reply: SetReply = self.check(r).await?.json().await.map_err(|e| self.err(e))?;
        Ok(reply.previous)
    }
}

/// Whether `name` can name a link of a standalone proxy (it is part of the
/// control API's URLs): letters, digits, `-`, `_` and `.`.
pub fn valid_link_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// A `--link` of `rebound proxy`: `NAME=LISTEN=UPSTREAM`, e.g.
/// `app-db=0.0.0.0:5432=db:5432`.
pub fn parse_link(spec: &str) -> Result<(String, SocketAddr, String), String> {
    let parts: Vec<&str> = spec.splitn(3, '=').collect();
    let [name, listen, upstream] = parts[..] else {
        return Err(format!(
            "`{spec}`: expected NAME=LISTEN=UPSTREAM, e.g. app-db=0.0.0.0:5432=db:5432"
        ));
    };
    if !valid_link_name(name) {
        return Err(format!(
            "`{spec}`: the link name `{name}` must be letters, digits, `-`, `_` or `.`"
        ));
    }
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("`{spec}`: `{listen}` is not an address such as 0.0.0.0:5432"))?;
    match upstream.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
        _ => {
            return Err(format!(
                "`{spec}`: `{upstream}` is not HOST:PORT such as db:5432"
            ))
        }
    }
    Ok((name.to_string(), listen, upstream.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_specs_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_link("app-db=0.0.0.0:5432=db:5432").unwrap(),
            (
                "app-db".into(),
                "0.0.0.0:5432".parse().unwrap(),
                "db:5432".into()
            )
        );
        for bad in [
            "app-db",
            "app-db=0.0.0.0:5432",
            "=0.0.0.0:5432=db:5432",
            "a b=0.0.0.0:5432=db:5432",
            "x=localhost:5432=db:5432",
            "x=0.0.0.0:5432=db",
            "x=0.0.0.0:5432=db:0",
            "x=0.0.0.0:5432=:5432",
        ] {
            assert!(parse_link(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_api_sets_lists_and_lifts_faults_and_a_lease_lifts_by_itself() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        let proxy = Proxy::bind("db", "127.0.0.1:0".parse().unwrap(), upstream)
            .await
            .unwrap();
        let links = Links::new(vec![proxy], false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::clone(&links)));
        let api = Control::new(addr);

        let states = api.links().await.unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].upstream, upstream.to_string());
        assert_eq!(states[0].fault, None);

        assert_eq!(
            api.set("db", Some(LinkFault::Blackhole), None)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            api.links().await.unwrap()[0].fault,
            Some(LinkFault::Blackhole)
        );
        assert_eq!(
            api.set("db", None, None).await.unwrap(),
            Some(LinkFault::Blackhole)
        );

        // An unknown link is a 404 naming the links; a bad body a 400.
        let e = api.set("nope", None, None).await.unwrap_err().to_string();
        assert!(e.contains("404") && e.contains("links are: db"), "{e}");
        let raw = reqwest::Client::new()
            .put(format!("http://{addr}/links/db"))
            .body("{\"fault\": {\"fault\": \"warp\"}}")
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status().as_u16(), 400);
        assert_eq!(api.links().await.unwrap()[0].fault, None);
        let query = reqwest::get(format!("http://{addr}/health?probe=1"))
            .await
            .unwrap();
        assert_eq!(
            query.status().as_u16(),
            200,
            "a query string is not part of the route"
        );

        // A lease lifts its own fault; a later change is not lifted by an older lease.
        api.set(
            "db",
            Some(LinkFault::Reset),
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap();
        assert_eq!(api.links().await.unwrap()[0].fault, Some(LinkFault::Reset));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(api.links().await.unwrap()[0].fault, None);
        api.set(
            "db",
            Some(LinkFault::Reset),
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap();
        api.set("db", Some(LinkFault::Blackhole), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            api.links().await.unwrap()[0].fault,
            Some(LinkFault::Blackhole)
        );
        server.abort();
    }
}
