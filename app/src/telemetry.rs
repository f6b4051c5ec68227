//! Logging: `tracing` with an env filter, text or JSON, and one line per request.
//!
//! The per-request line carries method, path, status, latency, node and the session id
//! *abbreviated*: enough to follow one user across replicas, never a replayable cookie.
//! The id is the one the session layer parsed (and, when signed, verified) from the cookie,
//! handed over by [`note_session`]: the `Cookie` header is parsed in one place only.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::Request as AxumRequest,
    http::{Request, Response},
    middleware::Next,
    response::Response as AxumResponse,
};
use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    trace::{MakeSpan, OnResponse, TraceLayer},
};
use tracing::Span;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use tower_sessions::Session;

use crate::{config::LogFormat, session::abbreviate};

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_sessions=warn,fred=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(colour(&std::io::stdout())))
            .init(),
    }
}

/// Colours only for a person at a terminal: never in a file, a pipe, `docker compose logs`
/// or a log collector, and never with `NO_COLOR` set (no-color.org).
pub fn colour(out: &impl std::io::IsTerminal) -> bool {
    out.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The abbreviated session id a response was served for, for the request log.
#[derive(Debug, Clone)]
pub struct SessionHint(String);

/// Middleware inside the session layer: notes the id the session layer parsed from the
/// cookie on the response, where the request log picks it up.
pub async fn note_session(req: AxumRequest, next: Next) -> AxumResponse {
    let id = req.extensions().get::<Session>().and_then(Session::id);
    let mut res = next.run(req).await;
    if let Some(id) = id {
        res.extensions_mut()
            .insert(SessionHint(abbreviate(&id.to_string())));
    }
    res
}

/// Opens one span per request with the fields every log line of it should carry.
#[derive(Debug, Clone)]
pub struct RequestSpan {
    node: Arc<str>,
}

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &Request<B>) -> Span {
        tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            node = %self.node,
        )
    }
}

/// Writes the one `info` line per response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseLine;

impl<B> OnResponse<B> for ResponseLine {
    fn on_response(self, res: &Response<B>, latency: Duration, _span: &Span) {
        let session = res.extensions().get::<SessionHint>();
        tracing::info!(
            status = res.status().as_u16(),
            session = session.map_or("-", |hint| hint.0.as_str()),
            latency_ms = latency.as_secs_f64() * 1000.0,
            "response"
        );
    }
}

/// The request-logging layer.
pub type RequestTrace =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), ResponseLine>;

/// Builds the request-logging layer for `node`.
pub fn request_trace(node: &str) -> RequestTrace {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan { node: node.into() })
        .on_request(())
        .on_response(ResponseLine)
}
