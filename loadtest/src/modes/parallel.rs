//! `--parallel K`: open one session, read its counter (the base), race K workers × M
//! increments on that one cookie ([`worker`]), read the final value ([`reads`]), and judge
//! every answer with Jepsen's counter checker ([`crate::bounds`]), in real-time order
//! ([`crate::order`]), on one clock for the opening, the reads and every increment. The
//! report's pass rule is in [`report`], its rows of the table in [`table`].
//!
//! All workers share one client, hence one cookie jar: this is one browser with K tabs, which
//! is exactly the case last-write-wins sessions get wrong.
//!
//! Reads: with `--endpoint json` the base and the final read are `GET /api/session`, which
//! changes nothing. The original demo's text route has no read, so with `--endpoint text` a
//! read is one more increment, sent alone: the base is its answer (the value the workers start
//! from), the final value is the final read's answer minus one (the value they left).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::bounds::{self, History};
use crate::client;
use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::error::RunError;
use crate::modes::Shared;
use crate::order::Op;
use crate::progress::{Goal, Progress};
use crate::report::{Common, Verdict, per_second, remember_error};
use crate::series::Recorder;
use crate::stop::Stop;
use crate::violation::{Found, Rule};

mod reads;
mod report;
mod table;
mod worker;

pub use report::ParallelReport;

use reads::{observe, read, timed};
use worker::{Tally, work};

/// Increments per worker when neither `--per-worker` nor `--duration` is given.
const DEFAULT_PER_WORKER: u64 = 100;

/// The parallel mode's own flags; it also reads `--duration`, `--endpoint` and `--timeout`.
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub(crate) struct Flags {
    /// Parallel mode: K workers incrementing ONE session at once.
    #[arg(long, env = "LOADTEST_PARALLEL", value_name = "K",
          value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "throughput")]
    parallel: Option<u64>,

    /// Parallel mode: increments per worker.
    #[arg(long, env = "LOADTEST_PER_WORKER", value_name = "M",
          value_parser = clap::value_parser!(u64).range(1..), requires = "parallel",
          help = format!("Parallel mode: increments per worker (default {DEFAULT_PER_WORKER}; \
                          unlimited when --duration is given)"))]
    per_worker: Option<u64>,
}

/// The parallel mode's settings, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parallel {
    /// Concurrent workers (K).
    pub(crate) workers: u64,
    /// Increments per worker (M); `None` = until the duration ends.
    pub(crate) per_worker: Option<u64>,
    /// Stop the workers at this time after their start, if given.
    pub(crate) duration: Option<Duration>,
    /// The counter endpoint the workers increment.
    pub(crate) endpoint: Endpoint,
}

impl Parallel {
    /// The parallel settings of `config`, if `--parallel` selects this mode.
    pub(crate) fn from_config(config: &Config) -> Option<Parallel> {
        let workers = config.parallel.parallel?;
        let per_worker = match (config.parallel.per_worker, config.duration) {
            (None, None) => Some(DEFAULT_PER_WORKER),
            (per_worker, _) => per_worker,
        };
        Some(Parallel {
            workers,
            per_worker,
            duration: config.duration,
            endpoint: config.endpoint,
        })
    }

