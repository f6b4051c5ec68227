//! The client-facing accept loop: connection limit, header-read timeout, header size limit,
//! upgrades, and graceful drain on shutdown.
//!
//! The server is hyper-util's auto builder restricted to HTTP/1.1: its HTTP/2 sniffing step
//! (reading the connection preface) has no timeout, which would let a silent client sit on a
//! connection forever; HTTP/1.1 is what browsers and the backends speak here anyway.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::proxy::Proxy;

/// Serves clients on `listener` until `shutdown` completes, then stops accepting and waits up
/// to `DRAIN_TIMEOUT` for open requests to finish.
/// `limit` is the `MAX_CONNECTIONS` budget, shared by every worker's accept loop.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limit: Arc<Semaphore>,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_size as usize)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
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
        let client_ip = HeaderValue::from_str(&peer.ip().to_canonical().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let proxy = Arc::clone(&proxy);
        let service = service_fn(move |req| {
            let proxy = Arc::clone(&proxy);
            let client_ip = client_ip.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req, &client_ip).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Client-side problems (timeouts, resets, parse errors) are routine at a proxy.
                tracing::debug!(error = %e, client = %peer, "client connection ended with error");
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!("shutdown: stopped accepting, draining open requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained"),
        () = tokio::time::sleep(config.drain_timeout) => {
            tracing::warn!(timeout = ?config.drain_timeout, "drain timeout; dropping remaining connections");
        }
    }
}
