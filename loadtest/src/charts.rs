//! The HTML report's charts, drawn by `plotters` into SVG strings to inline in the page: the
//! latency distribution (HdrHistogram's percentile plot, both axes logarithmic), requests and
//! errors per second, p50 and p99 per second, and bar charts (requests per replica; a parallel
//! run's acknowledged against applied increments). Text stays SVG `<text>` in the page's font:
//! no font file, no bitmap.

use std::error::Error;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::latency::Percentile;
use crate::series::Second;

/// Every chart's size in SVG user units; the page scales it to its column.
const SIZE: (u32, u32) = (760, 320);
/// The run as a whole.
const TOTAL: RGBColor = RGBColor(37, 99, 235);
/// Errors, and the slow tail.
const BAD: RGBColor = RGBColor(220, 38, 38);
/// The median.
const MEDIAN: RGBColor = RGBColor(5, 150, 105);
/// The light grid lines, faint so that a logarithmic axis's many do not crowd the lines.
const GRID: RGBColor = RGBColor(241, 243, 246);
/// One colour per replica, in name order, repeating after eight.
const REPLICAS: [RGBColor; 8] = [
    RGBColor(124, 58, 237),
    RGBColor(217, 119, 6),
    RGBColor(8, 145, 178),
    RGBColor(190, 24, 93),
    RGBColor(101, 163, 13),
    RGBColor(71, 85, 105),
    RGBColor(234, 88, 12),
    RGBColor(79, 70, 229),
];

/// A chart that could not be drawn (into a string, this means a bug in the drawing code).
#[derive(Debug, thiserror::Error)]
#[error("drawing the {chart} chart: {message}")]
pub struct ChartError {
    /// Which chart.
    chart: &'static str,
    /// What plotters said.
    message: String,
}

/// The colour of the `index`-th replica in name order.
pub(crate) fn replica_colour(index: usize) -> RGBColor {
    REPLICAS[index % REPLICAS.len()]
}

/// The colour as CSS, for the legend the page draws beside a chart.
pub(crate) fn css(colour: RGBColor) -> String {
    format!("rgb({},{},{})", colour.0, colour.1, colour.2)
}

type Drawn = Result<(), Box<dyn Error>>;

/// Draws one chart into an SVG string.
fn svg(
    chart: &'static str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Drawn,
) -> Result<String, ChartError> {
    let fail = |error: &dyn Error| ChartError {
        chart,
        message: error.to_string(),
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        draw(&root).map_err(|e| fail(e.as_ref()))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(out)
}

/// Where a percentile sits on the distribution chart's axis: `1 / (1 − p)`, so each nine
/// (90, 99, 99.9 %) is one decade; the maximum sits at `max_x`.
fn nines(percentile: f64, max_x: f64) -> f64 {
    if percentile >= 100.0 {
        max_x
    } else {
        100.0 / (100.0 - percentile)
    }
}

/// The percentile at a point of the distribution chart's axis, as its label.
fn percentile_label(x: f64) -> String {
    let percentile = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let text = format!("{percentile:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// A range for a logarithmic latency axis: from the decade below the lowest positive value to
/// the decade above the highest, so that every decade's line is labelled.
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if high <= 0.0 {
        return 0.1..10.0;
    }
    let low = 10f64.powf(low.log10().floor());
    let high = 10f64.powf(high.log10().ceil()).max(low * 10.0);
    low..high
}

/// A latency axis label: the decades only (plotters labels its light lines too, and the last
/// light line before a decade lands on the decade, drawing its label twice), rounded so that
/// 10⁻¹ reads 0.1.
fn decade_label(ms: f64) -> String {
    let exponent = ms.log10().round();
    if (ms.log10() - exponent).abs() > 1e-9 {
        return String::new();
    }
    let decade = 10f64.powf(exponent);
    format!("{}", (decade * 1e6).round() / 1e6)
}

/// HdrHistogram's percentile plot: latency (log) against the percentile, one decade per nine.
pub(crate) fn latency_distribution(points: &[Percentile]) -> Result<String, ChartError> {
    // The maximum goes one decade past the last resolved percentile.
    let last = points
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| nines(p.percentile, 1.0))
        .fold(1.0f64, f64::max);
    let max_x = last * 10.0;
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (nines(p.percentile, max_x), p.ms.max(0.001)))
        .collect();
    svg("latency distribution", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (1.0..max_x).log_scale(),
                log_range(xy.iter().map(|p| p.1)).log_scale(),
            )?;
        chart
            .configure_mesh()
            .light_line_style(GRID)
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| decade_label(*y))
            .draw()?;
        chart.draw_series(LineSeries::new(xy.iter().copied(), TOTAL.stroke_width(2)))?;
        chart.draw_series(xy.iter().map(|p| Circle::new(*p, 3, TOTAL.filled())))?;
        Ok(())
    })
}

