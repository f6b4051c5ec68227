//! The handlers' error type: each kind maps to the status a client can act on.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tower_sessions::session;

use crate::unavailable;

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Reading or writing the session failed.
    #[error("session: {0}")]
    Session(#[from] session::Error),
    /// The session's lock stayed taken for longer than `SESSION_LOCK_WAIT_MS`.
    #[error("session is busy with another request")]
    LockTimeout,
    /// Redis failed while taking the session's lock.
    #[error("session lock: {0}")]
    Lock(fred::error::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            // The store is the only thing a session operation talks to; when it fails the
            // user can retry, and nothing was written.
            AppError::Session(session::Error::Store(err)) => {
                tracing::warn!(%err, "session store unavailable");
                unavailable::response()
            }
            AppError::Lock(err) => {
                tracing::warn!(%err, "session lock unavailable");
                unavailable::response()
            }
            AppError::LockTimeout => {
                let mut res = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "This session is busy with another request; retry shortly.\n",
                )
                    .into_response();
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                res
            }
            AppError::Session(err) => {
                tracing::error!(%err, "session error");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal error.\n").into_response()
            }
        }
    }
}
