//! The throughput mode's report and its pass rule: no errors, no 4xx/5xx (thresholds are
//! applied on top, for every mode, by `Thresholds`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::{Common, Verdict};

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
    pub(crate) fn judge(&mut self) {
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
        self.common.verdict = if !reasons.is_empty() {
            Verdict::Fail
        } else if self.completed == 0 {
            reasons.push("no request completed: nothing was measured".to_owned());
            Verdict::Unproven
        } else {
            Verdict::Pass
        };
        self.common.reasons = reasons;
    }
}
