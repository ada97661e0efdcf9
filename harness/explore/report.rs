//! What an explore session writes: `explore.json` (everything, for tools),
//! `explore.html` (the failure modes with their replay files, rates, ECDF and
//! timeline, then the coverage seen and the schedules tried) and the console
//! summary. Written after every mode found and at the end, so a killed session
//! keeps what it found.

use std::fmt::Write as _;
use std::path::Path;

use super::{ExploreError, ExploreOutcome, Rate};
use crate::report::html::escape;

/// Writes `explore.json` and `explore.html` into the session's directory.
pub fn write(o: &ExploreOutcome) -> Result<(), ExploreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExploreError::Io { path, source }
    };
    let json = o.dir.join("explore.json");
    let text = serde_json::to_string_pretty(o).map_err(|e| ExploreError::Io {
        path: json.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&json, text + "\n").map_err(io(&json))?;
    let html = o.dir.join("explore.html");
    std::fs::write(&html, render_html(o)).map_err(io(&html))?;
    Ok(())
}

fn rate(r: &Rate) -> String {
    format!(
        "{}/{} ({:.0} %, 95 % interval {:.0}–{:.0} %)",
        r.failures,
        r.trials,
        r.value() * 100.0,
        r.low * 100.0,
        r.high * 100.0
    )
}

