//! The run second by second: requests, errors, p50 and p99 latency and requests per replica in
//! each second since the load started, for `--json` and the HTML report.
//!
//! Collecting it must cost next to nothing on the hot path, so nothing here is shared: the
//! throughput mode keeps one [`Recorder`] per load thread (a single-threaded event loop, so a
//! `RefCell` without a lock or an atomic serves all of its connections), and the checker modes
//! record into one recorder per task; recorders are merged once, when the run ends. Recording
//! one request is an index into a vector of seconds, one histogram record and, with a
//! replica, a search through the handful of replica names seen.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Significant digits of each second's latency histogram: 1% is plenty for a chart, and keeps
/// a second's histogram at a few kilobytes (it grows only to the largest latency recorded).
const SIGNIFICANT_DIGITS: u8 = 2;

/// Highest latency recorded, in microseconds (an hour, as the whole-run histogram); larger
/// values are clamped.
const MAX_MICROS: u64 = 3_600_000_000;

/// The last second recorded: two weeks, beyond a run of the longest `--duration` (a week)
/// with the longest `--timeout` (a week) after it.
const MAX_SECONDS: u64 = 14 * 24 * 60 * 60;

/// Per-second counts and latencies, owned by one thread or task.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorder {
    /// One bucket per second since the start, grown as requests finish.
    seconds: Vec<Bucket>,
    /// Every replica name seen, in order of first sight; buckets count by index into this.
    replicas: Vec<Vec<u8>>,
}

/// One second of one recorder.
#[derive(Debug, Clone)]
struct Bucket {
    /// Requests finished in this second, with or without a usable answer.
    requests: u64,
    /// Of those, the ones without a usable answer.
    errors: u64,
    /// Latencies of the requests whose mode records one, microseconds.
    latencies: Histogram<u64>,
    /// Requests per replica, indexed like `Recorder::replicas`.
    replicas: Vec<u64>,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            requests: 0,
            errors: 0,
            // An auto-resizing histogram starts small and grows to the largest value recorded.
            latencies: match Histogram::new(SIGNIFICANT_DIGITS) {
                Ok(histogram) => histogram,
                Err(error) => unreachable!("constant histogram precision rejected: {error}"),
            },
            replicas: Vec::new(),
        }
    }
}

impl Recorder {
    /// Records one request that finished `at` after the start of the load: its latency (when
    /// the mode measures one for it), whether it failed, and the replica that answered.
    pub(crate) fn record(
        &mut self,
        at: Duration,
        latency: Option<Duration>,
        error: bool,
        replica: Option<&[u8]>,
    ) {
        let replica = replica.map(|name| self.replica_index(name));
        // No run lasts longer than its longest duration plus a timeout (two weeks at most), so
        // a later second is clamped rather than allocated.
        let second = usize::try_from(at.as_secs().min(MAX_SECONDS)).unwrap_or(0);
        if second >= self.seconds.len() {
            self.seconds.resize_with(second + 1, Bucket::new);
        }
        let bucket = &mut self.seconds[second];
        bucket.requests += 1;
        if error {
            bucket.errors += 1;
        }
        if let Some(latency) = latency {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
            let micros = micros.clamp(1, MAX_MICROS);
            // Grows the histogram when needed (`saturating_record` would clamp to its current
            // top instead); it cannot fail below MAX_MICROS.
            if bucket.latencies.record(micros).is_err() {
                bucket.latencies.saturating_record(micros);
            }
        }
        if let Some(index) = replica {
            if bucket.replicas.len() <= index {
                bucket.replicas.resize(index + 1, 0);
            }
            bucket.replicas[index] += 1;
        }
    }

    /// The index of a replica's name, adding it the first time it is seen.
    fn replica_index(&mut self, name: &[u8]) -> usize {
        match self.replicas.iter().position(|known| known == name) {
            Some(index) => index,
            None => {
                self.replicas.push(name.to_vec());
                self.replicas.len() - 1
            }
        }
    }

    /// Adds another recorder's seconds into this one.
    pub(crate) fn merge(&mut self, other: &Recorder) {
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize_with(other.seconds.len(), Bucket::new);
        }
        let indices: Vec<usize> = other
            .replicas
            .iter()
            .map(|name| self.replica_index(name))
            .collect();
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.requests += theirs.requests;
            mine.errors += theirs.errors;
            // Both auto-resize, so adding cannot run out of range.
            if mine.latencies.add(&theirs.latencies).is_err() {
                for value in theirs.latencies.iter_recorded() {
                    mine.latencies
                        .saturating_record_n(value.value_iterated_to(), value.count_at_value());
                }
            }
            for (index, count) in theirs.replicas.iter().enumerate() {
                let Some(&at) = indices.get(index) else {
                    continue;
                };
                if mine.replicas.len() <= at {
                    mine.replicas.resize(at + 1, 0);
                }
                mine.replicas[at] += count;
            }
        }
    }

    /// The series for the report, one entry per second from the start to the last request.
    pub(crate) fn finish(&self) -> Vec<Second> {
        let names: Vec<String> = self
            .replicas
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        let ms = |micros: u64| micros as f64 / 1000.0;
        (0u64..)
            .zip(&self.seconds)
            .map(|(second, bucket)| {
                let mut per_replica = BTreeMap::new();
                for (name, count) in names.iter().zip(&bucket.replicas) {
                    if *count > 0 {
                        *per_replica.entry(name.clone()).or_default() += count;
                    }
                }
                let latencies = &bucket.latencies;
                let quantile =
                    |q| (!latencies.is_empty()).then(|| ms(latencies.value_at_quantile(q)));
                Second {
                    second,
                    requests: bucket.requests,
                    errors: bucket.errors,
                    p50_ms: quantile(0.50),
                    p99_ms: quantile(0.99),
                    per_replica,
                }
            })
            .collect()
    }
}

