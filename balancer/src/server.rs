//! The client-facing accept loop: connection limit, timeouts on every client wait, header size
//! limit, upgrades, and graceful drain on shutdown.
//!
//! Connections are served by hyper's HTTP/1.1 server directly. (hyper-util's auto builder
//! starts every connection with an HTTP/2 sniffing read that has no timeout and ignores
//! `http1_only()`, so silent sockets could hold `MAX_CONNECTIONS` permits for ever.) Each
//! wait on the client is bounded:
//! - `HEADER_READ_TIMEOUT`: from accept, and from the end of each response on a kept-alive
//!   connection, to the end of the next request's headers: silent and idle sockets close;
//! - `BODY_IDLE_TIMEOUT`: between request body chunks (see [`crate::body`]);
//! - `SEND_TIMEOUT`: a client that stops reading the response ([`crate::client_io`]);
//! - `TUNNEL_IDLE_TIMEOUT`: an upgraded connection with no traffic ([`crate::tunnel`]).
//!
//! A client that speaks HTTP/2 without negotiating it (`PRI * HTTP/2.0`) is refused by
//! hyper's HTTP/1 parser at once.
//!
//! Between requests a kept-alive connection is parked without hyper's buffers
//! ([`crate::keep_alive`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::client_conn::{ClientConn, ConnHold};
use crate::config::Config;
use crate::framing;
use crate::keep_alive;
use crate::memory::Trimmer;
use crate::proxy::Proxy;

/// Serves clients on `listener` until `shutdown` completes, then stops accepting and waits up
/// to `DRAIN_TIMEOUT` for open requests to finish.
/// `limit` is the `MAX_CONNECTIONS` budget, shared by every worker's accept loop.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limit: Arc<Semaphore>,
    trimmer: Arc<Trimmer>,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) {
    let builder = http1_builder(config);
    // Shared by the connections, which rebuild their hyper connection after each park.
    let settings = Arc::new(keep_alive::Settings {
        builder,
        send_timeout: config.send_timeout,
        idle_timeout: config.header_read_timeout,
        trimmer,
    });
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
                    tracing::warn!(error = %e, "accept failed");
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
            scheme: "http",
            hold: Arc::new(ConnHold::new(permit, open_tx.clone())),
        };
        let proxy = Arc::clone(&proxy);
        let handler = move |req| {
            let proxy = Arc::clone(&proxy);
            let client = client.clone();
            async move { proxy.handle(req, &client).await }
        };
        let settings = Arc::clone(&settings);
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let ended = keep_alive::serve(&settings, stream, handler, stop).await;
            settings.trimmer.released();
            if let Err(e) = ended {
                // Client-side problems (timeouts, resets, parse errors) are routine at a proxy.
                tracing::debug!(error = %e, client = %peer, "client connection ended with error");
            }
        });
    }

    drop(listener);
    drop(open_tx);
    let _ = stop_tx.send(true);
    tracing::info!("shutdown: stopped accepting, draining open requests");
    tokio::select! {
        _ = all_closed.recv() => tracing::info!("drained"),
        () = tokio::time::sleep(config.drain_timeout) => {
            tracing::warn!(timeout = ?config.drain_timeout, "drain timeout; dropping remaining connections");
        }
    }
}

/// hyper's HTTP/1.1 server settings of `config`: the header timeout and limits (the TLS
/// port's HTTP/1.1 uses them too).
pub fn http1_builder(config: &Config) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_header_size(config.max_header_size as usize)
        // As many header lines as a backend takes; more gets 431 here (the count that
        // matters is checked again once this hop's headers are added, see `proxy`). Never
        // more than fit in `MAX_HEADER_SIZE`; up to 100, hyper parses without allocating.
        .max_headers(
            (config.upstream_max_headers as usize)
                .min(framing::max_header_lines(config.max_header_size as usize)),
        )
        .keep_alive(true);
    builder
}
