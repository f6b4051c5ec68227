//! Body types of the forwarding path; both stream frame by frame, nothing is buffered.
//!
//! [`RequestBody`] lets a request body be handed to a second backend when the first attempt
//! failed to connect: the client `Incoming` stays in a shared slot until the connection first
//! polls it, so "was anything sent?" is answered by whether the slot is still full.
//! [`ResponseBody`] carries the in-flight guard, so a backend counts as busy until its
//! response body has been fully streamed (or the client went away).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::backends::InFlight;

/// Holds the client's request body between attempts.
#[derive(Debug)]
pub struct BodySlot {
    /// `None` for requests without a body: retrying those is always possible.
    shared: Option<Arc<Mutex<Option<Incoming>>>>,
    /// Size hint of the original body, reported by every attempt so framing stays the same.
    hint: SizeHint,
}

impl BodySlot {
    /// Wraps the client body. A body that is already complete needs no slot (no allocation).
    pub fn new(body: Incoming) -> BodySlot {
        if body.is_end_stream() {
            BodySlot {
                shared: None,
                hint: SizeHint::with_exact(0),
            }
        } else {
            let hint = body.size_hint();
            BodySlot {
                shared: Some(Arc::new(Mutex::new(Some(body)))),
                hint,
            }
        }
    }

    /// A body for one attempt.
    pub fn attempt(&self) -> RequestBody {
        match &self.shared {
            None => RequestBody::Empty,
            Some(slot) => RequestBody::Pending {
                slot: Arc::clone(slot),
                hint: self.hint,
            },
        }
    }

    /// True while no attempt has started sending the body, so another attempt may carry it.
    pub fn is_intact(&self) -> bool {
        match &self.shared {
            None => true,
            Some(slot) => slot.lock().map(|s| s.is_some()).unwrap_or(false),
        }
    }
}

/// The body of one upstream attempt.
#[derive(Debug)]
pub enum RequestBody {
    /// The request had no body.
    Empty,
    /// Not yet polled: the client body is still in the shared slot.
    Pending {
        /// Slot shared with [`BodySlot`].
        slot: Arc<Mutex<Option<Incoming>>>,
        /// Size hint of the original body.
        hint: SizeHint,
    },
    /// Taken from the slot and streaming.
    Streaming(Incoming),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let RequestBody::Pending { slot, .. } = this {
            let taken = slot.lock().ok().and_then(|mut s| s.take());
            *this = match taken {
                Some(body) => RequestBody::Streaming(body),
                // Only reachable if two attempts polled one body, which the proxy never does;
                // ending the stream is safer than blocking.
                None => RequestBody::Empty,
            };
        }
        match this {
            RequestBody::Streaming(body) => Pin::new(body).poll_frame(cx),
            _ => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Pending { .. } => false,
            RequestBody::Streaming(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Pending { hint, .. } => *hint,
            RequestBody::Streaming(body) => body.size_hint(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A backend's response body, streamed to the client while holding the in-flight guard.
    #[derive(Debug)]
    pub struct ResponseBody {
        #[pin]
        inner: Incoming,
        guard: InFlight,
    }
}

impl ResponseBody {
    /// Streams `inner`, keeping `guard` until the body is done or dropped.
    pub fn new(inner: Incoming, guard: InFlight) -> ResponseBody {
        ResponseBody { inner, guard }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
