//! The balancer and the loadtest against real app replicas on a real `redis-server`, all
//! in-process on `127.0.0.1:0` (the loadtest's exit codes through its real binary): the tests
//! of those crates that claim cluster behaviour. They live here because app, balancer and
//! loadtest depend on none of each other.
//!
//! Run with: `cargo test -p system-tests --test cluster` (after `cargo build -p loadtest`;
//! `cargo test --workspace` builds it).

mod helpers;

mod via_balancer;
mod via_loadtest;
