//! Charts of a run as SVG (plotters' SVG backend: text stays text, no font files are
//! needed): recovery-time ECDF with the deadline and p50/p95/p99 marked, histogram,
//! recovery by trial index (drift), success rate with its confidence band as trials
//! accumulate. Deterministic: the same trials give the same bytes.

use plotters::coord::ranged1d::AsRangedCoord;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::checker::{Outcome, TrialResult};
use crate::stats;

/// Chart size in pixels (the HTML report shows them at this size).
const SIZE: (u32, u32) = (760, 380);
const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(120, 120, 120);

/// One rendered chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// File stem under `charts/`.
    pub name: &'static str,
    /// Title shown above it.
    pub title: &'static str,
    /// The SVG document.
    pub svg: String,
}

fn recoveries(trials: &[TrialResult]) -> Vec<f64> {
    let mut v = crate::checker::recoveries(trials);
    v.sort_by(f64::total_cmp);
    v
}

/// A chart over the coordinates that the given ranges describe.
type Frame<'a, DB, X, Y> = ChartContext<
    'a,
    DB,
    Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>,
>;

/// A white canvas with the axes' label areas; `y_labels` is the room for y tick labels.
fn frame<'a, DB: DrawingBackend, X: AsRangedCoord, Y: AsRangedCoord>(
    root: &'a DrawingArea<DB, Shift>,
    y_labels: u32,
    x: X,
    y: Y,
) -> Result<Frame<'a, DB, X, Y>, String> {
    root.fill(&WHITE).map_err(draw)?;
    ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(y_labels)
        .build_cartesian_2d(x, y)
        .map_err(draw)
}

/// The legend box, in one style for every chart.
fn legend<
    'a,
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = XV>,
    XV,
    Y: Ranged<ValueType = YV>,
    YV,
>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(position)
        .draw()
        .map_err(draw)
}

fn draw(err: impl std::fmt::Display) -> String {
    format!("chart error: {err}")
}

/// Upper end of a recovery-time axis: the deadline is shown when it is within 3× the
/// slowest recovery; far beyond it, it would squash every observation into a corner.
fn x_max(values: &[f64], deadline_ms: f64) -> f64 {
    let slowest = values.iter().copied().fold(0.0, f64::max);
    if slowest == 0.0 || deadline_ms <= slowest * 3.0 {
        deadline_ms.max(slowest) * 1.05
    } else {
        slowest * 1.3
    }
}

fn deadline_label(deadline_ms: f64, top: f64) -> String {
    if deadline_ms <= top {
        format!("deadline {deadline_ms:.0} ms")
    } else {
        format!("deadline {deadline_ms:.0} ms (beyond the axis)")
    }
}

