//! What every handler can reach: the node's name, the Redis pool, the metrics and the
//! session writers.

use std::sync::{Arc, atomic::AtomicBool};

use axum::extract::FromRef;
use fred::clients::Pool;

use crate::{metrics::Metrics, writer::Backend};

/// Shared, cheaply clonable application state.
#[derive(Debug, Clone)]
pub struct AppState {
    /// This replica's name, shown on the page and in `X-Served-By`.
    pub node: Arc<str>,
    /// The Redis pool; `None` when sessions are kept in memory.
    pub redis: Option<Pool>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Set once shutdown began: `/readyz` fails so balancers stop sending new requests.
    pub draining: Arc<AtomicBool>,
    /// How sessions are written ([`crate::writer`]).
    pub writer: Backend,
    /// The balancer's dashboard, linked from the page when set (`DASHBOARD_URL`).
    pub dashboard_url: Option<Arc<str>>,
}

impl FromRef<AppState> for Backend {
    fn from_ref(state: &AppState) -> Self {
        state.writer.clone()
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}
