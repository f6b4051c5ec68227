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
    /// Reading or writing the session failed.
    #[error("session: {0}")]
    Session(#[from] session::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            // The store recorded what it knows about Redis (unavailable, busy, gone,
            // unknown). A store error it did not flag is a bug (an unfenced write refused,
            // a record that cannot be encoded): a 500.
            AppError::Session(session::Error::Store(err)) if outcome::flagged().is_some() => {
                let failure = outcome::flagged().unwrap_or(Failure::Unavailable);
                tracing::warn!(%err, ?failure, "session store failed");
                outcome::response(failure)
            }
            AppError::Session(err) => {
                tracing::error!(%err, "session error");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal error.\n").into_response()
            }
        }
    }
}
