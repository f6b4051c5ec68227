//! The throughput mode's rows of the table: the load, the responses by status, the timeouts.

use super::report::ThroughputReport;
use crate::table::{self, Row};

impl ThroughputReport {
    /// The table's rows after the verdict: the mode's own, then the shared ones.
    pub(crate) fn rows(&self) -> Vec<Row> {
        table::with_common(rows(self), &self.common)
    }

    /// The table for people.
    pub(crate) fn to_table(&self) -> String {
        table::render("throughput", rows(self), &self.common, "")
    }
}

fn rows(r: &ThroughputReport) -> Vec<Row> {
    let loop_kind = match r.rate {
        Some(rate) => format!("open loop at {rate} req/s (latency from intended send time)"),
        None => "closed loop".to_owned(),
    };
    let statuses: Vec<String> = r
        .status_counts
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    vec![
        (
            "load".to_owned(),
            format!(
                "{} {} on {} connections, {loop_kind}",
                r.method, r.path, r.connections
            ),
        ),
        (
            "responses".to_owned(),
            format!("{} ({})", r.completed, statuses.join(", ")),
        ),
        ("timeouts".to_owned(), r.timeouts.to_string()),
    ]
}
