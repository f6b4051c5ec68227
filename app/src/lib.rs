//! One replica of the session-cluster demo: an axum app whose sessions live in a Redis
//! shared by every replica, so any replica can serve any request of any user.
//!
//! The binary is a thin wrapper: parse [`Config`], set up logging ([`init_tracing`]), bind,
//! [`run`] until [`shutdown_signal`]. Modules are private; what is below is the whole surface
//! the binary, the tests and `system-tests` use.

mod config;
mod error;
mod keys;
mod lock_scripts;
mod lock_wakeups;
mod metrics;
mod outcome;
mod record;
mod redis;
mod replay;
mod replication;
mod routes;
mod sentinel;
mod server;
mod session;
mod session_lock;
mod shutdown;
mod state;
mod store;
mod telemetry;
mod ticket;
mod writer;

/// One replica's settings (flags or environment variables), and the types of its values.
pub use config::{Config, LogFormat, Secret, SessionCodec, SessionStoreKind};
/// The Redis keys and channel of sessions under one prefix (`SESSION_KEY_PREFIX`): what a
/// test or an operator looks up with `redis-cli`.
pub use keys::Keys;
/// The identities (SHA1) of the Lua scripts the app sends, for tools that watch or relay its
/// Redis traffic: which commands are session writes.
pub use lock_scripts::{Script, SessionScripts, lock_script_shas, session_scripts};
/// Why the Redis client could not be set up (a part of [`ServeError`]).
pub use redis::RedisSetupError;
/// Serving: [`run`] a [`Config`]'s app on a bound listener until a shutdown future completes.
pub use server::{ServeError, run};
/// Completes on SIGTERM or Ctrl-C: the binary's shutdown signal.
pub use shutdown::signal as shutdown_signal;
/// Sets up logging in `LOG_FORMAT`, the level from `RUST_LOG`.
pub use telemetry::init as init_tracing;
