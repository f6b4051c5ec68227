//! Jepsen's counter checker for the parallel mode: every answer of K workers racing
//! increments on one session must respect bounds set by the base read, by what was
//! acknowledged before it was sent, and by what was attempted before it came back.
//!
//! For an increment `i` sent at `s_i` and answered at `r_i` with the value `v_i`:
//! - `v_i ≥ base + 1 + (increments acknowledged before s_i)`: those had taken effect;
//! - `v_i ≤ base + (increments sent before r_i)`, itself included: nothing else could have;
//! - `v_i` is above every value answered before `s_i` ([`crate::order`], real-time order);
//! - no value is acknowledged twice, the opening's included: two increments answered `N`
//!   both started from `N − 1`, so one overwrote the other;
//! - the base read follows from the opening's answer: equal to it (a JSON read), or one more
//!   (`--endpoint text`, whose read is itself an increment);
//! - the final read lies within `[base + acknowledged, base + attempted]`, and is itself in
//!   real-time order with every answer.
//!
//! An increment with an unknown outcome (timeout, 5xx, unreadable 2xx) counts as attempted,
//! whenever it may take effect, and never as acknowledged. A refused one (4xx) counts as
//! neither. Every bound is computed with checked arithmetic: one that does not fit in 64 bits
//! (a server answering `18446744073709551615`, an unsigned −1) is a violation naming the value,
//! never a wrapped or saturated bound. No I/O here: every rule is unit tested.

// Every bound here is checked: no operator may wrap in release builds or panic in debug ones.
#![deny(clippy::arithmetic_side_effects)]

use serde::Serialize;

use crate::order::{self, Op, Point, ms};
use crate::report::range;
pub use crate::violation::{Found, Rule, Violation};

/// One increment as the checker saw it; times in microseconds from a common origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
    /// Which increment.
    pub op: Op,
    /// When it was sent.
    pub sent_us: u64,
    /// When its answer (or failure) came back.
    pub received_us: u64,
    /// What came back.
    pub result: Answered,
}

/// What one increment achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Acknowledged with this counter value.
    Value(u64),
    /// May or may not have taken effect.
    Unknown,
    /// Refused: known not applied.
    Refused,
}

/// An operation outside the workers (the opening and the reads), which answered `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// When it was sent.
    pub sent_us: u64,
    /// When its answer came back.
    pub received_us: u64,
    /// The counter value it answered.
    pub value: u64,
}

/// Everything a parallel run saw, in one clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// `--endpoint text`: a read is an increment, so the base is the opening's answer plus
    /// one, the final value the final read's answer minus one, and both reads' answers are
    /// acknowledged values.
    pub reads_increment: bool,
    /// The increment that made the session.
    pub opening: Seen,
    /// The read every bound counts from.
    pub base: Seen,
    /// The workers' increments.
    pub increments: Vec<Timed>,
    /// The read after the workers, if it worked.
    pub final_read: Option<Seen>,
}

/// The final value against the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CounterCheck {
    /// Lowest correct final value: the base plus every acknowledged increment.
    pub expected_min: u64,
    /// Highest correct final value: the minimum plus every increment with an unknown outcome.
    pub expected_max: u64,
    /// Increments that made it into the final value (final − base; 0 when the final value is
    /// below the base, which the real-time rule reports).
    pub applied: u64,
    /// Acknowledged increments missing from the final value (expected_min − final, at least 0).
    pub lost: u64,
    /// Increments beyond anything attempted: double-applied or invented.
    pub phantom: u64,
}

/// Checks `final_value` against the bounds set by `base`; `Err` names a bound that does not
/// fit in 64 bits.
pub fn check_counter(
    base: u64,
    acknowledged: u64,
    unknown: u64,
    final_value: u64,
) -> Result<CounterCheck, String> {
    let expected_min = base.checked_add(acknowledged).ok_or_else(|| {
        format!("the final bounds: base {base} + {acknowledged} acknowledged overflows 64 bits")
    })?;
    let expected_max = expected_min.checked_add(unknown).ok_or_else(|| {
        format!(
            "the final bounds: base {base} + {acknowledged} acknowledged + {unknown} unknown \
             overflows 64 bits"
        )
    })?;
    // Distances past a bound, 0 on its right side: nothing here is a bound of its own.
    Ok(CounterCheck {
        expected_min,
        expected_max,
        applied: final_value.saturating_sub(base),
        lost: expected_min.saturating_sub(final_value),
        phantom: final_value.saturating_sub(expected_max),
    })
}