/// Colours of the per-fault series, in order (the first is the single-series blue).
const SERIES: [RGBColor; 6] = [
    BLUE,
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// The ECDF's step points of one group of trials, up to `right`: the fraction is
/// over all its decided trials, so trials that never recovered keep it below 1.
fn ecdf_points(trials: &[TrialResult], right: f64) -> Vec<(f64, f64)> {
    let v = recoveries(trials);
    let n = trials
        .iter()
        .filter(|t| t.outcome != Outcome::Unknown)
        .count()
        .max(1) as f64;
    let mut points = vec![(0.0, 0.0)];
    for (i, x) in v.iter().enumerate() {
        points.push((*x, i as f64 / n));
        points.push((*x, (i + 1) as f64 / n));
    }
    if !v.is_empty() {
        points.push((right, (v.len() as f64) / n));
    }
    points
}

fn ecdf<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    trials: &[TrialResult],
    deadline_ms: f64,
) -> Result<(), String> {
    let v = recoveries(trials);
    let right = x_max(&v, deadline_ms);
    let mut chart = frame(root, 56, 0f64..right, 0f64..1.02f64)?;
    chart
        .configure_mesh()
        .x_desc("recovery time (ms)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("fraction of trials recovered")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(draw)?;
    let groups = crate::verdict::by_fault(trials);
    if groups.len() < 2 {
        chart
            .draw_series(LineSeries::new(
                ecdf_points(trials, right),
                BLUE.stroke_width(2),
            ))
            .map_err(draw)?
            .label("ECDF")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    } else {
        // One series per fault (kind and target), each with its own median.
        for (i, ((fault, target), ts)) in groups.iter().enumerate() {
            let colour = SERIES[i % SERIES.len()];
            let p50 = stats::quantile(&recoveries(ts), 0.5);
            chart
                .draw_series(LineSeries::new(
                    ecdf_points(ts, right),
                    colour.stroke_width(2),
                ))
                .map_err(draw)?
                .label(format!(
                    "{} · p50 {}",
                    crate::verdict::fault_label(fault, target),
                    p50.map_or("—".into(), |x| format!("{x:.0} ms"))
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            if let Some(x) = p50 {
                chart
                    .draw_series(LineSeries::new(
                        vec![(x, 0.0), (x, 0.5)],
                        colour.mix(0.6).stroke_width(1),
                    ))
                    .map_err(draw)?;
            }
        }
    }
    chart
        // Beyond the axis it is drawn on the right edge, and the legend says so.
        .draw_series(LineSeries::new(
            vec![
                (deadline_ms.min(right), 0.0),
                (deadline_ms.min(right), 1.02),
            ],
            RED.stroke_width(2),
        ))
        .map_err(draw)?
        .label(deadline_label(deadline_ms, right))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
    // Labels at different heights so that close quantiles stay readable; with one
    // series per fault, each carries its own median instead.
    let marks: &[(&str, f64, f64)] = if groups.len() < 2 {
        &[("p50", 0.5, 0.08), ("p95", 0.95, 0.18), ("p99", 0.99, 0.28)]
    } else {
        &[]
    };
    for &(label, q, y) in marks {
        if let Some(x) = stats::quantile(&v, q) {
            chart
                .draw_series(LineSeries::new(
                    vec![(x, 0.0), (x, 1.02)],
                    GREY.stroke_width(1),
                ))
                .map_err(draw)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" {label}"),
                    (x, y),
                    ("sans-serif", 14).into_font(),
                )))
                .map_err(draw)?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(draw)?;
    Ok(())
}

fn histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    trials: &[TrialResult],
    deadline_ms: f64,
) -> Result<(), String> {
    let v = recoveries(trials);
    let top = x_max(&v, deadline_ms);
    let bins = 30usize;
    let width = top / bins as f64;
    let mut counts = vec![0u32; bins];
    for x in &v {
        counts[((x / width) as usize).min(bins - 1)] += 1;
    }
    let mut chart = frame(
        root,
        56,
        0f64..top,
        0u32..counts.iter().copied().max().unwrap_or(1) + 1,
    )?;
    chart
        .configure_mesh()
        .x_desc("recovery time (ms)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("trials")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(draw)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x0 = i as f64 * width;
            Rectangle::new([(x0, 0), (x0 + width * 0.95, *c)], BLUE.filled())
        }))
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

