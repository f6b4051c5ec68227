//! Pure judgement of one session's trace: the counter values a virtual user saw, in order,
//! and the replicas that served them. No I/O here, so every rule is unit tested.
//!
//! The rules are the sequential mode's table in `loadtest/README.md`, with Jepsen's treatment
//! of unknown outcomes: a request that errored or timed out may or may not have been applied,
//! so after `u` unknown outcomes the next value may legitimately be anything between
//! `last + 1` and `last + 1 + u`. A read after the last answer may see anything between
//! `last` and `last + u`: nothing below what was acknowledged before it was sent.

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
    /// Any answer after `18446744073709551615`: no count fits in 64 bits after it.
    Overflow,
    /// A read after the session's last answer saw less: that increment was lost, or the read
    /// was served from an old copy.
    StaleRead,
}

impl AnomalyKind {
    /// Every kind, in the order the summary table lists them.
    pub const ALL: [AnomalyKind; 7] = [
        AnomalyKind::Reset,
        AnomalyKind::Repeat,
        AnomalyKind::Gap,
        AnomalyKind::NonMonotonic,
        AnomalyKind::StaleRead,
        AnomalyKind::Unknown,
        AnomalyKind::Overflow,
    ];

    /// The name used in the table and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::Reset => "reset",
            AnomalyKind::Repeat => "repeat",
            AnomalyKind::Gap => "gap",
            AnomalyKind::NonMonotonic => "non_monotonic",
            AnomalyKind::Unknown => "unknown",
            AnomalyKind::Overflow => "overflow",
            AnomalyKind::StaleRead => "stale_read",
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
    /// The smallest value that would have been correct (for `overflow`: the last value, which
    /// no count can follow).
    pub expected_min: u64,
    /// The largest value that would have been correct (above `expected_min` only after unknown
    /// outcomes; for `overflow`, the last value).
    pub expected_max: u64,
}

/// Classifies every request of one session. An empty result means the session counted correctly.
#[cfg(test)]
pub fn classify(observations: &[Observation]) -> Vec<Anomaly> {
    let mut session = Session::default();
    observations
        .iter()
        .filter_map(|observation| session.answer(*observation))
        .collect()
}

/// One session's judge, fed one answer at a time.
///
/// One user's requests never overlap (each is sent after the previous answer arrived), so this
/// is the real-time order of [`crate::order`] for one session: every increment must answer
/// above the last answer, and a read at least that. The window's lower end is checked
/// arithmetic: after `u64::MAX` no increment is correct.
#[derive(Debug, Default)]
pub struct Session {
    /// The last acknowledged value; 0 before the session exists.
    last: u64,
    /// Unknown outcomes not yet accounted for: each may take effect at any later time, so it
    /// widens the window of every later answer until a jump uses it up.
    unknown: u64,
    /// Requests judged so far.
    seq: usize,
}

// No operator on a value from the server may wrap (release) or panic (debug).
#[deny(clippy::arithmetic_side_effects)]
impl Session {
    /// Judges the answer to the next increment.
    pub fn answer(&mut self, observation: Observation) -> Option<Anomaly> {
        self.seq = self.seq.saturating_add(1);
        let seq = self.seq;
        let last = self.last;
        // After u64::MAX no value is correct: the next answer is an overflow (an error's window
        // is reported as that last value), and judging goes on from it.
        let Some(expected_min) = last.checked_add(1) else {
            let (kind, observed) = match observation {
                Observation::Value(value) => (AnomalyKind::Overflow, Some(value)),
                Observation::Unknown | Observation::Refused => (AnomalyKind::Unknown, None),
            };
            if let Some(value) = observed {
                self.last = value;
                self.unknown = 0;
            }
            return Some(Anomaly {
                seq,
                kind,
                observed,
                expected_min: last,
                expected_max: last,
            });
        };
        // Capping the upper end is exact: no u64 lies above u64::MAX anyway.
        let expected_max = expected_min.saturating_add(self.unknown);
        let unknown = |seq| Anomaly {
            seq,
            kind: AnomalyKind::Unknown,
            observed: None,
            expected_min,
            expected_max,
        };
        match observation {
            Observation::Unknown => {
                self.unknown = self.unknown.saturating_add(1);
                Some(unknown(seq))
            }
            // Reported with the errors, but it cannot explain a later jump in the counter.
            Observation::Refused => Some(unknown(seq)),
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
                // Judge the next request against what the server now says, so one fault is
                // reported once instead of cascading through the rest of the session. A jump
                // within the window used up that many unknown outcomes; one beyond it, all.
                self.unknown = match kind {
                    // Within the window: value − expected_min ≤ unknown.
                    None => self
                        .unknown
                        .saturating_sub(value.saturating_sub(expected_min)),
                    Some(_) => 0,
                };
                self.last = value;
                kind.map(|kind| Anomaly {
                    seq,
                    kind,
                    observed: Some(value),
                    expected_min,
                    expected_max,
                })
            }
        }
    }

    /// Judges a read of the counter sent after every answer so far: it must see the last
    /// acknowledged value, or more by the unknown outcomes that may have landed since.
    pub fn read(&mut self, value: u64) -> Option<Anomaly> {
        self.seq = self.seq.saturating_add(1);
        let expected_min = self.last;
        let expected_max = expected_min.saturating_add(self.unknown);
        let kind = if value < expected_min {
            AnomalyKind::StaleRead
        } else if value > expected_max {
            AnomalyKind::Gap
        } else {
            return None;
        };
        Some(Anomaly {
            seq: self.seq,
            kind,
            observed: Some(value),
            expected_min,
            expected_max,
        })
    }
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

