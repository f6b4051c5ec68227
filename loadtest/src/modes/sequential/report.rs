//! The sequential mode's report and its pass rule: zero anomalies, zero errors, every planned
//! request sent, and proof of sharing (a session that carried its count across replicas).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::{Anomaly, AnomalyKind};
use crate::endpoint::Endpoint;
use crate::report::{Common, NO_NODE, NO_SESSION, Verdict};

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
    /// Answers after `18446744073709551615`, which no count can follow.
    pub overflow: u64,
    /// Final reads below the session's last answer: a lost last write or an old copy.
    pub stale_read: u64,
}

impl AnomalyCounts {
    /// Counts one anomaly.
    pub(crate) fn add(&mut self, kind: AnomalyKind) {
        let slot = self.slot(kind);
        *slot = slot.saturating_add(1);
    }

    /// The count of one kind.
    pub fn get(&self, kind: AnomalyKind) -> u64 {
        match kind {
            AnomalyKind::Reset => self.reset,
            AnomalyKind::Repeat => self.repeat,
            AnomalyKind::Gap => self.gap,
            AnomalyKind::NonMonotonic => self.non_monotonic,
            AnomalyKind::Unknown => self.unknown,
            AnomalyKind::Overflow => self.overflow,
            AnomalyKind::StaleRead => self.stale_read,
        }
    }

    fn slot(&mut self, kind: AnomalyKind) -> &mut u64 {
        match kind {
            AnomalyKind::Reset => &mut self.reset,
            AnomalyKind::Repeat => &mut self.repeat,
            AnomalyKind::Gap => &mut self.gap,
            AnomalyKind::NonMonotonic => &mut self.non_monotonic,
            AnomalyKind::Unknown => &mut self.unknown,
            AnomalyKind::Overflow => &mut self.overflow,
            AnomalyKind::StaleRead => &mut self.stale_read,
        }
    }

    /// Anomalies other than unknown outcomes: proof that the counter was wrong.
    pub fn wrong_values(&self) -> u64 {
        [
            self.reset,
            self.repeat,
            self.gap,
            self.non_monotonic,
            self.overflow,
            self.stale_read,
        ]
        .into_iter()
        .fold(0, u64::saturating_add)
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
    /// Sessions in which a replica answered a correct count right after another replica
    /// answered the previous one: the proof that sessions are shared.
    pub sessions_shared: u64,
    /// Sessions whose server set a cookie or named a session id: only these can prove sharing.
    pub sessions_identified: u64,
    /// Sessions whose counter was read back after their last increment (JSON only).
    pub final_reads: u64,
    /// Answers whose `X-Served-By` and body named different replicas: they prove no hop.
    pub node_mismatches: u64,
    /// A few of them, as `user U request R: how`.
    pub node_mismatch_examples: Vec<String>,
    /// Sessions whose id changed while the count went on (rotations).
    pub rotated_sessions: u64,
    /// A few rotations, as `user U request R: old -> new`.
    pub rotation_examples: Vec<String>,
    /// Distinct replicas per session.
    pub replicas_per_session: Spread,
}

impl SequentialReport {
    /// Applies the pass rule: zero anomalies, zero errors, every planned request sent, and at
    /// least one session that carried its count across replicas (else NOTHING PROVEN).
    pub(crate) fn judge(&mut self) {
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
        if self.node_mismatches > 0 {
            reasons.push(format!(
                "{} answers named two different replicas, so their hops cannot be trusted: {}",
                self.node_mismatches,
                self.node_mismatch_examples.join("; ")
            ));
        }
        if self.common.errors > 0 {
            reasons.push(format!(
                "{} requests failed or timed out (unknown outcomes)",
                self.common.errors
            ));
        }
        let planned = self.users.saturating_mul(self.requests_per_user);
        if self.common.interrupted {
            reasons.push("interrupted before every request was sent".to_owned());
        } else if self.common.requests < planned {
            reasons.push(format!(
                "{} of {planned} planned requests were not sent",
                planned - self.common.requests
            ));
        }
        if self.rotated_sessions > 0 {
            self.common.notes.push(format!(
                "{} session(s) changed their id while the count went on (a session id \
                 rotation): {}",
                self.rotated_sessions,
                self.rotation_examples.join("; ")
            ));
        }
        let failed = !reasons.is_empty();
        let unproven = self.sessions_shared == 0;
        if unproven {
            reasons.push(if self.sessions_identified == 0 {
                NO_SESSION.to_owned()
            } else if self.hops == 0 {
                no_hops_reason(&self.common.requests_per_replica)
            } else {
                "no session carried a correct count from one replica to another: nothing was \
                 proven about shared sessions"
                    .to_owned()
            });
        }
        self.common.verdict = if failed {
            Verdict::Fail
        } else if unproven {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;
    use crate::report::tests::common;

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
            sessions_shared: u64::from(hops > 0),
            sessions_identified: 5,
            final_reads: 5,
            node_mismatches: 0,
            node_mismatch_examples: Vec::new(),
            rotated_sessions: 0,
            rotation_examples: Vec::new(),
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
    fn requests_that_were_never_sent_fail_the_run() {
        let mut report = sequential(AnomalyCounts::default(), 0, 95);
        report.common.requests = 60;
        report.judge();
        assert_eq!(report.common.verdict, Verdict::Fail);
        assert!(report.common.reasons[0].contains("40 of 100 planned requests"));
    }

    #[test]
    fn a_server_without_sessions_proves_nothing_and_says_why() {
        let mut report = sequential(AnomalyCounts::default(), 0, 95);
        report.sessions_shared = 0;
        report.sessions_identified = 0;
        report.judge();
        assert_eq!(report.common.verdict, Verdict::Unproven);
        assert!(
            report.common.reasons[0].contains("no session cookie and named no session id"),
            "{:?}",
            report.common.reasons
        );
    }

    #[test]
    fn two_names_for_one_replica_fail_the_run() {
        let mut report = sequential(AnomalyCounts::default(), 0, 95);
        report.node_mismatches = 3;
        report.node_mismatch_examples = vec!["user 0 request 2: X-Served-By b, body node a".into()];
        report.judge();
        assert_eq!(report.common.verdict, Verdict::Fail);
        assert!(report.common.reasons[0].contains("X-Served-By b, body node a"));
    }

    #[test]
    fn missing_header_proves_nothing() {
        let reason = no_hops_reason(&BTreeMap::from([(NO_NODE.to_owned(), 3)]));
        assert!(reason.contains("X-Served-By"));
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
}
