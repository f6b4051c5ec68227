//! Jepsen's counter checker for the parallel mode: every answer of K workers racing
//! increments on one session must respect bounds set by the base read, by what was
//! acknowledged before it was sent, and by what was attempted before it came back.
//!
//! For an increment `i` sent at `s_i` and answered at `r_i` with the value `v_i`:
//! - `v_i ≥ base + 1 + (increments acknowledged before s_i)`: those had taken effect;
//! - `v_i ≤ base + (increments sent before r_i)`, itself included: nothing else could have;
//! - no value is acknowledged twice: two increments answered `N` both started from `N − 1`,
//!   so one overwrote the other;
//! - the final read lies within `[base + acknowledged, base + attempted]`.
//!
//! An increment with an unknown outcome (timeout, 5xx, unreadable 2xx) counts as attempted,
//! whenever it may take effect, and never as acknowledged. A refused one (4xx) counts as
//! neither. No I/O here: every rule is unit tested.

use serde::Serialize;

/// One increment as the checker saw it; times in microseconds from a common origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
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

/// The rules a run can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// An answer below what was already acknowledged (a lost or stale value).
    BelowAcknowledged,
    /// An answer above everything attempted so far (double-applied or invented).
    AboveAttempted,
    /// The same value acknowledged twice.
    DuplicateValue,
    /// The final read outside `[base + acknowledged, base + attempted]`.
    FinalOutOfBounds,
}

impl Rule {
    /// What breaking it means, for the report.
    pub fn meaning(self) -> &'static str {
        match self {
            Rule::BelowAcknowledged => {
                "answers below what was already acknowledged (lost updates or stale reads)"
            }
            Rule::AboveAttempted => {
                "answers above everything attempted (increments applied twice or invented)"
            }
            Rule::DuplicateValue => "values acknowledged twice (one increment overwrote another)",
            Rule::FinalOutOfBounds => "a final value outside the bounds",
        }
    }
}

/// One broken rule, with how often and a few examples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which rule.
    pub rule: Rule,
    /// How many answers broke it.
    pub count: u64,
    /// Up to five examples, as `value (allowed min..=max)` or `value ×n`.
    pub examples: Vec<String>,
}

/// The final value against the bounds.
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

/// Checks `final_value` against the bounds set by `base`.
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

const EXAMPLES: usize = 5;

fn push_example(examples: &mut Vec<String>, example: impl FnOnce() -> String) {
    if examples.len() < EXAMPLES {
        examples.push(example());
    }
}

