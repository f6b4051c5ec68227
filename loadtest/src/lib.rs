//! The session-cluster load generator and checker.
//!
//! - `sequential`: many users, each with its own cookie jar, count 1, 2, 3 … while their
//!   requests hop between replicas, then read the count back; `check` classifies every
//!   deviation.
//! - `parallel`: K workers race increments on one session; lost updates with Jepsen's bounds
//!   (`bounds`) and real-time order (`order`), each broken rule a `violation`.
//! - `evidence`: a hop counts when `X-Served-By` and the body name the same replica, and a
//!   session when the server set a cookie or named an id.
//! - `throughput`: closed or open loop on lean HTTP/1.1 connections (`http1`), one event loop
//!   per thread as in wrk, HdrHistogram percentiles.
//!
//! `run` is what the binary calls; tests call it too, or run the binary for exit codes.

pub mod bounds;
pub mod check;
pub mod client;
pub mod config;
pub mod connection;
pub mod endpoint;
pub mod error;
pub mod evidence;
pub mod http1;
pub mod jar;
pub mod latency;
pub mod order;
pub mod parallel;
pub mod progress;
pub mod report;
pub mod runner;
pub mod sequential;
pub mod stop;
pub mod table;
pub mod targets;
pub mod throughput;
pub mod violation;

pub use config::Config;
pub use error::RunError;
pub use report::{Report, Verdict};
pub use runner::run;
