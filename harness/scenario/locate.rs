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
        let segs: Vec<Seg> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                _ => None,
            })
            .collect();
        // Inside a table tagged by `kind` or `backend` serde buffers the table and
        // loses both the key and its position: find the key by taking keys out
        // until the error goes away, then its own line under its table's header.
        let tagged = matches!(segs.as_slice(), [Seg::Key(k)] if k == "stack")
            || matches!(segs.as_slice(), [Seg::Key(k), Seg::Index(_)] if ["fault", "probe", "workload"].contains(&k.as_str()));
        if tagged {
            if let Some(found) = tagged_culprit(path, text, e.inner()) {
                return found;
            }
        }
        // A missing field: the table it is missing from, at its header.
        if e.inner().message().starts_with("missing field") {
            let key = if segs.is_empty() {
                "(top level)".to_string()
            } else {
                dotted(&segs)
            };
            let line = if segs.is_empty() {
                1
            } else {
                line_of_table(text, &segs).unwrap_or(1)
            };
            return ScenarioError::Parse {
                path: path.to_path_buf(),
                line,
                column: 1,
                key,
                message: e.inner().message().trim().to_string(),
            };
        }
        toml_error(path, text, e.path().to_string(), e.inner())
    })
}

/// The header line of the table `path` names (`[slo]`, the n-th `[[fault]]`).
fn line_of_table(text: &str, path: &[Seg]) -> Option<usize> {
    let names: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    match path.last()? {
        Seg::Index(n) => header_line(text, &format!("[[{}]]", names.join(".")), *n),
        Seg::Key(_) => {
            let header = format!("[{}]", names.join("."));
            text.lines().position(|l| l.trim() == header).map(|i| i + 1)
        }
    }
}

/// One step of a path into the TOML tree.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `stack.service[2].restart` (1-based indices, as rebound's own checks count).
fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{}]", i + 1)),
        }
    }
    out
}

fn without(root: &toml::Value, path: &[Seg]) -> Option<toml::Value> {
    let mut copy = root.clone();
    let (last, parent) = path.split_last()?;
    let mut node = &mut copy;
    for s in parent {
        node = match (s, node) {
            (Seg::Key(k), toml::Value::Table(t)) => t.get_mut(k)?,
            (Seg::Index(i), toml::Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    match (last, node) {
        (Seg::Key(k), toml::Value::Table(t)) => {
            t.remove(k)?;
        }
        (Seg::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => return None,
    }
    Some(copy)
}

fn node<'v>(root: &'v toml::Value, path: &[Seg]) -> Option<&'v toml::Value> {
    path.iter().try_fold(root, |n, s| match (s, n) {
        (Seg::Key(k), toml::Value::Table(t)) => t.get(k),
        (Seg::Index(i), toml::Value::Array(a)) => a.get(*i),
        _ => None,
    })
}

/// The deepest key under `at` whose removal makes the file read (or read up to a
/// missing `that key`): the one the error is about.
fn culprit(root: &toml::Value, at: Vec<Seg>) -> Option<Vec<Seg>> {
    let children: Vec<Seg> = match node(root, &at)? {
        toml::Value::Table(t) => t.keys().map(|k| Seg::Key(k.clone())).collect(),
        toml::Value::Array(a) => (0..a.len()).map(Seg::Index).collect(),
        _ => return None,
    };
    for c in children {
        let mut path = at.clone();
        path.push(c.clone());
        let Some(modified) = without(root, &path) else {
            continue;
        };
        let fixed = match modified.try_into::<ScenarioFile>() {
            Ok(_) => true,
            // Without a present key serde reads on and then misses it: that key
            // was the one it could not read. Not so for a tag, which is read
            // first whatever the table's other keys hold.
            Err(e) => match &c {
                Seg::Key(k) if k != "kind" && k != "backend" => {
                    e.message().trim() == format!("missing field `{k}`")
                }
                _ => false,
            },
        };
        if fixed {
            return Some(culprit(root, path.clone()).unwrap_or(path));
        }
    }
    None
}

/// The line of `path`'s last key: searched from the header of the innermost
/// array-of-tables element (or table) on the path.
fn line_of(text: &str, path: &[Seg]) -> Option<usize> {
    let mut header_at = 1;
    let mut prefix: Vec<&str> = Vec::new();
    for (i, s) in path.iter().enumerate() {
        match s {
            Seg::Key(k) => prefix.push(k),
            Seg::Index(n) => {
                header_at = header_line(text, &format!("[[{}]]", prefix.join(".")), *n)?;
                continue;
            }
        }
        let is_last = i + 1 == path.len();
        if !is_last {
            if let Some(l) = text
                .lines()
                .enumerate()
                .skip(header_at.saturating_sub(1))
                .find(|(_, l)| l.trim() == format!("[{}]", prefix.join(".")))
            {
                header_at = l.0 + 1;
            }
        }
    }
    match path.last()? {
        Seg::Key(k) => locate(text, k, None, header_at).or(Some(header_at)),
        Seg::Index(_) => Some(header_at),
    }
}

fn tagged_culprit(path: &Path, text: &str, e: &toml::de::Error) -> Option<ScenarioError> {
    // A missing key has no line of its own: its table is named instead.
    if e.message().starts_with("missing field") {
        return None;
    }
    let root: toml::Value = toml::from_str::<toml::Table>(text).ok()?.into();
    let found = culprit(&root, Vec::new())?;
    let line = line_of(text, &found)?;
    let column = text
        .lines()
        .nth(line - 1)
        .map_or(1, |l| l.len() - l.trim_start().len() + 1);
    Some(ScenarioError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        key: dotted(&found),
        message: e.message().trim().to_string(),
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
