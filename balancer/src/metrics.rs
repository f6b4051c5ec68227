//! Prometheus metrics (prometheus-client), kept lock-free on the request path.
//!
//! Per-backend request counters live as atomics inside each [`Backend`] and the latency
//! histogram is a fixed array of atomic buckets; both are turned into Prometheus text only when
//! `/metrics` is scraped, by [`Collector`]s. prometheus-client's own `Family` and `Histogram`
//! take a lock per observation, which is what the hot path avoids.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::backend_set::{BackendSet, STATUS_CLASSES};
use crate::dashboard::Latencies;

/// Upper bounds (seconds) of the latency buckets: sub-millisecond steps for a loopback hop,
/// up to the default upstream timeout.
const BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Time from receiving a request to sending the backend's response headers.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Non-cumulative counts; the last slot is +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of all observations in nanoseconds (u64 holds ~584 years).
    sum_nanos: AtomicU64,
    /// The same observations in buckets fine enough for the dashboard's p99 per second.
    pub fine: Latencies,
}

impl LatencyHistogram {
    /// Records one request.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.fine.observe(d);
    }
}

impl Collector for LatencyHistogram {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        let mut count = 0;
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            count += n;
            buckets.push((BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let mut m = encoder.encode_descriptor(
            "balancer_request_duration_seconds",
            "Time from request received to backend response headers sent to the client",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// Exports the backend set's own counters and the per-backend atomics of its current list
/// at scrape time: the set never calls into the metrics.
#[derive(Debug)]
struct BackendCollector {
    /// The live backend set.
    set: Arc<BackendSet>,
    /// Requests answered 503 because no backend was available.
    unrouted: Arc<AtomicU64>,
}

impl Collector for BackendCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.set.all();
        {
            let mut m = encoder.encode_descriptor(
                "balancer_ejections",
                "Backends ejected for the cool-down after a connect error, refusal or reset",
                None,
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, _, u64>(&self.set.ejections(), None)?;
        }
        {
            let m = encoder.encode_descriptor(
                "balancer_healthy_backends",
                "Backends currently in rotation",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::try_from(self.set.healthy_count()).unwrap_or(i64::MAX))
                .encode(m)?;
        }
        {
            let mut m = encoder.encode_descriptor(
                "balancer_requests",
                "Requests by backend and response status class (backend=none: no healthy backend)",
                None,
                MetricType::Counter,
            )?;
            for b in all.iter() {
                for (class, n) in STATUS_CLASSES.iter().zip(b.stats.responses()) {
                    let labels = [("backend", b.label()), ("status", *class)];
                    m.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
            let labels = [("backend", "none"), ("status", "5xx")];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(
                    &self.unrouted.load(Ordering::Relaxed),
                    None,
                )?;
        }
        {
            let mut m = encoder.encode_descriptor(
                "balancer_backend_in_flight",
                "Requests currently being answered by each backend",
                None,
                MetricType::Gauge,
            )?;
            for b in all.iter() {
                let labels = [("backend", b.label())];
                ConstGauge::new(b.stats.in_flight()).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "balancer_backend_up",
                "1 if the backend is in rotation (passed its last check and is not ejected)",
                None,
                MetricType::Gauge,
            )?;
            for b in all.iter() {
                let labels = [("backend", b.label())];
                ConstGauge::new(i64::from(b.is_available())).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Every metric the balancer exports, plus the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    /// Extra attempts made after a connect failure.
    pub retries: Counter,
    /// Connections opened to backends; every other request reused a pooled one.
    pub upstream_connections: Counter,
    /// Latency to response headers.
    pub latency: Arc<LatencyHistogram>,
    /// Requests that found no healthy backend.
    pub unrouted: Arc<AtomicU64>,
    /// Requests refused or cut short for the client's own fault (bad framing, a broken or
    /// stalled upload); never counted against a backend.
    pub client_errors: Counter,
    /// Free memory handed back to the OS after a burst of connections ([`crate::memory`]).
    pub memory_trims: Counter,
    /// Holds all of the above for encoding.
    registry: Registry,
}

impl Metrics {
    /// Registers everything; the per-backend metrics are read from `set`.
    pub fn new(set: Arc<BackendSet>) -> Metrics {
        let mut registry = Registry::default();
        let retries = Counter::default();
        let upstream_connections = Counter::default();
        let latency = Arc::new(LatencyHistogram::default());
        let unrouted = Arc::new(AtomicU64::new(0));
        let client_errors = Counter::default();
        let memory_trims = Counter::default();
        registry.register(
            "balancer_client_errors",
            "Requests refused or cut short for the client's own fault (never a backend's)",
            client_errors.clone(),
        );
        registry.register(
            "balancer_retries",
            "Attempts retried on another backend (after a connect failure, or a replayed GET)",
            retries.clone(),
        );
        registry.register(
            "balancer_upstream_connections",
            "Connections opened to backends (every other request reused a pooled one)",
            upstream_connections.clone(),
        );
        registry.register(
            "balancer_memory_trims",
            "Times the free memory of a settled burst of connections was returned to the OS",
            memory_trims.clone(),
        );
        registry.register_collector(Box::new(Arc::clone(&latency)));
        registry.register_collector(Box::new(BackendCollector {
            set,
            unrouted: Arc::clone(&unrouted),
        }));
        Metrics {
            retries,
            upstream_connections,
            latency,
            unrouted,
            client_errors,
            memory_trims,
            registry,
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_buckets_sum_and_count() {
        let m = Metrics::new(Arc::new(BackendSet::new(Duration::from_secs(1), 1)));
        m.latency.observe(Duration::from_micros(300));
        m.latency.observe(Duration::from_millis(20));
        m.latency.observe(Duration::from_secs(60));
        let text = m.render().expect("render");
        assert!(
            text.contains("balancer_request_duration_seconds_count 3"),
            "{text}"
        );
        assert!(
            text.contains("balancer_request_duration_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("balancer_request_duration_seconds_bucket{le=\"0.025\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("balancer_request_duration_seconds_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("balancer_requests_total{backend=\"none\",status=\"5xx\"} 0"),
            "{text}"
        );
        assert!(text.contains("balancer_ejections_total 0"), "{text}");
        assert!(text.contains("balancer_healthy_backends 0"), "{text}");
    }
}