fn by_trial<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    trials: &[TrialResult],
    deadline_ms: f64,
) -> Result<(), String> {
    let v = recoveries(trials);
    let n = trials.iter().map(|t| t.trial).max().unwrap_or(1);
    let mut chart = frame(root, 56, 0u32..n + 1, 0f64..x_max(&v, deadline_ms))?;
    chart
        .configure_mesh()
        .x_desc("trial")
        .y_desc("recovery time (ms)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(draw)?;
    if deadline_ms <= x_max(&v, deadline_ms) {
        chart
            .draw_series(LineSeries::new(
                vec![(0, deadline_ms), (n + 1, deadline_ms)],
                RED.stroke_width(2),
            ))
            .map_err(draw)?;
    }
    chart
        .draw_series(trials.iter().filter_map(|t| {
            let color = if t.outcome == Outcome::Pass {
                BLUE
            } else {
                RED
            };
            t.recovery_ms
                .map(|r| Circle::new((t.trial, r), 4, color.filled()))
        }))
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

fn success_band<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    trials: &[TrialResult],
    target: f64,
    confidence: f64,
) -> Result<(), String> {
    let mut passed = 0u64;
    let mut lo = Vec::new();
    let mut hi = Vec::new();
    let mut obs = Vec::new();
    for (i, t) in trials.iter().enumerate() {
        passed += u64::from(t.outcome == Outcome::Pass);
        let n = i as u64 + 1;
        let x = n as u32;
        lo.push((x, stats::rate_lower_bound(passed, n, confidence)));
        hi.push((x, stats::rate_upper_bound(passed, n, confidence)));
        obs.push((x, passed as f64 / n as f64));
    }
    let n = trials.len().max(1) as u32;
    let mut chart = frame(root, 56, 0u32..n + 1, 0f64..1.02f64)?;
    chart
        .configure_mesh()
        .x_desc("trials so far")
        .y_desc("success rate")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(draw)?;
    let band: Vec<(u32, f64)> = lo.iter().copied().chain(hi.iter().rev().copied()).collect();
    chart
        .draw_series(std::iter::once(Polygon::new(band, BLUE.mix(0.2).filled())))
        .map_err(draw)?;
    chart
        .draw_series(LineSeries::new(obs, BLUE.stroke_width(2)))
        .map_err(draw)?
        .label(format!(
            "observed, with one-sided {:.0}% bounds",
            confidence * 100.0
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            vec![(0, target), (n + 1, target)],
            RED.stroke_width(2),
        ))
        .map_err(draw)?
        .label(format!("target {:.1}%", target * 100.0))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(draw)?;
    Ok(())
}

const GREEN: RGBColor = RGBColor(44, 160, 44);
const ORANGE: RGBColor = RGBColor(255, 127, 14);

/// The trial worth looking at: the first that did not pass, else the slowest.
fn featured(trials: &[TrialResult]) -> Option<&TrialResult> {
    trials
        .iter()
        .find(|t| t.outcome != Outcome::Pass)
        .or_else(|| {
            trials
                .iter()
                .filter(|t| t.recovery_ms.is_some())
                .max_by(|a, b| {
                    a.recovery_ms
                        .unwrap_or(0.0)
                        .total_cmp(&b.recovery_ms.unwrap_or(0.0))
                })
        })
}

/// The lanes of a timeline, in order of first appearance.
fn timeline_lanes(tl: &crate::checker::Timeline) -> Vec<&str> {
    let mut lanes: Vec<&str> = Vec::new();
    for lane in tl
        .marks
        .iter()
        .map(|m| &m.1)
        .chain(tl.spans.iter().map(|s| &s.2))
    {
        if !lanes.contains(&lane.as_str()) {
            lanes.push(lane);
        }
    }
    lanes
}

fn timeline<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    trial: &TrialResult,
) -> Result<(), String> {
    use crate::checker::Mark;
    let tl = &trial.timeline;
    let lanes = timeline_lanes(tl);
    // A little warm-up context before the fault, all of the observation after it.
    let times = || {
        tl.marks
            .iter()
            .map(|m| m.0)
            .chain(tl.spans.iter().flat_map(|s| [s.0, s.1]))
    };
    let left = times().fold(0.0, f64::min).max(-300.0);
    let right = times().fold(trial.recovery_ms.unwrap_or(0.0), f64::max) * 1.05 + 10.0;
    let rows = lanes.len().max(1) as f64;
    // The key below the chart, so a chart copied out of the report still reads.
    root.fill(&WHITE).map_err(draw)?;
    let height = root.dim_in_pixel().1;
    let (plot, key) = root.split_vertically(height.saturating_sub(TIMELINE_KEY_HEIGHT));
    timeline_key(&key)?;
    let mut chart = frame(&plot, 150, left..right, -0.5f64..rows - 0.5)?;
    let names: Vec<String> = lanes.iter().map(|s| s.to_string()).collect();
    chart
        .configure_mesh()
        .x_desc("ms after the fault was injected")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_labels(lanes.len() * 2 + 1)
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .disable_y_mesh()
        .draw()
        .map_err(draw)?;
    if let Some(end) = tl.fault_end_ms {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, -0.5), (end.max(1.0), rows - 0.5)],
                RED.mix(0.12).filled(),
            )))
            .map_err(draw)?;
    }
    if let Some(r) = trial.recovery_ms {
        chart
            .draw_series(LineSeries::new(
                vec![(r, -0.5), (r, rows - 0.5)],
                GREEN.stroke_width(2),
            ))
            .map_err(draw)?;
    }
    let y_of = |lane: &str| lanes.iter().position(|l| *l == lane).unwrap_or(0) as f64;
    // Long runs of one probe result, folded while the trial ran: a bar as thick as
    // the attempts' dots.
    chart
        .draw_series(tl.spans.iter().filter(|s| s.1 >= left && s.0 <= right).map(
            |(from, to, lane, mark)| {
                let y = y_of(lane);
                let color = if *mark == Mark::ProbeFail { RED } else { GREEN };
                Rectangle::new(
                    [(from.max(left), y - 0.08), (to.min(right), y + 0.08)],
                    color.filled(),
                )
            },
        ))
        .map_err(draw)?;
    chart
        .draw_series(tl.marks.iter().filter(|m| m.0 >= left && m.0 <= right).map(
            |(x, lane, mark)| {
                let y = y_of(lane);
                let style = match mark {
                    Mark::ProbeOk | Mark::ClientOk | Mark::Healthy => GREEN.filled(),
                    Mark::ProbeFail | Mark::Died => RED.filled(),
                    Mark::ClientError => ORANGE.filled(),
                    Mark::Started => BLUE.filled(),
                    Mark::Fault => BLACK.filled(),
                };
                let size = if matches!(
                    mark,
                    Mark::Died | Mark::Started | Mark::Healthy | Mark::Fault
                ) {
                    7
                } else {
                    3
                };
                Circle::new((*x, y), size, style)
            },
        ))
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

