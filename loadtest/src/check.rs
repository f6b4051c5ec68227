//! Pure judgement of one session's trace: the counter values a virtual user saw, in order,
//! and the replicas that served them. No I/O here, so every rule is unit tested.
//!
//! The rules follow the sequential-client table in `shared/REFERENCE.md`, extended with Jepsen's
//! treatment of unknown outcomes: a request that errored or timed out may or may not have been
//! applied, so after `u` unknown outcomes the next value may legitimately be anything in
//! `last + 1 ..= last + 1 + u`.

use serde::Serialize;

/// What one request told us about the session counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The server acknowledged the increment and reported this counter value.
    Value(u64),
    /// Error, timeout, 5xx status or unreadable body: applied or not, we cannot tell.
    Unknown,
    /// A 4xx answer: the server refused, so nothing was applied. Still an error of the run.
    Refused,
}

/// The kinds of deviation from 1, 2, 3, … that the checker names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// Back to 1 after an earlier value: the replica did not know the session (not shared).
    Reset,
    /// The same value again: a lost write or a stale read.
    Repeat,
    /// Jumped past every value the unknown outcomes could explain: double-applied or invented.
    Gap,
    /// Went down, but not to 1: an old version of the session was served.
    NonMonotonic,
    /// The request errored or timed out: an unknown outcome (Jepsen's `info`).
    Unknown,
}

impl AnomalyKind {
    /// Every kind, in the order the summary table lists them.
    pub const ALL: [AnomalyKind; 5] = [
        AnomalyKind::Reset,
        AnomalyKind::Repeat,
        AnomalyKind::Gap,
        AnomalyKind::NonMonotonic,
        AnomalyKind::Unknown,
    ];

    /// The name used in the table and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::Reset => "reset",
            AnomalyKind::Repeat => "repeat",
            AnomalyKind::Gap => "gap",
            AnomalyKind::NonMonotonic => "non_monotonic",
            AnomalyKind::Unknown => "unknown",
        }
    }
}

/// One deviation, located in the session's trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// 1-based position of the request in the session.
    pub seq: usize,
    /// What went wrong.
    pub kind: AnomalyKind,
    /// The value seen, if the request was acknowledged.
    pub observed: Option<u64>,
    /// The smallest value that would have been correct.
    pub expected_min: u64,
    /// The largest value that would have been correct (above `expected_min` only after unknown outcomes).
    pub expected_max: u64,
}

/// Classifies every request of one session. An empty result means the session counted correctly.
pub fn classify(observations: &[Observation]) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    // The last acknowledged value; 0 before the session exists.
    let mut last: u64 = 0;
    // Unknown outcomes since `last`: each may or may not have incremented the counter.
    let mut unknown: u64 = 0;
    for (index, observation) in observations.iter().enumerate() {
        let expected_min = last.saturating_add(1);
        let expected_max = expected_min.saturating_add(unknown);
        let seq = index + 1;
        match *observation {
            Observation::Unknown => {
                anomalies.push(Anomaly {
                    seq,
                    kind: AnomalyKind::Unknown,
                    observed: None,
                    expected_min,
                    expected_max,
                });
                unknown += 1;
            }
            Observation::Refused => {
                // Reported with the errors, but it cannot explain a later jump in the counter.
                anomalies.push(Anomaly {
                    seq,
                    kind: AnomalyKind::Unknown,
                    observed: None,
                    expected_min,
                    expected_max,
                });
            }
            Observation::Value(value) => {
                let kind = if (expected_min..=expected_max).contains(&value) {
                    None
                } else if value == 1 && last >= 1 {
                    // Checked before "repeat": 1 after 1 also means a fresh session was started.
                    Some(AnomalyKind::Reset)
                } else if value == last {
                    Some(AnomalyKind::Repeat)
                } else if value < last {
                    Some(AnomalyKind::NonMonotonic)
                } else {
                    Some(AnomalyKind::Gap)
                };
                if let Some(kind) = kind {
                    anomalies.push(Anomaly {
                        seq,
                        kind,
                        observed: Some(value),
                        expected_min,
                        expected_max,
                    });
                }
                // Judge the next request against what the server now says, so one fault is
                // reported once instead of cascading through the rest of the session.
                last = value;
                unknown = 0;
            }
        }
    }
    anomalies
}

