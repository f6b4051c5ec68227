//! The session lock's protocol in Redis: no lost updates when one session's requests run in
//! parallel on different replicas.
//!
//! Every session store in the field (express-session, tower-sessions, Spring Session) loads
//! the whole record, changes it and writes it back, so when two requests of one session
//! overlap, the last writer wins and the other's change is lost. Here a request that will
//! write takes the session's lock when it first loads the session, and gives it back with
//! its save, so one session's writes run one at a time across every replica.
//!
//! Each step is one Lua script, so each is atomic at Redis and costs one round trip:
//! - **Acquire**: `SET lock <random token> NX PX <lease>` and, in the same script, `GET` the
//!   record: the lock adds no round trip to the load. Retried with jittered backoff until
//!   `SESSION_LOCK_WAIT_MS`, then 503 (busy), never an unlocked write.
//! - **Save**: write the record (`PX`, relative expiry) and free the lock, only while the lock
//!   still holds our token (a fenced write) and only while the record still exists (`XX`
//!   semantics: a session deleted meanwhile stays deleted). The token goes on a short list of
//!   recent saves, so that a save whose answer was lost can be resolved.
//! - **Resolve** (after a save that Redis did not confirm): if the lock still holds our token,
//!   the save has not run; delete the lock, and it never will (it is fenced). Otherwise the
//!   token on the list of recent saves says it ran. Only when neither tells is the outcome
//!   unknown.
//! - **Delete** (logout): under our lock, delete the record and the lock; without it, delete
//!   the record only while nobody holds the lock, waiting like an acquire.
//! - **Renew**: extend the lease, only while the lock holds our token.
//! - **Abandon** (an acquire whose answer was lost: a timeout, a client gone): free the lock
//!   if it holds our token, else leave a short tombstone that makes the acquire, should it
//!   still arrive, refuse. Retried until Redis answers, so no lock outlives its requester by
//!   more than Redis's own silence.
//!
//! Keys carry the session id as a hash tag (`session-lock:{id}`), so the lock, its lists and
//! the record live in one Redis Cluster slot and one script can touch them all. Leases and
//! expiries are relative (`PX`), measured by Redis's clock: replicas' clocks do not matter.
//!
//! What this does **not** guarantee: Redis replication is asynchronous, so a failover can
//! lose the last writes acknowledged by the old master (a lock included). The Sentinel setup
//! in `deploy/redis-ha` bounds that with `min-replicas-to-write`.

use std::{sync::Arc, time::Duration};

use fred::{clients::Pool, interfaces::LuaInterface, types::Value};
use rand::Rng;
use tokio::time::Instant;
use tower_sessions::session::{Id, Record};

use crate::{metrics::Metrics, outcome::Failure};

/// KEYS: lock, record, tombstone. ARGV: token, lease ms.
/// `{1, record}` when taken, `{0}` when someone holds it, `{-1}` when we gave up already.
const ACQUIRE: &str = "if redis.call('exists', KEYS[3]) == 1 then return {-1} end \
     if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
     return {1, redis.call('get', KEYS[2])} end return {0}";
/// KEYS: record, lock, saves. ARGV: bytes, expiry ms, token, saves kept, saves ttl ms.
/// 1 written, 0 the lock is not ours (nothing written), 2 the record is gone (not revived).
const SAVE: &str = "if redis.call('get', KEYS[2]) ~= ARGV[3] then return 0 end \
     redis.call('del', KEYS[2]) \
     if redis.call('exists', KEYS[1]) == 0 then return 2 end \
     redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
     redis.call('lpush', KEYS[3], ARGV[3]) \
     redis.call('ltrim', KEYS[3], 0, tonumber(ARGV[4]) - 1) \
     redis.call('pexpire', KEYS[3], ARGV[5]) return 1";
/// KEYS: lock, saves. ARGV: token, saves kept.
/// 0 not applied (and now never will be), 1 applied, 2 cannot tell.
const RESOLVE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     redis.call('del', KEYS[1]) return 0 end \
     local saves = redis.call('lrange', KEYS[2], 0, -1) \
     for i = 1, #saves do if saves[i] == ARGV[1] then return 1 end end \
     if #saves < tonumber(ARGV[2]) then return 0 end return 2";
/// KEYS: record, lock. ARGV: token. 1 deleted, 0 the lock is not ours.
const DELETE_HELD: &str = "if redis.call('get', KEYS[2]) == ARGV[1] then \
     redis.call('del', KEYS[1]) redis.call('del', KEYS[2]) return 1 end return 0";
/// KEYS: record, lock. 1 deleted, 0 someone holds the lock.
const DELETE_FREE: &str = "if redis.call('exists', KEYS[2]) == 0 then \
     redis.call('del', KEYS[1]) return 1 end return 0";
