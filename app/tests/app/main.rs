//! Integration tests of one replica and of several replicas on one real `redis-server`.
//!
//! Every test starts its own Redis on a free port and its replicas on `127.0.0.1:0`.

mod helpers;

mod acl;
mod bad_input;
mod cli;
mod cookies;
mod counter;
mod expiry;
mod hot_session;
mod lock;
mod logout;
mod observability;
mod optimistic;
mod redis_outage;
mod redis_view;
mod replay;
mod retries;
mod round_trips;
mod shutdown;
mod single_writer;
mod stalls;
