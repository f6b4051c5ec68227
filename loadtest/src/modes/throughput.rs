//! `--throughput`: N connections, closed loop (each sends as soon as its previous answer is
//! in) or open loop at `--rate` (sends at scheduled times, latency measured from the intended
//! send time as wrk2 and `oha -q` do).
//!
//! Like wrk, each load thread runs its own single-threaded event loop with a fixed share of the
//! connections: no work stealing, no cross-thread wake-ups on the hot path. Connections are
//! opened before the clock starts.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Config, Limit};
use crate::connection::{self, Connection, Plan, Stats};
use crate::error::RunError;
use crate::latency::Latencies;
use crate::progress::{Goal, Progress};
use crate::report::{Common, ThroughputReport, Verdict, per_second, remember_error};
use crate::stop::Stop;
use crate::targets::Target;

/// What one load thread hands back: each connection's stats, or why it could not run.
type ThreadResult = Vec<Result<Stats, String>>;

/// Runs the throughput mode.
pub async fn run(
    config: &Config,
    connections: u64,
    limit: Limit,
    rate: Option<f64>,
    stop: &Stop,
) -> Result<ThroughputReport, RunError> {
    let goal = match (limit.requests, limit.duration) {
        (Some(n), _) => Goal::Requests(n),
        (None, Some(d)) => Goal::Duration(d),
        (None, None) => Goal::Requests(0),
    };
    let progress = Progress::start(!config.no_progress && !config.json, goal);
    let plan = Arc::new(Plan {
        method: config.method.clone(),
        path: config.path.clone(),
        timeout: config.timeout,
        cookies: !config.no_cookies,
        rate,
        requests: limit.requests,
        duration: limit.duration,
        connections,
        claimed: AtomicU64::new(0),
        done: progress.counter(),
    });
    let threads = config
        .threads
        .and_then(|t| usize::try_from(t).ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, NonZeroUsize::get))
        .clamp(1, usize::try_from(connections).unwrap_or(usize::MAX).max(1));

    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let mut results = Vec::with_capacity(threads);
    for thread in 0..threads {
        let share: Vec<(u64, Target)> = (0..connections)
            .filter(|i| (*i as usize) % threads == thread)
            .map(|i| (i, config.target.pick(i as usize).clone()))
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
    for result in results {
        let stats = match result.await {
            Ok(stats) => stats,
            Err(_) => vec![Err("a load thread died".to_owned())],
        };
        for stats in stats {
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
            targets: config.target.names(),
            requests: total.completed + total.errors,
            errors: total.errors + bad_status,
            error_examples: total.error_examples,
            requests_per_replica: per_replica,
            latency: latencies.summary(),
            elapsed_s,
            req_per_s: per_second(total.completed, elapsed_s),
            interrupted: stop.is_stopped(),
        },
        method: config.method.as_str().to_owned(),
        path: config.path.clone(),
        connections,
        rate,
        completed: total.completed,
        timeouts: total.timeouts,
        status_counts,
    };
    report.judge();
    Ok(report)
}

/// One load thread: a current-thread runtime driving its share of the connections.
fn load_thread(
    share: Vec<(u64, Target)>,
    plan: &Arc<Plan>,
    stop: &Stop,
    ready: &mpsc::UnboundedSender<()>,
    start_rx: watch::Receiver<Option<Instant>>,
) -> ThreadResult {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            for _ in &share {
                ready.send(()).ok();
            }
            return vec![Err(format!("load thread runtime: {error}"))];
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let tasks: Vec<_> = share
            .into_iter()
            .map(|(index, target)| {
                let plan = Arc::clone(plan);
                let stop = stop.clone();
                let ready = ready.clone();
                let mut start_rx = start_rx.clone();
                tokio::task::spawn_local(async move {
                    // Connect before the clock starts, so setup is not measured as latency;
                    // a failure here is retried (and counted) inside the loop.
                    let link = connection::connect(&target, plan.timeout).await.ok();
                    ready.send(()).ok();
                    drop(ready);
                    let start = match start_rx.wait_for(Option::is_some).await {
                        Ok(start) => start.unwrap_or_else(Instant::now),
                        Err(_) => return Err("abandoned before the start".to_owned()),
                    };
                    let connection = Connection::new(index, &target, &plan, &stop, start);
                    Ok(connection.run(link).await)
                })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(
                task.await
                    .unwrap_or_else(|e| Err(format!("connection task: {e}"))),
            );
        }
        results
    })
}
