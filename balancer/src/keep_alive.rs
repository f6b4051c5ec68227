//! Serving one client connection: hyper's HTTP/1.1 dispatcher while requests come, and
//! nothing but the socket while the connection idles between them.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for a connection's whole life,
//! where nginx frees an idle keep-alive connection's buffers. With thousands of idle
//! keep-alive clients that is most of a proxy's memory. So when a connection has been idle
//! for [`PARK_AFTER`] (no request in flight, nothing read since the last response, every write
//! done; see [`Activity`]), its hyper connection is taken apart (`into_parts`: the socket, the bytes
//! read but not parsed, the service) and dropped with its buffers, and the socket waits to
//! become readable; then a new hyper connection is built on it. Bytes hyper had read but not
//! parsed are read again first, so nothing is lost.
//!
//! Every wait stays bounded: a parked connection closes after `HEADER_READ_TIMEOUT` without a
//! byte (as hyper's keep-alive wait does), and at once on shutdown; once a byte comes, hyper's
//! own header timeout runs. A new connection starts parked, so a silent socket holds no hyper
//! state either.
//!
//! [`serve`] is the one place a client connection's accounting is set up: it makes the
//! connection's [`Activity`], gives it to the socket wrapper ([`ClientIo`], which notes
//! reads and blocked writes) and to the service it builds around the caller's handler
//! (which counts each request in flight until its response is done, and notes an upgrade),
//! and reads it to decide when to park. Callers pass a handler and nothing else.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::body::Guarded;
use crate::client_io::{Activity, ClientIo};
use crate::memory::Trimmer;

/// How long a connection stays idle before it is parked. A busy keep-alive connection (the
/// next request within this time) keeps its hyper connection, so parking costs nothing
/// under load; rebuilding one costs a few allocations.
pub const PARK_AFTER: Duration = Duration::from_millis(500);

/// One request counted open on its connection's [`Activity`], from the moment hyper hands
/// it to the service (before the service's future first runs: hyper may yield in between)
/// until its response is done or dropped.
#[derive(Debug)]
struct OpenRequest(Arc<Activity>);

impl OpenRequest {
    /// Counts a request open on `activity`; made in the service's `call`, not in the future
    /// it returns.
    fn start(activity: &Arc<Activity>) -> OpenRequest {
        activity.request_started();
        OpenRequest(Arc::clone(activity))
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.response_done();
    }
}

/// What every client connection of a worker is served with.
#[derive(Debug)]
pub struct Settings {
    /// hyper's connection settings, rebuilt into a connection after each park.
    pub builder: http1::Builder,
    /// `SEND_TIMEOUT`: a client that stops reading the response ([`ClientIo`]).
    pub send_timeout: Duration,
    /// `HEADER_READ_TIMEOUT`: how long a parked connection waits for its next request.
    pub idle_timeout: Duration,
    /// Told of every park and close: their buffers were freed.
    pub trimmer: Arc<Trimmer>,
}

/// Resolves once shutdown was signalled (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `stream`, answering each request with `handler`, until the client closes, an idle
/// wait times out (`idle_timeout`), the connection is upgraded, or `stop` (then the request
/// in flight is finished first). The connection's accounting is made and kept here.
pub async fn serve<H, F, B>(
    settings: &Settings,
    stream: TcpStream,
    handler: H,
    mut stop: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    H: Fn(Request<Incoming>) -> F,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Settings {
        builder,
        send_timeout,
        idle_timeout,
        trimmer,
    } = settings;
    let activity = Arc::new(Activity::default());
    let mut io = ClientIo::new(stream, *send_timeout, Arc::clone(&activity));
    let counted = Arc::clone(&activity);
    let mut service = service_fn(move |req| {
        let request = OpenRequest::start(&counted);
        // `map`, not an `async` block awaiting the handler's future: a block would keep that
        // future twice (as a capture and as the awaited value), and hyper keeps the service's
        // future for each connection with a request in flight (6.3 KB instead of 3.2 KB,
        // +3 MB of RSS with 1,000 busy connections).
        handler(req).map(move |resp| {
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                // The connection is handed to a tunnel: never parked again.
                request.0.upgrading();
            }
            Ok::<_, Infallible>(resp.map(|inner| Guarded::new(inner, request)))
        })
    });
    let mut unread = false;
    // Fires PARK_AFTER into an idle period (see `idle_since` below).
    let park = tokio::time::sleep(PARK_AFTER);
    tokio::pin!(park);
    // A new connection waits the whole timeout; a parked one already idled PARK_AFTER of it.
    let mut wait = *idle_timeout;
    loop {
        // Parked: only the socket and this task are held.
        if !unread {
            tokio::select! {
                biased;
                () = stopped(&mut stop) => return Ok(()),
                ready = io.get_ref().readable() => {
                    if ready.is_err() {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep(wait) => return Ok(()),
            }
        }
        // Behind a pointer, so that a parked connection's task holds a pointer while it waits,
        // not hyper's whole connection state.
        let mut conn = Box::new(
            builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        );
        // When the current idle period began; `park` is moved only when it fired before the
        // connection had been idle for PARK_AFTER, so a busy connection costs a clock read per
        // request, not a timer-wheel update.
        let mut idle_since: Option<tokio::time::Instant> = None;
        let ended = tokio::select! {
            ended = poll_fn(|cx| match Pin::new(&mut *conn).poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending if activity.is_idle() => {
                    let due = *idle_since.get_or_insert_with(tokio::time::Instant::now) + PARK_AFTER;
                    loop {
                        if park.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        if tokio::time::Instant::now() >= due {
                            return Poll::Ready(None);
                        }
                        park.as_mut().reset(due);
                    }
                }
                Poll::Pending => {
                    idle_since = None;
                    Poll::Pending
                }
            }) => ended,
            () = stopped(&mut stop) => {
                // Finish the request in flight, then close instead of keeping alive.
                Pin::new(&mut *conn).graceful_shutdown();
                return conn.await;
            }
        };
        if let Some(ended) = ended {
            return ended;
        }
        // Idle: take the connection apart and let its buffers go.
        let Some(parts) = (*conn).into_parts() else {
            return Ok(());
        };
        io = parts.io.into_inner();
        unread = !parts.read_buf.is_empty();
        if unread {
            io.unread(parts.read_buf);
        }
        service = parts.service;
        trimmer.released();
        wait = idle_timeout.saturating_sub(PARK_AFTER);
    }
}