/// `path` relative to the session directory, for links.
fn link(o: &ExploreOutcome, path: &Path) -> String {
    path.strip_prefix(&o.dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The page.
pub fn render_html(o: &ExploreOutcome) -> String {
    let mut h = String::new();
    let (word, color) = if o.interrupted {
        ("INTERRUPTED", "#9a6700")
    } else if o.modes.is_empty() {
        ("NO FAILURE FOUND", "#1a7f37")
    } else {
        ("FAILURES FOUND", "#cf222e")
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rebound explore · {name}</title>\n<style>\
body{{font-family:sans-serif;margin:24px;max-width:1000px;color:#1f2328}}h1{{font-size:22px}}h2{{font-size:18px;margin-top:28px}}\
.badge{{display:inline-block;padding:4px 10px;border-radius:6px;color:#fff;background:{color};font-weight:bold}}\
table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left;font-size:14px;vertical-align:top}}\
th{{background:#f6f8fa}}code{{font-size:13px}}.mode{{border:1px solid #d0d7de;border-radius:6px;padding:8px 16px;margin:16px 0}}\
img{{max-width:100%}}details{{margin:8px 0}}\
</style></head><body>\n<h1>rebound explore · {name}</h1>\n\
<p><span class=\"badge\">{word}</span> {modes} failure mode(s) · {tried} schedule(s) tried, {kept} kept for new behaviour · {trials} trial(s) in {runs} stack bring-up(s) · {elapsed} of a {budget} budget · seed {seed}</p>\n",
        name = escape(&o.scenario),
        modes = o.modes.len(),
        tried = o.schedules.len(),
        kept = o.kept,
        trials = o.trials,
        runs = o.runs,
        elapsed = humantime::format_duration(std::time::Duration::from_secs(o.elapsed.as_secs())),
        budget = humantime::format_duration(o.budget),
        seed = o.seed,
    );
    let _ = writeln!(
        h,
        "<p><code>--seed {}</code> draws the same schedules again where the trials behave the same (which schedules are kept depends on what they showed), seed {} here; <code>rebound run modes/mode-N.toml</code> replays a mode.</p>",
        o.seed, o.seed
    );
    for m in &o.modes {
        let _ = write!(
            h,
            "<div class=\"mode\"><h2>Mode {n}: {key}</h2>\n<table>\
<tr><th>shrunk schedule</th><td><code>{shrunk}</code> ({faults} fault(s)){incomplete}</td></tr>\
<tr><th>reproduces</th><td>{rate}</td></tr>\
<tr><th>found</th><td>schedule #{at}: <code>{found}</code>, reproduced {frate}</td></tr>\
<tr><th>first failure</th><td>{reason}</td></tr>\
<tr><th>replay</th><td><code>rebound run {file}</code> (<a href=\"{file_link}\">{file_link}</a>)</td></tr>\
<tr><th>failing run</th><td><a href=\"{run}/report.html\">{run}</a>{trial}</td></tr></table>\n",
            n = m.number,
            key = escape(&m.key),
            shrunk = escape(&m.shrunk.to_string()),
            faults = m.shrunk.steps.len(),
            incomplete = if m.incomplete {
                " — shrinking was cut short"
            } else {
                ""
            },
            rate = rate(&m.rate),
            at = m.found_at,
            found = escape(&m.found.to_string()),
            frate = rate(&m.found_rate),
            reason = escape(&m.reason),
            file = escape(&m.file.display().to_string()),
            file_link = escape(&link(o, &m.file)),
            run = escape(&link(o, &m.run_dir)),
            trial = m.trial.map(|t| format!(", trial {t}")).unwrap_or_default(),
        );
        for (chart, title) in [
            ("timeline", "Timeline of a failing trial"),
            ("recovery-ecdf", "Recovery time, cumulative"),
        ] {
            let _ = writeln!(
                h,
                "<figure><figcaption>{title}</figcaption><img src=\"{}/charts/{chart}.svg\" alt=\"{title}\"></figure>",
                escape(&link(o, &m.run_dir))
            );
        }
        let _ = writeln!(
            h,
            "<details><summary>shrinking ({} candidate(s), each run up to {} time(s))</summary><pre>{}</pre></details></div>",
            m.shrink_log.len(),
            m.reruns,
            escape(&m.shrink_log.join("\n"))
        );
    }
    let _ = write!(
        h,
        "<h2>Fault space</h2>\n<p>{} · events: {} · durations: {} · up to {} fault(s) per schedule</p>\n",
        escape(&o.space.cells.join(", ")),
        escape(&o.space.events.join(", ")),
        escape(&o.space.durations.join(", ")),
        o.space.max_faults
    );
    let _ = write!(
        h,
        "<h2>Coverage</h2>\n<p>{} distinct behaviour(s), each with the schedule that first showed it.</p>\n<table><tr><th>#</th><th>behaviour</th></tr>\n",
        o.features.len()
    );
    for (f, at) in &o.features {
        let _ = writeln!(
            h,
            "<tr><td>{at}</td><td><code>{}</code></td></tr>",
            escape(f)
        );
    }
    h.push_str("</table>\n<details><summary>schedules tried</summary><ol>\n");
    for s in &o.schedules {
        let _ = writeln!(h, "<li><code>{}</code></li>", escape(&s.to_string()));
    }
    h.push_str("</ol></details>\n</body></html>\n");
    h
}

/// The console summary.
pub fn render_console(o: &ExploreOutcome) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "rebound explore · {} · {} schedule(s), {} trial(s), {} behaviour(s) in {} · seed {}",
        o.scenario,
        o.schedules.len(),
        o.trials,
        o.features.len(),
        humantime::format_duration(std::time::Duration::from_secs(o.elapsed.as_secs())),
        o.seed
    );
    if o.modes.is_empty() {
        let _ = writeln!(
            t,
            "  no failure mode found{}",
            if o.interrupted { " (interrupted)" } else { "" }
        );
    }
    for m in &o.modes {
        let _ = writeln!(t, "  mode {}  {}", m.number, m.key);
        let _ = writeln!(
            t,
            "          {} fault(s): {}",
            m.shrunk.steps.len(),
            m.shrunk
        );
        let _ = writeln!(t, "          reproduces {}", rate(&m.rate));
        let _ = writeln!(t, "          replay: rebound run {}", m.file.display());
    }
    let _ = writeln!(
        t,
        "  report           {}",
        o.dir.join("explore.html").display()
    );
    t
}
