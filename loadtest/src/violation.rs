//! The rules a parallel run can break ([`crate::bounds`], [`crate::order`], and the hop
//! evidence of [`crate::evidence`]), and the violations found: one per broken rule, with how
//! often and a few examples, in a fixed order for the report.

use std::collections::BTreeMap;

use serde::Serialize;

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
    /// An answer at or below (a read: below) a value answered before it was sent.
    RealTimeOrder,
    /// The base read does not follow from the opening's answer.
    BaseReadMismatch,
    /// A bound that does not fit in 64 bits.
    Overflow,
    /// `X-Served-By` names another replica than the answer's body.
    NodeMismatch,
}

impl Rule {
    /// Its name in `--json` (`violations[].rule`).
    pub fn name(self) -> &'static str {
        match self {
            Rule::BelowAcknowledged => "below_acknowledged",
            Rule::AboveAttempted => "above_attempted",
            Rule::DuplicateValue => "duplicate_value",
            Rule::FinalOutOfBounds => "final_out_of_bounds",
            Rule::RealTimeOrder => "real_time_order",
            Rule::BaseReadMismatch => "base_read_mismatch",
            Rule::Overflow => "overflow",
            Rule::NodeMismatch => "node_mismatch",
        }
    }

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
            Rule::RealTimeOrder => {
                "answers not above a value answered before they were sent (the counter went \
                 back in real time)"
            }
            Rule::BaseReadMismatch => {
                "a base read that does not follow from the opening's answer (the first \
                 increment lost, or a read of another counter)"
            }
            Rule::Overflow => {
                "values whose bounds do not fit in 64 bits (a wrapped or invented count)"
            }
            Rule::NodeMismatch => {
                "answers whose X-Served-By names another replica than their body (the hops \
                 cannot be trusted)"
            }
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
    /// Up to five examples, each naming the operations and values involved.
    pub examples: Vec<String>,
}

/// Broken rules as they are found, one [`Violation`] per rule.
#[derive(Debug, Default)]
pub struct Found(BTreeMap<Rule, Violation>);

const EXAMPLES: usize = 5;

impl Found {
    /// Counts one break of `rule`, keeping the example while there are few.
    pub fn add(&mut self, rule: Rule, example: impl FnOnce() -> String) {
        self.add_n(rule, 1, example);
    }

    /// Counts `n` breaks of `rule` with one example.
    pub fn add_n(&mut self, rule: Rule, n: u64, example: impl FnOnce() -> String) {
        let violation = self.0.entry(rule).or_insert_with(|| Violation {
            rule,
            count: 0,
            examples: Vec::new(),
        });
        violation.count = violation.count.saturating_add(n);
        if violation.examples.len() < EXAMPLES {
            violation.examples.push(example());
        }
    }

    /// The violations, in the order of [`Rule`].
    pub fn into_vec(self) -> Vec<Violation> {
        self.0.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rules_name_is_its_json_name() {
        for rule in [
            Rule::BelowAcknowledged,
            Rule::AboveAttempted,
            Rule::DuplicateValue,
            Rule::FinalOutOfBounds,
            Rule::RealTimeOrder,
            Rule::BaseReadMismatch,
            Rule::Overflow,
            Rule::NodeMismatch,
        ] {
            assert_eq!(
                serde_json::to_value(rule).ok(),
                Some(serde_json::Value::from(rule.name()))
            );
        }
    }
}
