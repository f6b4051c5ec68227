//! A client socket whose writes may not stall for longer than `SEND_TIMEOUT`.
//!
//! A client that stops reading fills its socket buffer; every write then stays pending. hyper
//! has no write timeout, so without this the response body, its backend slot and the
//! connection permit would be held for as long as the client cares to wait (nginx bounds the
//! same thing with `send_timeout`). The deadline is armed when a write first returns
//! `Pending` and disarmed by any progress, so a slow but moving client is fine: only
//! `SEND_TIMEOUT` without a single byte accepted ends the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::stall::StallTimer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project_lite::pin_project! {
    /// `inner` with a deadline on stalled writes.
    #[derive(Debug)]
    pub struct SendTimeout<T> {
        #[pin]
        inner: T,
        stalled: StallTimer,
    }
}

impl<T> SendTimeout<T> {
    /// Wraps `inner`; a write pending for `timeout` fails with `TimedOut`.
    pub fn new(inner: T, timeout: Duration) -> SendTimeout<T> {
        SendTimeout {
            inner,
            stalled: StallTimer::new(timeout),
        }
    }
}

/// Passes `poll` through, or fails it once the write stalled for the whole timeout.
fn watch<R>(
    poll: Poll<io::Result<R>>,
    stalled: &mut StallTimer,
    cx: &mut Context<'_>,
) -> Poll<io::Result<R>> {
    if stalled.expired(&poll, cx) {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading (SEND_TIMEOUT)",
        )));
    }
    poll
}

impl<T: AsyncRead> AsyncRead for SendTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write(cx, buf);
        watch(poll, this.stalled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write_vectored(cx, bufs);
        watch(poll, this.stalled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let poll = this.inner.poll_flush(cx);
        watch(poll, this.stalled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let poll = this.inner.poll_shutdown(cx);
        watch(poll, this.stalled, cx)
    }
}
