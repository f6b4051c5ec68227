//! `--parallel K`: open one session, race K workers × M increments on that one cookie, read
//! the final value and count lost updates, with Jepsen's bounds for unknown outcomes.
//!
//! All workers share one client, hence one cookie jar: this is one browser with K tabs, which
//! is exactly the case last-write-wins sessions get wrong.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::check;
use crate::client::{self, Outcome};
use crate::config::Config;
use crate::endpoint::{self, Endpoint};
use crate::error::RunError;
use crate::latency::Latencies;
use crate::progress::{Goal, Progress};
use crate::report::{Common, NO_NODE, ParallelReport, Verdict, per_second, remember_error};
use crate::stop::Stop;
use crate::targets::Targets;

/// Attempts at the final read; it is idempotent, so retrying a failed read is safe.
const FINAL_READ_ATTEMPTS: u32 = 3;

/// What one worker saw.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: u64,
    failed: u64,
    unknown: u64,
    /// Counter values of acknowledged increments, to find duplicates.
    values: Vec<u64>,
    per_replica: BTreeMap<String, u64>,
    errors: Vec<String>,
    latencies: Latencies,
}

/// Runs the parallel mode.
pub async fn run(
    config: &Config,
    workers: u64,
    per_worker: Option<u64>,
    duration: Option<Duration>,
    stop: &Stop,
) -> Result<ParallelReport, RunError> {
    let targets = Arc::new(config.target.clone());
    let endpoint = config.endpoint;
    let client = client::build(config.timeout)?;

    let opening_url = targets.pick(0).url(endpoint.path());
    let opening = client::increment(&client, endpoint, &opening_url).await;
    let opened = match opening.outcome {
        Outcome::Counted(counter) => counter,
        Outcome::AckedUnreadable(reason) | Outcome::Refused(reason) | Outcome::Unknown(reason) => {
            return Err(RunError::Opening {
                target: opening_url,
                reason,
            });
        }
    };

    let goal = match (per_worker, duration) {
        (Some(m), _) => Goal::Requests(workers.saturating_mul(m)),
        (None, Some(d)) => Goal::Duration(d),
        (None, None) => Goal::Requests(0),
    };
    let progress = Progress::start(!config.no_progress && !config.json, goal);
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
                    per_worker,
                    deadline,
                    &counter,
                    &stop,
                )
                .await
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.unwrap_or_default();
        total.acknowledged += tally.acknowledged;
        total.failed += tally.failed;
        total.unknown += tally.unknown;
        total.values.extend(tally.values);
        total.latencies.merge(&tally.latencies);
        for (node, n) in tally.per_replica {
            *total.per_replica.entry(node).or_default() += n;
        }
        for error in &tally.errors {
            remember_error(&mut total.errors, error);
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    progress.finish();

    let final_read = read_final(&client, &targets).await;
    let final_value = final_read.as_ref().map(|c| c.views);
    // A brand-new session has no id yet in the answer that creates it; the final read has one.
    let session = opened
        .session
        .clone()
        .or_else(|| final_read.and_then(|c| c.session));
    let requests = total.acknowledged + total.failed + total.unknown;
    let mut report = ParallelReport {
        common: Common {
            verdict: Verdict::Fail,
            reasons: Vec::new(),
            targets: targets.names(),
            requests,
            errors: total.failed + total.unknown,
            error_examples: total.errors,
            requests_per_replica: total.per_replica,
            latency: total.latencies.summary(),
            elapsed_s,
            req_per_s: per_second(requests, elapsed_s),
            interrupted: stop.is_stopped(),
        },
        endpoint,
        workers,
        per_worker,
        session,
        opening_value: opened.views,
        acknowledged: total.acknowledged,
        failed: total.failed,
        unknown: total.unknown,
        final_value,
        counter: final_value
            .map(|f| check::check_counter(opened.views, total.acknowledged, total.unknown, f)),
        duplicate_acknowledged_values: check::duplicate_values(&mut total.values),
    };
    report.judge();
    Ok(report)
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the list
async fn work(
    worker: usize,
    client: &reqwest::Client,
    targets: &Targets,
    endpoint: Endpoint,
    per_worker: Option<u64>,
    deadline: Option<Instant>,
    counter: &AtomicU64,
    stop: &Stop,
) -> Tally {
    let mut tally = Tally::default();
    let mut sent: u64 = 0;
    loop {
        if per_worker.is_some_and(|m| sent >= m)
            || deadline.is_some_and(|d| Instant::now() >= d)
            || stop.is_stopped()
        {
            break;
        }
        // The opening request went to target 0; rotate from there.
        let url = targets
            .pick(worker.wrapping_add(sent as usize).wrapping_add(1))
            .url(endpoint.path());
        let answer = client::increment(client, endpoint, &url).await;
        sent += 1;
        tally.latencies.record(answer.latency);
        let node = answer.node.unwrap_or_else(|| NO_NODE.to_owned());
        *tally.per_replica.entry(node).or_default() += 1;
        match answer.outcome {
            Outcome::Counted(c) => {
                tally.acknowledged += 1;
                tally.values.push(c.views);
            }
            Outcome::AckedUnreadable(e) => {
                tally.acknowledged += 1;
                remember_error(&mut tally.errors, &e);
            }
            Outcome::Refused(e) => {
                tally.failed += 1;
                remember_error(&mut tally.errors, &e);
            }
            Outcome::Unknown(e) => {
                tally.unknown += 1;
                remember_error(&mut tally.errors, &e);
            }
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }
    tally
}

/// Reads the counter without incrementing it (`GET /api/session`).
async fn read_final(client: &reqwest::Client, targets: &Targets) -> Option<endpoint::Counter> {
    let url = targets.pick(0).url(endpoint::READ_PATH);
    for attempt in 0..FINAL_READ_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let answer = client::send(client, reqwest::Method::GET, &url, endpoint::parse_json).await;
        if let Outcome::Counted(counter) = answer.outcome {
            return Some(counter);
        }
    }
    None
}
