//! A shared "stop now" flag: set by ctrl-c (or a test's shutdown future) and by deadlines.
//! Loops check it between requests, so in-flight requests finish and are still counted.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Cloneable handle to one stop flag.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Set once; never cleared.
    stopped: AtomicBool,
    /// Wakes loops that are sleeping until their next scheduled send.
    notify: Notify,
}

impl Stop {
    /// A flag that is not set.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Sets the flag and wakes sleepers.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }

    /// Whether the flag is set.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Resolves once the flag is set.
    pub async fn stopped(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Sets the flag when `signal` resolves (ctrl-c in the binary).
    pub fn stop_on<F>(&self, signal: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.clone();
        tokio::spawn(async move {
            signal.await;
            stop.stop();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stopping_wakes_waiters() {
        let stop = Stop::new();
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        assert!(!stop.is_stopped());
        stop.stop();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert!(stop.is_stopped());
    }
}
