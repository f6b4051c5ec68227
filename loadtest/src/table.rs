//! The human summary every mode shares: a two-column table with the verdict first, the mode's
//! own rows (each mode's `table` module), the rows every report has, then the reasons, notes,
//! errors seen and the mode's details. Plain text, so it reads the same in a terminal, a CI
//! log or a README.

use std::fmt::Write as _;

use crate::latency::LatencySummary;
use crate::report::Common;

/// One row of the table: its label and its value.
pub(crate) type Row = (String, String);

/// Renders a report for people: `title` names the mode, `rows` are the mode's own, `details`
/// (possibly empty) follows everything else.
pub(crate) fn render(title: &str, rows: Vec<Row>, common: &Common, details: &str) -> String {
    let rows = with_common(rows, common);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let rule = "-".repeat(width + 3 + rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0).min(72));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "loadtest: {title} against {}",
        common.targets.join(", ")
    );
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(out, "{:<width$}   {}", "verdict", common.verdict.word());
    for (key, value) in &rows {
        let _ = writeln!(out, "{key:<width$}   {value}");
    }
    let _ = writeln!(out, "{rule}");
    for reason in &common.reasons {
        let _ = writeln!(out, "* {reason}");
    }
    for note in &common.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if !common.error_examples.is_empty() {
        let _ = writeln!(out, "errors seen: {}", common.error_examples.join("; "));
    }
    out.push_str(details);
    out
}

/// A mode's own rows followed by the rows every report has: the table's rows after the
/// verdict, which the HTML report shows too.
pub(crate) fn with_common(mut rows: Vec<Row>, common: &Common) -> Vec<Row> {
    rows.extend(common_rows(common));
    rows
}

fn common_rows(c: &Common) -> Vec<Row> {
    let per_replica: Vec<String> = c
        .requests_per_replica
        .iter()
        .map(|(node, n)| format!("{node} {n}"))
        .collect();
    vec![
        ("requests".to_owned(), c.requests.to_string()),
        ("errors".to_owned(), c.errors.to_string()),
        (
            "requests per replica".to_owned(),
            if per_replica.is_empty() {
                "-".to_owned()
            } else {
                per_replica.join(", ")
            },
        ),
        ("latency".to_owned(), latency(&c.latency)),
        (
            "throughput".to_owned(),
            format!("{:.1} req/s over {:.2} s", c.req_per_s, c.elapsed_s),
        ),
    ]
}

fn latency(l: &LatencySummary) -> String {
    format!(
        "p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
    )
}
