//! Prometheus metrics for one replica, served at `/metrics`.
//!
//! A registry per app instance (prometheus-client) rather than a process-global recorder,
//! so several replicas in one test process each count their own requests.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route pattern (`/api/session`), never the raw path, to bound cardinality;
    /// `unmatched` for every path no route matched.
    pub route: String,
    /// HTTP method, from a closed set ([`method_label`]).
    pub method: &'static str,
    /// Status code.
    pub status: u16,
}

/// Labels of the latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern.
    pub route: String,
}

/// Every metric the app exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route, in seconds.
    pub latency: Family<RouteLabels, Histogram>,
    /// Redis commands that failed (timeouts, disconnects).
    pub redis_errors: Counter,
    /// Time spent waiting for session locks, in seconds.
    pub lock_wait: Histogram,
    /// Requests answered 503 because their session's lock stayed taken.
    pub lock_timeouts: Counter,
    /// Writes whose outcome Redis never confirmed (answered 504).
    pub unknown_outcomes: Counter,
    /// Locks passed from one request of a session to the next on this replica.
    pub lock_hand_offs: Counter,
    /// Writes that ran without the lock and were written by compare-and-set.
    pub optimistic_writes: Counter,
    /// Optimistic writes that found the record changed or locked: nothing was written and
    /// the request ran again under the lock.
    pub optimistic_conflicts: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~8 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let redis_errors = Counter::default();
        let lock_wait = latency_histogram();
        let lock_timeouts = Counter::default();
        let unknown_outcomes = Counter::default();
        let lock_hand_offs = Counter::default();
        let optimistic_writes = Counter::default();
        let optimistic_conflicts = Counter::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register(
            "redis_errors",
            "Redis commands that failed",
            redis_errors.clone(),
        );
        registry.register(
            "session_lock_wait_seconds",
            "Time requests waited for their session's lock",
            lock_wait.clone(),
        );
        registry.register(
            "session_lock_timeouts",
            "Requests refused because their session's lock stayed taken",
            lock_timeouts.clone(),
        );
        registry.register(
            "session_unknown_outcomes",
            "Session writes whose outcome Redis never confirmed",
            unknown_outcomes.clone(),
        );
        registry.register(
            "session_lock_hand_offs",
            "Session locks handed from one request to the next on this replica, without Redis",
            lock_hand_offs.clone(),
        );
        registry.register(
            "session_optimistic_writes",
            "Session writes made without the lock, by compare-and-set",
            optimistic_writes.clone(),
        );
        registry.register(
            "session_optimistic_conflicts",
            "Optimistic session writes that found the record changed or locked and ran again under the lock",
            optimistic_conflicts.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            redis_errors,
            lock_wait,
            lock_timeouts,
            unknown_outcomes,
            lock_hand_offs,
            optimistic_writes,
            optimistic_conflicts,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The label of a request's method: one of the standard methods, else `OTHER`. Any token is a
/// valid HTTP method, so the raw method would let a client create series without bound.
pub fn method_label(method: &http::Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("OTHER")
}

/// Middleware counting every request by matched route.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = method_label(req.method());
    let res = next.run(req).await;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: res.status().as_u16(),
        })
        .inc();
    res
}

/// `GET /metrics`.
pub async fn serve(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        metrics.render(),
    )
}