/// Requests and errors in each second, with one line per replica (`replicas` in name order).
pub(crate) fn requests_per_second(
    seconds: &[Second],
    replicas: &[String],
) -> Result<String, ChartError> {
    let top = seconds.iter().map(|s| s.requests).max().unwrap_or(0).max(1) as f64 * 1.1;
    let end = (seconds.len() as f64).max(1.0);
    // Each second's count is drawn at its middle.
    let line = |count: &dyn Fn(&Second) -> u64| -> Vec<(f64, f64)> {
        seconds
            .iter()
            .map(|s| (s.second as f64 + 0.5, count(s) as f64))
            .collect()
    };
    svg("requests per second", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..end, 0.0..top)?;
        chart
            .configure_mesh()
            .light_line_style(GRID)
            .x_desc("seconds since the start")
            .y_desc("requests per second")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (index, name) in replicas.iter().enumerate() {
            let colour = replica_colour(index);
            let counts = line(&|s| s.per_replica.get(name).copied().unwrap_or(0));
            chart.draw_series(LineSeries::new(counts, colour.stroke_width(1)))?;
        }
        // Dots as well as lines: a run shorter than two seconds has one point per line.
        for (points, colour, width) in [
            (line(&|s| s.requests), TOTAL, 3),
            (line(&|s| s.errors), BAD, 2),
        ] {
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(width),
            ))?;
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, colour.filled())))?;
        }
        Ok(())
    })
}

/// p50 and p99 latency in each second that measured one, logarithmic.
pub(crate) fn latency_per_second(seconds: &[Second]) -> Result<String, ChartError> {
    let end = (seconds.len() as f64).max(1.0);
    let line = |pick: fn(&Second) -> Option<f64>| -> Vec<(f64, f64)> {
        seconds
            .iter()
            .filter_map(|s| pick(s).map(|ms| (s.second as f64 + 0.5, ms.max(0.001))))
            .collect()
    };
    let (p50, p99) = (line(|s| s.p50_ms), line(|s| s.p99_ms));
    let range = log_range(p50.iter().chain(&p99).map(|p| p.1));
    svg("latency per second", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..end, range.log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(GRID)
            .x_desc("seconds since the start")
            .y_desc("latency (ms)")
            .y_label_formatter(&|y| decade_label(*y))
            .draw()?;
        for (points, colour) in [(p50, MEDIAN), (p99, BAD)] {
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?;
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 2, colour.filled())))?;
        }
        Ok(())
    })
}

/// One bar per named count, each in its colour, its value written above it.
pub(crate) fn bars(
    chart_name: &'static str,
    y_desc: &str,
    bars: &[(String, u64, RGBColor)],
) -> Result<String, ChartError> {
    let n = u32::try_from(bars.len()).unwrap_or(u32::MAX).max(1);
    let top = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64 * 1.15;
    svg(chart_name, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(40)
            .y_label_area_size(64)
            // Integer ranges are inclusive: 0..n - 1 is n segments.
            .build_cartesian_2d((0u32..n - 1).into_segmented(), 0.0..top)?;
        chart
            .configure_mesh()
            .light_line_style(GRID)
            .disable_x_mesh()
            .y_desc(y_desc)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => bars
                    .get(*i as usize)
                    .map(|b| b.0.clone())
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .draw()?;
        chart.draw_series((0u32..).zip(bars).map(|(i, (_, value, colour))| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *value as f64),
                ],
                colour.filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))?;
        chart.draw_series((0u32..).zip(bars).map(|(i, (_, value, _))| {
            Text::new(
                value.to_string(),
                (SegmentValue::CenterOf(i), *value as f64),
                ("sans-serif", 14).into_font().color(&BLACK),
            )
        }))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_nine_is_one_decade_on_the_distribution_axis() {
        assert_eq!(nines(0.0, 1e4), 1.0);
        assert!((nines(99.0, 1e4) - 100.0).abs() < 1e-9);
        assert_eq!(nines(100.0, 1e4), 1e4);
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1000.0), "99.9%");
    }

    #[test]
    fn latency_axes_span_whole_decades_and_label_only_them() {
        assert_eq!(log_range([0.7, 23.0].into_iter()), 0.1..100.0);
        assert_eq!(log_range([2.0, 3.0].into_iter()), 1.0..10.0);
        assert_eq!(decade_label(0.1), "0.1");
        assert_eq!(decade_label(100.0), "100");
        assert_eq!(decade_label(20.0), "");
    }

    #[test]
    fn charts_are_svg_even_without_data() {
        for svg in [
            latency_distribution(&[]),
            requests_per_second(&[], &[]),
            latency_per_second(&[]),
            bars("empty", "requests", &[]),
        ] {
            let svg = svg.expect("drawn");
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(svg.trim_end().ends_with("</svg>"));
        }
    }
}
