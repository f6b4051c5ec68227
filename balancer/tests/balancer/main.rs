//! Integration tests for the balancer: real TCP on 127.0.0.1:0, small hyper servers and raw
//! sockets as backends for protocol cases. The tests that need real app replicas (cluster
//! behaviour) are in `system-tests/tests/cluster`.
//!
//! Run with: `cargo test -p balancer` (set `TEST_LOG=1` to see logs).

mod helpers;

mod broken_backends;
mod dashboard;
mod discovery;
mod early_answers;
mod errors;
mod failover;
mod headers;
mod hostile_clients;
mod limits;
mod memory;
mod pool;
mod rfc9112;
mod shutdown;
mod tls;
mod upgrade;