/// KEYS: lock. ARGV: token. Deletes the lock only if it still holds our token.
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('del', KEYS[1]) else return 0 end";
/// KEYS: lock, tombstone. ARGV: token, tombstone ms.
const ABANDON: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('del', KEYS[1]) end \
     redis.call('set', KEYS[2], '1', 'PX', ARGV[2]) return 0";
/// KEYS: lock. ARGV: token, lease ms. Extends the lease only if the lock is still ours.
const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// How many recent save tokens a session keeps for resolving lost answers.
const SAVES_KEPT: u32 = 16;
/// How long the list of recent saves outlives the last save.
const SAVES_TTL: Duration = Duration::from_secs(10);
/// Backoff bounds between attempts while the lock is taken.
const MIN_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(8);
/// How long an abandoned acquire keeps trying to undo itself while Redis is silent.
const ABANDON_FOR: Duration = Duration::from_secs(60);

/// The Redis key of the lock of session `id`. The `{id}` hash tag puts it in the record's
/// Redis Cluster slot.
pub fn lock_key(id: &str) -> String {
    format!("session-lock:{{{id}}}")
}

fn saves_key(id: &str) -> String {
    format!("session-lock:{{{id}}}:saves")
}

fn tombstone_key(id: &str, token: &str) -> String {
    format!("session-lock:{{{id}}}:abandoned:{token}")
}

