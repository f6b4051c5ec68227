//! Admin endpoints on their own port: `/metrics` (Prometheus), `/status` (JSON), `/healthz`,
//! and the live dashboard at `/` ([`crate::dashboard`]).
//!
//! axum is fine here: this is not the forwarding path.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

use crate::backend_set::{BackendSet, STATUS_CLASSES};
use crate::metrics::Metrics;

/// What the admin endpoints read.
#[derive(Debug, Clone)]
struct Admin {
    set: Arc<BackendSet>,
    metrics: Arc<Metrics>,
}

/// The admin router over the live backend set and the metrics, with the dashboard's routes.
pub fn router(set: Arc<BackendSet>, metrics: Arc<Metrics>, dashboard: Router) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Admin { set, metrics })
        .merge(dashboard)
}

/// Serves the admin router until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    set: Arc<BackendSet>,
    metrics: Arc<Metrics>,
    dashboard: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(set, metrics, dashboard))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render_metrics(State(admin): State<Admin>) -> Response {
    match admin.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        )
            .into_response(),
    }
}

async fn status(State(Admin { set, .. }): State<Admin>) -> Response {
    let all = set.all();
    let backends: Vec<_> = all
        .iter()
        .map(|b| {
            let responses = b.stats.responses();
            let by_class: serde_json::Map<String, serde_json::Value> = STATUS_CLASSES
                .iter()
                .zip(responses)
                .map(|(c, n)| ((*c).to_owned(), json!(n)))
                .collect();
            json!({
                "address": b.label(),
                "healthy": b.is_available(),
                "check_passing": b.is_passing(),
                "ejected_for_ms": b.ejected_for().map(|d| d.as_millis() as u64),
                "in_flight": b.stats.in_flight(),
                "requests": responses.iter().sum::<u64>(),
                "responses": by_class,
                "failures": b.stats.failures(),
                "ejections": b.stats.ejections(),
            })
        })
        .collect();
    let healthy = all.iter().filter(|b| b.is_available()).count();
    axum::Json(json!({ "healthy": healthy, "backends": backends })).into_response()
}
