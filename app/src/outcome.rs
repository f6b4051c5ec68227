//! What a request's answer may claim about what it wrote, wherever the store failed.
//!
//! A store failure can surface in a handler (loading the session) or in tower-sessions'
//! middleware after the handler (saving), which answers a bare 500 that says nothing. So
//! the store records *what it knows* in a cell scoped to the request, and [`guard`], which
//! sits outside the session layer, turns it into the answer that matches what happened:
//!
//! | What the store knows | Status | What the answer claims |
//! |---|---|---|
//! | [`Failure::Unavailable`] | 503, `Retry-After: 1` | nothing was written; a retry is safe |
//! | [`Failure::Busy`] | 503, `Retry-After: 1` | the session's lock stayed taken; nothing was written |
//! | [`Failure::Gone`] | 409 | the session ended while the request ran; nothing was written |
//! | [`Failure::Unknown`] | 504, no `Retry-After` | the write may or may not have been applied |
//!
//! An unknown outcome never invites a blind retry: the body says that only a retry with the
//! same `X-Request-Id` is counted at most once.
//!
//! The request timeout (`REQUEST_TIMEOUT`) lives here too, for the same reason: a request
//! cut off before any write of the session began gets 503 (nothing was written), one cut
//! off while a write was in flight gets the 504.

use std::{cell::Cell, time::Duration};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// What went wrong with the session store, as far as the answer is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// Redis failed or did not answer, and nothing of this request was written.
    Unavailable,
    /// The session's lock stayed taken for the whole wait; nothing was written.
    Busy,
    /// The session was deleted (logout elsewhere, expiry) while this request ran; the
    /// write was refused rather than bring it back.
    Gone,
    /// A write was sent and Redis never confirmed whether it ran.
    Unknown,
}

/// Per-request record of what the store did.
#[derive(Debug, Default)]
struct Tracker {
    /// The most serious failure seen (an unknown outcome outranks everything).
    failure: Cell<Option<Failure>>,
    /// Set once a write of an existing session was sent: from then on, a timeout cannot
    /// claim that nothing was written.
    write_sent: Cell<bool>,
}

tokio::task_local! {
    static TRACKER: Tracker;
}

/// Records a failure of the session store for the current request. Outside a request
/// scope (a unit test of the store) it does nothing.
pub fn flag(failure: Failure) {
    let _ = TRACKER.try_with(|t| {
        let worst = t.failure.get().map_or(failure, |seen| seen.max(failure));
        t.failure.set(Some(worst));
    });
}

/// The failure recorded for the current request, if any.
pub fn flagged() -> Option<Failure> {
    TRACKER.try_with(|t| t.failure.get()).ok().flatten()
}

/// Records that a write of an existing session is about to be sent.
pub fn write_sent() {
    let _ = TRACKER.try_with(|t| t.write_sent.set(true));
}

/// Records that the write sent was refused without writing anything (an optimistic write
/// that found the session changed): the request runs again, and until it writes, a timeout
/// may say that nothing was written.
pub fn nothing_written() {
    let _ = TRACKER.try_with(|t| t.write_sent.set(false));
}

fn plain(status: StatusCode, body: &'static str, retry_after: bool) -> Response {
    let mut res = (status, body).into_response();
    if retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

/// The answer for `failure`.
pub fn response(failure: Failure) -> Response {
    match failure {
        Failure::Unavailable => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Session store unavailable; nothing was written. Please retry shortly.\n",
            true,
        ),
        Failure::Busy => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "This session is busy with another request; nothing was written. Retry shortly.\n",
            true,
        ),
        Failure::Gone => plain(
            StatusCode::CONFLICT,
            "This session ended while the request ran (logged out elsewhere, or expired); \
             nothing was written.\n",
            false,
        ),
        Failure::Unknown => plain(
            StatusCode::GATEWAY_TIMEOUT,
            "The session store did not confirm the write in time: it may or may not have been \
             applied. Only a retry with the same X-Request-Id is counted at most once.\n",
            false,
        ),
    }
}

/// Middleware: runs the request with a fresh tracker and at most `timeout`, and answers
/// what the store knows when it failed.
pub async fn guard(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    TRACKER
        .scope(Tracker::default(), async move {
            let Ok(res) = tokio::time::timeout(timeout, next.run(req)).await else {
                // The request was dropped; its lock is released by the lock's own guard.
                return if TRACKER.with(|t| t.write_sent.get()) {
                    response(Failure::Unknown)
                } else {
                    plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The request took longer than REQUEST_TIMEOUT; nothing was written.\n",
                        true,
                    )
                };
            };
            match flagged() {
                // tower-sessions answers a failed save with a bare 500.
                Some(failure) if res.status() == StatusCode::INTERNAL_SERVER_ERROR => {
                    response(failure)
                }
                _ => res,
            }
        })
        .await
}
