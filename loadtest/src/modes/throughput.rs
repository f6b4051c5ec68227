//! `--throughput`: N connections, closed loop (each sends as soon as its previous answer is
//! in) or open loop at `--rate` (sends at scheduled times, latency measured from the intended
//! send time as wrk2 and `oha -q` do). The report's pass rule is in [`report`], its rows of
//! the table in [`table`].
//!
//! Like wrk, each load thread runs its own single-threaded event loop with a fixed share of the
//! connections ([`thread`], each connection in [`connection`]): no work stealing, no
//! cross-thread wake-ups on the hot path.
//! Connections are opened before the clock starts.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use clap::Args;
use clap::builder::BoolishValueParser;
use http::Method;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Config, parse_rate};
use crate::error::RunError;
use crate::latency::Latencies;
use crate::modes::Shared;
use crate::progress::{Goal, Progress};
use crate::report::{Common, Verdict, per_second, remember_error};
use crate::series::Recorder;
use crate::stop::Stop;
use crate::targets::Target;

mod connection;
mod report;
mod table;
mod thread;

pub use report::ThroughputReport;

use connection::{Plan, Stats};
use thread::{ThreadResult, load_thread};

/// Connections when `--connections` is not given.
const DEFAULT_CONNECTIONS: u64 = 50;
/// How long to run when neither `--requests` nor `--duration` is given.
pub(crate) const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// The throughput mode's own flags; it also reads `--requests`, `--duration`, `--timeout` and
/// `--threads`.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub(crate) struct Flags {
    /// Throughput mode: closed loop, or open loop with --rate.
    #[arg(long, env = "LOADTEST_THROUGHPUT", value_parser = BoolishValueParser::new())]
    throughput: bool,

    /// Throughput mode: concurrent connections, each a user with its own cookie.
    #[arg(long, env = "LOADTEST_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..),
          default_value_t = DEFAULT_CONNECTIONS, requires = "throughput")]
    connections: u64,

    /// Throughput mode: open loop at this many requests/s in total, latency measured from the
    /// intended send time (no coordinated omission).
    #[arg(long, env = "LOADTEST_RATE", value_parser = parse_rate, requires = "throughput")]
    rate: Option<f64>,

    /// Throughput mode: request path (the checker modes use the counter endpoints).
    #[arg(long, env = "LOADTEST_PATH", default_value = "/session", value_parser = parse_path)]
    path: String,

    /// Throughput mode: request method.
    #[arg(long, env = "LOADTEST_METHOD", default_value = "GET", value_parser = parse_method)]
    method: Method,

    /// Throughput mode: send no cookies back (every request starts a new session).
    #[arg(long, env = "LOADTEST_NO_COOKIES", value_parser = BoolishValueParser::new(), requires = "throughput")]
    no_cookies: bool,
}

/// When a count-or-time bounded run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limit {
    /// Stop after this many requests in total.
    pub(crate) requests: Option<u64>,
    /// Stop at this time after the start.
    pub(crate) duration: Option<Duration>,
}

/// The throughput mode's settings, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Throughput {
    /// Concurrent connections.
    pub(crate) connections: u64,
    /// When to stop.
    pub(crate) limit: Limit,
    /// Open-loop rate in requests/s; `None` = closed loop.
    pub(crate) rate: Option<f64>,
    /// Request method.
    pub(crate) method: Method,
    /// Request path.
    pub(crate) path: String,
    /// Whether each connection sends its cookies back.
    pub(crate) cookies: bool,
    /// Load threads; `None` = one per core.
    pub(crate) threads: Option<usize>,
}

impl Throughput {
    /// The throughput settings of `config`, if `--throughput` selects this mode.
    pub(crate) fn from_config(config: &Config) -> Option<Throughput> {
        let flags = &config.throughput;
        if !flags.throughput {
            return None;
        }
        Some(Throughput {
            connections: flags.connections,
            limit: Limit {
                requests: config.requests,
                duration: match (config.requests, config.duration) {
                    (None, None) => Some(DEFAULT_DURATION),
                    (_, duration) => duration,
                },
            },
            rate: flags.rate,
            method: flags.method.clone(),
            path: flags.path.clone(),
            cookies: !flags.no_cookies,
            threads: config.threads(),
        })
    }

