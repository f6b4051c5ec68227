//! The once-a-second task behind the dashboard: reads the counters the request path keeps
//! anyway (atomics: each backend's responses, in-flight and ejections; the latency buckets),
//! turns them into the last minute's series, lets the timeline compare with the previous
//! second, and publishes the result as one immutable [`Snapshot`].
//!
//! It is the single writer of every series and of the timeline, so none of them needs a lock;
//! pages only read the published snapshot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::backend_set::BackendSet;
use crate::metrics::Metrics;

use super::latency::Counts;
use super::ring::{Rate, Ring};
use super::snapshot::{Health, Row, Snapshot};
use super::timeline::{Observed, Timeline};

/// How often a sample is taken: the dashboard's resolution and its update rate.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Owns the series and the timeline between samples.
pub struct Sampler {
    /// The backends to look at.
    set: Arc<BackendSet>,
    /// The latency buckets and the unrouted count.
    metrics: Arc<Metrics>,
    /// Each backend's requests per second, by address.
    rates: HashMap<SocketAddr, Rate>,
    /// Requests per second through the balancer.
    total: Rate,
    /// The latency buckets at the previous sample.
    latencies: Counts,
    /// p99 of each second.
    p99: Ring<Option<Duration>>,
    /// What happened to which backend.
    timeline: Timeline,
}

impl Sampler {
    /// A sampler with no history yet.
    pub fn new(set: Arc<BackendSet>, metrics: Arc<Metrics>) -> Sampler {
        Sampler {
            set,
            metrics,
            rates: HashMap::new(),
            total: Rate::default(),
            latencies: Counts::default(),
            p99: Ring::default(),
            timeline: Timeline::default(),
        }
    }

    /// Takes one sample now.
    pub fn sample(&mut self) -> Snapshot {
        let taken = SystemTime::now();
        let backends = self.set.all();
        let mut observed = Vec::with_capacity(backends.len());
        let mut rows = Vec::with_capacity(backends.len());
        for b in backends.iter() {
            let responses = b.stats.responses();
            let rate = self.rates.entry(b.addr()).or_default();
            rate.sample(responses.iter().sum());
            let passing = b.is_passing();
            let ejected_for = b.ejected_for();
            let name = b.notes.name().map(|n| n.to_string());
            observed.push(Observed {
                addr: b.addr(),
                name: name.clone(),
                passing,
                ejected_for,
                ejections: b.stats.ejections(),
            });
            rows.push(Row {
                addr: b.addr(),
                name,
                // Filled in below, once the timeline knows whether it ever passed.
                health: Health::New,
                in_flight: b.stats.in_flight(),
                rate: rate.series.values().copied().collect(),
                responses,
                failures: b.stats.failures(),
                ejections: b.stats.ejections(),
                last_error: b.notes.last_error(),
            });
        }
        self.rates
            .retain(|addr, _| backends.iter().any(|b| b.addr() == *addr));
        self.timeline.observe(taken, &observed);
        for (row, seen) in rows.iter_mut().zip(&observed) {
            row.health = match (seen.passing, seen.ejected_for) {
                (true, None) => Health::Ready,
                (true, Some(left)) => Health::Ejected(left),
                (false, left) if self.timeline.ever_passed(seen.addr) => Health::Down(left),
                (false, _) => Health::New,
            };
        }

        let latencies = self.metrics.latency.fine.read();
        let second = latencies.since(&self.latencies);
        self.total.sample(latencies.total());
        if self.total.series.values().len() > 0 {
            // From the second sample on: the first read covers everything since start.
            self.p99.push(second.quantile(0.99));
        }
        self.latencies = latencies;

        Snapshot {
            taken,
            rows,
            rate: self.total.series.values().copied().collect(),
            p99: self.p99.values().copied().collect(),
            unrouted: self.metrics.unrouted.load(Ordering::Relaxed),
            events: self.timeline.newest_first().cloned().collect(),
        }
    }

    /// Samples every [`PERIOD`] and publishes each snapshot, until dropped.
    pub async fn run(mut self, publish: watch::Sender<Arc<Snapshot>>) {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is now; the first sample was taken when the dashboard started.
        tick.tick().await;
        loop {
            tick.tick().await;
            publish.send_replace(Arc::new(self.sample()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_counts_each_backends_requests_of_the_last_second() {
        // Arrange: one backend in rotation that answered 3 requests before the first look.
        let set = Arc::new(BackendSet::new(Duration::from_secs(10), 8));
        let metrics = Arc::new(Metrics::new(Arc::clone(&set)));
        let backend = set
            .update_addresses(&[SocketAddr::from(([127, 0, 0, 1], 9))])
            .remove(0);
        backend.record_check(true, 1, 1);
        set.rebuild();
        backend.notes.set_name("replica-a");
        let answer = |n: usize, millis: u64| {
            for _ in 0..n {
                backend.stats.record_status(200);
                metrics.latency.observe(Duration::from_millis(millis));
            }
        };
        answer(3, 1);
        let mut sampler = Sampler::new(Arc::clone(&set), Arc::clone(&metrics));

        // Act
        let first = sampler.sample();
        answer(100, 2);
        backend.stats.record_status(503);
        let second = sampler.sample();

        // Assert
        assert!(
            first.rate.is_empty() && first.p99.is_empty(),
            "baseline only"
        );
        assert_eq!(first.rows[0].health, Health::Ready);
        assert_eq!(second.rows[0].rate, [101]);
        assert_eq!(second.rows[0].requests(), 104);
        assert_eq!(second.rows[0].name.as_deref(), Some("replica-a"));
        assert_eq!(second.rate, [100], "the 503 was recorded without a latency");
        let p99 = second.p99[0].expect("a p99");
        assert!((1_900..=2_100).contains(&p99.as_micros()), "{p99:?}");
        let words: Vec<_> = second.events.iter().map(|e| e.kind.word()).collect();
        assert_eq!(words, ["ready", "discovered"], "newest first");
    }
}
