//! The parallel mode's report and its pass rule: the final value within Jepsen's bounds, no
//! lost updates, no errors.

use serde::Serialize;

use super::{Common, Verdict};
use crate::check::CounterCheck;
use crate::endpoint::Endpoint;

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
