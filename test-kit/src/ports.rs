//! Free loopback ports, for processes that take a port number rather than a bound listener.

use std::net::{SocketAddr, TcpListener};

/// A loopback port free at the time of the call (bound, read back, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A loopback address nothing listens on (bound, then released): connections are refused.
pub async fn closed_port_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}
