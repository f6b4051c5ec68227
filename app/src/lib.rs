//! One replica of the session-cluster demo: an axum app whose sessions live in a Redis
//! shared by every replica, so any replica can serve any request of any user.
//!
//! The binary is a thin wrapper: parse [`Config`], set up logging, bind, [`run`].

pub mod config;
pub mod error;
pub mod keys;
mod lock_scripts;
pub mod lock_wakeups;
pub mod metrics;
pub mod outcome;
pub mod record;
pub mod redis;
pub mod replay;
pub mod replication;
pub mod routes;
pub mod sentinel;
pub mod server;
pub mod session;
pub mod session_lock;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ticket;
pub mod writer;

#[cfg(feature = "test-support")]
pub mod testing;

pub use config::Config;
pub use server::{App, ServeError, ShutdownTiming, build, run};
