//! What a run found, per mode, with the verdict rules in one place. Serialised as-is for `--json`;
//! `table.rs` renders the same data for people.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::{Anomaly, AnomalyKind, CounterCheck};
use crate::endpoint::Endpoint;
use crate::latency::LatencySummary;

/// The outcome of a run that took place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Everything checked out.
    Pass,
    /// Anomalies, errors, lost updates or a failed threshold.
    Fail,
    /// Nothing went wrong, but nothing was proven either: no request hopped between replicas.
    Unproven,
}

impl Verdict {
    /// The process exit code: 0 only for a pass.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail | Verdict::Unproven => 1,
        }
    }

    /// Upper-case word for the table.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unproven => "NOTHING PROVEN",
        }
    }
}

/// A finished run of any mode. JSON carries `"mode"` as the tag.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Report {
    /// Default mode.
    Sequential(SequentialReport),
    /// `--parallel K`.
    Parallel(ParallelReport),
    /// `--throughput`.
    Throughput(ThroughputReport),
}

impl Report {
    /// The verdict of whichever mode ran.
    pub fn verdict(&self) -> Verdict {
        self.common().verdict
    }

    /// The fields every mode shares.
    pub fn common(&self) -> &Common {
        match self {
            Report::Sequential(r) => &r.common,
            Report::Parallel(r) => &r.common,
            Report::Throughput(r) => &r.common,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        self.verdict().exit_code()
    }

    /// Pretty JSON for `--json`.
    pub fn to_json(&self) -> String {
        // Every field is a plain number, string, map with string keys or list: this cannot fail.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    }
}

/// Fields every report carries.
#[derive(Debug, Clone, Serialize)]
pub struct Common {
    /// Pass, fail or unproven.
    pub verdict: Verdict,
    /// Why, in sentences; empty for a clean pass.
    pub reasons: Vec<String>,
    /// Base URLs used, round robin.
    pub targets: Vec<String>,
    /// Requests sent (including the ones that failed).
    pub requests: u64,
    /// Requests without a usable answer: transport errors, timeouts, non-2xx, unreadable bodies.
    pub errors: u64,
    /// A few distinct error messages, to see what failed.
    pub error_examples: Vec<String>,
    /// Responses per replica, from `X-Served-By` (`(none)` when the header was missing).
    pub requests_per_replica: BTreeMap<String, u64>,
    /// Latency percentiles.
    pub latency: LatencySummary,
    /// Wall time of the load phase, seconds.
    pub elapsed_s: f64,
    /// Completed requests per second over `elapsed_s`.
    pub req_per_s: f64,
    /// Stopped early by ctrl-c.
    pub interrupted: bool,
}

/// Anomaly counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AnomalyCounts {
    /// Back to 1: sessions not shared.
    pub reset: u64,
    /// Same value again: lost write or stale read.
    pub repeat: u64,
    /// Skipped values: double-applied or unknown.
    pub gap: u64,
    /// Went down.
    pub non_monotonic: u64,
    /// Errors and timeouts.
    pub unknown: u64,
}

impl AnomalyCounts {
    /// Counts one anomaly.
    pub fn add(&mut self, kind: AnomalyKind) {
        *self.slot(kind) += 1;
    }

    /// The count of one kind.
    pub fn get(&self, kind: AnomalyKind) -> u64 {
        match kind {
            AnomalyKind::Reset => self.reset,
            AnomalyKind::Repeat => self.repeat,
            AnomalyKind::Gap => self.gap,
            AnomalyKind::NonMonotonic => self.non_monotonic,
            AnomalyKind::Unknown => self.unknown,
        }
    }

    fn slot(&mut self, kind: AnomalyKind) -> &mut u64 {
        match kind {
            AnomalyKind::Reset => &mut self.reset,
            AnomalyKind::Repeat => &mut self.repeat,
            AnomalyKind::Gap => &mut self.gap,
            AnomalyKind::NonMonotonic => &mut self.non_monotonic,
            AnomalyKind::Unknown => &mut self.unknown,
        }
    }

