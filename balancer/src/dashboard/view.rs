//! The dashboard as HTML: askama templates (`balancer/templates/dashboard/`) over a
//! [`Snapshot`], and the small SVG line charts, drawn here as point lists so the page needs
//! no chart script.
//!
//! The live part (`live.html`) is rendered whole for the first page load and again for every
//! server-sent event; the page's script only swaps it in.

use std::time::{Duration, SystemTime};

use askama::Template;

use crate::backend_set::STATUS_CLASSES;

use super::ring::SECONDS;
use super::snapshot::{Health, Row, Snapshot};
use super::timeline::Event;

/// Width of a chart in SVG units: one per second of the minute shown.
const CHART_W: f64 = (SECONDS - 1) as f64;

/// A line chart of the last minute, oldest value left, newest at the right edge.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Height in SVG units (the width is one unit per second).
    pub h: u32,
    /// `x,y` pairs of the line.
    pub line: String,
    /// The same closed down to the axis, for the shaded area.
    pub area: String,
    /// The highest value, as the chart's scale label.
    pub max: String,
}

impl Chart {
    /// Scales `values` (at most a minute's) to the chart's height; `label` formats its max.
    fn new(values: &[Option<f64>], h: u32, label: impl Fn(f64) -> String) -> Chart {
        let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
        let scale = if max > 0.0 { max } else { 1.0 };
        let height = f64::from(h);
        let first = SECONDS.saturating_sub(values.len());
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let v = (*v)?;
                let x = (first + i) as f64;
                // A pixel of margin at the top so the line at the max stays visible.
                let y = height - v / scale * (height - 1.0);
                Some((x.min(CHART_W), y))
            })
            .collect();
        let line = points
            .iter()
            .map(|(x, y)| format!("{x:.0},{y:.1}"))
            .collect::<Vec<_>>()
            .join(" ");
        let area = match (points.first(), points.last()) {
            (Some((x0, _)), Some((x1, _))) => format!("{x0:.0},{height} {line} {x1:.0},{height}"),
            _ => String::new(),
        };
        Chart {
            h,
            max: if points.is_empty() {
                "-".to_owned()
            } else {
                label(max)
            },
            line,
            area,
        }
    }
}

