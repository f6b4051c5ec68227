//! The handlers' error type: each kind maps to the status a client can act on.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tower_sessions::session;

use crate::outcome::{self, Failure};

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A session write did not happen, or nobody knows whether it did: the [`Failure`]
    /// says which.
    #[error("session write failed: {0:?}")]
    Store(Failure),
    /// Reading the session, or creating a new one, failed.
    #[error("session: {0}")]
    Session(#[from] session::Error),
    /// The page's template failed to render (a bug: its values are numbers and text).
    #[error("rendering the page: {0}")]
    Render(#[from] askama::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Store(failure) => {
                tracing::warn!(?failure, "session write failed");
                outcome::response(failure)
            }
            // A read, or the create of a new session whose id nobody knows yet: nothing the
            // user could see was written.
            AppError::Session(session::Error::Store(err)) => {
                tracing::warn!(%err, "session store failed");
                outcome::response(Failure::Unavailable)
            }
            // A record that cannot be encoded or decoded: a bug.
            AppError::Session(err) => {
                tracing::error!(%err, "session error");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal error.\n").into_response()
            }
            AppError::Render(err) => {
                tracing::error!(%err, "page rendering failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal error.\n").into_response()
            }
        }
    }
}
