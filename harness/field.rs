//! Validation helpers shared by the kind files (faults, probes, workloads): a kind
//! checks its own keys and reports a [`FieldError`] naming the key and the value;
//! `scenario` adds the file, the table and the line.

use std::net::SocketAddr;
use std::time::Duration;

/// A value of one key of a kind's table that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The key as written in the file (`duration`, `url`, …).
    pub key: &'static str,
    /// Text of the offending value, to find its line (None: the key is enough).
    pub value: Option<String>,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl FieldError {
    /// An error about `key`, located by the key alone.
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            key,
            value: None,
            message: message.into(),
        }
    }

    /// An error about `key = value`, located by the value too.
    pub fn at(key: &'static str, value: &str, message: impl Into<String>) -> Self {
        FieldError {
            key,
            value: Some(value.to_string()),
            message: message.into(),
        }
    }
}

/// A plain-HTTP URL.
pub fn http_url(key: &'static str, url: &str) -> Result<(), FieldError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| FieldError::at(key, url, format!("`{url}` is not a URL: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(FieldError::at(
            key,
            url,
            "only plain http:// URLs are supported",
        ));
    }
    Ok(())
}

/// A plain-HTTP URL on this machine: load goes only to loopback (the stack's
/// published ports), never to another host by mistake.
pub fn loopback_url(key: &'static str, url: &str) -> Result<(), FieldError> {
    http_url(key, url)?;
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(FieldError::at(
            key,
            url,
            format!(
                "workloads send load only to loopback (127.0.0.1, ::1, localhost), not to `{host}`"
            ),
        ))
    }
}

/// An `ip:port` address.
pub fn address(key: &'static str, address: &str) -> Result<SocketAddr, FieldError> {
    address.parse().map_err(|_| {
        FieldError::at(
            key,
            address,
            format!("`{address}` is not an ip:port address"),
        )
    })
}

/// An expected HTTP status: the same rule for every key that takes one (probes,
/// faults, workloads).
pub fn http_status(key: &'static str, status: u16) -> Result<u16, FieldError> {
    if (100..=599).contains(&status) {
        Ok(status)
    } else {
        Err(FieldError::new(
            key,
            format!("{status} is not an HTTP status (100..=599)"),
        ))
    }
}

/// A duration that must not be zero.
pub fn nonzero(key: &'static str, d: Duration) -> Result<Duration, FieldError> {
    if d.is_zero() {
        Err(FieldError::new(
            key,
            format!("{key} must be greater than 0"),
        ))
    } else {
        Ok(d)
    }
}

/// An argv that names a program.
pub fn command(key: &'static str, argv: &[String]) -> Result<(), FieldError> {
    if argv.first().is_none_or(|p| p.is_empty()) {
        Err(FieldError::new(key, "command must name a program"))
    } else {
        Ok(())
    }
}

/// The largest scenario or compose file rebound reads.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Reads a regular file of at most [`MAX_FILE_BYTES`] as UTF-8: a FIFO, a device
/// such as `/dev/zero` or a huge file is an error, never a hang or an
/// out-of-memory.
pub fn read_small_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("larger than {} MiB", MAX_FILE_BYTES >> 20),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_checks_name_the_key_and_say_what_is_accepted() {
        assert!(http_url("url", "http://127.0.0.1:1/x").is_ok());
        let e = http_url("url", "https://x").expect_err("https");
        assert_eq!(e.key, "url");
        assert!(e.message.contains("plain http://"), "{e:?}");
        assert!(address("address", "127.0.0.1:80").is_ok());
        assert!(address("address", "localhost").is_err());
        assert_eq!(
            nonzero("duration", Duration::ZERO)
                .expect_err("zero")
                .message,
            "duration must be greater than 0"
        );
        assert!(command("command", &[]).is_err());
        assert!(command("command", &[String::new()]).is_err());
        assert!(command("command", &["true".into()]).is_ok());
    }
}
