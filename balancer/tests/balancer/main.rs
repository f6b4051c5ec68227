//! Integration tests for the balancer: real TCP on 127.0.0.1:0, real app replicas on a real
//! redis-server where cluster behaviour is claimed, small hyper servers for protocol cases.
//!
//! Run with: `cargo test -p balancer` (set `TEST_LOG=1` to see logs).

mod helpers;

mod admin;
mod broken_backends;
mod discovery;
mod early_answers;
mod errors;
mod exactly_once;
mod failover;
mod headers;
mod hostile_clients;
mod limits;
mod memory;
mod pool;
mod rfc9112;
mod round_robin;
mod shutdown;
mod upgrade;
