//! The accept loop both client ports share (plain HTTP in [`crate::server`], TLS in
//! [`crate::tls`]): the `MAX_CONNECTIONS` budget, accept errors that back off instead of
//! spinning, the per-connection [`ClientConn`], and the graceful drain on shutdown. What a
//! port does with an accepted socket is its own `serve` function.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::client_conn::{ClientConn, ConnHold};
use crate::config::Config;

/// Accepts clients on `listener` until `shutdown` completes, handing each socket, its peer,
/// its [`ClientConn`] (which holds the connection's permit) and the stop signal to `serve`
/// on a task of its own; then stops accepting and waits up to `DRAIN_TIMEOUT` for every
/// connection to close. `scheme` is what `X-Forwarded-Proto` says for this port, and names
/// the port in the logs.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limit: Arc<Semaphore>,
    config: &Config,
    scheme: &'static str,
    shutdown: impl Future<Output = ()>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, ClientConn, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Each connection (and each tunnel) holds a sender; all of them gone means every
    // connection closed.
    let (open_tx, mut all_closed) = mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);

    loop {
        // Waiting for a permit before accepting leaves extra clients in the kernel backlog
        // instead of opening sockets we would then have to refuse.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning; the listener stays usable.
                    tracing::warn!(error = %e, port = scheme, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small request/response exchanges: do not let Nagle hold back the last segment.
        let _ = stream.set_nodelay(true);
        // Built once per connection; each request only clones it.
        let ip = peer.ip().to_canonical();
        let client = ClientConn {
            ip: HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            trusted: config.trusted_proxies.iter().any(|net| net.contains(&ip)),
            scheme,
            hold: Arc::new(ConnHold::new(permit, open_tx.clone())),
        };
        tokio::spawn(serve(stream, peer, client, stop_rx.clone()));
    }

    drop(listener);
    drop(open_tx);
    let _ = stop_tx.send(true);
    tracing::info!(
        port = scheme,
        "shutdown: stopped accepting, draining open requests"
    );
    tokio::select! {
        _ = all_closed.recv() => tracing::info!(port = scheme, "drained"),
        () = tokio::time::sleep(config.drain_timeout) => {
            tracing::warn!(port = scheme, timeout = ?config.drain_timeout, "drain timeout; dropping remaining connections");
        }
    }
}
