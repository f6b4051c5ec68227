//! Logging: `tracing` with an env filter, text or JSON, and one line per request.
//!
//! The per-request line carries method, path, status, latency, node and the session id
//! *abbreviated*: enough to follow one user across replicas, never a replayable cookie.

use std::{sync::Arc, time::Duration};

use axum::http::{Request, Response};
use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    trace::{MakeSpan, OnResponse, TraceLayer},
};
use tracing::Span;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{
    config::LogFormat,
    session::{abbreviate, cookie_value},
};

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_sessions=warn,fred=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .init(),
        LogFormat::Text => registry.with(fmt::layer()).init(),
    }
}

/// The session cookie's value cut short, read straight from the `Cookie` header.
fn session_hint<B>(req: &Request<B>, cookie_name: &str) -> String {
    cookie_value(req.headers(), cookie_name).map_or_else(|| "-".to_owned(), abbreviate)
}

/// Opens one span per request with the fields every log line of it should carry.
#[derive(Debug, Clone)]
pub struct RequestSpan {
    node: Arc<str>,
    cookie_name: &'static str,
}

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &Request<B>) -> Span {
        tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            node = %self.node,
            session = %session_hint(req, self.cookie_name),
        )
    }
}

/// Writes the one `info` line per response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseLine;

impl<B> OnResponse<B> for ResponseLine {
    fn on_response(self, res: &Response<B>, latency: Duration, _span: &Span) {
        tracing::info!(
            status = res.status().as_u16(),
            latency_ms = latency.as_secs_f64() * 1000.0,
            "response"
        );
    }
}

/// The request-logging layer.
pub type RequestTrace =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), ResponseLine>;

/// Builds the request-logging layer for `node`.
pub fn request_trace(node: &str, cookie_name: &'static str) -> RequestTrace {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan {
            node: node.into(),
            cookie_name,
        })
        .on_request(())
        .on_response(ResponseLine)
}
