//! The default mode: U virtual users at once, each with its own cookie jar, each sending R
//! increments in sequence while the requests rotate over the targets ([`user`]). Every answer
//! is recorded and each session's trace is judged ([`summary`]); the report's pass rule is in
//! [`report`], its rows of the table in [`table`].

use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use crate::client;
use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::error::RunError;
use crate::modes::Shared;
use crate::progress::{Goal, Progress};
use crate::stop::Stop;

mod report;
mod summary;
mod table;
mod user;

pub use report::{AnomalyCounts, LocatedAnomaly, SequentialReport, Spread};

/// Virtual users when `--users` is not given.
const DEFAULT_USERS: u64 = 50;
/// Requests per user when `--requests` is not given.
pub(crate) const DEFAULT_REQUESTS: u64 = 20;

/// The sequential mode's own flag; it also reads `--requests`, `--endpoint` and `--timeout`.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub(crate) struct Flags {
    /// Sequential mode: virtual users, each with its own client and cookie jar.
    #[arg(long, env = "LOADTEST_USERS", value_parser = clap::value_parser!(u64).range(1..),
          default_value_t = DEFAULT_USERS, conflicts_with_all = ["parallel", "throughput"])]
    users: u64,
}

/// The sequential mode's settings, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sequential {
    /// Virtual users, one session each.
    pub(crate) users: u64,
    /// Requests per user.
    pub(crate) requests: u64,
    /// The counter endpoint each request increments.
    pub(crate) endpoint: Endpoint,
}

impl Sequential {
    /// The sequential settings of `config` (the mode when no other is selected).
    pub(crate) fn from_config(config: &Config) -> Sequential {
        Sequential {
            users: config.sequential.users,
            requests: config.requests.unwrap_or(DEFAULT_REQUESTS),
            endpoint: config.endpoint,
        }
    }

    /// Runs every user's session at once, then judges them all.
    pub(crate) async fn run(
        self,
        shared: &Shared,
        stop: &Stop,
    ) -> Result<SequentialReport, RunError> {
        let targets = Arc::new(shared.targets.clone());
        let clients = (0..self.users)
            .map(|_| client::build_user(shared.timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let progress = Progress::start(
            shared.progress,
            Goal::Requests(self.users.saturating_mul(self.requests)),
        );
        let started = Instant::now();
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(user, client)| {
                let targets = Arc::clone(&targets);
                let counter = progress.counter();
                let stop = stop.clone();
                let (endpoint, requests) = (self.endpoint, self.requests);
                tokio::spawn(async move {
                    user::run_user(
                        user, started, client, &targets, endpoint, requests, &counter, &stop,
                    )
                    .await
                })
            })
            .collect();
        let mut traces = Vec::with_capacity(tasks.len());
        for task in tasks {
            // A panicking user task is a bug in this crate: its session stays empty, and the
            // planned-requests check fails the run.
            traces.push(task.await.unwrap_or_default());
        }
        let elapsed = started.elapsed();
        progress.finish();
        let mut report = summary::summarise(&self, &targets, &traces, elapsed.as_secs_f64());
        report.common.interrupted = stop.is_stopped();
        report.judge();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::{Mode, tests::mode};

    #[test]
    fn no_flags_is_sequential_with_fifty_users_of_twenty_requests() {
        assert_eq!(
            mode(&[]),
            Mode::Sequential(Sequential {
                users: 50,
                requests: 20,
                endpoint: Endpoint::Json
            })
        );
    }

    #[test]
    fn users_requests_and_endpoint_are_taken_from_the_flags() {
        assert_eq!(
            mode(&["--users", "3", "--requests", "7", "--endpoint", "text"]),
            Mode::Sequential(Sequential {
                users: 3,
                requests: 7,
                endpoint: Endpoint::Text
            })
        );
    }
}
