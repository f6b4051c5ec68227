//! The human summary: a two-column table with the verdict first, then the reasons and the
//! first anomalies. Plain text, so it reads the same in a terminal, a CI log or a README.

use std::fmt::Write as _;

use crate::check::AnomalyKind;
use crate::latency::LatencySummary;
use crate::report::{Common, ParallelReport, Report, SequentialReport, ThroughputReport};

/// Renders a report for people.
pub fn render(report: &Report) -> String {
    let (title, rows, extra) = match report {
        Report::Sequential(r) => ("sequential consistency", sequential_rows(r), examples(r)),
        Report::Parallel(r) => (
            "parallel increments on one session",
            parallel_rows(r),
            String::new(),
        ),
        Report::Throughput(r) => ("throughput", throughput_rows(r), String::new()),
    };
    let common = report.common();
    let mut rows = rows;
    rows.extend(common_rows(common));
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
    out.push_str(&extra);
    out
}

fn sequential_rows(r: &SequentialReport) -> Vec<(String, String)> {
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
        (crate::endpoint::Endpoint::Text, _) => {
            "X-Served-By alone (the text body names no replica)".to_owned()
        }
        (crate::endpoint::Endpoint::Json, 0) => "X-Served-By and the body agree".to_owned(),
        (crate::endpoint::Endpoint::Json, n) => {
            format!("X-Served-By and the body disagree in {n} answers")
        }
    }
}

/// Whether each session's last increment was read back.
fn final_reads(r: &SequentialReport) -> String {
    match r.endpoint {
        crate::endpoint::Endpoint::Text => {
            "none: the text endpoint has no read route, the last increments are unchecked"
                .to_owned()
        }
        crate::endpoint::Endpoint::Json => format!(
            "{} of {} sessions read back after their last increment",
            r.final_reads, r.users
        ),
    }
}

fn endpoint_name(r: &SequentialReport) -> &'static str {
    match r.endpoint {
        crate::endpoint::Endpoint::Json => "POST /api/session/views",
        crate::endpoint::Endpoint::Text => "GET /session",
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
        } else if e.anomaly.expected_min == e.anomaly.expected_max {
            e.anomaly.expected_min.to_string()
        } else {
            format!("{}..={}", e.anomaly.expected_min, e.anomaly.expected_max)
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

fn parallel_rows(r: &ParallelReport) -> Vec<(String, String)> {
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
                    "{final_value} (correct: {}..={})",
                    check.expected_min, check.expected_max
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
fn rule_name(rule: crate::bounds::Rule) -> String {
    serde_json::to_value(rule)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{rule:?}"))
}

fn throughput_rows(r: &ThroughputReport) -> Vec<(String, String)> {
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

fn common_rows(c: &Common) -> Vec<(String, String)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Anomaly, AnomalyKind};
    use crate::endpoint::Endpoint;
    use crate::report::{AnomalyCounts, LocatedAnomaly, Spread, Verdict};
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
        let text = render(&Report::Sequential(report));
        assert!(text.contains("FAIL"), "{text}");
        assert!(text.contains("reset 1"), "{text}");
        assert!(text.contains("app-1 20, app-2 20"), "{text}");
        assert!(text.contains("user   1 request   2: reset"), "{text}");
        assert!(
            text.contains("user   0 final read  : stale_read    saw 19, expected 20"),
            "{text}"
        );
        assert!(text.contains("not shared"), "{text}");
    }
}
