//! Each mode's figures in the HTML report beyond the shared ones: the verdict's counts
//! (anomalies, broken rules, failed requests) and, for `--parallel`, acknowledged against
//! applied increments.

use super::figures::{Figure, pointer};
use super::{HtmlError, ParallelSection};
use crate::charts;
use crate::modes::parallel::ParallelReport;
use crate::modes::sequential::SequentialReport;
use crate::modes::throughput::ThroughputReport;

/// Sequential: each anomaly kind, the sessions with one, the replica mismatches.
pub(super) fn sequential_counts(r: &SequentialReport) -> Vec<Figure> {
    let mut counts: Vec<Figure> = crate::check::AnomalyKind::ALL
        .iter()
        .map(|kind| {
            Figure::count(
                kind.name(),
                pointer(&["anomalies", kind.name()]),
                r.anomalies.get(*kind),
            )
        })
        .collect();
    counts.push(Figure::count(
        "sessions with anomalies",
        "/sessions_with_anomalies".to_owned(),
        r.sessions_with_anomalies,
    ));
    counts.push(Figure::count(
        "node mismatches",
        "/node_mismatches".to_owned(),
        r.node_mismatches,
    ));
    counts
}

/// Parallel: each broken rule, the lost and phantom increments, the unknown outcomes.
pub(super) fn parallel_counts(r: &ParallelReport) -> Vec<Figure> {
    let mut counts: Vec<Figure> = (0..)
        .zip(&r.violations)
        .map(|(i, v)| {
            Figure::count(
                v.rule.name(),
                pointer(&["violations", &i.to_string(), "count"]),
                v.count,
            )
        })
        .collect();
    if counts.is_empty() {
        counts.push(Figure::zero("rules broken"));
    }
    if let Some(check) = &r.counter {
        counts.push(Figure::count(
            "lost updates",
            "/counter/lost".to_owned(),
            check.lost,
        ));
        counts.push(Figure::count(
            "phantom",
            "/counter/phantom".to_owned(),
            check.phantom,
        ));
    }
    counts.push(Figure::count(
        "unknown outcomes",
        "/unknown".to_owned(),
        r.unknown,
    ));
    counts.push(Figure::count("refused", "/failed".to_owned(), r.failed));
    counts
}

/// Counts each of which is a problem when above zero.
pub(super) fn problems(counts: Vec<Figure>) -> Vec<(Figure, bool)> {
    counts.into_iter().map(|f| (f, true)).collect()
}

/// Throughput: errors, timeouts and responses by status (a problem from 400 on).
pub(super) fn throughput_counts(r: &ThroughputReport) -> Vec<(Figure, bool)> {
    let mut counts = problems(vec![
        Figure::count("errors", "/errors".to_owned(), r.common.errors),
        Figure::count("timeouts", "/timeouts".to_owned(), r.timeouts),
    ]);
    counts.extend(r.status_counts.iter().map(|(code, n)| {
        let status = code.to_string();
        let figure = Figure::count(
            &format!("HTTP {status}"),
            pointer(&["status_counts", &status]),
            *n,
        );
        (figure, *code >= 400)
    }));
    counts
}

/// Parallel: acknowledged against applied increments, as bars and figures.
pub(super) fn parallel_section(r: &ParallelReport) -> Result<ParallelSection, HtmlError> {
    let mut bars = vec![(
        "acknowledged".to_owned(),
        r.acknowledged,
        charts::replica_colour(7),
    )];
    let mut figures = vec![
        Figure::count("base value", "/base_value".to_owned(), r.base_value),
        Figure::count("acknowledged", "/acknowledged".to_owned(), r.acknowledged),
        Figure::count("unknown", "/unknown".to_owned(), r.unknown),
    ];
    if let Some(check) = &r.counter {
        bars.push((
            "applied".to_owned(),
            check.applied,
            charts::replica_colour(4),
        ));
        bars.push(("lost".to_owned(), check.lost, charts::replica_colour(3)));
        figures.push(Figure::count(
            "applied",
            "/counter/applied".to_owned(),
            check.applied,
        ));
        figures.push(Figure::count(
            "lost",
            "/counter/lost".to_owned(),
            check.lost,
        ));
        figures.push(Figure::count(
            "lowest correct final value",
            "/counter/expected_min".to_owned(),
            check.expected_min,
        ));
        figures.push(Figure::count(
            "highest correct final value",
            "/counter/expected_max".to_owned(),
            check.expected_max,
        ));
    }
    if let Some(value) = r.final_value {
        figures.push(Figure::count(
            "final value",
            "/final_value".to_owned(),
            value,
        ));
    }
    bars.push(("unknown".to_owned(), r.unknown, charts::replica_colour(5)));
    Ok(ParallelSection {
        svg: charts::bars("increments", "increments", &bars)?,
        figures,
    })
}
