//! `/healthz` (the process runs) and `/readyz` (Redis answers PING within 500 ms).
//!
//! `/readyz` also fails from the moment shutdown begins (see `SHUTDOWN_DELAY`).
//! Balancers take a replica out of rotation on a failing `/readyz`; orchestrators restart
//! it only on a failing `/healthz`, so a Redis outage never causes a restart storm.

use std::{sync::atomic::Ordering, time::Duration};

use axum::{extract::State, http::StatusCode, response::IntoResponse};

use crate::{redis, state::AppState};

/// How long Redis gets to answer the readiness PING.
const READY_DEADLINE: Duration = Duration::from_millis(500);

/// `GET /healthz`: 200 while the process serves requests.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 while the session store can be used, 503 otherwise.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    match &state.redis {
        None => (StatusCode::OK, "ready (memory sessions)\n"),
        Some(pool) if redis::is_ready(pool, READY_DEADLINE).await => (StatusCode::OK, "ready\n"),
        Some(_) => {
            state.metrics.redis_errors.inc();
            (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable\n")
        }
    }
}
