//! The socket to a backend as hyper's client sees it: a backend that stops taking the
//! request (its reset turns our next write into `EPIPE` or `ECONNRESET`) does not end the
//! exchange while its answer may still be on the way.
//!
//! A backend may answer before it has read the request body (the app answers 404 or 405 to
//! an upload without reading it) and close; the kernel then resets the connection, because
//! the body was not read. hyper's client polls its connection's reads and writes in turn, so
//! when the failed write comes up before the answer was parsed, hyper fails the whole
//! exchange ("error writing a body to connection") and the answer, already in our receive
//! buffer, is lost: the client would get a 502 and the backend the blame for an answer it
//! gave. nginx reads the answer in the same situation.
//!
//! So a write the backend refused is not reported to hyper: the write stays pending for
//! good, as on a socket whose peer stopped reading, and hyper keeps reading. The reset
//! reaches the read side after the bytes that came before it, so hyper gets the answer if
//! there was one, and "connection reset" if there was none. The refusal is noted
//! ([`Refusal`]): such a connection never goes back to the pool, and the wait for response
//! headers starts at once (the rest of the body will not be sent).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Whether a backend refused a write on one connection.
#[derive(Debug, Default)]
pub struct Refusal {
    refused: AtomicBool,
    notify: Notify,
}

impl Refusal {
    /// True once the backend refused a write: the request was not sent whole.
    pub fn is_refused(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }

    /// Resolves once the backend refused a write.
    pub async fn refused(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_refused() {
                return;
            }
            notified.await;
        }
    }

    fn refuse(&self) {
        self.refused.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Errors that mean the backend no longer takes what we write.
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

pin_project_lite::pin_project! {
    /// A connection to a backend whose refused writes stay pending instead of failing.
    #[derive(Debug)]
    pub struct UpstreamIo {
        #[pin]
        inner: TcpStream,
        refusal: Arc<Refusal>,
    }
}

impl UpstreamIo {
    /// Wraps `inner`; a refused write is noted in `refusal`.
    pub fn new(inner: TcpStream, refusal: Arc<Refusal>) -> UpstreamIo {
        UpstreamIo { inner, refusal }
    }
}

/// Passes a write through, or notes a refusal and stays pending. Pending without a wake-up
/// is what we want: the connection is woken by its reads, which end with the reset.
fn watch<T>(poll: Poll<io::Result<T>>, refusal: &Refusal) -> Poll<io::Result<T>> {
    match poll {
        Poll::Ready(Err(e)) if is_refusal(&e) => {
            tracing::debug!(error = %e, "backend refused the rest of the request; reading its answer");
            refusal.refuse();
            Poll::Pending
        }
        other => other,
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.refusal.is_refused() {
            return Poll::Pending;
        }
        watch(this.inner.poll_write(cx, buf), this.refusal)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.refusal.is_refused() {
            return Poll::Pending;
        }
        watch(this.inner.poll_write_vectored(cx, bufs), this.refusal)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.refusal.is_refused() {
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_shutdown(cx)
    }
}
