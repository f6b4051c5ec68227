//! What a run found, with the verdict of each mode. Serialised as-is for `--json`; each mode
//! renders the same data for people through the shared table ([`crate::table`]). Each mode's
//! report and pass rule is in its module ([`crate::modes`]); what they share is here.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::latency::{LatencySummary, Percentile};
use crate::modes::parallel::ParallelReport;
use crate::modes::sequential::SequentialReport;
use crate::modes::throughput::ThroughputReport;
use crate::series::Second;

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

    /// The fields every mode shares, to change (the thresholds apply to every mode).
    fn common_mut(&mut self) -> &mut Common {
        match self {
            Report::Sequential(r) => &mut r.common,
            Report::Parallel(r) => &mut r.common,
            Report::Throughput(r) => &mut r.common,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        self.verdict().exit_code()
    }

    /// Fails the report for each threshold it missed, saying why.
    pub(crate) fn apply(&mut self, thresholds: Thresholds) {
        thresholds.apply(self.common_mut());
    }

    /// The table for people: the verdict, the mode's rows and the shared ones, the reasons.
    pub fn to_table(&self) -> String {
        match self {
            Report::Sequential(r) => r.to_table(),
            Report::Parallel(r) => r.to_table(),
            Report::Throughput(r) => r.to_table(),
        }
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
    /// Worth knowing, whatever the verdict (a session id rotation, say).
    pub notes: Vec<String>,
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
    /// The latency distribution, from the fastest request to the slowest, for the chart.
    pub latency_distribution: Vec<Percentile>,
    /// The run second by second: requests, errors, p50 and p99, requests per replica.
    pub per_second: Vec<Second>,
    /// Wall time of the load phase, seconds.
    pub elapsed_s: f64,
    /// Completed requests per second over `elapsed_s`.
    pub req_per_s: f64,
    /// Stopped early by ctrl-c.
    pub interrupted: bool,
}

/// Why a run whose server set no cookie and named no session id proves nothing.
pub const NO_SESSION: &str = "the server set no session cookie and named no session id: a \
                              count kept per connection, or one for everyone, looks the same, \
                              so nothing was proven about sessions";

/// The key used in `requests_per_replica` when a response had no `X-Served-By`.
pub const NO_NODE: &str = "(none)";

/// `--min-rps` and `--max-p99`: a missed threshold turns any verdict into a fail.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Thresholds {
    /// Fail below this many requests/s.
    pub(crate) min_rps: Option<f64>,
    /// Fail when p99 is above this many milliseconds.
    pub(crate) max_p99_ms: Option<f64>,
}

impl Thresholds {
    /// The thresholds `--min-rps` and `--max-p99` of `config`.
    pub(crate) fn from_config(config: &Config) -> Thresholds {
        Thresholds {
            min_rps: config.min_rps,
            max_p99_ms: config.max_p99.map(|d| d.as_secs_f64() * 1000.0),
        }
    }

    /// Adds a reason and fails the report for each missed threshold.
    pub(crate) fn apply(&self, common: &mut Common) {
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

/// The correct values from `min` to `max` in words: `exactly 5`, or `between 5 and 7`.
pub(crate) fn range(min: u64, max: u64) -> String {
    if min == max {
        format!("exactly {min}")
    } else {
        format!("between {min} and {max}")
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
pub(crate) mod tests {
    use super::*;

    /// A passing report's shared fields: 100 requests over two replicas in one second.
    pub(crate) fn common() -> Common {
        Common {
            verdict: Verdict::Pass,
            reasons: Vec::new(),
            notes: Vec::new(),
            targets: vec!["http://127.0.0.1:8080".to_owned()],
            requests: 100,
            errors: 0,
            error_examples: Vec::new(),
            requests_per_replica: BTreeMap::from([("a".to_owned(), 50), ("b".to_owned(), 50)]),
            latency: LatencySummary::default(),
            latency_distribution: Vec::new(),
            per_second: Vec::new(),
            elapsed_s: 1.0,
            req_per_s: 100.0,
            interrupted: false,
        }
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
    fn error_examples_are_few_and_distinct() {
        let mut examples = Vec::new();
        for i in 0..10 {
            remember_error(&mut examples, "timeout");
            remember_error(&mut examples, &format!("e{i}"));
        }
        assert_eq!(examples.len(), 5);
        assert_eq!(examples[0], "timeout");
    }

    #[test]
    fn ranges_read_as_words() {
        assert_eq!(range(1601, 1601), "exactly 1601");
        assert_eq!(range(101, 106), "between 101 and 106");
    }
}
