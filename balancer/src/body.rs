//! Body types of the forwarding path; both stream frame by frame, nothing is buffered.
//!
//! [`RequestBody`] lets a request body be handed to a second backend when the first attempt
//! failed to connect: the client `Incoming` stays in a shared slot until the connection first
//! polls it, so whether the body was touched is told by whether the slot is still full (the
//! proxy's one answer to "was anything sent?" combines this with what hyper reports, see
//! `Exchange::failed` in [`crate::proxy`]). It also
//! records whose fault a failed upload was: a client that stalls for `BODY_IDLE_TIMEOUT`,
//! resets, or sends a malformed body is the client's fault, never the backend's, and the
//! proxy must know that before it blames (and ejects) a backend. And it tells when the body
//! was sent completely, which is when `UPSTREAM_TIMEOUT` starts.
//!
//! [`ResponseBody`] carries the in-flight guard, so a backend counts as busy until its
//! response body has been fully streamed (or the client went away), and cuts off a backend
//! that stalls mid-body for `BODY_IDLE_TIMEOUT`. It also carries the upstream connection,
//! which goes back to the worker's pool once the body was read to the end (and is closed
//! otherwise).
//!
//! Both idle deadlines run only while the proxy is waiting for the *other* side's bytes (the
//! body returned `Pending`); while the proxy is blocked writing to a slow peer the body is not
//! polled and its deadline is not armed.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::backend_set::InFlight;
use crate::stall::StallTimer;
use crate::upstream_pool::Conn;

/// A pooled upstream connection, carrying request bodies of this module.
pub type UpstreamConn = Conn<RequestBody>;

/// The error type of both bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a client's upload failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// No body bytes for `BODY_IDLE_TIMEOUT`: 408.
    Stalled,
    /// The client reset, closed early, or sent a malformed body: 400.
    Broken,
}

/// A body chunk did not come within `BODY_IDLE_TIMEOUT`.
#[derive(Debug, thiserror::Error)]
#[error("no body bytes for {0:?} (BODY_IDLE_TIMEOUT)")]
pub struct BodyIdle(pub Duration);

/// What the attempts of one request share: the client's body until one of them takes it,
/// and what they learn about the upload. One allocation per request with a body; none
/// without.
#[derive(Debug, Default)]
struct Upload {
    /// The client's body, until an attempt starts sending it.
    body: Mutex<Option<Incoming>>,
    /// 0: no fault, 1: stalled, 2: broken.
    fault: AtomicU8,
    /// Set once the body was sent completely.
    done: AtomicBool,
    /// Wakes whoever waits for `done`.
    done_notify: Notify,
}

impl Upload {
    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.done_notify.notify_waiters();
    }
}

/// Holds the client's request body between attempts.
#[derive(Debug)]
pub struct BodySlot {
    /// `None` for requests without a body: retrying those is always possible.
    shared: Option<Arc<Upload>>,
    /// Size hint of the original body, reported by every attempt so framing stays the same.
    hint: SizeHint,
    /// `BODY_IDLE_TIMEOUT`.
    idle: Duration,
}

impl BodySlot {
    /// Wraps the client body. A body that is already complete needs no slot.
    pub fn new(body: Incoming, idle: Duration) -> BodySlot {
        if body.is_end_stream() {
            BodySlot {
                shared: None,
                hint: SizeHint::with_exact(0),
                idle,
            }
        } else {
            let hint = body.size_hint();
            BodySlot {
                shared: Some(Arc::new(Upload {
                    body: Mutex::new(Some(body)),
                    ..Upload::default()
                })),
                hint,
                idle,
            }
        }
    }

    /// True when the request has a body (empty ones excepted).
    pub fn has_body(&self) -> bool {
        self.shared.is_some()
    }

    /// A body for one attempt.
    pub fn attempt(&self) -> RequestBody {
        RequestBody(match &self.shared {
            None => Attempt::Empty,
            Some(upload) => Attempt::Pending {
                upload: Arc::clone(upload),
                hint: self.hint,
                idle: self.idle,
            },
        })
    }

    /// True while no attempt has started sending the body, so another attempt may carry it.
    pub fn is_intact(&self) -> bool {
        match &self.shared {
            None => true,
            Some(upload) => upload.body.lock().map(|s| s.is_some()).unwrap_or(false),
        }
    }

