//! The entry point shared by the binary and the tests: resolve the settings once, check the
//! target is reachable, run the selected mode until it ends or `shutdown` resolves, apply the
//! thresholds.

use std::future::Future;

use crate::config::Config;
use crate::error::RunError;
use crate::modes::{Mode, Shared};
use crate::report::{Report, Thresholds};
use crate::stop::Stop;

/// Runs the configured mode. `Err` means the run could not take place (exit code 2); a run that
/// found problems is an `Ok` report whose verdict is not a pass (exit code 1).
pub async fn run<F>(config: &Config, shutdown: F) -> Result<Report, RunError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let shared = Shared::from_config(config);
    let mode = Mode::from_config(config);
    let thresholds = Thresholds::from_config(config);
    shared.targets.check_reachable(shared.timeout).await?;
    let stop = Stop::new();
    let watcher = stop.stop_on(shutdown);
    let result = mode.run(&shared, &stop).await;
    watcher.abort();
    let mut report = result?;
    report.apply(thresholds);
    Ok(report)
}