/// Checks every acknowledged answer and, when known, the final value. Empty when all rules
/// hold.
pub fn check_answers(
    base: u64,
    increments: &[Timed],
    final_check: Option<CounterCheck>,
) -> Vec<Violation> {
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

    let mut below = Violation {
        rule: Rule::BelowAcknowledged,
        count: 0,
        examples: Vec::new(),
    };
    let mut above = Violation {
        rule: Rule::AboveAttempted,
        count: 0,
        examples: Vec::new(),
    };
    let mut values = Vec::new();
    for t in increments {
        let Answered::Value(value) = t.result else {
            continue;
        };
        values.push(value);
        let acked_before = acked_at.partition_point(|at| *at < t.sent_us) as u64;
        let attempted_before = attempted_at.partition_point(|at| *at <= t.received_us) as u64;
        let min = base + 1 + acked_before;
        let max = base + attempted_before;
        if value < min {
            below.count += 1;
            push_example(&mut below.examples, || {
                format!("{value} (allowed {min}..={max})")
            });
        } else if value > max {
            above.count += 1;
            push_example(&mut above.examples, || {
                format!("{value} (allowed {min}..={max})")
            });
        }
    }
    values.sort_unstable();
    let mut duplicate = Violation {
        rule: Rule::DuplicateValue,
        count: 0,
        examples: Vec::new(),
    };
    for group in values.chunk_by(|a, b| a == b).filter(|g| g.len() > 1) {
        duplicate.count += group.len() as u64 - 1;
        push_example(&mut duplicate.examples, || {
            format!("{} ×{}", group[0], group.len())
        });
    }
    let mut violations: Vec<Violation> = [below, above, duplicate]
        .into_iter()
        .filter(|v| v.count > 0)
        .collect();
    if let Some(check) = final_check
        && (check.lost > 0 || check.phantom > 0)
    {
        violations.push(Violation {
            rule: Rule::FinalOutOfBounds,
            count: 1,
            examples: vec![format!(
                "{} (allowed {}..={})",
                check.applied.saturating_add(base),
                check.expected_min,
                check.expected_max
            )],
        });
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use Answered::{Refused, Unknown, Value};

    fn t(sent_us: u64, received_us: u64, result: Answered) -> Timed {
        Timed {
            sent_us,
            received_us,
            result,
        }
    }

    fn rules(violations: &[Violation]) -> Vec<Rule> {
        violations.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn a_correct_interleaving_passes() {
        // Two overlapping increments, then one after both.
        let run = [t(0, 10, Value(6)), t(1, 9, Value(5)), t(20, 30, Value(7))];
        assert!(check_answers(4, &run, Some(check_counter(4, 3, 0, 7))).is_empty());
    }

    #[test]
    fn a_stale_answer_breaks_the_lower_bound() {
        // The third increment was sent after two were acknowledged, so it must read ≥ 3.
        let run = [t(0, 1, Value(1)), t(2, 3, Value(2)), t(4, 5, Value(2))];
        let found = check_answers(0, &run, None);
        assert_eq!(
            rules(&found),
            [Rule::BelowAcknowledged, Rule::DuplicateValue]
        );
        assert_eq!(found[0].examples, ["2 (allowed 3..=3)"]);
    }

    #[test]
    fn an_invented_value_breaks_the_upper_bound() {
        let run = [t(0, 1, Value(1)), t(2, 3, Value(3))];
        let found = check_answers(0, &run, None);
        assert_eq!(rules(&found), [Rule::AboveAttempted]);
    }

    #[test]
    fn one_lost_and_one_doubled_keep_the_final_right_but_not_the_answers() {
        // 1, 2 (applied twice: counter 3, answers 3), then a lost one answers 3 again.
        let run = [
            t(0, 1, Value(1)),
            t(2, 3, Value(3)),
            t(4, 5, Value(3)),
            t(6, 7, Value(4)),
        ];
        let found = check_answers(0, &run, Some(check_counter(0, 4, 0, 4)));
        assert!(rules(&found).contains(&Rule::DuplicateValue), "{found:?}");
        assert!(rules(&found).contains(&Rule::AboveAttempted), "{found:?}");
    }

    #[test]
    fn unknown_outcomes_widen_the_upper_bound_and_refusals_do_not() {
        let run = [t(0, 1, Unknown), t(2, 3, Value(2))];
        assert!(check_answers(0, &run, None).is_empty());
        let run = [t(0, 1, Refused), t(2, 3, Value(2))];
        assert_eq!(rules(&check_answers(0, &run, None)), [Rule::AboveAttempted]);
    }

    #[test]
    fn a_final_value_out_of_bounds_is_a_violation() {
        let run = [t(0, 1, Value(2))];
        let found = check_answers(1, &run, Some(check_counter(1, 1, 0, 1)));
        assert_eq!(rules(&found), [Rule::FinalOutOfBounds]);
        assert_eq!(found[0].examples, ["1 (allowed 2..=2)"]);
    }

    #[test]
    fn lost_updates_are_acknowledged_minus_applied() {
        let check = check_counter(1, 100, 0, 11);
        assert_eq!((check.applied, check.lost, check.phantom), (10, 90, 0));
        for final_value in 101..=106 {
            let check = check_counter(1, 100, 5, final_value);
            assert_eq!((check.lost, check.phantom), (0, 0), "{final_value}");
        }
        assert_eq!(check_counter(1, 100, 5, 108).phantom, 2);
    }
}