    /// Opens every connection, starts the clock, runs them to the limit and judges the result.
    pub(crate) async fn run(
        self,
        shared: &Shared,
        stop: &Stop,
    ) -> Result<ThroughputReport, RunError> {
        let Throughput {
            connections,
            limit,
            rate,
            method,
            path,
            cookies,
            threads,
        } = self;
        let goal = match (limit.requests, limit.duration) {
            (Some(n), _) => Goal::Requests(n),
            (None, Some(d)) => Goal::Duration(d),
            (None, None) => Goal::Requests(0),
        };
        let progress = Progress::start(shared.progress, goal);
        let plan = Arc::new(Plan {
            method: method.clone(),
            path: path.clone(),
            timeout: shared.timeout,
            cookies,
            rate,
            requests: limit.requests,
            duration: limit.duration,
            connections,
            claimed: AtomicU64::new(0),
            done: progress.counter(),
        });
        let threads = threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, NonZeroUsize::get))
            .clamp(1, usize::try_from(connections).unwrap_or(usize::MAX).max(1));

        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
        let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
        let mut results = Vec::with_capacity(threads);
        for thread in 0..threads {
            let share: Vec<(u64, Target)> = (0..connections)
                .filter(|i| (*i as usize) % threads == thread)
                .map(|i| (i, shared.targets.pick(i as usize).clone()))
                .collect();
            let (result_tx, result_rx) = oneshot::channel::<ThreadResult>();
            let plan = Arc::clone(&plan);
            let stop = stop.clone();
            let ready_tx = ready_tx.clone();
            let start_rx = start_rx.clone();
            std::thread::Builder::new()
                .name(format!("loadtest-{thread}"))
                .spawn(move || {
                    let result = load_thread(share, &plan, &stop, &ready_tx, start_rx);
                    drop(ready_tx);
                    result_tx.send(result).ok();
                })
                .map_err(|e| RunError::Runtime(e.to_string()))?;
            results.push(result_rx);
        }
        drop(ready_tx);
        // Every connection reports once, connected or not; a thread that died drops its sender.
        for _ in 0..connections {
            if ready_rx.recv().await.is_none() {
                break;
            }
        }
        let start = Instant::now();
        start_tx.send_replace(Some(start));

        let mut total = Stats::default();
        let mut latencies = Latencies::new();
        let mut per_replica: BTreeMap<String, u64> = BTreeMap::new();
        let mut status_counts: BTreeMap<u16, u64> = BTreeMap::new();
        let mut series = Recorder::default();
        for result in results {
            let result = match result.await {
                Ok(result) => result,
                Err(_) => ThreadResult {
                    connections: vec![Err("a load thread died".to_owned())],
                    series: Recorder::default(),
                },
            };
            series.merge(&result.series);
            for stats in result.connections {
                let stats = match stats {
                    Ok(stats) => stats,
                    Err(error) => {
                        remember_error(&mut total.error_examples, &error);
                        continue;
                    }
                };
                latencies.merge(&stats.latencies);
                total.completed += stats.completed;
                total.errors += stats.errors;
                total.timeouts += stats.timeouts;
                for (code, n) in stats.status_counts {
                    *status_counts.entry(code).or_default() += n;
                }
                for (node, n) in stats.served_by {
                    let name = String::from_utf8_lossy(&node).into_owned();
                    *per_replica.entry(name).or_default() += n;
                }
                for error in &stats.error_examples {
                    remember_error(&mut total.error_examples, error);
                }
            }
        }
        let elapsed_s = start.elapsed().as_secs_f64();
        progress.finish();

        let bad_status: u64 = status_counts
            .iter()
            .filter(|(code, _)| **code >= 400)
            .map(|(_, n)| n)
            .sum();
        let mut report = ThroughputReport {
            common: Common {
                verdict: Verdict::Fail,
                reasons: Vec::new(),
                notes: Vec::new(),
                targets: shared.targets.names(),
                requests: total.completed + total.errors,
                errors: total.errors + bad_status,
                error_examples: total.error_examples,
                requests_per_replica: per_replica,
                latency: latencies.summary(),
                latency_distribution: latencies.distribution(),
                per_second: series.finish(),
                elapsed_s,
                req_per_s: per_second(total.completed, elapsed_s),
                interrupted: stop.is_stopped(),
            },
            method: method.as_str().to_owned(),
            path,
            connections,
            rate,
            completed: total.completed,
            timeouts: total.timeouts,
            status_counts,
        };
        report.judge();
        Ok(report)
    }
}

/// Parses `--path`: an origin-form path and query, starting with `/`.
fn parse_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("`{raw}` must start with /"));
    }
    http::uri::PathAndQuery::try_from(raw).map_err(|e| format!("`{raw}`: {e}"))?;
    Ok(raw.to_owned())
}

/// Parses `--method`, in any case.
fn parse_method(raw: &str) -> Result<Method, String> {
    Method::from_bytes(raw.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("`{raw}` is not an HTTP method"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::{Mode, tests::mode};

    fn throughput(connections: u64, limit: Limit, rate: Option<f64>) -> Mode {
        Mode::Throughput(Throughput {
            connections,
            limit,
            rate,
            method: Method::GET,
            path: "/session".to_owned(),
            cookies: true,
            threads: None,
        })
    }

    #[test]
    fn throughput_defaults_to_ten_seconds_closed_loop() {
        assert_eq!(
            mode(&["--throughput"]),
            throughput(
                50,
                Limit {
                    requests: None,
                    duration: Some(Duration::from_secs(10))
                },
                None
            )
        );
        assert_eq!(
            mode(&["--throughput", "--requests", "1000", "--rate", "500"]),
            throughput(
                50,
                Limit {
                    requests: Some(1000),
                    duration: None
                },
                Some(500.0)
            )
        );
    }

    #[test]
    fn methods_and_paths_are_validated() {
        assert_eq!(parse_method("post"), Ok(Method::POST));
        assert!(parse_path("session").is_err());
        assert_eq!(parse_path("/healthz"), Ok("/healthz".to_owned()));
    }
}
