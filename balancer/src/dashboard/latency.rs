//! Request latencies for the dashboard's p99 per second: a histogram of atomic buckets fine
//! enough for a percentile (6 % wide), read once a second by the sampler.
//!
//! A request pays one relaxed `fetch_add` and a few integer operations to find its bucket:
//! no lock and no allocation. The sampler keeps the previous read and takes the difference,
//! so each second's percentile covers exactly that second's requests. (`/metrics`' own
//! histogram has Prometheus' coarse buckets, 0.5 ms, 1 ms, 2.5 ms…, too coarse for a p99.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Each power of two is cut into this many buckets (as `2^SUB_BITS`): 1/16 of the range,
/// so a bucket's middle is within ~3 % of any value in it.
const SUB_BITS: u32 = 4;
/// Buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Microseconds up to 2^31 (about 36 minutes) get their own bucket; longer go in the last.
const MAX_POWER: u32 = 31;
/// `SUB` exact buckets for 0..SUB µs, then `SUB` per power of two from `SUB_BITS` up.
pub const BUCKETS: usize = (SUB + (MAX_POWER - SUB_BITS + 1) as u64 * SUB) as usize;

/// Index of the bucket holding `micros`.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let power = (63 - micros.leading_zeros()).min(MAX_POWER);
    if power == MAX_POWER && micros >> MAX_POWER > 1 {
        return BUCKETS - 1;
    }
    let sub = (micros >> (power - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(power - SUB_BITS) * SUB + sub) as usize
}

/// The range `[low, high)` of bucket `i`, in microseconds.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i + 1);
    }
    let power = (i - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (i - SUB) % SUB;
    let step = 1 << (power - u64::from(SUB_BITS));
    let low = (SUB + sub) * step;
    (low, low + step)
}

/// Counts of requests per latency bucket since start, shared by every worker.
#[derive(Debug)]
pub struct Latencies {
    /// One counter per bucket.
    counts: Box<[AtomicU64; BUCKETS]>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            counts: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl Latencies {
    /// Counts one request that took `d`.
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far (each bucket read once; a request counted meanwhile shows up in the
    /// next read).
    pub fn read(&self) -> Counts {
        Counts(
            self.counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        )
    }
}

/// A read of [`Latencies`]: requests per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts(Vec<u64>);

impl Default for Counts {
    fn default() -> Self {
        Counts(vec![0; BUCKETS])
    }
}

impl Counts {
    /// What was counted between `earlier` and this read.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts(
            self.0
                .iter()
                .zip(&earlier.0)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        )
    }

    /// Requests counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The latency below which `q` (0..=1) of the requests fell, as the middle of its bucket;
    /// `None` without requests.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        // The rank of the request at quantile q, 1-based: p99 of 100 requests is the 99th
        // (less a hair, so 0.99 * 1000 rounding up to 990.000…1 does not make it the 991st).
        let rank = ((q.clamp(0.0, 1.0) * total as f64 - 1e-9).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bounds(i);
                return Some(Duration::from_micros(low + (high - low) / 2));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_the_bucket_whose_bounds_hold_it() {
        let mut values: Vec<u64> = (0..5000).collect();
        values.extend((0..MAX_POWER).flat_map(|p| {
            let v = 1u64 << p;
            [v - 1, v, v + 1, v + v / 3]
        }));
        for v in values {
            let (low, high) = bounds(bucket_of(v));
            assert!(low <= v && v < high, "{v} not in [{low}, {high})");
            assert!(
                high - low <= (low / SUB).max(1),
                "bucket of {v} too wide: [{low}, {high})"
            );
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(1 << MAX_POWER), BUCKETS - SUB as usize);
    }

    #[test]
    fn p99_of_a_second_is_that_seconds_slowest_percent() {
        let latencies = Latencies::default();
        for _ in 0..990 {
            latencies.observe(Duration::from_micros(400));
        }
        for _ in 0..10 {
            latencies.observe(Duration::from_millis(20));
        }
        let first = latencies.read();
        let p99 = first
            .since(&Counts::default())
            .quantile(0.99)
            .expect("some");
        assert!(
            (380..=420).contains(&p99.as_micros()),
            "990 of 1000 at 400 µs: {p99:?}"
        );
        let p999 = first.quantile(0.999).expect("some");
        assert!(
            (19_000..=21_000).contains(&p999.as_micros()),
            "the slowest 10 at 20 ms: {p999:?}"
        );

        // The next second only had slow requests: its p99 must not remember the fast ones.
        for _ in 0..50 {
            latencies.observe(Duration::from_millis(3));
        }
        let second = latencies.read().since(&first);
        assert_eq!(second.total(), 50);
        let p99 = second.quantile(0.99).expect("some");
        assert!((2_900..=3_100).contains(&p99.as_micros()), "{p99:?}");
        let now = latencies.read();
        assert_eq!(
            now.since(&now).quantile(0.99),
            None,
            "a quiet second has no p99"
        );
    }
}