/// Height of the timeline's key, below its chart.
const TIMELINE_KEY_HEIGHT: u32 = 30;

/// The timeline's key: every mark and band it draws, with its meaning.
fn timeline_key<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> Result<(), String> {
    let font = ("sans-serif", 13).into_font();
    let y = 12;
    let mut x = 12;
    let text = |area: &DrawingArea<DB, Shift>, label: &str, x: i32| -> Result<i32, String> {
        area.draw(&Text::new(label.to_string(), (x, y - 7), font.clone()))
            .map_err(draw)?;
        let w = area
            .estimate_text_size(label, &TextStyle::from(font.clone()))
            .map_err(draw)?
            .0 as i32;
        Ok(x + w + 18)
    };
    area.draw(&Rectangle::new(
        [(x, y - 6), (x + 16, y + 6)],
        RED.mix(0.12).filled(),
    ))
    .map_err(draw)?;
    x = text(area, "fault in effect", x + 22)?;
    area.draw(&PathElement::new(
        vec![(x + 7, y - 7), (x + 7, y + 7)],
        GREEN.stroke_width(2),
    ))
    .map_err(draw)?;
    x = text(area, "recovered", x + 16)?;
    for (label, color, size) in [
        ("fault", BLACK, 6),
        ("died", RED, 6),
        ("started", BLUE, 6),
        ("healthy", GREEN, 6),
        ("probe up", GREEN, 3),
        ("probe down", RED, 3),
        ("client error", ORANGE, 3),
    ] {
        area.draw(&Circle::new((x + 6, y), size, color.filled()))
            .map_err(draw)?;
        x = text(area, label, x + 16)?;
    }
    Ok(())
}

/// Registers the embedded font once: text is measured (and drawn in PNGs) with
/// DejaVu Sans from the binary, never with a system font.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// The charts, in page order.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Ecdf,
    Histogram,
    ByTrial,
    SuccessRate,
    Timeline,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Ecdf,
        Kind::Histogram,
        Kind::ByTrial,
        Kind::SuccessRate,
        Kind::Timeline,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Ecdf => "recovery-ecdf",
            Kind::Histogram => "recovery-histogram",
            Kind::ByTrial => "recovery-by-trial",
            Kind::SuccessRate => "success-rate",
            Kind::Timeline => "timeline",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Ecdf => "Recovery time, cumulative",
            Kind::Histogram => "Recovery time, histogram",
            Kind::ByTrial => "Recovery time by trial (drift; red: failed)",
            Kind::SuccessRate => "Success rate as trials accumulate",
            Kind::Timeline => "Timeline of the first failed, else the slowest, trial (shaded: fault; green line: recovered; red: failure or death; blue: start; orange: client error)",
        }
    }
}