/// What [`judge`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The value the workers left: the final read's answer (minus one for text), if known.
    pub final_value: Option<u64>,
    /// Jepsen's bounds and the lost-update count, if the final value is known and they fit.
    pub counter: Option<CounterCheck>,
    /// Every broken rule, in the order of [`Rule`]. Empty when the run counted correctly.
    pub violations: Vec<Violation>,
}

/// Judges a whole parallel run.
pub fn judge(history: &History) -> Judged {
    let mut found = Found::default();
    let base = history.base.value;
    check_base(history, &mut found);
    check_increments(base, &history.increments, &mut found);
    check_duplicates(history, &mut found);
    check_order(history, &mut found);

    let final_value = history.final_read.and_then(|read| {
        if !history.reads_increment {
            return Some(read.value);
        }
        // The text read counted itself: the workers left one less.
        let left = read.value.checked_sub(1);
        if left.is_none() {
            found.add(Rule::Overflow, || {
                format!(
                    "the final read (an increment) answered {} at {}: below its own increment",
                    read.value,
                    ms(read.received_us)
                )
            });
        }
        left
    });
    let (acknowledged, unknown) = outcomes(&history.increments);
    let counter = final_value.and_then(|f| match check_counter(base, acknowledged, unknown, f) {
        Ok(check) => Some(check),
        Err(overflow) => {
            found.add(Rule::Overflow, || overflow);
            None
        }
    });
    if let (Some(check), Some(f)) = (counter, final_value)
        && (check.lost > 0 || check.phantom > 0)
    {
        found.add(Rule::FinalOutOfBounds, || {
            format!(
                "{f} (allowed {})",
                range(check.expected_min, check.expected_max)
            )
        });
    }
    Judged {
        final_value,
        counter,
        violations: found.into_vec(),
    }
}

/// Acknowledged and unknown increments among the workers'.
fn outcomes(increments: &[Timed]) -> (u64, u64) {
    let count = |f: fn(&Answered) -> bool| {
        u64::try_from(increments.iter().filter(|t| f(&t.result)).count()).unwrap_or(u64::MAX)
    };
    (
        count(|r| matches!(r, Answered::Value(_))),
        count(|r| matches!(r, Answered::Unknown)),
    )
}

/// The base read must be the opening's answer (JSON), or one more (text: it counted itself).
fn check_base(history: &History, found: &mut Found) {
    let opening = history.opening;
    let base = history.base;
    let expected = if history.reads_increment {
        opening.value.checked_add(1)
    } else {
        Some(opening.value)
    };
    match expected {
        None => found.add(Rule::Overflow, || {
            format!(
                "the opening answered {}: the text base read, one more, overflows 64 bits",
                opening.value
            )
        }),
        Some(expected) if expected != base.value => found.add(Rule::BaseReadMismatch, || {
            format!(
                "the base read sent at {} answered {}, but the opening had answered {} at {}: \
                 expected {expected}",
                ms(base.sent_us),
                base.value,
                opening.value,
                ms(opening.received_us)
            )
        }),
        Some(_) => {}
    }
}

/// Each acknowledged increment within `[base + 1 + acknowledged before it was sent,
/// base + attempted before it came back]`.
fn check_increments(base: u64, increments: &[Timed], found: &mut Found) {
    let mut acked_at: Vec<u64> = increments
        .iter()
        .filter(|t| matches!(t.result, Answered::Value(_)))
        .map(|t| t.received_us)
        .collect();
    acked_at.sort_unstable();
    let mut attempted_at: Vec<u64> = increments
        .iter()
        .filter(|t| !matches!(t.result, Answered::Refused))
        .map(|t| t.sent_us)
        .collect();
    attempted_at.sort_unstable();

    for t in increments {
        let Answered::Value(value) = t.result else {
            continue;
        };
        let acked_before = acked_at.partition_point(|at| *at < t.sent_us) as u64;
        let attempted_before = attempted_at.partition_point(|at| *at <= t.received_us) as u64;
        let bounds = base
            .checked_add(1)
            .and_then(|b| b.checked_add(acked_before))
            .zip(base.checked_add(attempted_before));
        let Some((min, max)) = bounds else {
            found.add(Rule::Overflow, || {
                format!(
                    "{} answered {value}: its bounds from the base {base} (+ 1 + {acked_before} \
                     acknowledged, + {attempted_before} attempted) overflow 64 bits",
                    t.op
                )
            });
            continue;
        };
        if value < min {
            found.add(Rule::BelowAcknowledged, || {
                format!("{value} (allowed {})", range(min, max))
            });
        } else if value > max {
            found.add(Rule::AboveAttempted, || {
                format!("{value} (allowed {})", range(min, max))
            });
        }
    }
}

