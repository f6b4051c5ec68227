//! One TLS client connection: the handshake within `TLS_HANDSHAKE_TIMEOUT`, then HTTP/2 if
//! ALPN chose `h2`, else HTTP/1.1, both through [`ClientIo`] (so a client that stops
//! reading is cut off after `SEND_TIMEOUT`, as on the plain port).
//!
//! Every wait on the client stays bounded:
//! - the handshake: `TLS_HANDSHAKE_TIMEOUT`;
//! - HTTP/1.1: hyper's `HEADER_READ_TIMEOUT` from the handshake and after each response
//!   (an idle keep-alive connection closes), bodies by `BODY_IDLE_TIMEOUT`;
//! - HTTP/2: the connection preface and any time with no stream open are bounded by
//!   `HEADER_READ_TIMEOUT` (then a GOAWAY), a peer that stops answering pings by
//!   `H2_KEEP_ALIVE_TIMEOUT`, request bodies by `BODY_IDLE_TIMEOUT`.
//!
//! A client that sends plain HTTP to this port (its first byte is not a TLS handshake
//! record) gets a 400 saying so, and the connection closes.
//!
//! Idle TLS connections are not parked as plain ones are ([`crate::keep_alive`]): rustls
//! keeps its own buffers for the connection's life, so taking hyper's away would save only
//! part of the memory.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::body::Guarded;
use crate::client_io::{Activity, ClientIo};
use crate::tls::server::TlsSettings;

/// Why a TLS connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The handshake failed (not TLS, no common protocol, a reset).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
    /// The handshake did not finish within `TLS_HANDSHAKE_TIMEOUT`.
    #[error("TLS handshake not finished within {0:?}")]
    HandshakeTimeout(Duration),
    /// HTTP on the connection failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// Resolves once shutdown was signalled (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `stream` until the client closes, a timeout, or `stop` (requests in flight are
/// finished first).
pub async fn serve<H, F, B>(
    settings: &TlsSettings,
    stream: TcpStream,
    handler: H,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ConnError>
where
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handshake = tokio::time::timeout(settings.handshake_timeout, async {
        if !starts_with_tls(&stream).await? {
            refuse_plain_http(stream).await;
            return Ok(None);
        }
        settings.acceptor.accept(stream).await.map(Some)
    });
    let tls = tokio::select! {
        biased;
        () = stopped(&mut stop) => return Ok(()),
        done = handshake => match done {
            Ok(Ok(Some(tls))) => tls,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(ConnError::Handshake(e)),
            Err(_) => return Err(ConnError::HandshakeTimeout(settings.handshake_timeout)),
        },
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let io = TokioIo::new(ClientIo::new(
        tls,
        settings.send_timeout,
        Arc::new(Activity::default()),
    ));
    if h2 {
        serve_h2(settings, io, handler, stop).await
    } else {
        let service = service_fn(move |req| handler(req).map(Ok::<_, Infallible>));
        let conn = settings.http1.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            ended = conn.as_mut() => Ok(ended?),
            () = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                Ok(conn.await?)
            }
        }
    }
}

/// The first byte of a TLS connection is a handshake record's type (22); an HTTP request
/// starts with a letter.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The answer to plain HTTP on the TLS port (as nginx gives one), so the client sees what
/// went wrong instead of a TLS alert it cannot read.
const PLAIN_HTTP_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 59\r\nConnection: close\r\n\r\n400 Bad Request: this port speaks TLS; use an https:// URL\n";

/// Waits for the client's first byte and tells whether it starts a TLS handshake.
async fn starts_with_tls(stream: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    Ok(n == 0 || first[0] == TLS_HANDSHAKE_RECORD)
}

/// Answers a plain HTTP request with a 400 and closes (best effort: the client may be gone).
/// The request is read and dropped until the client closes too (at most a second): closing
/// with its bytes unread would send a reset, which can destroy the answer before it is read.
async fn refuse_plain_http(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = stream.write_all(PLAIN_HTTP_REFUSAL).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Serves an HTTP/2 connection, closing it (GOAWAY) after `idle_timeout` without an open
/// stream.
async fn serve_h2<I, H, F, B>(
    settings: &TlsSettings,
    io: I,
    handler: H,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ConnError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (open, mut watched) = watch::channel(0usize);
    let open = Arc::new(open);
    let service = service_fn(move |req| {
        let stream = OpenStream::start(&open);
        handler(req)
            .map(move |resp| Ok::<_, Infallible>(resp.map(|inner| Guarded::new(inner, stream))))
    });
    let conn = settings.http2.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        ended = conn.as_mut() => return Ok(ended?),
        () = idle(&mut watched, settings.idle_timeout) => {}
        () = stopped(&mut stop) => {}
    }
    // GOAWAY: the streams in flight are finished, no new ones start. hyper completes a
    // graceful close only once the client answers its ping (or, before the preface, once
    // the client sends it), which an idle client may never do: so the connection is dropped
    // once no stream has been open for `GOAWAY_GRACE`.
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        ended = conn => Ok(ended?),
        () = idle(&mut watched, GOAWAY_GRACE) => Ok(()),
    }
}

/// How long an HTTP/2 connection without open streams is given to take its GOAWAY.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// Resolves once no stream has been open for `timeout` (never, if the counter is gone).
async fn idle(open: &mut watch::Receiver<usize>, timeout: Duration) {
    loop {
        if open.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        match tokio::time::timeout(timeout, open.changed()).await {
            Err(_) => return,
            Ok(Ok(())) => {}
            Ok(Err(_)) => return std::future::pending().await,
        }
    }
}

/// One stream counted open, from the moment hyper hands its request to the service until
/// its response is sent or dropped.
#[derive(Debug)]
struct OpenStream(Arc<watch::Sender<usize>>);

impl OpenStream {
    fn start(open: &Arc<watch::Sender<usize>>) -> OpenStream {
        open.send_modify(|n| *n += 1);
        OpenStream(Arc::clone(open))
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_the_last_stream_and_restarts_with_each_new_one() {
        let (open, mut watched) = watch::channel(0usize);
        let open = Arc::new(open);
        let first = OpenStream::start(&open);
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn(async move {
            idle(&mut watched, Duration::from_millis(300)).await;
            tokio::time::Instant::now()
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(OpenStream::start(&open));
        let restarted = tokio::time::Instant::now();
        let ended = waiting.await.expect("idle ends");
        // Not while the first stream was open (600 ms), nor 300 ms after it closed: 300 ms
        // after the second one.
        assert!(
            ended >= restarted + Duration::from_millis(300),
            "{:?}",
            ended - started
        );
        assert!(
            ended < restarted + Duration::from_secs(2),
            "{:?}",
            ended - started
        );
    }
}
