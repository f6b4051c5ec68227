//! `--throughput`: N connections, closed loop (each sends as soon as its previous answer is
//! in) or open loop at `--rate` (sends at scheduled times, latency measured from the intended
//! send time as wrk2 and `oha -q` do). Connections are opened before the clock starts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use http::Method;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, Limit};
use crate::connection::{self, Connection, Plan, Stats};
use crate::error::RunError;
use crate::latency::Latencies;
use crate::progress::{Goal, Progress};
use crate::report::{Common, ThroughputReport, Verdict, per_second, remember_error};
use crate::stop::Stop;

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

    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(1);
    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let mut tasks = Vec::new();
    for index in 0..connections {
        let target = config.target.pick(index as usize).clone();
        let plan = Arc::clone(&plan);
        let stop = stop.clone();
        let ready_tx = ready_tx.clone();
        let mut start_rx = start_rx.clone();
        tasks.push(tokio::spawn(async move {
            // Connect before the clock starts, so connection setup is not measured as latency;
            // a failure here is retried (and counted) inside the loop.
            let link = connection::connect(&target, plan.timeout).await.ok();
            ready_tx.send(()).await.ok();
            drop(ready_tx);
            let start = match start_rx.wait_for(Option::is_some).await {
                Ok(start) => start.unwrap_or_else(Instant::now),
                Err(_) => return Err("the run was abandoned before it started".to_owned()),
            };
            let connection = Connection::new(index, &target, &plan, &stop, start)?;
            Ok(connection.run(link).await)
        }));
    }
    drop(ready_tx);
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
    for task in tasks {
        let stats = match task.await {
            Ok(Ok(stats)) => stats,
            Ok(Err(error)) => {
                remember_error(&mut total.error_examples, &error);
                continue;
            }
            Err(join) => {
                remember_error(
                    &mut total.error_examples,
                    &format!("connection task: {join}"),
                );
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
            let name = String::from_utf8_lossy(node.as_bytes()).into_owned();
            *per_replica.entry(name).or_default() += n;
        }
        for error in &stats.error_examples {
            remember_error(&mut total.error_examples, error);
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
        method: method_name(&config.method),
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

fn method_name(method: &Method) -> String {
    method.as_str().to_owned()
}