/// No value acknowledged twice: the opening's answer, the workers' and, for text, the reads'
/// (each is an increment).
fn check_duplicates(history: &History, found: &mut Found) {
    let mut values: Vec<(u64, Op)> = vec![(history.opening.value, Op::Opening)];
    if history.reads_increment {
        values.push((history.base.value, Op::BaseRead));
        if let Some(read) = history.final_read {
            values.push((read.value, Op::FinalRead));
        }
    }
    values.extend(history.increments.iter().filter_map(|t| match t.result {
        Answered::Value(v) => Some((v, t.op)),
        Answered::Unknown | Answered::Refused => None,
    }));
    // Stable: the examples name the operations in the order they were recorded.
    values.sort_by_key(|(v, _)| *v);
    for group in values.chunk_by(|a, b| a.0 == b.0).filter(|g| g.len() > 1) {
        let twice = u64::try_from(group.len().saturating_sub(1)).unwrap_or(u64::MAX);
        found.add_n(Rule::DuplicateValue, twice, || {
            let ops: Vec<String> = group.iter().take(3).map(|(_, op)| op.to_string()).collect();
            let more = if group.len() > 3 { ", …" } else { "" };
            format!("{} ×{} ({}{more})", group[0].0, group.len(), ops.join(", "))
        });
    }
}

