//! What the proxy knows about the client connection a request came on: the peer's address
//! (for the forwarding headers), whether it is a trusted proxy, and what the connection
//! holds while open: its `MAX_CONNECTIONS` permit and its place in the shutdown drain. An
//! upgraded tunnel keeps both for its whole life, so a WebSocket counts as an open
//! connection and a graceful shutdown waits for it (up to `DRAIN_TIMEOUT`).

use std::sync::Arc;

use http::HeaderValue;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// What the proxy knows about the client connection a request came on.
#[derive(Debug, Clone)]
pub struct ClientConn {
    /// The peer address, rendered once for `X-Forwarded-For`.
    pub ip: HeaderValue,
    /// Whether the peer is one of `TRUSTED_PROXIES`, decided once per connection.
    pub trusted: bool,
    /// How the client reached us, `http` or `https` (for `X-Forwarded-Proto`, `Forwarded`).
    pub scheme: &'static str,
    /// Held while the connection (or its tunnel) is open; an upgraded tunnel keeps a clone.
    pub hold: Arc<ConnHold>,
}

/// What an open client connection holds until it closes.
#[derive(Debug)]
pub struct ConnHold {
    /// The connection's `MAX_CONNECTIONS` permit.
    _permit: OwnedSemaphorePermit,
    /// The drain waits until every one of these is dropped.
    _open: mpsc::Sender<()>,
}

impl ConnHold {
    /// Holds `permit` and a place in the drain (`open`) until dropped.
    pub fn new(permit: OwnedSemaphorePermit, open: mpsc::Sender<()>) -> ConnHold {
        ConnHold {
            _permit: permit,
            _open: open,
        }
    }
}