/// Consecutive requests of a session answered by different replicas.
/// Requests whose replica is unknown (no `X-Served-By`) break the chain rather than count.
pub fn count_hops<S: AsRef<str>>(nodes: &[Option<S>]) -> u64 {
    nodes
        .windows(2)
        .filter(|pair| match (&pair[0], &pair[1]) {
            (Some(a), Some(b)) => a.as_ref() != b.as_ref(),
            _ => false,
        })
        .count() as u64
}

/// How many different replicas served a session.
pub fn distinct_replicas<S: AsRef<str>>(nodes: &[Option<S>]) -> usize {
    let mut seen: Vec<&str> = nodes.iter().flatten().map(AsRef::as_ref).collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

/// Jepsen's counter check for increments on one session: the final value must lie between
/// "every acknowledged increment applied" and "every unknown one applied too".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CounterCheck {
    /// Lowest correct final value: the base plus every acknowledged increment.
    pub expected_min: u64,
    /// Highest correct final value: the minimum plus every increment with an unknown outcome.
    pub expected_max: u64,
    /// Increments that made it into the final value (final − base).
    pub applied: u64,
    /// Acknowledged increments missing from the final value (acknowledged − applied, at least 0).
    pub lost: u64,
    /// Increments beyond anything attempted: double-applied or invented.
    pub phantom: u64,
}

/// Checks `final_value` against the bounds. `base` is the value after the opening request.
pub fn check_counter(base: u64, acknowledged: u64, unknown: u64, final_value: u64) -> CounterCheck {
    let expected_min = base.saturating_add(acknowledged);
    let expected_max = expected_min.saturating_add(unknown);
    CounterCheck {
        expected_min,
        expected_max,
        applied: final_value.saturating_sub(base),
        lost: expected_min.saturating_sub(final_value),
        phantom: final_value.saturating_sub(expected_max),
    }
}

