//! The parallel mode's rows of the table: the shape of the run, the session, the increments
//! by outcome, the final value against its bounds, the lost updates and the rules broken.

use super::report::ParallelReport;
use crate::bounds::Rule;
use crate::report::range;
use crate::table::{self, Row};

impl ParallelReport {
    /// The table's rows after the verdict: the mode's own, then the shared ones.
    pub(crate) fn rows(&self) -> Vec<Row> {
        table::with_common(rows(self), &self.common)
    }

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bounds::CounterCheck;
    use crate::endpoint::Endpoint;
    use crate::report::tests::common;

    fn report(final_value: u64, expected_min: u64, expected_max: u64) -> ParallelReport {
        let mut report = ParallelReport {
            common: common(),
            endpoint: Endpoint::Json,
            workers: 16,
            per_worker: Some(100),
            planned: Some(1600),
            lost_workers: 0,
            replicas_acknowledging: 2,
            session: Some("ab12".to_owned()),
            other_sessions: BTreeMap::new(),
            session_cookie: true,
            opening_value: 1,
            base_value: 1,
            reads: 0,
            acknowledged: expected_min - 1,
            failed: 0,
            unknown: expected_max - expected_min,
            final_value: Some(final_value),
            counter: Some(CounterCheck {
                expected_min,
                expected_max,
                applied: final_value - 1,
                lost: 0,
                phantom: 0,
            }),
            violations: Vec::new(),
        };
        report.common.requests = 1600;
        report.judge();
        report
    }

    #[test]
    fn the_final_value_reads_its_bounds_as_words() {
        let exact = report(1601, 1601, 1601).to_table();
        assert!(exact.contains("1601 (correct: exactly 1601)"), "{exact}");

        let widened = report(1600, 1598, 1601).to_table();
        assert!(
            widened.contains("1600 (correct: between 1598 and 1601)"),
            "{widened}"
        );
        assert!(!widened.contains("..="), "{widened}");
    }
}
