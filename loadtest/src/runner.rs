//! The entry point shared by the binary and the tests: check the target is reachable, run the
//! selected mode until it ends or `shutdown` resolves, apply the thresholds.

use std::future::Future;

use crate::config::{Config, Mode};
use crate::error::RunError;
use crate::report::{Report, Thresholds};
use crate::stop::Stop;
use crate::{parallel, sequential, throughput};

/// Runs the configured mode. `Err` means the run could not take place (exit code 2); a run that
/// found problems is an `Ok` report whose verdict is not a pass (exit code 1).
pub async fn run<F>(config: &Config, shutdown: F) -> Result<Report, RunError>
where
    F: Future<Output = ()> + Send + 'static,
{
    config.target.check_reachable(config.timeout).await?;
    let stop = Stop::new();
    let watcher = stop.stop_on(shutdown);
    let result = match config.mode() {
        Mode::Sequential { users, requests } => sequential::run(config, users, requests, &stop)
            .await
            .map(Report::Sequential),
        Mode::Parallel {
            workers,
            per_worker,
            duration,
        } => parallel::run(config, workers, per_worker, duration, &stop)
            .await
            .map(Report::Parallel),
        Mode::Throughput {
            connections,
            limit,
            rate,
        } => throughput::run(config, connections, limit, rate, &stop)
            .await
            .map(Report::Throughput),
    };
    watcher.abort();
    let mut report = result?;
    let thresholds = Thresholds {
        min_rps: config.min_rps,
        max_p99_ms: config.max_p99.map(|d| d.as_secs_f64() * 1000.0),
    };
    match &mut report {
        Report::Sequential(r) => thresholds.apply(&mut r.common),
        Report::Parallel(r) => thresholds.apply(&mut r.common),
        Report::Throughput(r) => thresholds.apply(&mut r.common),
    }
    Ok(report)
}
