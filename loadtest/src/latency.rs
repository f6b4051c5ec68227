//! Latency recording with HdrHistogram (microsecond resolution, 3 significant digits) and the
//! percentile summary every report carries.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest trackable latency: one hour, far above any timeout; larger values are clamped.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram. One per task on the hot path, merged at the end, so recording is lock-free.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Latencies {
        // Bounds are constants within what the crate accepts, so this cannot fail.
        match Histogram::new_with_bounds(1, MAX_MICROS, 3) {
            Ok(histogram) => Latencies(histogram),
            Err(error) => unreachable!("constant histogram bounds rejected: {error}"),
        }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        self.0.saturating_record(micros.max(1));
    }

    /// Adds another histogram's samples into this one.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides; `add` only fails when the other cannot fit, so saturate instead.
        if self.0.add(&other.0).is_err() {
            for value in other.0.iter_recorded() {
                self.0
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
    }

    /// Number of samples.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// The percentiles reported everywhere.
    pub fn summary(&self) -> LatencySummary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.0.len(),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p90_ms: ms(self.0.value_at_quantile(0.90)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            p999_ms: ms(self.0.value_at_quantile(0.999)),
            max_ms: ms(self.0.max()),
        }
    }
}

/// The percentiles of the latency distribution chart: the median and each further nine, as
/// HdrHistogram's plots show them.
const LADDER: [f64; 10] = [
    50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
];

impl Latencies {
    /// The distribution for the chart: the minimum (percentile 0), the ladder's percentiles
    /// that the samples can resolve (`1 / (1 − p)` at most their count), and the maximum
    /// (percentile 100). Empty without samples.
    pub fn distribution(&self) -> Vec<Percentile> {
        let h = &self.0;
        if h.is_empty() {
            return Vec::new();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        let count = h.len() as f64;
        let mut points = vec![Percentile {
            percentile: 0.0,
            ms: ms(h.min()),
        }];
        points.extend(
            LADDER
                .iter()
                .filter(|p| 100.0 / (100.0 - **p) < count)
                .map(|&percentile| Percentile {
                    percentile,
                    ms: ms(h.value_at_quantile(percentile / 100.0)),
                }),
        );
        points.push(Percentile {
            percentile: 100.0,
            ms: ms(h.max()),
        });
        points
    }
}

/// One point of the latency distribution, in `--json` as `latency_distribution[n]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentile {
    /// Percentile, 0 to 100: 0 is the fastest request, 100 the slowest.
    pub percentile: f64,
    /// Latency at that percentile, ms.
    pub ms: f64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples behind the figures.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latencies = Latencies::new();
        for ms in 1..=1000 {
            latencies.record(Duration::from_millis(ms));
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_ms - 500.0).abs() < 1.0, "{summary:?}");
        assert!((summary.p99_ms - 990.0).abs() < 1.0, "{summary:?}");
        assert!((summary.max_ms - 1000.0).abs() < 1.0, "{summary:?}");
    }

    #[test]
    fn merging_adds_samples() {
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        a.record(Duration::from_micros(100));
        b.record(Duration::from_secs(2));
        a.merge(&b);
        assert_eq!(a.len(), 2);
        assert!(a.summary().max_ms >= 1999.0);
    }

    #[test]
    fn the_distribution_stops_at_the_percentiles_the_samples_resolve() {
        let mut latencies = Latencies::new();
        for ms in 1..=200 {
            latencies.record(Duration::from_millis(ms));
        }
        let points = latencies.distribution();
        let percentiles: Vec<f64> = points.iter().map(|p| p.percentile).collect();
        assert_eq!(percentiles, [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 100.0]);
        assert!((points[0].ms - 1.0).abs() < 0.01, "{points:?}");
        assert!((points[4].ms - 190.0).abs() < 0.5, "{points:?}");
        assert!((points[6].ms - 200.0).abs() < 0.5, "{points:?}");
        assert!(Latencies::new().distribution().is_empty());
    }

    #[test]
    fn empty_and_huge_values_are_safe() {
        assert_eq!(Latencies::new().summary(), LatencySummary::default());
        let mut a = Latencies::new();
        a.record(Duration::from_secs(100_000));
        a.record(Duration::ZERO);
        assert_eq!(a.len(), 2);
    }
}
