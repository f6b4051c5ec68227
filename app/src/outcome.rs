//! What a request's answer may claim about what it wrote, wherever the store failed.
//!
//! Every session write returns a [`Failure`] when it did not happen, or when nobody knows
//! whether it did ([`crate::writer`]); the handler's error turns it into the answer:
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
//! cut off before its session writer took its change gets 503 (nothing was written, and
//! nothing will be), one cut off after gets the 504 ([`crate::ticket`]).

use std::time::Duration;

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::ticket::Ticket;

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

/// Middleware: runs the request for at most `timeout`. A request cut off before its
/// session writer took its change ([`Ticket`]) is answered 503, and its change is never
/// applied; one cut off after is answered 504 (its round goes on).
pub async fn guard(State(timeout): State<Duration>, mut req: Request, next: Next) -> Response {
    let ticket = Ticket::default();
    req.extensions_mut().insert(ticket.clone());
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) if ticket.withdraw() => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "The request took longer than REQUEST_TIMEOUT; nothing was written.\n",
            true,
        ),
        Err(_) => response(Failure::Unknown),
    }
}
