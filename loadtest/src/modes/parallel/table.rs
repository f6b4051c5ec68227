//! The parallel mode's rows of the table: the shape of the run, the session, the increments
//! by outcome, the final value against its bounds, the lost updates and the rules broken.

use super::report::ParallelReport;
use crate::bounds::Rule;
use crate::report::range;
use crate::table::{self, Row};

impl ParallelReport {
    /// The table for people.
    pub(crate) fn to_table(&self) -> String {
        table::render(
            "parallel increments on one session",
            rows(self),
            &self.common,
            "",
        )
    }
}

fn rows(r: &ParallelReport) -> Vec<Row> {
    let shape = match r.per_worker {
        Some(m) => format!("{} workers x {m} increments on one session", r.workers),
        None => format!(
            "{} workers on one session until the duration ends",
            r.workers
        ),
    };
    let mut rows = vec![
        ("shape".to_owned(), shape),
        (
            "session".to_owned(),
            format!(
                "{}{} (opened at {}, base read {}{})",
                r.session.as_deref().unwrap_or("?"),
                if r.session_cookie {
                    ""
                } else {
                    ", no cookie set"
                },
                r.opening_value,
                r.base_value,
                if r.reads > 0 {
                    format!(
                        "; {} reads were increments, text has no read route",
                        r.reads
                    )
                } else {
                    String::new()
                }
            ),
        ),
        (
            "increments".to_owned(),
            format!(
                "{} acknowledged, {} refused, {} unknown",
                r.acknowledged, r.failed, r.unknown
            ),
        ),
    ];
    match (&r.counter, r.final_value) {
        (Some(check), Some(final_value)) => {
            rows.push((
                "final value".to_owned(),
                format!(
                    "{final_value} (correct: {})",
                    range(check.expected_min, check.expected_max)
                ),
            ));
            rows.push((
                "lost updates".to_owned(),
                format!(
                    "{} ({} applied of {} acknowledged)",
                    check.lost, check.applied, r.acknowledged
                ),
            ));
            if check.phantom > 0 {
                rows.push(("phantom increments".to_owned(), check.phantom.to_string()));
            }
        }
        (None, Some(final_value)) => rows.push((
            "final value".to_owned(),
            format!("{final_value} (its bounds do not fit in 64 bits: not judged)"),
        )),
        _ => rows.push(("final value".to_owned(), "could not be read".to_owned())),
    }
    rows.push((
        "replicas".to_owned(),
        format!("{} acknowledged increments", r.replicas_acknowledging),
    ));
    let broken = if r.violations.is_empty() {
        "every answer within its bounds and in real-time order, no value twice".to_owned()
    } else {
        r.violations
            .iter()
            .map(|v| format!("{} {}", v.count, rule_name(v.rule)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    rows.push(("answers checked".to_owned(), broken));
    rows
}

/// The rule's JSON name, so the table and `--json` say the same.
fn rule_name(rule: Rule) -> String {
    serde_json::to_value(rule)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{rule:?}"))
}