/// Extra occurrences of the same acknowledged value: two increments that both answered N
/// started from the same N − 1, so one overwrote the other.
pub fn duplicate_values(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.windows(2).filter(|pair| pair[0] == pair[1]).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use Observation::{Unknown, Value};

    fn kinds(observations: &[Observation]) -> Vec<(usize, AnomalyKind)> {
        classify(observations)
            .into_iter()
            .map(|a| (a.seq, a.kind))
            .collect()
    }

    #[test]
    fn counting_one_to_n_has_no_anomaly() {
        let trace: Vec<_> = (1..=20).map(Value).collect();
        assert!(classify(&trace).is_empty());
    }

    #[test]
    fn empty_trace_has_no_anomaly() {
        assert!(classify(&[]).is_empty());
    }

    #[test]
    fn back_to_one_is_a_reset() {
        assert_eq!(
            kinds(&[Value(1), Value(2), Value(3), Value(1), Value(2)]),
            vec![(4, AnomalyKind::Reset)]
        );
    }

    #[test]
    fn one_after_one_is_a_reset_not_a_repeat() {
        // What non-shared sessions look like under round robin: every replica starts afresh.
        assert_eq!(
            kinds(&[Value(1), Value(1), Value(1)]),
            vec![(2, AnomalyKind::Reset), (3, AnomalyKind::Reset)]
        );
    }

    #[test]
    fn same_value_again_is_a_repeat() {
        let anomalies = classify(&[Value(1), Value(2), Value(2), Value(3)]);
        assert_eq!(
            anomalies,
            vec![Anomaly {
                seq: 3,
                kind: AnomalyKind::Repeat,
                observed: Some(2),
                expected_min: 3,
                expected_max: 3,
            }]
        );
    }

    #[test]
    fn skipping_a_value_is_a_gap() {
        assert_eq!(
            kinds(&[Value(1), Value(2), Value(4), Value(5)]),
            vec![(3, AnomalyKind::Gap)]
        );
    }

    #[test]
    fn first_value_above_one_is_a_gap() {
        assert_eq!(kinds(&[Value(2), Value(3)]), vec![(1, AnomalyKind::Gap)]);
    }

    #[test]
    fn going_down_but_not_to_one_is_non_monotonic() {
        assert_eq!(
            kinds(&[Value(1), Value(2), Value(3), Value(4), Value(2), Value(3)]),
            vec![(5, AnomalyKind::NonMonotonic)]
        );
    }

    #[test]
    fn an_error_is_an_unknown_outcome() {
        assert_eq!(
            kinds(&[Value(1), Unknown, Value(3)]),
            vec![(2, AnomalyKind::Unknown)]
        );
    }

    #[test]
    fn after_an_unknown_outcome_either_value_is_accepted() {
        // The failed request may not have been applied: 2 is as correct as 3.
        assert_eq!(
            kinds(&[Value(1), Unknown, Value(2), Value(3)]),
            vec![(2, AnomalyKind::Unknown)]
        );
    }

    #[test]
    fn a_refusal_is_an_error_but_does_not_excuse_a_gap() {
        assert_eq!(
            kinds(&[Value(1), Observation::Refused, Value(3)]),
            vec![(2, AnomalyKind::Unknown), (3, AnomalyKind::Gap)]
        );
        assert_eq!(
            kinds(&[Value(1), Observation::Refused, Value(2)]),
            vec![(2, AnomalyKind::Unknown)]
        );
    }

    #[test]
    fn unknown_outcomes_widen_the_window_but_not_beyond_it() {
        let anomalies = classify(&[Value(1), Unknown, Unknown, Value(5)]);
        assert_eq!(anomalies.len(), 3);
        assert_eq!(anomalies[2].kind, AnomalyKind::Gap);
        assert_eq!(
            (anomalies[2].expected_min, anomalies[2].expected_max),
            (2, 4)
        );
    }

    #[test]
    fn a_fault_is_reported_once_not_for_every_later_request() {
        // After a gap the session continues from the new value without further anomalies.
        assert_eq!(
            kinds(&[Value(1), Value(3), Value(4), Value(5)]),
            vec![(2, AnomalyKind::Gap)]
        );
    }

    #[test]
    fn leading_unknown_then_one_is_fine() {
        assert_eq!(
            kinds(&[Unknown, Value(1), Value(2)]),
            vec![(1, AnomalyKind::Unknown)]
        );
    }

    #[test]
    fn repeat_of_zero_from_a_broken_server_is_a_repeat() {
        assert_eq!(kinds(&[Value(0)]), vec![(1, AnomalyKind::Repeat)]);
    }

    #[test]
    fn counter_with_every_increment_applied_passes() {
        let check = check_counter(1, 100, 0, 101);
        assert_eq!((check.lost, check.phantom, check.applied), (0, 0, 100));
    }

    #[test]
    fn lost_updates_are_acknowledged_minus_applied() {
        let check = check_counter(1, 100, 0, 11);
        assert_eq!(check.applied, 10);
        assert_eq!(check.lost, 90);
        assert_eq!(check.phantom, 0);
    }

    #[test]
    fn unknown_outcomes_widen_the_bounds() {
        // 5 timeouts: anything from 101 to 106 is consistent.
        for final_value in 101..=106 {
            let check = check_counter(1, 100, 5, final_value);
            assert_eq!((check.lost, check.phantom), (0, 0), "{final_value}");
        }
        assert_eq!(check_counter(1, 100, 5, 99).lost, 2);
        assert_eq!(check_counter(1, 100, 5, 108).phantom, 2);
        assert_eq!(
            (
                check_counter(1, 100, 5, 99).expected_min,
                check_counter(1, 100, 5, 99).expected_max
            ),
            (101, 106)
        );
    }

    #[test]
    fn duplicates_count_extra_occurrences() {
        assert_eq!(duplicate_values(&mut [3, 2, 4, 2, 2, 5]), 2);
        assert_eq!(duplicate_values(&mut [1, 2, 3]), 0);
        assert_eq!(duplicate_values(&mut []), 0);
    }

    #[test]
    fn hops_count_changes_of_replica() {
        let nodes = [Some("a"), Some("b"), Some("b"), Some("c"), Some("a")];
        assert_eq!(count_hops(&nodes), 3);
        assert_eq!(distinct_replicas(&nodes), 3);
    }

    #[test]
    fn one_replica_means_no_hops() {
        let nodes = [Some("a"), Some("a"), Some("a")];
        assert_eq!(count_hops(&nodes), 0);
        assert_eq!(distinct_replicas(&nodes), 1);
    }

    #[test]
    fn unknown_replicas_do_not_count_as_hops() {
        let nodes = [Some("a"), None, Some("b"), Some("b")];
        assert_eq!(count_hops(&nodes), 0);
        assert_eq!(distinct_replicas(&nodes), 2);
        let none: [Option<&str>; 2] = [None, None];
        assert_eq!(distinct_replicas(&none), 0);
    }
}
