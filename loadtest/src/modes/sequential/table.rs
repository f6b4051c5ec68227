//! The sequential mode's rows of the table: the shape of the run, the anomalies by kind, the
//! hops and the proof of sharing, then the first anomalies, each with its user and replica.

use std::fmt::Write as _;

use super::report::SequentialReport;
use crate::check::AnomalyKind;
use crate::endpoint::Endpoint;
use crate::report::range;
use crate::table::{self, Row};

impl SequentialReport {
    /// The table's rows after the verdict: the mode's own, then the shared ones.
    pub(crate) fn rows(&self) -> Vec<Row> {
        table::with_common(rows(self), &self.common)
    }

    /// The table for people.
    pub(crate) fn to_table(&self) -> String {
        table::render(
            "sequential consistency",
            rows(self),
            &self.common,
            &examples(self),
        )
    }
}

fn rows(r: &SequentialReport) -> Vec<Row> {
    let kinds: Vec<String> = AnomalyKind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), r.anomalies.get(*k)))
        .collect();
    vec![
        (
            "sessions".to_owned(),
            format!(
                "{} users x {} requests ({} endpoint)",
                r.users,
                r.requests_per_user,
                endpoint_name(r)
            ),
        ),
        (
            "anomalies".to_owned(),
            format!(
                "{} ({})",
                r.anomalies.wrong_values() + r.anomalies.unknown,
                kinds.join(", ")
            ),
        ),
        (
            "sessions with anomalies".to_owned(),
            format!("{} of {}", r.sessions_with_anomalies, r.users),
        ),
        (
            "hops".to_owned(),
            format!("{} of {} consecutive pairs", r.hops, r.hop_pairs),
        ),
        (
            "sessions shared".to_owned(),
            format!(
                "{} of {} carried their count across replicas ({} had a cookie or an id)",
                r.sessions_shared, r.users, r.sessions_identified
            ),
        ),
        ("replica evidence".to_owned(), replica_evidence(r)),
        ("final reads".to_owned(), final_reads(r)),
        (
            "replicas per session".to_owned(),
            format!(
                "min {}, mean {:.1}, max {}",
                r.replicas_per_session.min, r.replicas_per_session.mean, r.replicas_per_session.max
            ),
        ),
    ]
}

/// Where the replica of each answer was read, and whether its two sources agreed.
fn replica_evidence(r: &SequentialReport) -> String {
    match (r.endpoint, r.node_mismatches) {
        (Endpoint::Text, _) => "X-Served-By alone (the text body names no replica)".to_owned(),
        (Endpoint::Json, 0) => "X-Served-By and the body agree".to_owned(),
        (Endpoint::Json, n) => {
            format!("X-Served-By and the body disagree in {n} answers")
        }
    }
}

/// Whether each session's last increment was read back.
fn final_reads(r: &SequentialReport) -> String {
    match r.endpoint {
        Endpoint::Text => {
            "none: the text endpoint has no read route, the last increments are unchecked"
                .to_owned()
        }
        Endpoint::Json => format!(
            "{} of {} sessions read back after their last increment",
            r.final_reads, r.users
        ),
    }
}

fn endpoint_name(r: &SequentialReport) -> &'static str {
    match r.endpoint {
        Endpoint::Json => "POST /api/session/views",
        Endpoint::Text => "GET /session",
    }
}

fn examples(r: &SequentialReport) -> String {
    let mut out = String::new();
    if r.examples.is_empty() {
        return out;
    }
    let _ = writeln!(out, "first anomalies:");
    for e in &r.examples {
        let seen = match e.anomaly.observed {
            Some(v) => format!("saw {v}"),
            None => format!("no value ({})", e.error.as_deref().unwrap_or("error")),
        };
        let expected = if e.anomaly.kind == AnomalyKind::Overflow {
            format!("nothing after {}", e.anomaly.expected_min)
        } else {
            range(e.anomaly.expected_min, e.anomaly.expected_max)
        };
        // Past the planned increments: the read after them.
        let which = if e.anomaly.seq as u64 > r.requests_per_user {
            "final read  ".to_owned()
        } else {
            format!("request {:>3}", e.anomaly.seq)
        };
        let _ = writeln!(
            out,
            "  user {:>3} {which}: {:<13} {seen}, expected {expected} (node {})",
            e.user,
            e.anomaly.kind.name(),
            e.node.as_deref().unwrap_or("?")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Anomaly;
    use crate::latency::LatencySummary;
    use crate::modes::sequential::{AnomalyCounts, LocatedAnomaly, Spread};
    use crate::report::{Common, Report, Verdict};
    use std::collections::BTreeMap;

    #[test]
    fn sequential_table_names_verdict_kinds_replicas_and_examples() {
        let mut report = SequentialReport {
            common: Common {
                verdict: Verdict::Pass,
                reasons: Vec::new(),
                notes: Vec::new(),
                targets: vec!["http://127.0.0.1:8080".to_owned()],
                requests: 40,
                errors: 0,
                error_examples: Vec::new(),
                requests_per_replica: BTreeMap::from([
                    ("app-1".to_owned(), 20),
                    ("app-2".to_owned(), 20),
                ]),
                latency: LatencySummary::default(),
                latency_distribution: Vec::new(),
                per_second: Vec::new(),
                elapsed_s: 0.5,
                req_per_s: 80.0,
                interrupted: false,
            },
            endpoint: Endpoint::Json,
            users: 2,
            requests_per_user: 20,
            anomalies: AnomalyCounts {
                reset: 1,
                ..AnomalyCounts::default()
            },
            sessions_with_anomalies: 1,
            examples: vec![
                LocatedAnomaly {
                    user: 1,
                    anomaly: Anomaly {
                        seq: 2,
                        kind: AnomalyKind::Reset,
                        observed: Some(1),
                        expected_min: 2,
                        expected_max: 2,
                    },
                    node: Some("app-2".to_owned()),
                    error: None,
                },
                LocatedAnomaly {
                    user: 0,
                    anomaly: Anomaly {
                        seq: 21,
                        kind: AnomalyKind::StaleRead,
                        observed: Some(19),
                        expected_min: 20,
                        expected_max: 20,
                    },
                    node: Some("app-1".to_owned()),
                    error: None,
                },
            ],
            hops: 38,
            hop_pairs: 38,
            sessions_shared: 2,
            sessions_identified: 2,
            final_reads: 2,
            node_mismatches: 0,
            node_mismatch_examples: Vec::new(),
            rotated_sessions: 0,
            rotation_examples: Vec::new(),
            replicas_per_session: Spread {
                min: 2,
                mean: 2.0,
                max: 2,
            },
        };
        report.judge();
        let text = Report::Sequential(report).to_table();
        assert!(text.contains("FAIL"), "{text}");
        assert!(text.contains("reset 1"), "{text}");
        assert!(text.contains("app-1 20, app-2 20"), "{text}");
        assert!(text.contains("user   1 request   2: reset"), "{text}");
        assert!(
            text.contains("user   0 final read  : stale_read    saw 19, expected exactly 20"),
            "{text}"
        );
        assert!(text.contains("not shared"), "{text}");
    }
}
