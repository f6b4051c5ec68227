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

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::accept;
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
    accept::accept_loop(
        listener,
        limit,
        config,
        "http",
        shutdown,
        move |stream, peer, client, stop| {
            let settings = Arc::clone(&settings);
            let proxy = Arc::clone(&proxy);
            async move {
                let handler = move |req| {
                    let proxy = Arc::clone(&proxy);
                    let client = client.clone();
                    async move { proxy.handle(req, &client).await }
                };
                let ended = keep_alive::serve(&settings, stream, handler, stop).await;
                settings.trimmer.released();
                if let Err(e) = ended {
                    // Client-side problems (timeouts, resets, parse errors) are routine at a
                    // proxy.
                    tracing::debug!(error = %e, client = %peer, "client connection ended with error");
                }
            }
        },
    )
    .await;
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
