//! A deadline on waiting without progress: armed when a poll first returns `Pending`,
//! disarmed by any `Ready`, expired once the wait lasted its timeout. The request and response
//! bodies use it between chunks (`BODY_IDLE_TIMEOUT`), the client socket between writes
//! (`SEND_TIMEOUT`).
//!
//! It runs only while the poller actually waits on that side: a body that is not polled
//! (because the proxy is blocked on the other peer) never arms it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The deadline of one stalled wait.
#[derive(Debug)]
pub struct StallTimer {
    timeout: Duration,
    // Only a stalled wait needs a timer: it is made (on the heap, where `Sleep` must stay
    // pinned) when a wait stalls, so a wait that makes progress never pays for one.
    armed: Option<Pin<Box<Sleep>>>,
}

impl StallTimer {
    /// A disarmed timer that expires after `timeout` of stalled waiting.
    pub fn new(timeout: Duration) -> StallTimer {
        StallTimer {
            timeout,
            armed: None,
        }
    }

    /// The timeout it was made with.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Follows one poll: a ready one disarms; on `Pending` it arms the deadline (registering
    /// `cx` to be woken at it) and reports whether it has passed.
    pub fn expired<T>(&mut self, poll: &Poll<T>, cx: &mut Context<'_>) -> bool {
        if poll.is_ready() {
            self.armed = None;
            return false;
        }
        let timeout = self.timeout;
        let sleep = self
            .armed
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        sleep.as_mut().poll(cx).is_ready()
    }
}
