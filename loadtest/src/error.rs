//! Why a run could not take place at all (exit code 2), as opposed to a run that found problems.

use thiserror::Error;

/// What an unreachable target's message suggests: the two ways the README starts the cluster.
const START_THE_CLUSTER: &str = "Is the cluster running? Start it one of two ways, then run \
     the loadtest again:\n  \
     docker compose up --build --scale app=3   # the balancer answers on http://127.0.0.1:8080\n  \
     deploy/local.sh 3                         # prints the balancer's URL: pass it with --target \
     if it is not http://127.0.0.1:8080";

/// A run that could not be carried out. Each message names the target, so the user knows what to fix.
#[derive(Debug, Error)]
pub enum RunError {
    /// Not even a TCP connection could be made.
    #[error("target {target} is unreachable: {reason}\n{START_THE_CLUSTER}")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_target_says_how_to_start_the_cluster_both_ways() {
        let error = RunError::Unreachable {
            target: "http://127.0.0.1:8080".to_owned(),
            reason: "Connection refused".to_owned(),
        };
        let message = error.to_string();
        assert!(
            message.starts_with("target http://127.0.0.1:8080 is unreachable: Connection refused")
        );
        assert!(
            message.contains("docker compose up --build --scale app=3"),
            "{message}"
        );
        assert!(message.contains("deploy/local.sh 3"), "{message}");
    }
}