    /// Opens the session, races the workers on it, reads the final value and judges it all.
    pub(crate) async fn run(
        self,
        shared: &Shared,
        stop: &Stop,
    ) -> Result<ParallelReport, RunError> {
        let Parallel {
            workers,
            per_worker,
            duration,
            endpoint,
        } = self;
        let targets = Arc::new(shared.targets.clone());
        let client = client::build(shared.timeout)?;

        // One clock for the opening, the reads and the workers: real-time order spans them all.
        let origin = Instant::now();
        // The opening increment makes the session (and its cookie); the base is read after it.
        let opening_url = targets.pick(0).url(endpoint.path());
        let opening = timed(origin, client::increment(&client, endpoint, &opening_url)).await;
        let opened = observe(endpoint, true, opening).map_err(|reason| RunError::Opening {
            target: opening_url.clone(),
            reason,
        })?;
        let mut reads = 0;
        let base = read(&client, &targets, endpoint, origin, &mut reads)
            .await
            .map_err(|reason| RunError::Opening {
                target: opening_url.clone(),
                reason: format!("reading the base value: {reason}"),
            })?;

        let goal = match (per_worker, duration) {
            (Some(m), _) => Goal::Requests(workers.saturating_mul(m)),
            (None, Some(d)) => Goal::Duration(d),
            (None, None) => Goal::Requests(0),
        };
        let progress = Progress::start(shared.progress, goal);
        let started = Instant::now();
        let deadline = duration.map(|d| started + d);
        let tasks: Vec<_> = (0..workers)
            .map(|worker| {
                let client = client.clone();
                let targets = Arc::clone(&targets);
                let counter = progress.counter();
                let stop = stop.clone();
                tokio::spawn(async move {
                    work(
                        worker as usize,
                        &client,
                        &targets,
                        endpoint,
                        (per_worker, deadline, origin, started),
                        &counter,
                        &stop,
                    )
                    .await
                })
            })
            .collect();
        let mut total = Tally::default();
        let mut lost_workers = 0;
        for task in tasks {
            let Ok(tally) = task.await else {
                // A worker that panicked is a bug here; its requests are missing from the plan.
                lost_workers += 1;
                continue;
            };
            total.absorb(tally);
        }
        let elapsed_s = started.elapsed().as_secs_f64();
        progress.finish();

        let final_read = read(&client, &targets, endpoint, origin, &mut reads).await;
        if let Err(e) = &final_read {
            remember_error(&mut total.errors, &format!("final read: {e}"));
        }
        let final_ok = final_read.as_ref().ok();
        let requests = total.sent();
        let judged = bounds::judge(&History {
            reads_increment: endpoint == Endpoint::Text,
            opening: opened.seen,
            base: base.seen,
            increments: std::mem::take(&mut total.timed),
            final_read: final_ok.map(|r| r.seen),
        });
        let mut evidence = Found::default();
        let outside = [
            (Op::Opening, Some(&opened)),
            (Op::BaseRead, Some(&base)),
            (Op::FinalRead, final_ok),
        ];
        let mismatches = outside
            .iter()
            .filter_map(|(op, o)| o.and_then(|o| o.mismatch.clone()).map(|m| (*op, m)))
            .chain(total.mismatches.iter().cloned());
        for (op, mismatch) in mismatches {
            evidence.add(Rule::NodeMismatch, || format!("{op}: {mismatch}"));
        }
        let mut violations = judged.violations;
        violations.extend(evidence.into_vec());
        let set_cookie =
            total.set_cookie || outside.iter().any(|(_, o)| o.is_some_and(|o| o.set_cookie));
        // A brand-new session has no id yet in the answer that creates it; the reads have one.
        let session = base
            .session
            .clone()
            .or_else(|| opened.session.clone())
            .or_else(|| final_ok.and_then(|r| r.session.clone()));
        let other_sessions: BTreeMap<String, u64> = total
            .sessions
            .iter()
            .filter(|(id, _)| Some(*id) != session.as_ref())
            .map(|(id, n)| (id.clone(), *n))
            .collect();
        let planned = per_worker.map(|m| workers.saturating_mul(m));
        let mut series = Recorder::default();
        for sample in &total.samples {
            series.sample(sample);
        }
        let mut report = ParallelReport {
            common: Common {
                verdict: Verdict::Fail,
                reasons: Vec::new(),
                notes: Vec::new(),
                targets: targets.names(),
                requests,
                errors: total.failed + total.unknown,
                error_examples: total.errors,
                requests_per_replica: total.per_replica,
                latency: total.latencies.summary(),
                latency_distribution: total.latencies.distribution(),
                per_second: series.finish(),
                elapsed_s,
                req_per_s: per_second(requests, elapsed_s),
                interrupted: stop.is_stopped(),
            },
            endpoint,
            workers,
            per_worker,
            planned,
            lost_workers,
            replicas_acknowledging: total.acknowledging.len() as u64,
            session,
            other_sessions,
            session_cookie: set_cookie,
            opening_value: opened.seen.value,
            base_value: base.seen.value,
            reads,
            acknowledged: total.acknowledged,
            failed: total.failed,
            unknown: total.unknown,
            final_value: judged.final_value,
            counter: judged.counter,
            violations,
        };
        report.judge();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::{Mode, tests::mode};

    #[test]
    fn parallel_flag_selects_parallel_mode() {
        assert_eq!(
            mode(&["--parallel", "16", "--per-worker", "10"]),
            Mode::Parallel(Parallel {
                workers: 16,
                per_worker: Some(10),
                duration: None,
                endpoint: Endpoint::Json
            })
        );
        assert_eq!(
            mode(&["--parallel", "4", "--duration", "2s"]),
            Mode::Parallel(Parallel {
                workers: 4,
                per_worker: None,
                duration: Some(Duration::from_secs(2)),
                endpoint: Endpoint::Json
            })
        );
    }

    #[test]
    fn each_worker_sends_a_hundred_increments_by_default() {
        assert_eq!(
            mode(&["--parallel", "2", "--endpoint", "text"]),
            Mode::Parallel(Parallel {
                workers: 2,
                per_worker: Some(100),
                duration: None,
                endpoint: Endpoint::Text
            })
        );
    }
}