/// What the charts are drawn from.
struct Inputs<'a> {
    trials: &'a [TrialResult],
    deadline_ms: f64,
    target: f64,
    confidence: f64,
}

impl Inputs<'_> {
    fn size(&self, kind: Kind) -> (u32, u32) {
        match (kind, featured(self.trials)) {
            (Kind::Timeline, Some(t)) => (
                SIZE.0,
                120 + TIMELINE_KEY_HEIGHT + 36 * timeline_lanes(&t.timeline).len() as u32,
            ),
            _ => SIZE,
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        kind: Kind,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), String> {
        match kind {
            Kind::Ecdf => ecdf(root, self.trials, self.deadline_ms),
            Kind::Histogram => histogram(root, self.trials, self.deadline_ms),
            Kind::ByTrial => by_trial(root, self.trials, self.deadline_ms),
            Kind::SuccessRate => success_band(root, self.trials, self.target, self.confidence),
            Kind::Timeline => match featured(self.trials) {
                Some(t) => timeline(root, t),
                None => Err("no trial to show".into()),
            },
        }
    }
}

/// Every chart of a run as SVG. A chart that cannot be drawn is replaced by its error text.
pub fn render_all(
    trials: &[TrialResult],
    deadline_ms: f64,
    target: f64,
    confidence: f64,
) -> Vec<Chart> {
    register_font();
    let inputs = Inputs {
        trials,
        deadline_ms,
        target,
        confidence,
    };
    Kind::ALL
        .iter()
        .map(|&kind| {
            let mut svg = String::new();
            let drawn = {
                let root = SVGBackend::with_string(&mut svg, inputs.size(kind)).into_drawing_area();
                inputs.draw(kind, &root)
            };
            if let Err(e) = drawn {
                svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"40\"><text x=\"10\" y=\"20\">{e}</text></svg>", SIZE.0);
            }
            Chart { name: kind.name(), title: kind.title(), svg }
        })
        .collect()
}

/// Writes every chart as PNG into `dir` (`<name>.png`), text in the embedded font.
pub fn write_pngs(
    dir: &std::path::Path,
    trials: &[TrialResult],
    deadline_ms: f64,
    target: f64,
    confidence: f64,
) -> Result<(), String> {
    register_font();
    let inputs = Inputs {
        trials,
        deadline_ms,
        target,
        confidence,
    };
    for kind in Kind::ALL {
        let path = dir.join(format!("{}.png", kind.name()));
        let drawn = {
            let root = BitMapBackend::new(&path, inputs.size(kind)).into_drawing_area();
            inputs.draw(kind, &root)
        };
        // A chart without data (a run interrupted before its first trial) says so
        // instead of failing the whole report.
        if let Err(why) = drawn {
            let root = BitMapBackend::new(&path, (SIZE.0, 40)).into_drawing_area();
            root.fill(&WHITE).map_err(draw)?;
            root.draw(&Text::new(why, (10, 12), ("sans-serif", 16).into_font()))
                .map_err(draw)?;
            root.present()
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_without_trials_still_renders_every_chart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let charts = render_all(&[], 1000.0, 0.9, 0.95);
        assert_eq!(charts.len(), Kind::ALL.len());
        assert!(charts.iter().all(|c| c.svg.starts_with("<svg")));
        write_pngs(dir.path(), &[], 1000.0, 0.9, 0.95).expect("pngs");
        for kind in Kind::ALL {
            let png = std::fs::read(dir.path().join(format!("{}.png", kind.name()))).expect("png");
            assert_eq!(&png[..4], b"\x89PNG");
        }
    }
}