/// Hops that prove sharing: a replica answered a correct count right after another replica
/// answered the previous one (a hop into a reset or a wrong value proves nothing).
pub fn shared_hops<S: AsRef<str>>(
    observations: &[Observation],
    nodes: &[Option<S>],
    anomalies: &[Anomaly],
) -> u64 {
    (1..observations.len().min(nodes.len()))
        .filter(|&i| {
            let hopped = match (&nodes[i - 1], &nodes[i]) {
                (Some(a), Some(b)) => a.as_ref() != b.as_ref(),
                _ => false,
            };
            let counted = matches!(observations[i - 1], Observation::Value(_))
                && matches!(observations[i], Observation::Value(_));
            let wrong = anomalies
                .iter()
                .any(|a| a.seq == i + 1 && a.kind != AnomalyKind::Unknown);
            hopped && counted && !wrong
        })
        .count() as u64
}

/// Where a session's id changed while its count went on (no reset at that request): a
/// rotation. Returns `(request, old id, new id)`; requests without an id are skipped.
pub fn id_changes<'a>(
    ids: &[Option<&'a str>],
    anomalies: &[Anomaly],
) -> Vec<(usize, &'a str, &'a str)> {
    let mut changes = Vec::new();
    let mut last: Option<&str> = None;
    for (index, id) in ids.iter().enumerate() {
        let Some(id) = *id else { continue };
        let seq = index + 1;
        if let Some(previous) = last
            && previous != id
            && !anomalies
                .iter()
                .any(|a| a.seq == seq && a.kind == AnomalyKind::Reset)
        {
            changes.push((seq, previous, id));
        }
        last = Some(id);
    }
    changes
}

/// How many different replicas served a session.
pub fn distinct_replicas<S: AsRef<str>>(nodes: &[Option<S>]) -> usize {
    let mut seen: Vec<&str> = nodes.iter().flatten().map(AsRef::as_ref).collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
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
    fn an_unknown_outcome_that_takes_effect_later_is_not_a_gap() {
        // The timed-out 2nd increment lands after the 3rd was answered.
        assert_eq!(
            kinds(&[Value(1), Unknown, Value(2), Value(4), Value(5)]),
            vec![(2, AnomalyKind::Unknown)]
        );
        // …but it can explain one jump only.
        assert_eq!(
            kinds(&[Value(1), Unknown, Value(3), Value(5)]),
            vec![(2, AnomalyKind::Unknown), (4, AnomalyKind::Gap)]
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
    fn a_read_after_the_last_answer_must_see_it() {
        let read = |trace: &[Observation], value| {
            let mut session = Session::default();
            for observation in trace {
                session.answer(*observation);
            }
            session.read(value).map(|a| (a.seq, a.kind))
        };
        assert_eq!(read(&[Value(1), Value(2)], 2), None);
        // The last increment acknowledged, then not seen: lost, or read from an old copy.
        assert_eq!(
            read(&[Value(1), Value(2)], 1),
            Some((3, AnomalyKind::StaleRead))
        );
        assert_eq!(read(&[Value(1), Value(2)], 3), Some((3, AnomalyKind::Gap)));
        // An unknown outcome may land before the read, or not.
        assert_eq!(read(&[Value(1), Unknown], 1), None);
        assert_eq!(read(&[Value(1), Unknown], 2), None);
        assert_eq!(read(&[Value(1), Unknown], 3), Some((3, AnomalyKind::Gap)));
        // A session that never counted reads 0.
        assert_eq!(read(&[], 0), None);
        assert_eq!(read(&[Value(u64::MAX)], u64::MAX).map(|a| a.1), None);
    }

    #[test]
    fn nothing_follows_the_largest_count() {
        // Saturating the window would have accepted the repeat of u64::MAX.
        let max = u64::MAX;
        assert_eq!(
            kinds(&[Value(1), Value(max), Value(max), Unknown, Value(1)]),
            vec![
                (2, AnomalyKind::Gap),
                (3, AnomalyKind::Overflow),
                (4, AnomalyKind::Unknown),
                (5, AnomalyKind::Overflow)
            ]
        );
        let anomalies = classify(&[Value(max - 1), Value(max)]);
        assert_eq!(
            anomalies.len(),
            1,
            "max after max - 1 is only the first gap"
        );
        let anomalies = classify(&[Value(max), Value(7)]);
        assert_eq!(
            (anomalies[1].observed, anomalies[1].expected_min),
            (Some(7), max)
        );
    }

    #[test]
    fn only_hops_that_carry_a_correct_count_prove_sharing() {
        let nodes = [Some("a"), Some("b"), Some("a"), Some("b")];
        let good = [Value(1), Value(2), Value(3), Value(4)];
        assert_eq!(shared_hops(&good, &nodes, &classify(&good)), 3);
        let resets = [Value(1), Value(1), Value(1), Value(1)];
        assert_eq!(shared_hops(&resets, &nodes, &classify(&resets)), 0);
        let after_error = [Value(1), Unknown, Value(2), Value(3)];
        assert_eq!(
            shared_hops(&after_error, &nodes, &classify(&after_error)),
            1
        );
    }

    #[test]
    fn an_id_that_changes_while_the_count_goes_on_is_a_rotation() {
        let counted = [Value(1), Value(2), Value(3), Value(1)];
        let anomalies = classify(&counted);
        let ids = [Some("s1"), Some("s1"), Some("s2"), Some("s3")];
        // s1 -> s2 carried the count; s2 -> s3 came with a reset, reported as such.
        assert_eq!(id_changes(&ids, &anomalies), vec![(3, "s1", "s2")]);
        assert!(id_changes(&[None, Some("a"), None, Some("a")], &[]).is_empty());
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