/// Real-time order over every operation with a known value.
fn check_order(history: &History, found: &mut Found) {
    let seen = |op, writes, s: Seen| Point {
        op,
        writes,
        sent_us: s.sent_us,
        received_us: s.received_us,
        value: s.value,
    };
    let reads_write = history.reads_increment;
    let mut points = vec![
        seen(Op::Opening, true, history.opening),
        seen(Op::BaseRead, reads_write, history.base),
    ];
    points.extend(history.increments.iter().filter_map(|t| match t.result {
        Answered::Value(value) => Some(Point {
            op: t.op,
            writes: true,
            sent_us: t.sent_us,
            received_us: t.received_us,
            value,
        }),
        Answered::Unknown | Answered::Refused => None,
    }));
    if let Some(read) = history.final_read {
        points.push(seen(Op::FinalRead, reads_write, read));
    }
    for (_, example) in order::behind(&points) {
        found.add(Rule::RealTimeOrder, || example);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Answered::{Refused, Unknown, Value};

    fn t(sent_us: u64, received_us: u64, result: Answered) -> Timed {
        Timed {
            op: Op::Increment {
                worker: 0,
                nth: sent_us,
            },
            sent_us,
            received_us,
            result,
        }
    }

    fn seen(sent_us: u64, received_us: u64, value: u64) -> Seen {
        Seen {
            sent_us,
            received_us,
            value,
        }
    }

    /// A JSON run opened and read at `base` (both at time 0, so they order nothing), then
    /// `increments`, then a final read of `final_value` long after.
    fn history(base: u64, increments: &[Timed], final_value: Option<u64>) -> History {
        History {
            reads_increment: false,
            opening: seen(0, 0, base),
            base: seen(0, 0, base),
            increments: increments.to_vec(),
            final_read: final_value.map(|v| seen(1_000_000, 1_000_001, v)),
        }
    }

    fn check_answers(base: u64, increments: &[Timed], final_value: Option<u64>) -> Vec<Violation> {
        judge(&history(base, increments, final_value)).violations
    }

    fn rules(violations: &[Violation]) -> Vec<Rule> {
        violations.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn a_correct_interleaving_passes() {
        // Two overlapping increments, then one after both.
        let run = [t(1, 10, Value(6)), t(2, 9, Value(5)), t(20, 30, Value(7))];
        let judged = judge(&history(4, &run, Some(7)));
        assert!(judged.violations.is_empty(), "{:?}", judged.violations);
        assert_eq!(judged.counter.map(|c| c.lost), Some(0));
    }

    #[test]
    fn a_stale_answer_breaks_the_lower_bound_and_the_real_time_order() {
        // The third increment was sent after two were acknowledged, so it must read ≥ 3.
        let run = [t(1, 2, Value(1)), t(3, 4, Value(2)), t(5, 6, Value(2))];
        let found = check_answers(0, &run, None);
        assert_eq!(
            rules(&found),
            [
                Rule::BelowAcknowledged,
                Rule::DuplicateValue,
                Rule::RealTimeOrder
            ]
        );
        assert_eq!(found[0].examples, ["2 (allowed exactly 3)"]);
    }

    #[test]
    fn a_window_widened_by_an_unknown_outcome_is_named_by_both_ends() {
        // Sent after one acknowledgement (≥ 2), answered after three attempts (≤ 3).
        let run = [t(1, 2, Value(1)), t(1, 20, Unknown), t(5, 6, Value(1))];
        let found = check_answers(0, &run, None);
        let below = found
            .iter()
            .find(|v| v.rule == Rule::BelowAcknowledged)
            .expect("below what was acknowledged");
        assert_eq!(below.examples, ["1 (allowed between 2 and 3)"]);
    }

    #[test]
    fn an_invented_value_breaks_the_upper_bound() {
        let run = [t(1, 2, Value(1)), t(3, 4, Value(3))];
        let found = check_answers(0, &run, None);
        assert_eq!(rules(&found), [Rule::AboveAttempted]);
    }

    #[test]
    fn one_lost_and_one_doubled_keep_the_final_right_but_not_the_answers() {
        // 1, 2 (applied twice: counter 3, answers 3), then a lost one answers 3 again.
        let run = [
            t(1, 2, Value(1)),
            t(3, 4, Value(3)),
            t(5, 6, Value(3)),
            t(7, 8, Value(4)),
        ];
        let found = check_answers(0, &run, Some(4));
        assert!(rules(&found).contains(&Rule::DuplicateValue), "{found:?}");
        assert!(rules(&found).contains(&Rule::AboveAttempted), "{found:?}");
    }

    #[test]
    fn unknown_outcomes_widen_the_upper_bound_and_refusals_do_not() {
        let run = [t(1, 2, Unknown), t(3, 4, Value(2))];
        assert!(check_answers(0, &run, None).is_empty());
        let run = [t(1, 2, Refused), t(3, 4, Value(2))];
        assert_eq!(rules(&check_answers(0, &run, None)), [Rule::AboveAttempted]);
    }

    #[test]
    fn a_final_value_out_of_bounds_is_a_violation() {
        let run = [t(1, 2, Value(2))];
        let found = check_answers(1, &run, Some(1));
        // Also read back below an answer that came before it.
        assert_eq!(rules(&found), [Rule::FinalOutOfBounds, Rule::RealTimeOrder]);
        assert_eq!(found[0].examples, ["1 (allowed exactly 2)"]);
    }

    #[test]
    fn lost_updates_are_acknowledged_minus_applied() {
        let check = check_counter(1, 100, 0, 11).expect("fits");
        assert_eq!((check.applied, check.lost, check.phantom), (10, 90, 0));
        for final_value in 101..=106 {
            let check = check_counter(1, 100, 5, final_value).expect("fits");
            assert_eq!((check.lost, check.phantom), (0, 0), "{final_value}");
        }
        assert_eq!(check_counter(1, 100, 5, 108).expect("fits").phantom, 2);
    }

    #[test]
    fn a_counter_that_goes_back_in_real_time_fails_though_the_counts_fit() {
        // The first case, with base 10: worker 0 gets 13, then its next increment,
        // sent after that answer, gets 12. Two slow increments of other workers keep every
        // count-based bound satisfied, so only the real-time order catches it.
        let w = |worker, nth, sent_us, received_us, value| Timed {
            op: Op::Increment { worker, nth },
            sent_us,
            received_us,
            result: Value(value),
        };
        let run = [
            w(1, 0, 10, 900, 11),
            w(2, 0, 10, 900, 14),
            w(0, 0, 20, 200, 13),
            w(0, 1, 300, 400, 12),
        ];
        let found = check_answers(10, &run, Some(14));
        assert_eq!(rules(&found), [Rule::RealTimeOrder], "{found:?}");
        assert_eq!(
            found[0].examples,
            [
                "worker 0 increment 1 sent at 0.300 ms answered 12, but worker 0 increment 0 had \
              answered 13 at 0.200 ms"
            ]
        );
    }

    #[test]
    fn a_lost_opening_breaks_the_base_read_and_is_a_duplicate() {
        // The second case: the opening answers 1 but is not stored; the base reads 0
        // and a worker is acknowledged 1 again.
        let lost = History {
            reads_increment: false,
            opening: seen(0, 10, 1),
            base: seen(20, 30, 0),
            increments: vec![t(40, 50, Value(1)), t(60, 70, Value(2))],
            final_read: Some(seen(80, 90, 2)),
        };
        let found = judge(&lost).violations;
        assert_eq!(
            rules(&found),
            [
                Rule::DuplicateValue,
                Rule::RealTimeOrder,
                Rule::BaseReadMismatch
            ]
        );
        assert_eq!(
            found[0].examples,
            ["1 ×2 (the opening, worker 0 increment 40)"]
        );
        assert_eq!(
            found[2].examples,
            [
                "the base read sent at 0.020 ms answered 0, but the opening had answered 1 at \
              0.010 ms: expected 1"
            ]
        );
    }

    #[test]
    fn a_text_base_read_is_one_more_than_the_opening() {
        let text = |base| History {
            reads_increment: true,
            opening: seen(0, 10, 1),
            base: seen(20, 30, base),
            increments: vec![t(40, 50, Value(3))],
            final_read: Some(seen(80, 90, 4)),
        };
        let judged = judge(&text(2));
        assert!(judged.violations.is_empty(), "{:?}", judged.violations);
        assert_eq!(judged.final_value, Some(3));
        // The lost opening through the text route: the base read answers 1 again.
        let found = judge(&text(1)).violations;
        assert!(rules(&found).contains(&Rule::BaseReadMismatch), "{found:?}");
        assert!(rules(&found).contains(&Rule::DuplicateValue), "{found:?}");
    }

    #[test]
    fn a_wrapped_read_is_an_overflow_not_a_pass() {
        // The third case: the read answers an unsigned -1, increments 0, 1, 2.
        let max = u64::MAX;
        let wrapped = History {
            reads_increment: false,
            opening: seen(0, 10, 0),
            base: seen(20, 30, max),
            increments: vec![t(40, 50, Value(1)), t(60, 70, Value(2))],
            final_read: Some(seen(80, 90, max)),
        };
        let judged = judge(&wrapped);
        let found = &judged.violations;
        assert!(rules(found).contains(&Rule::Overflow), "{found:?}");
        let overflow = found
            .iter()
            .find(|v| v.rule == Rule::Overflow)
            .expect("overflow");
        // Both increments' bounds and the final bounds.
        assert_eq!(overflow.count, 3);
        assert!(
            overflow.examples[0].contains("18446744073709551615"),
            "{overflow:?}"
        );
        assert_eq!(
            judged.counter, None,
            "no bound was computed from a wrapped value"
        );
    }

    #[test]
    fn bounds_at_the_edge_of_64_bits_are_exact() {
        let max = u64::MAX;
        assert!(check_counter(max, 1, 0, 0).is_err());
        assert!(check_counter(max - 1, 1, 1, max).is_err());
        let check = check_counter(max - 1, 1, 0, max).expect("fits exactly");
        assert_eq!((check.applied, check.lost, check.phantom), (1, 0, 0));
        // A text final read of 0 cannot be its own increment's answer.
        let text = History {
            reads_increment: true,
            opening: seen(0, 0, 0),
            base: seen(0, 0, 1),
            increments: Vec::new(),
            final_read: Some(seen(5, 6, 0)),
        };
        let judged = judge(&text);
        assert_eq!(judged.final_value, None);
        assert!(rules(&judged.violations).contains(&Rule::Overflow));
    }
}