    /// Anomalies other than unknown outcomes: proof that the counter was wrong.
    pub fn wrong_values(&self) -> u64 {
        self.reset + self.repeat + self.gap + self.non_monotonic
    }
}

/// One anomaly with the user and replica it happened on, for the examples list.
#[derive(Debug, Clone, Serialize)]
pub struct LocatedAnomaly {
    /// Virtual user (0-based); each user is one session.
    pub user: u64,
    /// The anomaly within that user's session.
    #[serde(flatten)]
    pub anomaly: Anomaly,
    /// The replica that answered, if known.
    pub node: Option<String>,
    /// The error, for unknown outcomes.
    pub error: Option<String>,
}

/// Min / mean / max of distinct replicas per session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    /// Fewest.
    pub min: u64,
    /// Average.
    pub mean: f64,
    /// Most.
    pub max: u64,
}

/// Result of the sequential-consistency mode.
#[derive(Debug, Clone, Serialize)]
pub struct SequentialReport {
    /// Shared fields.
    #[serde(flatten)]
    pub common: Common,
    /// Counter endpoint used.
    pub endpoint: Endpoint,
    /// Virtual users (sessions).
    pub users: u64,
    /// Requests per user.
    pub requests_per_user: u64,
    /// Anomalies by kind.
    pub anomalies: AnomalyCounts,
    /// Sessions with at least one anomaly.
    pub sessions_with_anomalies: u64,
    /// The first anomalies found (at most 20).
    pub examples: Vec<LocatedAnomaly>,
    /// Consecutive requests of a session served by different replicas.
    pub hops: u64,
    /// Consecutive request pairs in all sessions (the most hops possible).
    pub hop_pairs: u64,
    /// Distinct replicas per session.
    pub replicas_per_session: Spread,
}

impl SequentialReport {
    /// Applies the pass rule: zero anomalies, zero errors, hops > 0.
    pub fn judge(&mut self) {
        let mut reasons = Vec::new();
        let wrong = self.anomalies.wrong_values();
        if wrong > 0 {
            let by_kind: Vec<String> = AnomalyKind::ALL
                .iter()
                .filter(|kind| **kind != AnomalyKind::Unknown && self.anomalies.get(**kind) > 0)
                .map(|kind| format!("{} {}", self.anomalies.get(*kind), kind.name()))
                .collect();
            reasons.push(format!(
                "{wrong} wrong counter values in {} of {} sessions ({})",
                self.sessions_with_anomalies,
                self.users,
                by_kind.join(", ")
            ));
            if self.anomalies.reset > 0 {
                reasons.push(
                    "resets mean a replica did not know the session: sessions are not shared"
                        .to_owned(),
                );
            }
        }
        if self.common.errors > 0 {
            reasons.push(format!(
                "{} requests failed or timed out (unknown outcomes)",
                self.common.errors
            ));
        }
        if self.common.interrupted {
            reasons.push("interrupted before every request was sent".to_owned());
        }
        let failed = !reasons.is_empty();
        if self.hops == 0 {
            reasons.push(no_hops_reason(&self.common.requests_per_replica));
        }
        self.common.verdict = if failed {
            Verdict::Fail
        } else if self.hops == 0 {
            Verdict::Unproven
        } else {
            Verdict::Pass
        };
        self.common.reasons = reasons;
    }
}

/// Says plainly why a run without hops proves nothing.
fn no_hops_reason(per_replica: &BTreeMap<String, u64>) -> String {
    let named: Vec<&String> = per_replica.keys().filter(|k| *k != NO_NODE).collect();
    match named.as_slice() {
        [] => "no response carried X-Served-By, so hops between replicas cannot be seen: \
               nothing was proven about shared sessions"
            .to_owned(),
        [only] => format!(
            "every request was served by one replica ({only}): no session hopped between \
             replicas, so nothing was proven about shared sessions"
        ),
        _ => "no session's consecutive requests hopped between replicas (sticky routing?): \
              nothing was proven about shared sessions"
            .to_owned(),
    }
}

/// The key used in `requests_per_replica` when a response had no `X-Served-By`.
pub const NO_NODE: &str = "(none)";

