//! The TLS port's accept loop on one worker: the same `MAX_CONNECTIONS` budget and graceful
//! drain as the plain port ([`crate::server`]), then a TLS handshake bounded by
//! `TLS_HANDSHAKE_TIMEOUT` before [`crate::tls::connection`] serves what ALPN chose.
//!
//! A client that speaks plain HTTP to this port fails the handshake at its first byte (it
//! is not a TLS record) and is disconnected at once; one that opens a connection and sends
//! nothing, or stops in the middle of the handshake, is disconnected at the timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::accept;
use crate::config::Config;
use crate::proxy::Proxy;
use crate::server::http1_builder;
use crate::tls::Tls;
use crate::tls::connection;

/// What every TLS connection of a worker is served with.
pub struct TlsSettings {
    /// Does the handshakes, with the certificate current at each.
    pub(super) acceptor: TlsAcceptor,
    /// `TLS_HANDSHAKE_TIMEOUT`.
    pub(super) handshake_timeout: Duration,
    /// HTTP/1.1 after ALPN `http/1.1` (or none): the plain port's settings.
    pub(super) http1: http1::Builder,
    /// HTTP/2 after ALPN `h2`, with its stream and header limits.
    pub(super) http2: http2::Builder<TokioExecutor>,
    /// `SEND_TIMEOUT`: a client that stops reading.
    pub(super) send_timeout: Duration,
    /// `HEADER_READ_TIMEOUT`: an HTTP/2 connection without an open stream for this long is
    /// closed, as an idle HTTP/1.1 keep-alive connection is.
    pub(super) idle_timeout: Duration,
}

impl TlsSettings {
    /// The settings of `config`, serving `tls`'s certificate.
    pub fn new(tls: &Tls, config: &Config) -> TlsSettings {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(config.tls.h2_max_concurrent_streams)
            // The decoded header list (names, values and 32 bytes each, RFC 9113 §6.5.2):
            // the same budget as an HTTP/1.1 head.
            .max_header_list_size(config.max_header_size)
            .keep_alive_interval(config.tls.h2_keep_alive_interval)
            .keep_alive_timeout(config.tls.h2_keep_alive_timeout);
        TlsSettings {
            acceptor: tls.acceptor(),
            handshake_timeout: config.tls.tls_handshake_timeout,
            http1: http1_builder(config),
            http2,
            send_timeout: config.send_timeout,
            idle_timeout: config.header_read_timeout,
        }
    }
}

/// Serves TLS clients on `listener` until `shutdown` completes, then stops accepting and
/// waits up to `DRAIN_TIMEOUT` for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    settings: Arc<TlsSettings>,
    proxy: Arc<Proxy>,
    limit: Arc<Semaphore>,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) {
    accept::accept_loop(
        listener,
        limit,
        config,
        "https",
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
                if let Err(e) = connection::serve(&settings, stream, handler, stop).await {
                    // Failed handshakes, timeouts and resets are routine on a public port.
                    tracing::debug!(error = %e, client = %peer, "TLS client connection ended with error");
                }
            }
        },
    )
    .await;
}
