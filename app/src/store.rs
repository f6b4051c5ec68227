//! The session store every replica uses: tower-sessions-redis-store on the shared pool,
//! or a per-replica memory store for the "what goes wrong without sharing" demo.
//!
//! Two things are changed on the way through:
//! - `save` writes with a plain `SET … EXAT` instead of the crate's `SET … XX`. In 0.16 an
//!   `XX` that finds no key (the session expired or was ended by a concurrent request)
//!   answers nil, fred fails to parse nil as a bool, and the user gets a 500
//!   (tower-sessions-stores#19). An unconditional write is the same one round trip, never
//!   fails that way, and is what last-writer-wins means; with session locking on, no
//!   concurrent request can delete the record between our load and save anyway.
//! - Under the session lock, the record was already fetched with the lock and the save
//!   also releases it (see [`crate::session_lock`]): a locked write costs no extra trip.
//! - A record that cannot be decoded is treated as absent, so the user gets a fresh
//!   session instead of a 500; backend failures are flagged for [`crate::unavailable`] so
//!   the middleware's bare 500 becomes a 503.

use async_trait::async_trait;
use fred::{
    clients::Pool,
    interfaces::{KeysInterface, LuaInterface},
    types::{Expiration, Value},
};
use prometheus_client::metrics::counter::Counter;
use tower_sessions::{
    MemoryStore, SessionStore,
    session::{Id, Record},
    session_store,
};
use tower_sessions_redis_store::RedisStore;

use crate::{session_lock, unavailable};

/// The store behind `SessionManagerLayer`, whichever kind the config chose.
#[derive(Debug, Clone)]
pub enum AppStore {
    /// Shared by every replica.
    Redis {
        /// The crate's store, used for create, load and delete.
        store: RedisStore<Pool>,
        /// The same pool, for the upserting save.
        pool: Pool,
        /// Counts backend failures for `/metrics`.
        errors: Counter,
    },
    /// Private to this replica.
    Memory(MemoryStore),
}

impl AppStore {
    /// A Redis-backed store on `pool`.
    pub fn redis(pool: Pool, errors: Counter) -> Self {
        AppStore::Redis {
            store: RedisStore::new(pool.clone()),
            pool,
            errors,
        }
    }

    /// A store private to this process.
    pub fn memory() -> Self {
        AppStore::Memory(MemoryStore::default())
    }
}

fn backend_failed(errors: &Counter, err: session_store::Error) -> session_store::Error {
    if matches!(err, session_store::Error::Backend(_)) {
        errors.inc();
        unavailable::flag();
    }
    err
}

#[async_trait]
impl SessionStore for AppStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            AppStore::Redis { store, errors, .. } => store
                .create(record)
                .await
                .map_err(|err| backend_failed(errors, err)),
            AppStore::Memory(store) => store.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            AppStore::Redis { pool, errors, .. } => {
                let bytes = rmp_serde::to_vec(record)
                    .map_err(|err| session_store::Error::Encode(err.to_string()))?;
                let expiry = record.expiry_date.unix_timestamp();
                let failed = |err: fred::error::Error| {
                    backend_failed(errors, session_store::Error::Backend(err.to_string()))
                };
                let Some((lock, token)) = session_lock::held_for(&record.id) else {
                    return pool
                        .set::<Value, _, _>(
                            record.id.to_string(),
                            bytes.as_slice(),
                            Some(Expiration::EXAT(expiry)),
                            None,
                            false,
                        )
                        .await
                        .map(|_| ())
                        .map_err(failed);
                };
                // Under the session lock: write and release in one fenced round trip.
                let written: i64 = pool
                    .eval(
                        session_lock::SAVE_AND_RELEASE,
                        vec![record.id.to_string(), lock],
                        vec![
                            Value::from(bytes.as_slice()),
                            Value::from(expiry),
                            Value::from(token),
                        ],
                    )
                    .await
                    .map_err(failed)?;
                session_lock::mark_released();
                if written == 1 {
                    Ok(())
                } else {
                    // The lease ran out and another request may have written since: refuse
                    // rather than overwrite its update.
                    Err(backend_failed(
                        errors,
                        session_store::Error::Backend("session lock lost before the save".into()),
                    ))
                }
            }
            AppStore::Memory(store) => store.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            AppStore::Redis { store, errors, .. } => match session_lock::take_prefetched(id) {
                // Fetched together with the session lock: no second round trip.
                Some(record) => Ok(record),
                None => match store.load(id).await {
                    Err(session_store::Error::Decode(err)) => {
                        tracing::warn!(%err, "undecodable session record; starting a fresh session");
                        Ok(None)
                    }
                    other => other.map_err(|err| backend_failed(errors, err)),
                },
            },
            AppStore::Memory(store) => store.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            AppStore::Redis { store, errors, .. } => store
                .delete(id)
                .await
                .map_err(|err| backend_failed(errors, err)),
            AppStore::Memory(store) => store.delete(id).await,
        }
    }
}