/// Result of the parallel-on-one-session mode.
#[derive(Debug, Clone, Serialize)]
pub struct ParallelReport {
    /// Shared fields.
    #[serde(flatten)]
    pub common: Common,
    /// Counter endpoint used for the increments.
    pub endpoint: Endpoint,
    /// Concurrent workers (K).
    pub workers: u64,
    /// Increments per worker (M), if bounded by count.
    pub per_worker: Option<u64>,
    /// The abbreviated session id the app reported, if any.
    pub session: Option<String>,
    /// Counter value after the opening request.
    pub opening_value: u64,
    /// Increments acknowledged with 2xx.
    pub acknowledged: u64,
    /// Increments refused with 4xx: known not applied.
    pub failed: u64,
    /// Increments with unknown outcome: errors, timeouts, 5xx.
    pub unknown: u64,
    /// The counter read back at the end, if the read worked.
    pub final_value: Option<u64>,
    /// Jepsen's bounds and the lost-update count, if the final value is known.
    pub counter: Option<CounterCheck>,
    /// Extra occurrences of the same acknowledged value (each one an overwritten increment).
    pub duplicate_acknowledged_values: u64,
}

impl ParallelReport {
    /// Passes only with the final value within Jepsen's bounds, no lost updates and no errors.
    pub fn judge(&mut self) {
        let mut reasons = Vec::new();
        match &self.counter {
            None => reasons.push("the final counter value could not be read".to_owned()),
            Some(check) => {
                if check.lost > 0 {
                    reasons.push(format!(
                        "{} lost updates: {} increments acknowledged, {} applied",
                        check.lost, self.acknowledged, check.applied
                    ));
                }
                if check.phantom > 0 {
                    reasons.push(format!(
                        "{} increments more than attempted were applied (final {} > {})",
                        check.phantom,
                        self.final_value.unwrap_or_default(),
                        check.expected_max
                    ));
                }
            }
        }
        if self.common.errors > 0 {
            reasons.push(format!(
                "{} increments failed or timed out, so the count is only bounded",
                self.common.errors
            ));
        }
        if self.common.interrupted {
            reasons.push("interrupted before every increment was sent".to_owned());
        }
        self.common.verdict = if reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        self.common.reasons = reasons;
    }
}

/// Result of the throughput mode.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    /// Shared fields.
    #[serde(flatten)]
    pub common: Common,
    /// Request method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Concurrent connections.
    pub connections: u64,
    /// Open-loop target rate, requests/s; `None` for closed loop.
    pub rate: Option<f64>,
    /// Responses received (any status).
    pub completed: u64,
    /// Of the errors, how many were timeouts.
    pub timeouts: u64,
    /// Responses by status code.
    pub status_counts: BTreeMap<u16, u64>,
}

impl ThroughputReport {
    /// Passes with no errors and every response 2xx or 3xx.
    pub fn judge(&mut self) {
        let mut reasons = Vec::new();
        let bad_status: u64 = self
            .status_counts
            .iter()
            .filter(|(code, _)| **code >= 400)
            .map(|(_, n)| n)
            .sum();
        if self.common.errors > bad_status {
            reasons.push(format!(
                "{} requests failed or timed out ({} timeouts)",
                self.common.errors - bad_status,
                self.timeouts
            ));
        }
        if bad_status > 0 {
            reasons.push(format!("{bad_status} responses had a 4xx/5xx status"));
        }
        if self.common.interrupted {
            reasons.push("interrupted before the end".to_owned());
        }
        self.common.verdict = if reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        self.common.reasons = reasons;
    }
}

/// `--min-rps` and `--max-p99`: a missed threshold turns any verdict into a fail.
#[derive(Debug, Clone, Copy, Default)]
pub struct Thresholds {
    /// Fail below this many requests/s.
    pub min_rps: Option<f64>,
    /// Fail when p99 is above this many milliseconds.
    pub max_p99_ms: Option<f64>,
}

impl Thresholds {
    /// Adds a reason and fails the report for each missed threshold.
    pub fn apply(&self, common: &mut Common) {
        if let Some(min) = self.min_rps
            && common.req_per_s < min
        {
            common.reasons.push(format!(
                "{:.1} req/s is below --min-rps {min}",
                common.req_per_s
            ));
            common.verdict = Verdict::Fail;
        }
        if let Some(max) = self.max_p99_ms
            && common.latency.p99_ms > max
        {
            common.reasons.push(format!(
                "p99 {:.2} ms is above --max-p99 {max} ms",
                common.latency.p99_ms
            ));
            common.verdict = Verdict::Fail;
        }
    }
}

