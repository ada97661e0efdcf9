//! Number and time formatting shared by every report, so that the console, HTML,
//! Markdown and JUnit say the same thing the same way: milliseconds with one
//! decimal and a unit for people (`∞` for a recovery that never happened, `—` for
//! no value), three decimals and no unit in CSV cells, percentages with one decimal.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds for people: `317.8 ms`, `∞` (never recovered), `—` (no value).
pub fn ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.1} ms"),
        Some(_) => "∞".into(),
        None => "—".into(),
    }
}

/// Milliseconds in a CSV cell: `317.812`, empty when there is no finite value.
pub fn ms_cell(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x:.3}"))
        .unwrap_or_default()
}

/// A fraction as a percentage: `86.1%`.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A share in the short form sentences use: `74 %`, `1.15 %`, `0.1 %`, `0 %`.
pub fn pct_short(x: f64) -> String {
    let v = x * 100.0;
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0} %")
    } else {
        let t = format!("{v:.2}");
        format!("{} %", t.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A wall-clock instant in a CSV cell (RFC 3339, microseconds, UTC), empty if none.
pub fn time_cell(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_writes_infinity_and_absence_the_same_way() {
        assert_eq!(ms(Some(317.81)), "317.8 ms");
        assert_eq!(ms(Some(f64::INFINITY)), "∞");
        assert_eq!(ms(None), "—");
        assert_eq!(ms_cell(Some(317.8125)), "317.812");
        assert_eq!(ms_cell(Some(f64::INFINITY)), "");
        assert_eq!(ms_cell(None), "");
        assert_eq!(pct(0.8613), "86.1%");
        assert_eq!(time_cell(None), "");
    }
}