/// A fresh lock token: 128 random bits in hex.
pub(crate) fn new_token() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// The lock's settings and the Redis pool it lives in.
#[derive(Debug, Clone)]
pub struct SessionLock {
    /// Where lock keys live: the same Redis as the sessions.
    pub pool: Pool,
    /// How long a lock lives unless renewed: the backstop when a holder dies.
    pub lease: Duration,
    /// How long a request waits for the lock before answering 503.
    pub wait: Duration,
    /// How long a save that Redis did not confirm is given to be resolved.
    pub resolve: Duration,
    /// Wait times, timeouts and unknown outcomes are exported here.
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

impl LockError {
    /// What the answer may claim: nothing was written either way.
    pub fn failure(&self) -> Failure {
        match self {
            LockError::Timeout => Failure::Busy,
            LockError::Redis(_) => Failure::Unavailable,
        }
    }
}

fn decode(value: &Value) -> Option<Record> {
    let bytes = value.as_bytes()?;
    match rmp_serde::from_slice(bytes) {
        Ok(record) => Some(record),
        Err(err) => {
            tracing::warn!(%err, "undecodable session record; starting a fresh session");
            None
        }
    }
}

impl SessionLock {
    /// Retries `attempt` with jittered backoff until it returns `Some` or the wait is over.
    async fn wait_for<T, F, Fut>(&self, mut attempt: F) -> Result<T, LockError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, fred::error::Error>>,
    {
        let start = Instant::now();
        let deadline = start + self.wait;
        let mut backoff = MIN_BACKOFF;
        loop {
            if let Some(done) = attempt().await? {
                self.metrics
                    .lock_wait
                    .observe(start.elapsed().as_secs_f64());
                return Ok(done);
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

    /// Takes the lock of session `id` with `token`, waiting up to `self.wait`, and returns
    /// the record read in the same script. On a Redis error the caller must
    /// [`abandon`](Self::abandon) the token: the acquire may still run.
    pub async fn acquire(&self, id: &Id, token: &str) -> Result<Option<Record>, LockError> {
        let id = id.to_string();
        let keys = vec![lock_key(&id), id.clone(), tombstone_key(&id, token)];
        let lease_ms = self.lease.as_millis().to_string();
        self.wait_for(|| async {
            let answer: Value = self
                .pool
                .eval(ACQUIRE, keys.clone(), vec![token, lease_ms.as_str()])
                .await?;
            let mut answer = answer.into_array().into_iter();
            Ok(match answer.next().and_then(|taken| taken.as_i64()) {
                Some(1) => Some(answer.next().as_ref().and_then(decode)),
                _ => None,
            })
        })
        .await
    }

    /// Writes `bytes` as session `id`'s record, expiring `ttl` from now, and frees the lock,
    /// if `token` still holds it. Resolves a save that Redis did not confirm.
    pub async fn save(
        &self,
        id: &Id,
        token: &str,
        bytes: &[u8],
        ttl: Duration,
    ) -> Result<(), Failure> {
        let id = id.to_string();
        let sent: Result<i64, _> = self
            .pool
            .eval(
                SAVE,
                vec![id.clone(), lock_key(&id), saves_key(&id)],
                vec![
                    Value::from(bytes),
                    Value::from(millis(ttl)),
                    Value::from(token),
                    Value::from(i64::from(SAVES_KEPT)),
                    Value::from(millis(SAVES_TTL)),
                ],
            )
            .await;
        match sent {
            Ok(1) => Ok(()),
            Ok(2) => Err(Failure::Gone),
            // The lease ran out and another request may have written since: refuse rather
            // than overwrite its update.
            Ok(_) => {
                tracing::warn!(session = %abbrev(&id), "session lock lost before the save; nothing written");
                Err(Failure::Unavailable)
            }
            Err(err) => {
                tracing::warn!(%err, session = %abbrev(&id), "save not confirmed; resolving");
                self.resolve(&id, token).await
            }
        }
    }

    /// Finds out whether the save made with `token` ran, making sure it never runs later if
    /// it has not yet.
    async fn resolve(&self, id: &str, token: &str) -> Result<(), Failure> {
        let deadline = Instant::now() + self.resolve;
        let keys = vec![lock_key(id), saves_key(id)];
        let kept = SAVES_KEPT.to_string();
        while Instant::now() < deadline {
            let answer: Result<i64, _> = self
                .pool
                .eval(RESOLVE, keys.clone(), vec![token, kept.as_str()])
                .await;
            match answer {
                Ok(0) => return Err(Failure::Unavailable),
                Ok(1) => return Ok(()),
                Ok(_) => break,
                Err(err) => {
                    tracing::debug!(%err, "resolving a save: Redis still silent");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        self.metrics.unknown_outcomes.inc();
        tracing::warn!(session = %abbrev(id), "save outcome unknown");
        // Should the save still be queued somewhere, freeing the lock fences it out.
        self.clone().abandon(id.to_owned(), token.to_owned());
        Err(Failure::Unknown)
    }

    /// Deletes session `id`'s record: under the lock when `token` holds it, otherwise as soon
    /// as nobody holds it.
    pub async fn delete(&self, id: &Id, token: Option<&str>) -> Result<(), Failure> {
        let id = id.to_string();
        let keys = vec![id.clone(), lock_key(&id)];
        let deleted = match token {
            Some(token) => match self
                .pool
                .eval::<i64, _, _, _>(DELETE_HELD, keys, vec![token])
                .await
            {
                Ok(1) => Ok(()),
                Ok(_) => Err(Failure::Unavailable),
                Err(err) => Err(LockError::Redis(err).into_unknown()),
            },
            None => self
                .wait_for(|| async {
                    let done: i64 = self
                        .pool
                        .eval(DELETE_FREE, keys.clone(), Vec::<String>::new())
                        .await?;
                    Ok((done == 1).then_some(()))
                })
                .await
                .map_err(LockError::into_unknown),
        };
        if deleted == Err(Failure::Unknown) {
            self.metrics.unknown_outcomes.inc();
        }
        deleted
    }

    /// Extends the lease. `Ok(false)` when the lock is no longer ours.
    pub async fn renew(&self, id: &Id, token: &str) -> Result<bool, fred::error::Error> {
        let lease_ms = self.lease.as_millis().to_string();
        let renewed: i64 = self
            .pool
            .eval(
                RENEW,
                vec![lock_key(&id.to_string())],
                vec![token, lease_ms.as_str()],
            )
            .await?;
        Ok(renewed == 1)
    }

    /// Frees the lock if `token` still holds it.
    pub async fn release(&self, id: &Id, token: &str) -> Result<(), fred::error::Error> {
        let _: i64 = self
            .pool
            .eval(RELEASE, vec![lock_key(&id.to_string())], vec![token])
            .await?;
        Ok(())
    }

    /// In the background, undoes an acquire or a save whose answer never came: frees the lock
    /// if `token` holds it, or leaves a tombstone so the acquire refuses should it still
    /// arrive. Retried until Redis answers (at most a minute).
    pub fn abandon(self, id: String, token: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let keys = vec![lock_key(&id), tombstone_key(&id, &token)];
            let tombstone_ms = millis(self.lease.max(Duration::from_secs(1))).to_string();
            let give_up = Instant::now() + ABANDON_FOR;
            let mut pause = Duration::from_millis(10);
            while Instant::now() < give_up {
                let undone: Result<i64, _> = self
                    .pool
                    .eval(ABANDON, keys.clone(), vec![token.as_str(), tombstone_ms.as_str()])
                    .await;
                match undone {
                    Ok(_) => return,
                    Err(err) => tracing::debug!(%err, "abandoning a session lock: retrying"),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            tracing::warn!(session = %abbrev(&id), "gave up abandoning a session lock; its lease ends it");
        });
    }
}

impl LockError {
    /// For deletes: a Redis error after sending means the delete may have run.
    fn into_unknown(self) -> Failure {
        match self {
            LockError::Timeout => Failure::Busy,
            LockError::Redis(_) => Failure::Unknown,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn abbrev(id: &str) -> String {
    crate::session::abbreviate(id)
}
