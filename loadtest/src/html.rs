//! `--report PATH.html`: the report as one self-contained page (`templates/report.html`,
//! askama), with its charts ([`crate::charts`]) inline as SVG: no script, no font, nothing
//! fetched, so it opens offline and can be mailed or archived as one file.
//!
//! Every figure the page shows from the report carries its place in `--json` as a JSON
//! pointer and its exact value (`data-field="/per_second/3/p99_ms" data-value="1.234"`), so
//! a test (or anyone) can check that the page and the JSON of the same run agree.

use askama::Template;

use crate::charts::{self, ChartError};
use crate::report::{Common, Report, Verdict};
use crate::table::Row;

mod counts;
mod figures;

use counts::{parallel_counts, parallel_section, problems, sequential_counts, throughput_counts};
use figures::{Figure, pointer};

/// The page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    /// A chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// The template could not be rendered.
    #[error("rendering the report page: {0}")]
    Template(#[from] askama::Error),
}

/// The page (`loadtest/templates/report.html`); askama escapes every value but the SVG.
#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    /// The mode, as the table's title names it.
    title: &'static str,
    /// `sequential`, `parallel` or `throughput`, as `--json`'s `mode`.
    mode: Figure,
    /// PASS, FAIL or NOTHING PROVEN.
    verdict_word: &'static str,
    /// The verdict as `--json` has it, also the CSS class.
    verdict: Figure,
    /// Base URLs, comma-separated.
    targets: String,
    /// Why, in sentences.
    reasons: &'a [String],
    /// Worth knowing.
    notes: &'a [String],
    /// A few distinct error messages.
    error_examples: &'a [String],
    /// The verdict's counts: anomalies, broken rules or failed requests, by mode; each with
    /// whether it is a problem (then shown in red when above zero).
    counts: Vec<(Figure, bool)>,
    /// The table's rows, as in the terminal.
    rows: Vec<Row>,
    /// The headline figures: requests, errors, throughput, percentiles.
    headline: Vec<Figure>,
    /// The latency distribution chart.
    distribution_svg: String,
    /// Its points: (percentile, latency).
    distribution: Vec<(Figure, Figure)>,
    /// Requests and errors per second.
    requests_svg: String,
    /// p50 and p99 per second.
    latency_svg: String,
    /// Replica names in order, with their colour in the charts.
    replicas: Vec<(String, String)>,
    /// One row per second.
    seconds: Vec<SecondRow>,
    /// Requests per replica chart.
    replicas_svg: String,
    /// Requests per replica.
    per_replica: Vec<Figure>,
    /// `--parallel`: acknowledged against applied increments.
    parallel: Option<ParallelSection>,
}

/// One second of the run, as a table row.
struct SecondRow {
    /// Seconds since the start.
    second: Figure,
    /// Requests, errors, p50, p99.
    figures: Vec<Figure>,
    /// Requests per replica, in the order of `Page::replicas`.
    replicas: Vec<Figure>,
}

/// A parallel run's increments: acknowledged, applied, lost, unknown.
struct ParallelSection {
    /// The bar chart.
    svg: String,
    /// The figures behind it, and the bounds.
    figures: Vec<Figure>,
}

