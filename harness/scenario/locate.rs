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
                    super::tidy(&value, 60)
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
        let message = e.inner().message().trim().to_string();
        let missing = message.starts_with("missing field");
        // Inside a table tagged by `kind` or `backend` serde buffers the table and
        // loses both the key and its position.
        let tagged = matches!(segs.as_slice(), [Seg::Key(k)] if k == "stack")
            || matches!(segs.as_slice(), [Seg::Key(k), Seg::Index(_)] if ["fault", "probe", "workload"].contains(&k.as_str()));
        if !(tagged || missing) {
            return toml_error(path, text, e.path().to_string(), e.inner());
        }
        let Some(root) = toml::from_str::<toml::Table>(text).ok().map(toml::Value::from) else {
            return toml_error(path, text, e.path().to_string(), e.inner());
        };
        // The key (or, for a missing key, the array element) whose removal lets the
        // file read: deeper than serde could say, never shallower.
        let at = if tagged {
            let mut budget = CULPRIT_BUDGET;
            culprit(&root, segs.clone(), missing, &mut budget).unwrap_or(segs)
        } else {
            segs
        };
        let line = line_of(text, &root, &at);
        let column = text
            .lines()
            .nth(line.saturating_sub(1))
            .map_or(1, |l| l.len() - l.trim_start().len() + 1);
        ScenarioError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            key: if at.is_empty() {
                "(top level)".to_string()
            } else {
                dotted(&at)
            },
            message,
        }
    })
}

/// How many trial deserializations the search for a culprit may make: a huge file
/// (a 4 MiB argv) must not turn an error message into minutes of work.
const CULPRIT_BUDGET: u32 = 64;

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

/// The deepest place under `at` whose removal makes the file read.
///
/// For a type error, a key that serde then misses (`missing field` that key; never a
/// tag, which is read first whatever the table holds) counts as well: the key it
/// could not read. For a missing key (`missing`), only an array element whose
/// removal makes the file read counts: the table the key is missing from.
fn culprit(root: &toml::Value, at: Vec<Seg>, missing: bool, budget: &mut u32) -> Option<Vec<Seg>> {
    let children: Vec<Seg> = match node(root, &at)? {
        toml::Value::Table(t) => t.keys().map(|k| Seg::Key(k.clone())).collect(),
        toml::Value::Array(a) => (0..a.len()).map(Seg::Index).collect(),
        _ => return None,
    };
    for c in children {
        if *budget == 0 {
            return None;
        }
        *budget -= 1;
        let mut path = at.clone();
        path.push(c.clone());
        let Some(modified) = without(root, &path) else {
            continue;
        };
        let container = matches!(
            node(root, &path),
            Some(toml::Value::Table(_) | toml::Value::Array(_))
        );
        let reads = modified.try_into::<ScenarioFile>();
        let missed_itself = match (&reads, &c) {
            (Err(e), Seg::Key(k)) if k != "kind" && k != "backend" => {
                e.message().trim() == format!("missing field `{k}`")
            }
            _ => false,
        };
        if missing {
            // Look inside a table or array whose removal only made serde miss it;
            // answer only with an element whose removal made the file read.
            let deeper = (reads.is_ok() || (missed_itself && container))
                .then(|| culprit(root, path.clone(), true, budget))
                .flatten();
            if deeper.is_some() {
                return deeper;
            }
            if reads.is_ok() && matches!(c, Seg::Index(_)) {
                return Some(path);
            }
        } else if reads.is_ok() || missed_itself {
            return Some(culprit(root, path.clone(), false, budget).unwrap_or(path));
        }
    }
    None
}

/// Whether a line is a table header (`[x]`, `[[x]]`), and its name.
fn header_name(line: &str) -> Option<&str> {
    let l = line.trim();
    let inner = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]"));
    inner
        .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        .map(str::trim)
}

/// The line of `key = …` in the section that starts at line `from` (up to the next
/// header), also when written dotted (`env.PORT = 1` for `PORT`).
fn locate_in_section(text: &str, key: &str, from: usize) -> Option<usize> {
    for (i, l) in text.lines().enumerate().skip(from.saturating_sub(1)) {
        if i + 1 > from && header_name(l).is_some() {
            return None;
        }
        let Some((k, _)) = l.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        if k == key || k.ends_with(&format!(".{key}")) {
            return Some(i + 1);
        }
    }
    None
}

/// The line `[name]` after line `from`, before the next header outside `name`'s
/// parent (`[[stack.service]]`'s `[stack.service.env]` is looked for only up to the
/// next `[[stack.service]]`).
fn sub_header(text: &str, name: &str, from: usize) -> Option<usize> {
    let parent = name.rsplit_once('.').map_or("", |p| p.0);
    if parent.is_empty() {
        // A top-level table: wherever its header is.
        return text
            .lines()
            .position(|l| header_name(l) == Some(name) && !l.trim().starts_with("[["))
            .map(|i| i + 1);
    }
    for (i, l) in text.lines().enumerate().skip(from) {
        let Some(h) = header_name(l) else { continue };
        if h == name && !l.trim().starts_with("[[") {
            return Some(i + 1);
        }
        let inside = !parent.is_empty()
            && h.starts_with(&format!("{parent}."))
            && !l.trim().starts_with(&format!("[[{parent}]]"));
        if !inside {
            return None;
        }
    }
    None
}

/// The line of the place `path` names: a key's own line in its table, a table's
/// header, an array element's header, the key of an inline table or array; never
/// a line of another table.
fn line_of(text: &str, root: &toml::Value, path: &[Seg]) -> usize {
    let mut header_at = 1;
    let mut names: Vec<&str> = Vec::new();
    for (i, seg) in path.iter().enumerate() {
        match seg {
            Seg::Key(k) => {
                names.push(k);
                let name = names.join(".");
                match node(root, &path[..=i]) {
                    Some(toml::Value::Table(_)) => match sub_header(text, &name, header_at) {
                        Some(l) => header_at = l,
                        // Inline (`env = { … }`) or dotted: the key's own line.
                        None => return locate_in_section(text, k, header_at).unwrap_or(header_at),
                    },
                    Some(toml::Value::Array(a))
                        if !a.is_empty() && a.iter().all(toml::Value::is_table) =>
                    {
                        match header_line(text, &format!("[[{name}]]"), 0) {
                            // The element (next on the path) finds its own header.
                            Some(first) if i + 1 == path.len() => return first,
                            Some(_) => {}
                            None => {
                                return locate_in_section(text, k, header_at).unwrap_or(header_at)
                            }
                        }
                    }
                    // A value, or an array of values: the key's line.
                    _ => return locate_in_section(text, k, header_at).unwrap_or(header_at),
                }
            }
            Seg::Index(n) => {
                if let Some(l) = header_line(text, &format!("[[{}]]", names.join(".")), *n) {
                    header_at = l;
                }
            }
        }
    }
    header_at
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
