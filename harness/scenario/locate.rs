//! Where a problem is in the scenario file: TOML errors with line and column, keys
//! located by name (and value) under their table header, and the [`Validator`] that
//! turns a kind's field error into a [`ScenarioError`] naming file, line and key.

use std::path::Path;

use super::raw::ScenarioFile;
use super::ScenarioError;

/// The longest duration any key accepts: longer ones are typos, and arithmetic on
/// them (a deadline doubled, added to an instant) would overflow.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

pub(super) fn parse_raw(path: &Path, text: &str) -> Result<ScenarioFile, ScenarioError> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| toml_error(path, text, String::new(), &e))?;
    if let Ok(table) = toml::from_str::<toml::Table>(text) {
        if let Some((key, value)) = too_long(&toml::Value::Table(table), String::new()) {
            let at = text.find(&format!("\"{value}\"")).unwrap_or(0);
            return Err(ScenarioError::Parse {
                path: path.to_path_buf(),
                line: line_col(text, at).0,
                column: line_col(text, at).1,
                key,
                message: format!(
                    "duration \"{}\" is longer than the limit of 366 days",
                    shorten(&value)
                ),
            });
        }
    }
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        toml_error(path, text, key, e.inner())
    })
}

/// The first string value (dotted key, 1-based array indices) that reads as a
/// duration longer than [`MAX_DURATION`].
fn too_long(v: &toml::Value, key: String) -> Option<(String, String)> {
    match v {
        toml::Value::String(s) => {
            let long = humantime::parse_duration(s).map_or_else(
                // "300000000000y" does not even fit: too long as well.
                |e| matches!(e, humantime::DurationError::NumberOverflow),
                |d| d > MAX_DURATION,
            );
            long.then(|| (key, s.clone()))
        }
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| {
            let key = if key.is_empty() {
                k.clone()
            } else {
                format!("{key}.{k}")
            };
            too_long(v, key)
        }),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| too_long(v, format!("{key}[{}]", i + 1))),
        _ => None,
    }
}

/// A value as echoed in a message: at most 60 characters, control characters escaped.
pub(super) fn shorten(value: &str) -> String {
    let escaped: String = value.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() > 60 {
        format!("{}…", escaped.chars().take(60).collect::<String>())
    } else {
        escaped
    }
}

pub(super) fn toml_error(
    path: &Path,
    text: &str,
    key: String,
    e: &toml::de::Error,
) -> ScenarioError {
    let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    // serde_path_to_error reports "." for the root; an unknown key names itself in the message.
    let key = if key.is_empty() || key == "." {
        key_at(text, line).unwrap_or_else(|| "(file)".into())
    } else {
        key
    };
    ScenarioError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        key,
        message: e.message().trim().to_string(),
    }
}

/// 1-based line and column of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The key written at the start of a line (`key = ...`), if any.
pub(super) fn key_at(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?.trim();
    let key = l.split('=').next()?.trim();
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// Finds the first line, at or after line `from`, on which `key = ...value...` is written.
pub(super) fn locate(text: &str, key: &str, value: Option<&str>, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find_map(|(i, l)| {
            let (k, v) = l.split_once('=')?;
            let key_ok = k.trim().trim_matches('"') == key;
            let value_ok = value.is_none_or(|want| v.contains(want));
            (key_ok && value_ok).then_some(i + 1)
        })
}

/// Line of the n-th (0-based) occurrence of a table header like `[[fault]]`.
pub(super) fn header_line(text: &str, header: &str, n: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim().starts_with(header))
        .nth(n)
        .map(|(i, _)| i + 1)
}

pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    /// A run directory's copy: referenced files may not exist next to it.
    pub(super) recorded: bool,
}

impl Validator<'_> {
    pub(super) fn err(
        &self,
        key: impl Into<String>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> ScenarioError {
        ScenarioError::Invalid {
            path: self.path.to_path_buf(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }

    /// Error about `key = value` inside the n-th `header` table.
    pub(super) fn err_in(
        &self,
        header: &str,
        n: usize,
        key: &str,
        value: Option<&str>,
        message: impl Into<String>,
    ) -> ScenarioError {
        let start = header_line(self.text, header, n).unwrap_or(1);
        let line = locate(self.text, key, value, start).or(Some(start));
        let table = header.trim_matches(|c| c == '[' || c == ']');
        self.err(format!("{table}[{}].{key}", n + 1), line, message)
    }
}