impl Report {
    /// The report as one self-contained HTML page, for `--report`.
    pub fn to_html(&self) -> Result<String, HtmlError> {
        let (title, counts, rows, parallel): (_, Vec<(Figure, bool)>, _, _) = match self {
            Report::Sequential(r) => (
                "sequential consistency",
                problems(sequential_counts(r)),
                r.rows(),
                None,
            ),
            Report::Parallel(r) => (
                "parallel increments on one session",
                problems(parallel_counts(r)),
                r.rows(),
                Some(parallel_section(r)?),
            ),
            Report::Throughput(r) => ("throughput", throughput_counts(r), r.rows(), None),
        };
        let mode = match self {
            Report::Sequential(_) => "sequential",
            Report::Parallel(_) => "parallel",
            Report::Throughput(_) => "throughput",
        };
        let common = self.common();
        let replicas: Vec<String> = common.requests_per_replica.keys().cloned().collect();
        let page = Page {
            title,
            mode: Figure::text("mode", "/mode", mode),
            verdict_word: common.verdict.word(),
            verdict: Figure::text("verdict", "/verdict", verdict_name(common.verdict)),
            targets: common.targets.join(", "),
            reasons: &common.reasons,
            notes: &common.notes,
            error_examples: &common.error_examples,
            counts,
            rows,
            headline: headline(common),
            distribution_svg: charts::latency_distribution(&common.latency_distribution)?,
            distribution: (0..)
                .zip(&common.latency_distribution)
                .map(|(i, p)| {
                    let at = |field| pointer(&["latency_distribution", &i.to_string(), field]);
                    (
                        Figure::float("percentile", at("percentile"), p.percentile),
                        Figure::ms("latency", at("ms"), p.ms),
                    )
                })
                .collect(),
            requests_svg: charts::requests_per_second(&common.per_second, &replicas)?,
            latency_svg: charts::latency_per_second(&common.per_second)?,
            replicas: (0..)
                .zip(&replicas)
                .map(|(i, name)| (name.clone(), charts::css(charts::replica_colour(i))))
                .collect(),
            seconds: seconds(common, &replicas),
            replicas_svg: charts::bars(
                "requests per replica",
                "requests",
                &(0..)
                    .zip(&common.requests_per_replica)
                    .map(|(i, (name, n))| (name.clone(), *n, charts::replica_colour(i)))
                    .collect::<Vec<_>>(),
            )?,
            per_replica: common
                .requests_per_replica
                .iter()
                .map(|(name, n)| Figure::count(name, pointer(&["requests_per_replica", name]), *n))
                .collect(),
            parallel,
        };
        Ok(page.render()?)
    }
}

/// The verdict as `--json` spells it.
fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Unproven => "unproven",
    }
}

/// Requests, errors, throughput and the latency percentiles.
fn headline(c: &Common) -> Vec<Figure> {
    vec![
        Figure::count("requests", "/requests".to_owned(), c.requests),
        Figure::count("errors", "/errors".to_owned(), c.errors),
        Figure::float("req/s", "/req_per_s".to_owned(), c.req_per_s),
        Figure::float("seconds", "/elapsed_s".to_owned(), c.elapsed_s),
        Figure::ms("p50", "/latency/p50_ms".to_owned(), c.latency.p50_ms),
        Figure::ms("p90", "/latency/p90_ms".to_owned(), c.latency.p90_ms),
        Figure::ms("p99", "/latency/p99_ms".to_owned(), c.latency.p99_ms),
        Figure::ms("p99.9", "/latency/p999_ms".to_owned(), c.latency.p999_ms),
        Figure::ms("max", "/latency/max_ms".to_owned(), c.latency.max_ms),
    ]
}

/// The per-second table.
fn seconds(c: &Common, replicas: &[String]) -> Vec<SecondRow> {
    (0..)
        .zip(&c.per_second)
        .map(|(i, s)| {
            let i = i.to_string();
            let at = |field: &str| pointer(&["per_second", &i, field]);
            let ms = |label, field, value: Option<f64>| match value {
                Some(ms) => Figure::ms(label, at(field), ms),
                None => Figure::absent(label),
            };
            SecondRow {
                second: Figure::count("second", at("second"), s.second),
                figures: vec![
                    Figure::count("requests", at("requests"), s.requests),
                    Figure::count("errors", at("errors"), s.errors),
                    ms("p50", "p50_ms", s.p50_ms),
                    ms("p99", "p99_ms", s.p99_ms),
                ],
                replicas: replicas
                    .iter()
                    .map(|name| match s.per_replica.get(name) {
                        Some(n) => Figure::count(
                            name,
                            pointer(&["per_second", &i, "per_replica", name]),
                            *n,
                        ),
                        None => Figure::zero(name),
                    })
                    .collect(),
            }
        })
        .collect()
}
