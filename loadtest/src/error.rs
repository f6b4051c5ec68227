//! Why a run could not take place at all (exit code 2), as opposed to a run that found problems.

use thiserror::Error;

/// A run that could not be carried out. Each message names the target, so the user knows what to fix.
#[derive(Debug, Error)]
pub enum RunError {
    /// Not even a TCP connection could be made.
    #[error("target {target} is unreachable: {reason}")]
    Unreachable {
        /// The base URL that failed.
        target: String,
        /// The connect error.
        reason: String,
    },
    /// The parallel mode's opening request failed, so there was no session to race on.
    #[error("could not open a session at {target}: {reason}")]
    Opening {
        /// The URL of the opening request.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// An HTTP client could not be built (e.g. the TLS or DNS backend failed to initialise).
    #[error("could not build the HTTP client: {0}")]
    Client(String),
    /// A load thread or its runtime could not be started.
    #[error("could not start a load thread: {0}")]
    Runtime(String),
}
