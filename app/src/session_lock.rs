//! Per-session locking in Redis: no lost updates when one session's requests run in
//! parallel on different replicas.
//!
//! Every session store in the field (express-session, tower-sessions, Spring Session)
//! loads the whole record, changes it and writes it back, so when two requests of one
//! session overlap, the last writer wins and the other's change is lost. This middleware
//! sits *outside* the session layer on the routes that write: it takes a lock named after
//! the session cookie before the session is loaded and releases it after the session was
//! saved, so one session's writes run one at a time across every replica.
//!
//! - Acquire: `SET <key> <random token> NX PX <lease>`, retried with jittered backoff
//!   until `SESSION_LOCK_WAIT_MS`; then 503 with `Retry-After`, never an unlocked write.
//! - Renew: while the request runs, the lease is extended every third of it, only while
//!   the key still holds our token (a Lua compare-and-pexpire).
//! - Release: a Lua compare-and-delete, one round trip. A drop guard releases the lock
//!   when the client disconnects or the handler panics; if the whole process dies, the
//!   lease expires.
//! - Requests without a session cookie take no lock: a new session cannot race.
//!
//! Cost: one `SET NX` and one `EVAL` per write on top of the session's `GET` and `SET`.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use fred::{
    clients::Pool,
    interfaces::{KeysInterface, LuaInterface},
    types::{Expiration, SetOptions},
};
use rand::Rng;
use tokio::{task::JoinHandle, time::Instant};

use crate::{error::AppError, metrics::Metrics};

/// Deletes the lock only if it still holds our token, so a request whose lease ran out
/// never frees a lock that another request holds by now.
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/// Extends the lease only if the lock is still ours.
const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
/// Longest cookie value that can name a session; anything longer gets no lock (and no
/// session: tower-sessions rejects it too).
const MAX_COOKIE_LEN: usize = 256;
/// Backoff bounds between attempts while the lock is taken.
const MIN_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(16);

/// The lock's settings and the Redis pool it lives in.
#[derive(Debug, Clone)]
pub struct SessionLock {
    /// Where lock keys live: the same Redis as the sessions.
    pub pool: Pool,
    /// The session cookie's name, whose value names the lock.
    pub cookie_name: &'static str,
    /// How long a lock lives unless renewed: the backstop when a holder dies.
    pub lease: Duration,
    /// How long a request waits for the lock before answering 503.
    pub wait: Duration,
    /// Wait times and timeouts are exported here.
    pub metrics: Arc<Metrics>,
}

/// Why no lock was taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another request kept the lock for the whole wait.
    #[error("lock still taken after the wait")]
    Timeout,
    /// Redis failed or did not answer in time.
    #[error(transparent)]
    Redis(#[from] fred::error::Error),
}

impl From<LockError> for AppError {
    fn from(err: LockError) -> Self {
        match err {
            LockError::Timeout => AppError::LockTimeout,
            LockError::Redis(err) => AppError::Lock(err),
        }
    }
}

/// The Redis key of the lock for a session cookie value.
pub fn lock_key(cookie_value: &str) -> String {
    format!("session-lock:{cookie_value}")
}

/// The session cookie's value, if the request carries one that could name a session.
fn session_cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty() && value.len() <= MAX_COOKIE_LEN)
}

/// A held lock. Dropping it without [`Guard::release`] still releases it, in the background.
#[derive(Debug)]
pub struct Guard {
    pool: Pool,
    key: String,
    token: String,
    renewer: JoinHandle<()>,
    released: bool,
}

impl SessionLock {
    /// Takes the lock named `key`, waiting up to `self.wait`.
    pub async fn acquire(&self, key: String) -> Result<Guard, LockError> {
        let token = format!("{:032x}", rand::rng().random::<u128>());
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let start = Instant::now();
        let deadline = start + self.wait;
        let mut backoff = MIN_BACKOFF;
        loop {
            let taken: Option<String> = self
                .pool
                .set(
                    key.as_str(),
                    token.as_str(),
                    Some(Expiration::PX(lease_ms)),
                    Some(SetOptions::NX),
                    false,
                )
                .await?;
            if taken.is_some() {
                self.metrics
                    .lock_wait
                    .observe(start.elapsed().as_secs_f64());
                let renewer = tokio::spawn(renew(
                    self.pool.clone(),
                    key.clone(),
                    token.clone(),
                    self.lease,
                ));
                return Ok(Guard {
                    pool: self.pool.clone(),
                    key,
                    token,
                    renewer,
                    released: false,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                self.metrics
                    .lock_wait
                    .observe(start.elapsed().as_secs_f64());
                self.metrics.lock_timeouts.inc();
                return Err(LockError::Timeout);
            }
            // Full jitter spreads the waiters of one hot session across time.
            let pause = backoff.mul_f64(rand::rng().random_range(0.5..=1.0));
            tokio::time::sleep(pause.min(deadline - now)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Keeps extending the lease while the request runs, so a slow request keeps its lock.
async fn renew(pool: Pool, key: String, token: String, lease: Duration) {
    let lease_ms = lease.as_millis().to_string();
    let mut tick = tokio::time::interval(lease / 3);
    tick.tick().await; // the first tick is immediate; the lock is fresh
    loop {
        tick.tick().await;
        let renewed: Result<i64, _> = pool
            .eval(
                RENEW,
                vec![key.as_str()],
                vec![token.as_str(), lease_ms.as_str()],
            )
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!(lock = %key, "session lock lost before the request finished");
                return;
            }
            Err(err) => tracing::warn!(%err, lock = %key, "session lock renewal failed; retrying"),
        }
    }
}

async fn release(pool: &Pool, key: &str, token: &str) {
    let released: Result<i64, _> = pool.eval(RELEASE, vec![key], vec![token]).await;
    if let Err(err) = released {
        // The lease expires on its own; others wait at most that long.
        tracing::warn!(%err, lock = %key, "session lock release failed");
    }
}

impl Guard {
    /// Releases the lock now (one round trip).
    pub async fn release(mut self) {
        self.renewer.abort();
        self.released = true;
        release(&self.pool, &self.key, &self.token).await;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.renewer.abort();
        if !self.released {
            // Cancelled (client gone) or unwinding from a panic: release in the background.
            let pool = self.pool.clone();
            let key = std::mem::take(&mut self.key);
            let token = std::mem::take(&mut self.token);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { release(&pool, &key, &token).await });
            }
        }
    }
}

/// Middleware: serialises the requests of one session around the session layer inside it.
pub async fn lock_session(
    State(lock): State<Arc<SessionLock>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(cookie) = session_cookie(&req, lock.cookie_name) else {
        return next.run(req).await;
    };
    let guard = match lock.acquire(lock_key(cookie)).await {
        Ok(guard) => guard,
        Err(err) => {
            if matches!(err, LockError::Redis(_)) {
                lock.metrics.redis_errors.inc();
            }
            return AppError::from(err).into_response();
        }
    };
    // The session layer inside has saved the record by the time this returns.
    let res = next.run(req).await;
    guard.release().await;
    res
}
