//! Host ports a run takes from rebound, so that N runs of one scenario share a
//! machine: `${port:NAME}` in the scenario text and `${REBOUND_PORT_NAME…}` in its
//! compose files are the same port, a free one rebound picks for the run (or the
//! value of the environment variable `REBOUND_PORT_NAME`, which pins it).
//!
//! A free port is drawn at random from 20000–32767 (below Linux's ephemeral range,
//! so no outgoing connection holds it), must bind on every address, and is leased
//! for ten minutes by a file under the state directory (`ports/<port>`), renewed at
//! every trial: two runs that start at once never draw the same port, even from
//! containers that share that directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rand::Rng;

/// The range ports are drawn from.
pub const RANGE: std::ops::Range<u16> = 20000..32768;

/// How long a lease holds a port without being renewed.
pub const LEASE: Duration = Duration::from_secs(600);

/// The environment variable prefix of a port (`REBOUND_PORT_HTTP` for `${port:http}`).
pub const ENV_PREFIX: &str = "REBOUND_PORT_";

/// Why the ports could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A placeholder is malformed.
    #[error("`{placeholder}`: {message}")]
    Placeholder {
        /// The placeholder as written.
        placeholder: String,
        /// What is wrong.
        message: String,
    },
    /// A pinned port is not a port number.
    #[error("{var}={value} is not a port number (1–65535)")]
    Pinned {
        /// The environment variable.
        var: String,
        /// Its value.
        value: String,
    },
    /// No free port was found.
    #[error("no free host port found in {}–{} after {tries} tries (lease directory {dir})", RANGE.start, RANGE.end - 1, dir = dir.display())]
    Exhausted {
        /// Ports tried.
        tries: u32,
        /// The lease directory.
        dir: PathBuf,
    },
}

/// The host ports of one run, by environment variable name (`REBOUND_PORT_HTTP`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ports(pub BTreeMap<String, u16>);

