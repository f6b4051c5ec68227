//! The parallel mode's report and its pass rule: every answer and the final value within
//! Jepsen's bounds, no errors, every planned increment sent, one session throughout; and
//! NOTHING PROVEN when the run could not have exposed a lost update.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bounds::{CounterCheck, Violation};
use crate::endpoint::Endpoint;
use crate::report::{Common, NO_SESSION, Verdict};

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
    /// K × M when bounded by count: the increments that had to be sent.
    pub planned: Option<u64>,
    /// Workers that died without reporting (a bug in the checker): their increments are unknown.
    pub lost_workers: u64,
    /// Replicas that acknowledged at least one increment.
    pub replicas_acknowledging: u64,
    /// The abbreviated session id the app reported, if any.
    pub session: Option<String>,
    /// Other session ids named in answers, with how often: the session changed mid-run.
    pub other_sessions: BTreeMap<String, u64>,
    /// Some answer set a cookie. Without one, and without a session id, the counter may be
    /// kept per connection or for everyone: nothing says it is the session's.
    pub session_cookie: bool,
    /// Counter value the opening request answered.
    pub opening_value: u64,
    /// Counter value read before the workers started: every bound counts from it.
    pub base_value: u64,
    /// Increments spent on reads (`--endpoint text` has no read-only route).
    pub reads: u64,
    /// Increments acknowledged with 2xx and a readable value.
    pub acknowledged: u64,
    /// Increments refused with 4xx: known not applied.
    pub failed: u64,
    /// Increments with unknown outcome: errors, timeouts, 5xx, unreadable 2xx.
    pub unknown: u64,
    /// The counter read back at the end, if the read worked.
    pub final_value: Option<u64>,
    /// Jepsen's bounds and the lost-update count, if the final value is known.
    pub counter: Option<CounterCheck>,
    /// Rules broken by the answers or the final value, with examples.
    pub violations: Vec<Violation>,
}

impl ParallelReport {
    /// Passes only when every rule holds, nothing failed and everything planned was sent;
    /// a clean run that could not have shown a lost update proves nothing.
    pub(crate) fn judge(&mut self) {
        let mut reasons = Vec::new();
        if self.final_value.is_none() {
            reasons.push("the final counter value could not be read".to_owned());
        }
        for v in &self.violations {
            reasons.push(format!(
                "{} {}: e.g. {}",
                v.count,
                v.rule.meaning(),
                v.examples.join("; ")
            ));
        }
        if let Some(check) = &self.counter
            && check.lost > 0
        {
            reasons.push(format!(
                "{} lost updates: {} increments acknowledged, {} applied",
                check.lost, self.acknowledged, check.applied
            ));
        }
        if self.common.errors > 0 {
            reasons.push(format!(
                "{} increments failed, timed out or answered unreadably, so the count is only \
                 bounded",
                self.common.errors
            ));
        }
        if !self.other_sessions.is_empty() {
            // The bounds above judge the count; a new id that carries it is a rotation.
            self.common.notes.push(format!(
                "the session id changed mid-run (a rotation, the count carried by the bounds \
                 above): answers named {} other id(s): {}",
                self.other_sessions.len(),
                self.other_sessions
                    .iter()
                    .map(|(id, n)| format!("{id} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.lost_workers > 0 {
            reasons.push(format!(
                "{} workers died without reporting their increments",
                self.lost_workers
            ));
        }
        if self.common.interrupted {
            reasons.push("interrupted before every increment was sent".to_owned());
        } else if let Some(planned) = self.planned
            && self.common.requests < planned
        {
            reasons.push(format!(
                "{} of {planned} planned increments were not sent",
                planned - self.common.requests
            ));
        }
        let failed = !reasons.is_empty();
        let mut unproven = Vec::new();
        if !self.session_cookie && self.session.is_none() && self.other_sessions.is_empty() {
            unproven.push(NO_SESSION.to_owned());
        }
        if self.workers < 2 {
            unproven.push("one worker cannot race itself: use --parallel 2 or more".to_owned());
        }
        if self.acknowledged == 0 {
            unproven.push("no increment was acknowledged".to_owned());
        }
        if self.replicas_acknowledging < 2 {
            unproven.push(format!(
                "{} replica(s) named by X-Served-By (and, with JSON, by the body alike) \
                 acknowledged increments: parallel requests never met on different replicas",
                self.replicas_acknowledging
            ));
        }
        self.common.verdict = if failed {
            Verdict::Fail
        } else if !unproven.is_empty() {
            Verdict::Unproven
        } else {
            Verdict::Pass
        };
        if !failed && !unproven.is_empty() {
            unproven.push("nothing was proven about lost updates".to_owned());
        }
        reasons.extend(unproven);
        self.common.reasons = reasons;
    }
}