    /// True once the whole body was sent to a backend (at once without a body).
    pub fn is_sent(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|upload| upload.done.load(Ordering::Acquire))
    }

    /// The client's fault, if its upload failed.
    pub fn client_fault(&self) -> Option<ClientFault> {
        match self.shared.as_ref()?.fault.load(Ordering::Acquire) {
            1 => Some(ClientFault::Stalled),
            2 => Some(ClientFault::Broken),
            _ => None,
        }
    }

    /// Resolves once the whole body was sent to a backend (at once without a body).
    pub async fn sent(&self) {
        let Some(upload) = &self.shared else {
            return;
        };
        loop {
            let notified = upload.done_notify.notified();
            if upload.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// The body of one upstream attempt.
#[derive(Debug)]
pub struct RequestBody(Attempt);

#[derive(Debug)]
enum Attempt {
    /// The request had no body.
    Empty,
    /// Not yet polled: the client body is still in the shared slot.
    Pending {
        /// Body, fault and completion, shared with [`BodySlot`].
        upload: Arc<Upload>,
        /// Size hint of the original body.
        hint: SizeHint,
        /// `BODY_IDLE_TIMEOUT`.
        idle: Duration,
    },
    /// Taken from the slot and streaming.
    Streaming {
        /// The client's body.
        body: Incoming,
        /// Fault and completion, shared with [`BodySlot`].
        upload: Arc<Upload>,
        /// Deadline for the next chunk.
        timer: StallTimer,
    },
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut self.get_mut().0;
        if let Attempt::Pending { upload, idle, .. } = this {
            let taken = upload.body.lock().ok().and_then(|mut s| s.take());
            *this = match taken {
                Some(body) => Attempt::Streaming {
                    body,
                    upload: Arc::clone(upload),
                    timer: StallTimer::new(*idle),
                },
                // Only reachable if two attempts polled one body, which the proxy never does;
                // ending the stream is safer than blocking.
                None => Attempt::Empty,
            };
        }
        let Attempt::Streaming {
            body,
            upload,
            timer,
        } = this
        else {
            return Poll::Ready(None);
        };
        let poll = Pin::new(&mut *body).poll_frame(cx);
        if timer.expired(&poll, cx) {
            upload.fault.store(1, Ordering::Release);
            return Poll::Ready(Some(Err(Box::new(BodyIdle(timer.timeout())))));
        }
        match poll {
            Poll::Ready(None) => {
                upload.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // Reset, early close, malformed chunked framing: the client's doing.
                upload.fault.store(2, Ordering::Release);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if body.is_end_stream() {
                    upload.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Attempt::Empty => true,
            Attempt::Pending { .. } => false,
            Attempt::Streaming { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Attempt::Empty => SizeHint::with_exact(0),
            Attempt::Pending { hint, .. } => *hint,
            Attempt::Streaming { body, .. } => body.size_hint(),
        }
    }
}

/// A backend's response body, streamed to the client while holding the in-flight guard.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Incoming,
    guard: InFlight,
    timer: StallTimer,
    /// Set when the backend stalled, so it is blamed once.
    stalled: bool,
    /// The connection it comes on; back to the pool when the body was read to the end.
    conn: Option<UpstreamConn>,
    /// Set once the body ended cleanly.
    finished: bool,
}

impl ResponseBody {
    /// Streams `inner`, keeping `guard` until the body is done or dropped; a backend silent
    /// for `idle` mid-body is cut off. `conn` is reused if the body is read to the end.
    pub fn new(
        inner: Incoming,
        guard: InFlight,
        idle: Duration,
        conn: UpstreamConn,
    ) -> ResponseBody {
        ResponseBody {
            inner,
            guard,
            timer: StallTimer::new(idle),
            stalled: false,
            conn: Some(conn),
            finished: false,
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && (self.finished || (!self.stalled && self.inner.is_end_stream()))
        {
            conn.release();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        if this.timer.expired(&poll, cx) {
            if !this.stalled {
                this.stalled = true;
                let backend = this.guard.backend();
                backend.stats.record_failure();
                tracing::warn!(upstream = %backend.label(), timeout = ?this.timer.timeout(), "backend stalled mid-body; cut off");
            }
            return Poll::Ready(Some(Err(Box::new(BodyIdle(this.timer.timeout())))));
        }
        match &poll {
            Poll::Ready(None) => this.finished = true,
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finished = true,
            _ => {}
        }
        poll.map(|frame| frame.map(|f| f.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds `guard` until it is done (sent to the end, or dropped):
    /// how a connection counts a request (HTTP/1.1) or a stream (HTTP/2) open for exactly
    /// as long as its response is being sent.
    #[derive(Debug)]
    pub(crate) struct Guarded<B, G> {
        #[pin]
        inner: B,
        guard: G,
    }
}

impl<B, G> Guarded<B, G> {
    /// `inner`, holding `guard` until it is done.
    pub(crate) fn new(inner: B, guard: G) -> Guarded<B, G> {
        Guarded { inner, guard }
    }
}

impl<B: Body, G> Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
