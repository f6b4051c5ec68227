//! What session-cluster's tests start for real, shared by every crate's tests and by
//! `system-tests`: a `redis-server` on a free port (with the shipped ACL under
//! `TEST_REDIS_ACL=1`), servers run in-process on `127.0.0.1:0` (app replicas, the balancer),
//! fake HTTP backends for tests of the proxy itself, an HTTPS client connection
//! for the balancer's TLS port, a Redis relay that holds session writes
//! to widen a race window ([`HoldingProxy`]), `chromedriver` with headless Chromium, and the
//! paths of the workspace's binaries.
//!
//! It depends on none of the workspace's crates: a test says how to run a server
//! (`Replica::start("node-0", |listener, shutdown| app::run(listener, config, shutdown))`),
//! so no crate needs a sibling to be tested. Everything started here stops on drop.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod balancer;
mod binaries;
mod browser;
mod hold;
mod http;
mod https;
mod ports;
mod redis;
mod replica;

pub use balancer::InProcessBalancer;
pub use binaries::workspace_binary;
pub use browser::{ChromeDriver, output_dir, text_when};
pub use hold::{Hold, HoldingProxy, Pick, nothing, session_loads, session_saves};
pub use http::{
    RawBackend, RawReply, StreamingServer, TestServer, big_stream, header_lines, http_client,
    parse_response, raw_exchange, read_message, read_responses, text, wait_for_200,
};
pub use https::{HttpsConn, HttpsResponse, client_config as tls_client_config};
pub use ports::{closed_port_addr, free_port};
pub use redis::{RedisServer, TEST_ADMIN_PASSWORD, TEST_APP_PASSWORD, USERS_ACL};
pub use replica::{Replica, Shutdown};