/// One backend's row as shown.
#[derive(Debug)]
pub struct RowView {
    /// `host:port`.
    pub addr: String,
    /// Replica name, or a dash.
    pub name: String,
    /// Machine-readable state: `ready`, `ejected`, `down` or `new` (also its CSS class).
    pub state: &'static str,
    /// The state in words, with the ejection's time left.
    pub state_text: String,
    /// Requests in flight.
    pub in_flight: i64,
    /// Requests in the last second.
    pub rate_now: u64,
    /// Requests per second over the minute.
    pub chart: Chart,
    /// Requests answered so far.
    pub requests: u64,
    /// Non-zero response classes, e.g. `("2xx", 1200)`.
    pub classes: Vec<(&'static str, u64)>,
    /// Failed attempts and ejections, in words (empty when none).
    pub trouble: String,
    /// The last error, or empty.
    pub error: String,
    /// When the last error happened, or empty.
    pub error_at: String,
}

/// One line of the timeline as shown.
#[derive(Debug)]
pub struct EventView {
    /// `HH:MM:SS`.
    pub at: String,
    /// What happened, in a word or two.
    pub word: &'static str,
    /// The same as a CSS class.
    pub class: String,
    /// Which backend: name and address.
    pub who: String,
    /// What it means.
    pub detail: String,
}

/// The part of the page that every update replaces.
#[derive(Template, Debug)]
#[template(path = "dashboard/live.html")]
pub struct Live {
    /// When the snapshot was taken, `HH:MM:SS`.
    pub updated: String,
    /// Backends in rotation.
    pub ready: usize,
    /// Backends known.
    pub known: usize,
    /// Requests through the balancer in the last second.
    pub rate_now: u64,
    /// Requests per second over the minute.
    pub rate_chart: Chart,
    /// The last second's p99, in words.
    pub p99_now: String,
    /// p99 per second over the minute.
    pub p99_chart: Chart,
    /// Requests answered 503 for want of a backend.
    pub unrouted: u64,
    /// One per backend.
    pub rows: Vec<RowView>,
    /// Newest first.
    pub events: Vec<EventView>,
}

/// The whole page: the live part inside, and the script that keeps it live.
#[derive(Template, Debug)]
#[template(path = "dashboard/page.html")]
pub struct Page {
    /// The live part at page load.
    pub live: Live,
}

/// `HH:MM:SS` (UTC) of `t`.
fn clock(t: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(t).to_string();
    text.get(11..19).unwrap_or(&text).to_owned()
}

/// A latency in the unit that reads best.
fn latency(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1e3)
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn who(name: Option<&str>, addr: std::net::SocketAddr) -> String {
    match name {
        Some(name) => format!("{name} ({addr})"),
        None => addr.to_string(),
    }
}

fn row(r: &Row) -> RowView {
    let (state, state_text) = match r.health {
        Health::Ready => ("ready", "ready".to_owned()),
        Health::Ejected(left) => (
            "ejected",
            format!("ejected, {:.0} s left", left.as_secs_f64().ceil()),
        ),
        Health::Down(None) => ("down", "checks failing".to_owned()),
        Health::Down(Some(left)) => (
            "down",
            format!(
                "checks failing; ejected, {:.0} s left",
                left.as_secs_f64().ceil()
            ),
        ),
        Health::New => ("new", "new: no passing check yet".to_owned()),
    };
    let mut trouble = Vec::new();
    if r.failures > 0 {
        trouble.push(format!("{} failed", r.failures));
    }
    if r.ejections > 0 {
        trouble.push(format!("{} ejected", r.ejections));
    }
    let rate: Vec<Option<f64>> = r.rate.iter().map(|n| Some(*n as f64)).collect();
    RowView {
        addr: r.addr.to_string(),
        name: r.name.clone().unwrap_or_else(|| "-".to_owned()),
        state,
        state_text,
        in_flight: r.in_flight,
        rate_now: r.rate.last().copied().unwrap_or(0),
        chart: Chart::new(&rate, 24, |max| format!("{max:.0}/s")),
        requests: r.requests(),
        classes: STATUS_CLASSES
            .iter()
            .copied()
            .zip(r.responses)
            .filter(|(_, n)| *n > 0)
            .collect(),
        trouble: trouble.join(", "),
        error: r
            .last_error
            .as_ref()
            .map(|e| e.text.clone())
            .unwrap_or_default(),
        error_at: r
            .last_error
            .as_ref()
            .map(|e| clock(e.at))
            .unwrap_or_default(),
    }
}

fn event(e: &Event) -> EventView {
    EventView {
        at: clock(e.at),
        word: e.kind.word(),
        class: e.kind.word().replace(' ', "-"),
        who: who(e.name.as_deref(), e.addr),
        detail: e.kind.detail(),
    }
}

impl Live {
    /// The live part for `snapshot`.
    pub fn of(snapshot: &Snapshot) -> Live {
        let rate: Vec<Option<f64>> = snapshot.rate.iter().map(|n| Some(*n as f64)).collect();
        let p99: Vec<Option<f64>> = snapshot
            .p99
            .iter()
            .map(|d| d.map(|d| d.as_secs_f64() * 1e3))
            .collect();
        Live {
            updated: clock(snapshot.taken),
            ready: snapshot.ready(),
            known: snapshot.rows.len(),
            rate_now: snapshot.rate.last().copied().unwrap_or(0),
            rate_chart: Chart::new(&rate, 60, |max| format!("{max:.0} req/s")),
            p99_now: match snapshot.p99.last() {
                Some(Some(d)) => latency(*d),
                _ => "-".to_owned(),
            },
            p99_chart: Chart::new(&p99, 60, |max| latency(Duration::from_secs_f64(max / 1e3))),
            unrouted: snapshot.unrouted,
            rows: snapshot.rows.iter().map(row).collect(),
            events: snapshot.events.iter().map(event).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_puts_the_newest_second_at_the_right_edge_and_the_max_at_the_top() {
        let chart = Chart::new(&[Some(0.0), Some(5.0), Some(10.0)], 20, |m| format!("{m}"));
        assert_eq!(chart.line, "57,20.0 58,10.5 59,1.0");
        assert_eq!(chart.area, format!("57,20 {} 59,20", chart.line));
        assert_eq!(chart.max, "10");
        let quiet = Chart::new(&[None, None], 20, |m| format!("{m}"));
        assert_eq!(
            (quiet.line.as_str(), quiet.area.as_str(), quiet.max.as_str()),
            ("", "", "-")
        );
    }
}
