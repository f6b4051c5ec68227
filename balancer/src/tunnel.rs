//! Upgraded connections (WebSocket): bytes copied both ways until either side closes or the
//! tunnel stays silent for `TUNNEL_IDLE_TIMEOUT`.
//!
//! A tunnel keeps the client connection's hold (its `MAX_CONNECTIONS` permit and its place in
//! the shutdown drain) and its backend's in-flight count for its whole life: it is still an
//! open client connection, even though hyper's part of it ended at the upgrade. On shutdown
//! it keeps running while the drain waits, and is closed when `DRAIN_TIMEOUT` ends the
//! worker.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::backend_set::InFlight;
use crate::client_conn::ConnHold;

/// The last time either direction moved a byte, in milliseconds since `start`.
#[derive(Debug)]
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

pin_project_lite::pin_project! {
    /// One side of the tunnel, noting every byte that moves.
    struct Noted<T> {
        #[pin]
        inner: T,
        activity: Arc<Activity>,
    }
}

impl<T: AsyncRead> AsyncRead for Noted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        poll
    }
}

impl<T: AsyncWrite> AsyncWrite for Noted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Copies bytes both ways between an upgraded client and backend connection, holding the
/// client connection's `hold` and the backend's in-flight `guard` until it ends.
pub async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    guard: InFlight,
    hold: Arc<ConnHold>,
    idle: Duration,
) {
    let label = guard.backend().label().to_owned();
    let (c, u) = match tokio::join!(client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        (c, u) => {
            tracing::warn!(upstream = %label, client_ok = c.is_ok(), upstream_ok = u.is_ok(), "upgrade failed");
            return;
        }
    };
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    let mut c = Noted {
        inner: TokioIo::new(c),
        activity: Arc::clone(&activity),
    };
    let mut u = Noted {
        inner: TokioIo::new(u),
        activity: Arc::clone(&activity),
    };
    let silence = async {
        loop {
            let deadline = activity.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut c, &mut u) => match copied {
            Ok((up, down)) => tracing::debug!(upstream = %label, bytes_up = up, bytes_down = down, "tunnel closed"),
            Err(e) => tracing::debug!(upstream = %label, error = %e, "tunnel ended with error"),
        },
        () = silence => tracing::info!(upstream = %label, idle = ?idle, "tunnel idle; closed"),
    }
    drop(guard);
    drop(hold);
}
