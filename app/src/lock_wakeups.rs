//! Wake-ups for lock waiters: a request waiting for a session's lock held on another replica
//! sleeps until the holder lets go, instead of polling Redis.
//!
//! A failed acquire leaves a short "someone waits" marker next to the lock; whoever frees the
//! lock and finds the marker publishes the session id on the channel
//! ([`crate::keys::Keys::channel`], `session:lock-free`), in the same script. Each
//! replica keeps one subscriber connection on that channel and wakes its local waiters of that
//! session. Pub/sub delivers at most once and drops messages while the subscriber reconnects,
//! so waiters also retry on a slow fallback timer ([`FALLBACK`]): a lost message costs that
//! much latency, never a hang.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::config::Config as FredConfig;
use tokio::sync::Notify;

/// How long a waiter sleeps without a wake-up before it tries again anyway.
pub const FALLBACK: Duration = Duration::from_millis(100);

/// Local waiters by session id.
#[derive(Debug, Default)]
pub struct Wakeups {
    waiting: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
}

/// A registration: wakes while it lives, unregisters when dropped.
#[derive(Debug)]
pub struct Watch<'a> {
    wakeups: &'a Wakeups,
    id: String,
    /// Notified when the session's lock is freed.
    pub notify: Arc<Notify>,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let mut waiting = self
            .wakeups
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((_, count)) = waiting.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                waiting.remove(&self.id);
            }
        }
    }
}

impl Wakeups {
    /// Registers interest in session `id`'s lock being freed.
    pub fn watch(&self, id: &str) -> Watch<'_> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let entry = waiting
            .entry(id.to_owned())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        Watch {
            wakeups: self,
            id: id.to_owned(),
            notify: Arc::clone(&entry.0),
        }
    }

    /// Wakes every local waiter of session `id`.
    pub fn wake(&self, id: &str) {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((notify, _)) = waiting.get(id) {
            notify.notify_waiters();
        }
    }

    /// Connects one subscriber to `channel` with `config` and wakes waiters on every
    /// message. The client reconnects and resubscribes by itself; it is returned so the
    /// caller can close it.
    pub fn subscribe(
        self: &Arc<Self>,
        config: &FredConfig,
        channel: &str,
    ) -> Result<SubscriberClient, fred::error::Error> {
        let subscriber = fred::types::Builder::from_config(config.clone())
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
            })
            .set_policy(fred::types::config::ReconnectPolicy::new_exponential(
                0, 50, 1_000, 2,
            ))
            .build_subscriber_client()?;
        let wakeups = Arc::clone(self);
        let _messages = subscriber.on_message(move |message| {
            if let Some(id) = message.value.as_str() {
                wakeups.wake(&id);
            }
            async { Ok(()) }
        });
        let client = subscriber.clone();
        let channel = channel.to_owned();
        tokio::spawn(async move {
            // `init` waits for the first connection; the policy keeps retrying after that.
            let _ = client.init().await;
            let _resubscribe = client.manage_subscriptions();
            if let Err(err) = client.subscribe(channel).await {
                tracing::warn!(%err, "lock wake-up subscription failed; waiters poll instead");
            }
        });
        Ok(subscriber)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_the_registered_waiters_of_that_session_only() {
        let wakeups = Wakeups::default();
        let a = wakeups.watch("a");
        let b = wakeups.watch("b");
        let (notify_a, notify_b) = (Arc::clone(&a.notify), Arc::clone(&b.notify));
        let woken_a = notify_a.notified();
        let woken_b = notify_b.notified();
        tokio::pin!(woken_a, woken_b);
        woken_a.as_mut().enable();
        woken_b.as_mut().enable();

        wakeups.wake("a");

        assert!(
            tokio::time::timeout(Duration::from_millis(50), woken_a)
                .await
                .is_ok(),
            "a was woken"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), woken_b)
                .await
                .is_err(),
            "b was not"
        );
        drop(a);
        drop(b);
        assert!(wakeups.waiting.lock().expect("lock").is_empty());
    }
}