/// The environment variable of port `name`: `http` → `REBOUND_PORT_HTTP`, `-` → `_`.
pub fn env_var(name: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// The port names (`${port:NAME}`) a text refers to, in order of first use.
pub fn placeholders(text: &str) -> Result<Vec<String>, PortError> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${port:") {
        let after = &rest[i + 7..];
        let end = after.find('}').ok_or_else(|| PortError::Placeholder {
            placeholder: format!("${{port:{}", after.chars().take(20).collect::<String>()),
            message: "unterminated placeholder (expected `${port:NAME}`)".into(),
        })?;
        let name = &after[..end];
        let ok = !name.is_empty()
            && name.len() <= 40
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(PortError::Placeholder {
                placeholder: format!("${{port:{name}}}"),
                message: "a port name is 1–40 letters, digits, `-` or `_`".into(),
            });
        }
        if !out.iter().any(|n| env_var(n) == env_var(name)) {
            out.push(name.to_string());
        }
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// The `REBOUND_PORT_*` variables a compose file uses (`${REBOUND_PORT_WEB:-18090}`).
pub fn compose_variables(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&format!("${{{ENV_PREFIX}")) {
        let after = &rest[i + 2..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let var = &after[..len];
        if var.len() > ENV_PREFIX.len() && !out.iter().any(|v| v == var) {
            out.push(var.to_string());
        }
        rest = &after[len..];
    }
    out
}

impl Ports {
    /// The port behind an environment variable name.
    pub fn get(&self, var: &str) -> Option<u16> {
        self.0.get(var).copied()
    }

    /// True when the run takes no port from rebound.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes a port for every variable in `vars` not held yet: the environment's
    /// value if set (pinned), else a free leased one.
    pub fn take(&mut self, vars: &[String]) -> Result<(), PortError> {
        for var in vars {
            if self.0.contains_key(var) {
                continue;
            }
            let port = match std::env::var(var) {
                Ok(value) => match value.trim().parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => {
                        return Err(PortError::Pinned {
                            var: var.clone(),
                            value,
                        })
                    }
                },
                Err(_) => self.free(&lease_dir())?,
            };
            self.0.insert(var.clone(), port);
        }
        Ok(())
    }

    /// A free port, leased in `dir`, not one this run holds already.
    fn free(&self, dir: &Path) -> Result<u16, PortError> {
        let _ = std::fs::create_dir_all(dir);
        let mut rng = rand::rng();
        const TRIES: u32 = 200;
        for _ in 0..TRIES {
            let port = rng.random_range(RANGE);
            if self.0.values().any(|p| *p == port) || !bindable(port) {
                continue;
            }
            if lease(dir, port) {
                return Ok(port);
            }
        }
        Err(PortError::Exhausted {
            tries: TRIES,
            dir: dir.to_path_buf(),
        })
    }

    /// Renews (or takes again) the leases of this run's drawn ports, at every
    /// trial: a container's restart frees its port for a moment.
    pub fn renew(&self) {
        let dir = lease_dir();
        for (var, port) in &self.0 {
            if std::env::var_os(var).is_none() {
                let _ = std::fs::write(
                    dir.join(port.to_string()),
                    format!("{}\n", std::process::id()),
                );
            }
        }
    }

    /// Gives the leases back (the end of a run).
    pub fn release(&self) {
        let dir = lease_dir();
        for (var, port) in &self.0 {
            if std::env::var_os(var).is_none() {
                let _ = std::fs::remove_file(dir.join(port.to_string()));
            }
        }
    }

    /// Replaces every `${port:NAME}` of `text` by its port (names not held are left).
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find("${port:") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 7..];
            match after
                .find('}')
                .and_then(|end| Some((end, self.get(&env_var(&after[..end]))?)))
            {
                Some((end, port)) => {
                    out.push_str(&port.to_string());
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str("${port:");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// `name=port` pairs for a console line (`http 127.0.0.1:23456`).
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(var, port)| {
                format!(
                    "{} {port}",
                    var.trim_start_matches(ENV_PREFIX).to_ascii_lowercase()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where leases live.
fn lease_dir() -> PathBuf {
    crate::journal::state_dir().join("ports")
}

/// True when `port` binds on every IPv4 address (nothing listens on it).
fn bindable(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// Takes the lease of `port` in `dir`: a new file, or one older than [`LEASE`].
fn lease(dir: &Path, port: u16) -> bool {
    let path = dir.join(port.to_string());
    let me = format!("{}\n", std::process::id());
    match std::fs::File::create_new(&path) {
        Ok(mut f) => {
            use std::io::Write;
            let _ = f.write_all(me.as_bytes());
            true
        }
        Err(_) => {
            let stale = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > LEASE);
            // Taken over by rewriting (the mtime is then fresh): two runs racing for
            // one stale lease both see it stale, but a stale port is rare and the bind
            // check of compose then names the clash.
            stale && std::fs::write(&path, me).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_once_and_checked() {
        let text =
            "url = \"http://127.0.0.1:${port:http}/x\"\nb = \"${port:db}\"\nc = \"${port:http}\"";
        assert_eq!(placeholders(text).unwrap(), ["http", "db"]);
        assert!(placeholders("${port:}").is_err());
        assert!(placeholders("${port:a b}").is_err());
        let e = placeholders("x ${port:http").unwrap_err().to_string();
        assert!(e.contains("unterminated"), "{e}");
        assert_eq!(env_var("zk-client"), "REBOUND_PORT_ZK_CLIENT");
    }

    #[test]
    fn compose_variables_are_the_rebound_port_ones() {
        let text = "ports: [\"127.0.0.1:${REBOUND_PORT_HTTP:-18090}:80\", \"${REBOUND_PORT_DB}:5432\", \"${OTHER:-1}:2\", \"${REBOUND_PORT_HTTP}:81\"]";
        assert_eq!(
            compose_variables(text),
            ["REBOUND_PORT_HTTP", "REBOUND_PORT_DB"]
        );
    }

    #[test]
    fn expanding_replaces_held_names_and_leaves_others() {
        let ports = Ports(BTreeMap::from([
            ("REBOUND_PORT_HTTP".to_string(), 23456),
            ("REBOUND_PORT_ZK_CLIENT".to_string(), 23457),
        ]));
        assert_eq!(
            ports.expand("a ${port:http} b ${port:zk-client} c ${port:other} d ${port:"),
            "a 23456 b 23457 c ${port:other} d ${port:"
        );
        assert_eq!(ports.describe(), "http 23456, zk_client 23457");
    }

    #[test]
    fn drawn_ports_are_distinct_bindable_and_leased() {
        let dir = tempfile::tempdir().unwrap();
        let mut ports = Ports::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let p = ports.free(dir.path()).unwrap();
            assert!(RANGE.contains(&p));
            assert!(seen.insert(p), "port {p} drawn twice");
            assert!(dir.path().join(p.to_string()).is_file());
            ports.0.insert(format!("REBOUND_PORT_P{p}"), p);
        }
        // A held lease is not taken again; a stale one is.
        let held = *seen.iter().next().unwrap();
        assert!(!lease(dir.path(), held));
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join(held.to_string()))
            .unwrap();
        f.set_modified(SystemTime::now() - LEASE - Duration::from_secs(1))
            .unwrap();
        assert!(lease(dir.path(), held));
        // A port something listens on is never drawn.
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        assert!(!bindable(l.local_addr().unwrap().port()));
    }
}