/// Requests per second, 0 for an empty interval.
pub fn per_second(count: u64, elapsed_s: f64) -> f64 {
    if elapsed_s > 0.0 {
        count as f64 / elapsed_s
    } else {
        0.0
    }
}

/// Keeps at most a few distinct error messages.
pub fn remember_error(examples: &mut Vec<String>, message: &str) {
    const KEEP: usize = 5;
    if examples.len() < KEEP && !examples.iter().any(|m| m == message) {
        examples.push(message.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn common() -> Common {
        Common {
            verdict: Verdict::Pass,
            reasons: Vec::new(),
            targets: vec!["http://127.0.0.1:8080".to_owned()],
            requests: 100,
            errors: 0,
            error_examples: Vec::new(),
            requests_per_replica: BTreeMap::from([("a".to_owned(), 50), ("b".to_owned(), 50)]),
            latency: LatencySummary::default(),
            elapsed_s: 1.0,
            req_per_s: 100.0,
            interrupted: false,
        }
    }

    fn sequential(anomalies: AnomalyCounts, errors: u64, hops: u64) -> SequentialReport {
        let mut common = common();
        common.errors = errors;
        SequentialReport {
            common,
            endpoint: Endpoint::Json,
            users: 5,
            requests_per_user: 20,
            anomalies,
            sessions_with_anomalies: u64::from(anomalies.wrong_values() > 0),
            examples: Vec::new(),
            hops,
            hop_pairs: 95,
            replicas_per_session: Spread::default(),
        }
    }

    #[test]
    fn clean_run_with_hops_passes() {
        let mut report = sequential(AnomalyCounts::default(), 0, 95);
        report.judge();
        assert_eq!(report.common.verdict, Verdict::Pass);
        assert!(report.common.reasons.is_empty());
        assert_eq!(Report::Sequential(report).exit_code(), 0);
    }

    #[test]
    fn resets_fail_and_say_sessions_are_not_shared() {
        let mut report = sequential(
            AnomalyCounts {
                reset: 3,
                ..AnomalyCounts::default()
            },
            0,
            95,
        );
        report.judge();
        assert_eq!(report.common.verdict, Verdict::Fail);
        assert!(report.common.reasons.join(" ").contains("not shared"));
    }

    #[test]
    fn errors_alone_fail() {
        let mut report = sequential(AnomalyCounts::default(), 2, 95);
        report.judge();
        assert_eq!(report.common.verdict, Verdict::Fail);
    }

    #[test]
    fn no_hops_proves_nothing_and_is_not_a_pass() {
        let mut report = sequential(AnomalyCounts::default(), 0, 0);
        report.common.requests_per_replica = BTreeMap::from([("app-1".to_owned(), 100)]);
        report.judge();
        assert_eq!(report.common.verdict, Verdict::Unproven);
        assert_eq!(report.common.verdict.exit_code(), 1);
        assert!(report.common.reasons[0].contains("one replica (app-1)"));
        assert!(report.common.reasons[0].contains("nothing was proven"));
    }

    #[test]
    fn missing_header_proves_nothing() {
        let reason = no_hops_reason(&BTreeMap::from([(NO_NODE.to_owned(), 3)]));
        assert!(reason.contains("X-Served-By"));
    }

    #[test]
    fn thresholds_fail_a_passing_run() {
        let mut c = common();
        Thresholds {
            min_rps: Some(1000.0),
            max_p99_ms: None,
        }
        .apply(&mut c);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.reasons[0].contains("--min-rps"));
    }

    #[test]
    fn json_is_tagged_with_the_mode() {
        let mut report = sequential(AnomalyCounts::default(), 0, 95);
        report.judge();
        let json: serde_json::Value =
            serde_json::from_str(&Report::Sequential(report).to_json()).expect("valid JSON");
        assert_eq!(json["mode"], "sequential");
        assert_eq!(json["verdict"], "pass");
        assert_eq!(json["anomalies"]["reset"], 0);
        assert_eq!(json["requests_per_replica"]["a"], 50);
    }

    #[test]
    fn error_examples_are_few_and_distinct() {
        let mut examples = Vec::new();
        for i in 0..10 {
            remember_error(&mut examples, "timeout");
            remember_error(&mut examples, &format!("e{i}"));
        }
        assert_eq!(examples.len(), 5);
        assert_eq!(examples[0], "timeout");
    }
}
