//! The session store behind tower-sessions: sessions in the shared Redis, or a per-replica
//! memory store for the "what goes wrong without sharing" demo.
//!
//! With Redis, tower-sessions keeps the cookie, the id and reads; writes of an existing
//! session are the session writer's ([`crate::writer`]), which answers only once Redis
//! confirmed them. So this store:
//! - **loads** a record with one `GET` (a record that cannot be decoded is treated as absent,
//!   so the user gets a fresh session instead of a 500);
//! - **creates** a new session with `SET … NX PX`, always under a fresh random id (never one
//!   a client sent), retrying on the (astronomically unlikely) collision;
//! - **saves** nothing: the session layer's save after a handler only re-sends the cookie,
//!   and the writer empties the request's copy of the session before it. A save that carries
//!   data is a route that wrote through `Session` instead of the writer: refused (a 500),
//!   never written unfenced;
//! - **deletes** nothing: the writer deleted the record already.
//!
//! Records live under `SESSION_KEY_PREFIX{id}` ([`crate::keys`]), as JSON or MessagePack
//! ([`crate::record`]), with a relative expiry (`PX`, on Redis's clock).

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

use crate::{config::SessionCodec, keys::Keys, record};

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
    /// Counts backend failures for `/metrics`.
    errors: Counter,
    /// Where records live.
    keys: Keys,
    /// How records are written.
    codec: SessionCodec,
}

impl AppStore {
    /// A Redis-backed store on `pool`, records under `keys` written in `codec`.
    pub fn redis(pool: Pool, errors: Counter, keys: Keys, codec: SessionCodec) -> Self {
        AppStore::Redis(RedisSessions {
            pool,
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
    fn failed(&self, what: impl std::fmt::Display) -> session_store::Error {
        self.errors.inc();
        session_store::Error::Backend(what.to_string())
    }

    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let ttl = record::ttl(record.expiry_date);
        let px = Expiration::PX(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        for _ in 0..CREATE_TRIES {
            // Always a fresh id: a record that carried a client's old id must not bring
            // that id back to life.
            record.id = Id::default();
            let bytes = record::encode(record, self.codec)?;
            let created: Value = self
                .pool
                .set(
                    self.keys.record(record.id),
                    bytes,
                    Some(px.clone()),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                // Nobody knows the new id yet: whether or not it landed, nothing the user
                // can see was written.
                .map_err(|err| self.failed(err))?;
            if !created.is_null() {
                return Ok(());
            }
        }
        Err(session_store::Error::Backend(
            "no free session id after several tries".into(),
        ))
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.pool
            .get::<Option<Vec<u8>>, _>(self.keys.record(id))
            .await
            .map(|bytes| bytes.as_deref().and_then(record::decode))
            .map_err(|err| self.failed(err))
    }
}

/// The session layer's save after a handler: the cookie is re-sent; the record was written
/// by the writer. A record with data here was changed through `Session`: refused.
fn save_is_a_cookie_refresh(record: &Record) -> session_store::Result<()> {
    if record.data.is_empty() {
        Ok(())
    } else {
        tracing::error!("a route changed the session outside its writer; refused");
        Err(session_store::Error::Backend(
            "session changed outside its writer".into(),
        ))
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
            AppStore::Redis(_) => save_is_a_cookie_refresh(record),
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
            AppStore::Redis(_) => Ok(()),
            AppStore::Memory(store) => store.delete(id).await,
        }
    }
}
