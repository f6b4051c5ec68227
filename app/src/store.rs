//! The session store every replica uses: sessions in the shared Redis, or a per-replica
//! memory store for the "what goes wrong without sharing" demo.
//!
//! The Redis store keeps the record under `SESSION_KEY_PREFIX{id}` ([`crate::keys`]), as JSON
//! or MessagePack ([`crate::record`]), and writes differently from
//! tower-sessions-redis-store:
//! - **Relative expiry.** Every write sets `PX` (milliseconds from now, on Redis's clock),
//!   never an absolute `EXAT` from this replica's clock: clock skew between replicas and
//!   Redis cannot shorten or end a session, and a 1 s session lives its full second.
//! - **Create** is `SET … NX PX`: a new random id, never an overwrite.
//! - **With locking on** (`SESSION_LOCK=on`), loading a session on a route that writes takes
//!   its lock (see [`crate::lock_scope`]), and every save or delete of an existing session is
//!   fenced by the lock's token. A save or delete without the lock is refused with an error,
//!   never sent as a plain `SET` or `DEL`.
//! - **With locking off**, the last writer wins, as in every session library, but a save is
//!   `SET … XX PX`: a session deleted while a request ran (a logout in another tab) stays
//!   deleted instead of coming back. tower-sessions-redis-store 0.16 turns the nil answer of
//!   a missed `XX` into a 500 (tower-sessions-stores#19); here it is a 409.
//! - A record that cannot be decoded is treated as absent, so the user gets a fresh session
//!   instead of a 500.
//!
//! Every Redis failure is recorded for [`crate::outcome`], so the answer says whether
//! something was written.

use std::time::Duration;

use async_trait::async_trait;
use fred::{
    clients::Pool,
    interfaces::KeysInterface,
    types::{Expiration, SetOptions, Value},
};
use prometheus_client::metrics::counter::Counter;
use tower_sessions::{
    MemoryStore, SessionStore,
    session::{Id, Record},
    session_store,
};

use crate::{
    config::SessionCodec,
    keys::Keys,
    lock_scope::{self, WriteError},
    outcome::{self, Failure},
    record,
    session_lock::LockError,
};

/// How many fresh ids `create` tries before giving up (a collision of 128-bit random ids
/// means the random source is broken).
const CREATE_TRIES: usize = 3;

/// The store behind `SessionManagerLayer`, whichever kind the config chose.
#[derive(Debug, Clone)]
pub enum AppStore {
    /// Shared by every replica.
    Redis(RedisSessions),
    /// Private to this replica.
    Memory(MemoryStore),
}

/// Sessions in the shared Redis.
#[derive(Debug, Clone)]
pub struct RedisSessions {
    /// The Redis pool.
    pool: Pool,
    /// Whether writes of existing sessions must hold the session lock.
    locking: bool,
    /// Counts backend failures for `/metrics`.
    errors: Counter,
    /// Where records live.
    keys: Keys,
    /// How records are written.
    codec: SessionCodec,
}

impl AppStore {
    /// A Redis-backed store on `pool`, records under `keys` written in `codec`; `locking`
    /// refuses unfenced writes.
    pub fn redis(
        pool: Pool,
        locking: bool,
        errors: Counter,
        keys: Keys,
        codec: SessionCodec,
    ) -> Self {
        AppStore::Redis(RedisSessions {
            pool,
            locking,
            errors,
            keys,
            codec,
        })
    }

    /// A store private to this process.
    pub fn memory() -> Self {
        AppStore::Memory(MemoryStore::default())
    }
}

impl RedisSessions {
    /// Records `failure` for the answer and counts it.
    fn failed(&self, failure: Failure, what: impl std::fmt::Display) -> session_store::Error {
        self.errors.inc();
        outcome::flag(failure);
        session_store::Error::Backend(what.to_string())
    }

    fn write_failed(&self, err: WriteError) -> session_store::Error {
        match err {
            WriteError::Store(failure) => self.failed(failure, &err),
            // Not flagged: the request runs again under the lock, and that run answers.
            WriteError::Conflict => session_store::Error::Backend(err.to_string()),
            // Not flagged: a bug, answered 500.
            WriteError::Unlocked => {
                tracing::error!(%err);
                session_store::Error::Backend(err.to_string())
            }
        }
    }

    /// `SET id bytes PX ttl NX|XX`: true when written, false when the condition failed.
    async fn set(
        &self,
        id: &Id,
        bytes: &[u8],
        ttl: Duration,
        only: SetOptions,
    ) -> Result<bool, fred::error::Error> {
        let ttl = Expiration::PX(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let set: Value = self
            .pool
            .set(self.keys.record(id), bytes, Some(ttl), Some(only), false)
            .await?;
        Ok(!set.is_null())
    }

    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let bytes = record::encode(record, self.codec)?;
        let ttl = record::ttl(record.expiry_date);
        for _ in 0..CREATE_TRIES {
            let created = self
                .set(&record.id, &bytes, ttl, SetOptions::NX)
                .await
                // Nobody knows the new id yet: whether or not it landed, nothing the user
                // can see was written.
                .map_err(|err| self.failed(Failure::Unavailable, err))?;
            if created {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(session_store::Error::Backend(
            "no free session id after several tries".into(),
        ))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let bytes = record::encode(record, self.codec)?;
        let ttl = record::ttl(record.expiry_date);
        outcome::write_sent();
        if self.locking {
            return lock_scope::save(record, &bytes, ttl)
                .await
                .map_err(|err| self.write_failed(err));
        }
        let updated = self
            .set(&record.id, &bytes, ttl, SetOptions::XX)
            .await
            .map_err(|err| self.failed(Failure::Unknown, err))?;
        if !updated {
            return Err(self.failed(Failure::Gone, "session deleted meanwhile"));
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match lock_scope::load(id).await {
            Some(Ok(record)) => Ok(record),
            Some(Err(err)) => {
                if matches!(err, LockError::Redis(_)) {
                    self.errors.inc();
                }
                outcome::flag(err.failure());
                Err(session_store::Error::Backend(err.to_string()))
            }
            None => self
                .pool
                .get::<Option<Vec<u8>>, _>(self.keys.record(id))
                .await
                .map(|bytes| bytes.as_deref().and_then(record::decode))
                .map_err(|err| self.failed(Failure::Unavailable, err)),
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        outcome::write_sent();
        if self.locking {
            return lock_scope::delete(id)
                .await
                .map_err(|err| self.write_failed(err));
        }
        self.pool
            .del::<i64, _>(self.keys.record(id))
            .await
            .map(|_| ())
            .map_err(|err| self.failed(Failure::Unknown, err))
    }
}

#[async_trait]
impl SessionStore for AppStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            AppStore::Redis(store) => store.create(record).await,
            AppStore::Memory(store) => store.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            AppStore::Redis(store) => store.save(record).await,
            AppStore::Memory(store) => store.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            AppStore::Redis(store) => store.load(id).await,
            AppStore::Memory(store) => store.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            AppStore::Redis(store) => store.delete(id).await,
            AppStore::Memory(store) => store.delete(id).await,
        }
    }
}
