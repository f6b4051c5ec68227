//! The client socket as hyper sees it: writes may not stall for longer than `SEND_TIMEOUT`,
//! bytes hyper read but did not use are read again first, and what the socket did since the
//! last response is noted, so an idle connection can be parked ([`crate::keep_alive`]).
//!
//! A client that stops reading fills its socket buffer; every write then stays pending. hyper
//! has no write timeout, so without this the response body, its backend slot and the
//! connection permit would be held for as long as the client cares to wait (nginx bounds the
//! same thing with `send_timeout`). The deadline is armed when a write first returns
//! `Pending` and disarmed by any progress, so a slow but moving client is fine: only
//! `SEND_TIMEOUT` without a single byte accepted ends the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};

use crate::stall::StallTimer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What one client connection is doing, as far as parking it is concerned.
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests whose response has not been sent completely.
    in_flight: AtomicUsize,
    /// Bytes were read since the last response ended (a request may be half-read).
    read_since_done: AtomicBool,
    /// The last write did not complete (output is still buffered).
    write_blocked: AtomicBool,
    /// The connection switched protocols: hyper hands it to a tunnel, never park it.
    upgraded: AtomicBool,
}

impl Activity {
    /// A request entered the service.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }
    /// A response was sent completely (or dropped).
    pub fn response_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.read_since_done.store(false, Ordering::Relaxed);
    }
    /// The response switches protocols.
    pub fn upgrading(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }
    /// True when nothing is in flight, nothing was read since the last response, and every
    /// write completed: hyper holds no state worth keeping.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && !self.read_since_done.load(Ordering::Relaxed)
            && !self.write_blocked.load(Ordering::Relaxed)
            && !self.upgraded.load(Ordering::Relaxed)
    }
}

pin_project_lite::pin_project! {
    /// The client socket `inner`, with a deadline on stalled writes and notes on activity.
    #[derive(Debug)]
    pub struct ClientIo<T> {
        #[pin]
        inner: T,
        stalled: StallTimer,
        // Bytes to read before the socket's (what hyper had read but not parsed).
        unread: Bytes,
        activity: Arc<Activity>,
    }
}

impl<T> ClientIo<T> {
    /// Wraps `inner`; a write pending for `timeout` fails with `TimedOut`; what it does is
    /// noted in `activity`.
    pub fn new(inner: T, timeout: Duration, activity: Arc<Activity>) -> ClientIo<T> {
        ClientIo {
            inner,
            stalled: StallTimer::new(timeout),
            unread: Bytes::new(),
            activity,
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Has `bytes` read again before anything from the socket.
    pub fn unread(&mut self, bytes: Bytes) {
        self.unread = bytes;
    }
}

/// Passes `poll` through, or fails it once the write stalled for the whole timeout.
fn watch<R>(
    poll: Poll<io::Result<R>>,
    stalled: &mut StallTimer,
    activity: &Activity,
    cx: &mut Context<'_>,
) -> Poll<io::Result<R>> {
    activity
        .write_blocked
        .store(poll.is_pending(), Ordering::Relaxed);
    if stalled.expired(&poll, cx) {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading (SEND_TIMEOUT)",
        )));
    }
    poll
}

impl<T: AsyncRead> AsyncRead for ClientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            this.activity.read_since_done.store(true, Ordering::Relaxed);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read_since_done.store(true, Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite> AsyncWrite for ClientIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write(cx, buf);
        watch(poll, this.stalled, this.activity, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write_vectored(cx, bufs);
        watch(poll, this.stalled, this.activity, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let poll = this.inner.poll_flush(cx);
        watch(poll, this.stalled, this.activity, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let poll = this.inner.poll_shutdown(cx);
        watch(poll, this.stalled, this.activity, cx)
    }
}
