//! The session-cluster load generator and checker.
//!
//! Three modes, one module each (`modes/`): each declares its flags, resolves its settings
//! once, runs, judges its report and renders its rows of the table.
//! - sequential (the default): many users, each with its own cookie jar, count 1, 2, 3 …
//!   while their requests hop between replicas, then read the count back; `check` classifies
//!   every deviation.
//! - parallel (`--parallel K`): K workers race increments on one session; lost updates with
//!   Jepsen's bounds (`bounds`) and real-time order (`order`), each broken rule a `violation`.
//! - throughput (`--throughput`): closed or open loop on lean HTTP/1.1 connections (`http1`),
//!   one event loop per thread as in wrk, HdrHistogram percentiles.
//!
//! `evidence` decides what counts as a hop (`X-Served-By` and the body name the same replica)
//! and as a session (the server set a cookie or named an id).
//!
//! Every report also carries the run second by second ([`Second`]) and its latency
//! distribution ([`Percentile`]); `--report` renders it all as one self-contained HTML page
//! with SVG charts.
//!
//! The crate offers what the binary and the tests need: parse a [`Config`], [`run`] it, read
//! the [`Report`] (its fields, [`Report::to_table`], [`Report::to_json`],
//! [`Report::to_html`], the exit code).

mod bounds;
mod charts;
mod check;
mod client;
mod config;
mod endpoint;
mod error;
mod evidence;
mod html;
mod http1;
mod jar;
mod latency;
mod modes;
mod order;
mod progress;
mod report;
mod runner;
mod series;
mod stop;
mod table;
mod targets;
mod violation;

pub use bounds::CounterCheck;
pub use charts::ChartError;
pub use check::{Anomaly, AnomalyKind};
pub use config::{Config, ConfigError};
pub use endpoint::Endpoint;
pub use error::RunError;
pub use html::HtmlError;
pub use latency::{LatencySummary, Percentile};
pub use modes::parallel::ParallelReport;
pub use modes::sequential::{AnomalyCounts, LocatedAnomaly, SequentialReport, Spread};
pub use modes::throughput::ThroughputReport;
pub use report::{Common, Report, Verdict};
pub use runner::run;
pub use series::Second;
pub use violation::{Rule, Violation};
