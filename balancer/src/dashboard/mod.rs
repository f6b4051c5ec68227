//! The live dashboard at the admin port's `/`: one row per backend (name, health, in-flight,
//! requests per second over the last minute, response classes, last error), the cluster's
//! requests per second and p99 over the last minute, and a timeline of what happened to which
//! backend.
//!
//! What a request pays for it: nothing beyond the atomics it already updated for `/metrics`
//! (each backend's response counters, in-flight and ejections) plus one relaxed `fetch_add`
//! into a finer latency histogram ([`Latencies`]). Everything else is done once a second by
//! the [`sampler`], the single owner of the series and the timeline, which publishes an
//! immutable [`snapshot`] through a `watch` channel; the page and its server-sent events
//! ([`routes`]) only read that. The replica name and last error are written by health checks
//! and failed attempts, never by a request that succeeds ([`crate::backend_notes`]).

mod latency;
mod ring;
mod routes;
mod sampler;
mod snapshot;
mod timeline;
mod view;

use std::sync::Arc;

use axum::Router;
use tokio::sync::watch;

use crate::backend_set::BackendSet;
use crate::metrics::Metrics;

pub use latency::Latencies;

/// Starts sampling `set` and `metrics`: takes the first sample at once (so the page has the
/// backends found before serving), and returns the dashboard's routes and the task that
/// samples every second. Aborting the task ends the open event streams.
pub fn start(
    set: Arc<BackendSet>,
    metrics: Arc<Metrics>,
) -> (
    Router,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut sampler = sampler::Sampler::new(set, metrics);
    let (publish, latest) = watch::channel(Arc::new(sampler.sample()));
    (routes::router(latest), sampler.run(publish))
}
