//! The three modes, one module each, in the shape of mini-redis's commands: a mode declares
//! its own flags, resolves its settings once from the parsed [`Config`], runs, judges its
//! report and renders its own rows of the table. What every mode shares (the targets, the
//! timeout, the progress bar) is resolved here, once.

use std::time::Duration;

use crate::config::Config;
use crate::error::RunError;
use crate::report::Report;
use crate::stop::Stop;
use crate::targets::Targets;

pub(crate) mod parallel;
pub(crate) mod sequential;
pub(crate) mod throughput;

use parallel::Parallel;
use sequential::Sequential;
use throughput::Throughput;

/// The settings every mode reads, resolved once from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// The base URLs, used round robin.
    pub(crate) targets: Targets,
    /// Per-request timeout; a timed-out request is an unknown outcome.
    pub(crate) timeout: Duration,
    /// Whether to draw the progress bar (never with `--json` or `--no-progress`).
    pub(crate) progress: bool,
}

impl Shared {
    /// The shared settings of `config`.
    pub(crate) fn from_config(config: &Config) -> Shared {
        Shared {
            targets: config.target.clone(),
            timeout: config.timeout,
            progress: !config.no_progress && !config.json,
        }
    }
}

/// The selected mode with its settings, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mode {
    /// Many users, each counting 1, 2, … on its own session (the default).
    Sequential(Sequential),
    /// K workers racing increments on one session (`--parallel K`).
    Parallel(Parallel),
    /// Requests as fast as possible, or at a fixed rate (`--throughput`).
    Throughput(Throughput),
}

impl Mode {
    /// The mode `config` selects: `--parallel`, else `--throughput`, else sequential.
    pub(crate) fn from_config(config: &Config) -> Mode {
        if let Some(parallel) = Parallel::from_config(config) {
            Mode::Parallel(parallel)
        } else if let Some(throughput) = Throughput::from_config(config) {
            Mode::Throughput(throughput)
        } else {
            Mode::Sequential(Sequential::from_config(config))
        }
    }

    /// Runs the mode until it ends or `stop` is set, and judges what it found.
    pub(crate) async fn run(self, shared: &Shared, stop: &Stop) -> Result<Report, RunError> {
        match self {
            Mode::Sequential(mode) => mode.run(shared, stop).await.map(Report::Sequential),
            Mode::Parallel(mode) => mode.run(shared, stop).await.map(Report::Parallel),
            Mode::Throughput(mode) => mode.run(shared, stop).await.map(Report::Throughput),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The mode the command line `loadtest ARGS...` selects (the modes' own tests use it).
    pub(crate) fn mode(args: &[&str]) -> Mode {
        let config = Config::try_from_args(std::iter::once("loadtest").chain(args.iter().copied()))
            .expect("parses");
        Mode::from_config(&config)
    }
}
