//! The dashboard's two routes on the admin port: `GET /`, the page, and `GET /events`, the
//! server-sent events that keep it live.
//!
//! Why server-sent events rather than polling `/status`: each event goes out when the
//! sampler has taken a sample, so the page moves exactly once per sample instead of drifting
//! against it (a 1 s poll of a 1 s sampler shows some seconds twice and skips others); one
//! connection per open page, not a request per second; and the browser's `EventSource`
//! reconnects by itself after a balancer restart. The event carries the live part already
//! rendered (askama, the same template as the first load), so there is no second renderer in
//! JavaScript to keep in step.

use std::convert::Infallible;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use tokio::sync::watch;

use super::snapshot::Snapshot;
use super::view::{Live, Page};

/// The routes, reading the snapshots the sampler publishes.
pub fn router(latest: watch::Receiver<Arc<Snapshot>>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .with_state(latest)
}

async fn page(State(latest): State<watch::Receiver<Arc<Snapshot>>>) -> Response {
    let snapshot = Arc::clone(&latest.borrow());
    match (Page {
        live: Live::of(&snapshot),
    })
    .render()
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "dashboard rendering failed\n",
            )
                .into_response()
        }
    }
}

/// The live part now, then again after every sample, until the sampler stops (shutdown).
async fn events(
    State(latest): State<watch::Receiver<Arc<Snapshot>>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = futures_util::stream::unfold((latest, true), |(mut latest, first)| async move {
        if !first && latest.changed().await.is_err() {
            return None;
        }
        let snapshot = Arc::clone(&latest.borrow_and_update());
        let event = match Live::of(&snapshot).render() {
            // `data` splits lines into `data:` fields; a bare CR would end one early.
            Ok(html) => SseEvent::default()
                .event("live")
                .data(html.replace('\r', "")),
            Err(e) => {
                tracing::error!(error = %e, "dashboard rendering failed");
                SseEvent::default().comment("rendering failed")
            }
        };
        Some((Ok(event), (latest, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
