//! What the proxy knows about the client connection a request came on: the peer's address
//! (for the forwarding headers), whether it is a trusted proxy, and the connection's
//! `MAX_CONNECTIONS` permit, which an upgraded tunnel keeps for its whole life.

use std::sync::Arc;

use http::HeaderValue;
use tokio::sync::OwnedSemaphorePermit;

/// What the proxy knows about the client connection a request came on.
#[derive(Debug, Clone)]
pub struct ClientConn {
    /// The peer address, rendered once for `X-Forwarded-For`.
    pub ip: HeaderValue,
    /// Whether the peer is one of `TRUSTED_PROXIES`, decided once per connection.
    pub trusted: bool,
    /// The connection's `MAX_CONNECTIONS` permit; an upgraded tunnel keeps a clone.
    pub permit: Arc<OwnedSemaphorePermit>,
}