/// One request of a checker mode, kept by its task with the rest of what it saw and bucketed
/// into seconds when the run ends (a task's samples cost less than a recorder per task).
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// When it finished, since the load started.
    pub(crate) at: Duration,
    /// Its latency.
    pub(crate) latency: Duration,
    /// It had no usable answer.
    pub(crate) error: bool,
    /// The replica that answered, or [`crate::report::NO_NODE`].
    pub(crate) replica: String,
}

impl Recorder {
    /// Records a checker mode's sample.
    pub(crate) fn sample(&mut self, sample: &Sample) {
        self.record(
            sample.at,
            Some(sample.latency),
            sample.error,
            Some(sample.replica.as_bytes()),
        );
    }
}

/// One second of the run, in `--json` as `per_second[n]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the load started: this entry covers `[second, second + 1)`. The last one
    /// is usually partial.
    pub second: u64,
    /// Requests that finished in this second, with or without a usable answer.
    pub requests: u64,
    /// Of those, the ones without a usable answer (the same rule as the report's `errors`).
    pub errors: u64,
    /// Median latency of this second's requests, ms; `null` when none was measured.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency of this second's requests, ms; `null` when none was measured.
    pub p99_ms: Option<f64>,
    /// This second's requests per replica (`X-Served-By`), as `requests_per_replica`.
    pub per_replica: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn requests_land_in_the_second_they_finish() {
        let mut recorder = Recorder::default();
        recorder.record(ms(100), Some(ms(1)), false, Some(b"a"));
        recorder.record(ms(900), Some(ms(3)), true, Some(b"b"));
        recorder.record(ms(2500), None, true, None);

        let seconds = recorder.finish();

        assert_eq!(seconds.len(), 3);
        assert_eq!((seconds[0].requests, seconds[0].errors), (2, 1));
        assert_eq!(
            seconds[0].per_replica,
            BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 1)])
        );
        assert_eq!(seconds[1].requests, 0);
        assert_eq!(seconds[1].p50_ms, None);
        assert_eq!((seconds[2].requests, seconds[2].errors), (1, 1));
        assert_eq!(
            seconds[2].p99_ms, None,
            "an error without latency adds none"
        );
        let p99 = seconds[0].p99_ms.expect("two latencies");
        assert!((p99 - 3.0).abs() < 0.05, "{p99}");
    }

    #[test]
    fn merging_adds_counts_by_second_and_by_replica_name() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.record(ms(10), Some(ms(1)), false, Some(b"x"));
        b.record(ms(20), Some(ms(1)), false, Some(b"y"));
        b.record(ms(30), Some(ms(1)), false, Some(b"x"));
        b.record(ms(1500), Some(ms(1)), false, Some(b"y"));

        a.merge(&b);
        let seconds = a.finish();

        assert_eq!(seconds.len(), 2);
        assert_eq!(seconds[0].requests, 3);
        assert_eq!(
            seconds[0].per_replica,
            BTreeMap::from([("x".to_owned(), 2), ("y".to_owned(), 1)])
        );
        assert_eq!(
            seconds[1].per_replica,
            BTreeMap::from([("y".to_owned(), 1)])
        );
    }

    #[test]
    fn percentiles_follow_each_seconds_own_latencies() {
        let mut recorder = Recorder::default();
        for n in 1..=100 {
            recorder.record(ms(5), Some(ms(n)), false, None);
            recorder.record(ms(1005), Some(ms(200)), false, None);
        }

        let seconds = recorder.finish();

        let (p50, p99) = (
            seconds[0].p50_ms.unwrap_or(0.0),
            seconds[0].p99_ms.unwrap_or(0.0),
        );
        assert!((p50 - 50.0).abs() <= 1.0, "{p50}");
        assert!((p99 - 99.0).abs() <= 1.0, "{p99}");
        let p50 = seconds[1].p50_ms.unwrap_or(0.0);
        assert!((p50 - 200.0).abs() <= 2.0, "{p50}");
    }
}
