//! One writer per session: how routes change a session, and the only place that writes one.
//!
//! A route that writes takes a [`SessionWriter`] and calls [`SessionWriter::update`] with a
//! pure change (`|visits| count(visits, node, 1)`), or [`SessionWriter::delete`]. What
//! happens depends on the store (`SESSION_STORE`, `SESSION_LOCK`):
//! - **Redis with the lock** (the default): the change goes to its session's writer on this
//!   replica ([`Writers`]), which applies it with the others that arrived, writes the record
//!   once, and answers each caller with the outcome of that write. The protocol is a state
//!   machine of its own ([`protocol`]); the design and its state diagram are in
//!   `docs/session-writer.md`.
//! - **Redis without the lock**: read, change, `SET … XX` (the last writer wins, as in every
//!   session library; a session deleted meanwhile stays deleted).
//! - **Memory**: through tower-sessions' own session (the no-sharing demo).
//!
//! tower-sessions keeps the cookie, the id and reads. A new session (no cookie, or a cookie
//! whose record is gone) is created through it: `SET … NX` with a fresh id, which nobody else
//! can know yet, so it needs no lock. After a write, the request's [`Session`] copy is
//! emptied so that the session layer only re-sends the cookie ([`crate::store`] writes nothing
//! for it).
//!
//! One rule, enforced by the types: a change is answered with `Ok` only after Redis confirmed
//! the write that carries it; [`Failure`] says what may be claimed otherwise.

mod protocol;
mod task;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use fred::{
    clients::Pool,
    interfaces::KeysInterface,
    types::{Expiration, SetOptions, Value},
};
use http::request::Parts;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;
use tower_sessions::Session;

pub use protocol::{Change, Done, Job, Order};
pub use task::Writers;

use crate::{
    config::SessionCodec,
    error::AppError,
    keys::Keys,
    outcome::Failure,
    replay::RequestKey,
    session::{self, Visits},
    ticket::Ticket,
};

/// How this replica writes sessions.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Redis, one writer per session under the lock protocol.
    Locked(Arc<Writers>),
    /// Redis, last write wins.
    Plain(Arc<Plain>),
    /// This process's memory.
    Memory,
}

/// Redis without the lock.
#[derive(Debug)]
pub struct Plain {
    /// The Redis pool.
    pub pool: Pool,
    /// Where records live.
    pub keys: Keys,
    /// How records are written.
    pub codec: SessionCodec,
    /// Each write sets the session to expire this long after it.
    pub ttl: Duration,
    /// Counts Redis failures for `/metrics`.
    pub errors: Counter,
}

/// The extractor of routes that write the session.
#[derive(Debug)]
pub struct SessionWriter {
    /// tower-sessions' session: the cookie and the id.
    session: Session,
    /// This request's claim on its write ([`Ticket`]).
    ticket: Ticket,
    /// How to write.
    backend: Backend,
}

impl<S> FromRequestParts<S> for SessionWriter
where
    Backend: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = <Session as FromRequestParts<S>>::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        // The request timeout puts it there; without one (a test), a fresh one.
        let ticket = parts
            .extensions
            .get::<Ticket>()
            .cloned()
            .unwrap_or_default();
        Ok(SessionWriter {
            session,
            ticket,
            backend: Backend::from_ref(state),
        })
    }
}

/// Withdraws the request's change if the request is dropped before its answer came.
struct Withdraw<'a>(Option<&'a Ticket>);

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.0 {
            ticket.withdraw();
        }
    }
}

impl SessionWriter {
    /// Applies `change` once for `request` and returns the visits after it (for a replay of
    /// an applied request, the count it produced then). A new session is made if the request
    /// has none.
    pub async fn update(
        &self,
        request: RequestKey,
        change: impl Fn(&mut Visits) + Send + Sync + 'static,
    ) -> Result<Visits, AppError> {
        let change: Change = Arc::new(change);
        match &self.backend {
            Backend::Locked(writers) => self.update_locked(writers, request, change).await,
            Backend::Plain(plain) => self.update_plain(plain, request, change).await,
            Backend::Memory => self.update_memory(request, change).await,
        }
    }

    async fn update_locked(
        &self,
        writers: &Arc<Writers>,
        request: RequestKey,
        change: Change,
    ) -> Result<Visits, AppError> {
        let Some(id) = self.session.id() else {
            return self.create(&request, &change).await;
        };
        let order = Order::Update {
            request: request.clone(),
            change: Arc::clone(&change),
        };
        match self.ask(writers, id, order).await? {
            Done::Updated(visits) => {
                self.written().await;
                Ok(visits)
            }
            Done::Absent | Done::Deleted => self.create(&request, &change).await,
        }
    }

    /// Sends `order` to session `id`'s writer and waits for its answer.
    async fn ask(
        &self,
        writers: &Arc<Writers>,
        id: tower_sessions::session::Id,
        order: Order,
    ) -> Result<Done, Failure> {
        if !self.ticket.file() {
            // Cut off before the order was sent.
            return Err(Failure::Unavailable);
        }
        let (reply, answer) = oneshot::channel();
        writers.submit(
            id,
            Job {
                order,
                ticket: self.ticket.clone(),
                reply,
            },
        );
        let mut withdraw = Withdraw(Some(&self.ticket));
        let answer = answer.await;
        withdraw.0 = None;
        match answer {
            Ok(reply) => reply,
            // The writer stopped without answering (the runtime is shutting down).
            Err(_) if self.ticket.is_taken() => Err(Failure::Unknown),
            Err(_) => Err(Failure::Unavailable),
        }
    }

    async fn update_plain(
        &self,
        plain: &Plain,
        request: RequestKey,
        change: Change,
    ) -> Result<Visits, AppError> {
        let Some(id) = self.session.id() else {
            return self.create(&request, &change).await;
        };
        let key = plain.keys.record(id);
        let bytes: Option<Vec<u8>> = plain.pool.get(&key).await.map_err(|err| {
            plain.errors.inc();
            tracing::warn!(%err, "session read failed");
            Failure::Unavailable
        })?;
        let Some(mut record) = bytes.as_deref().and_then(crate::record::decode) else {
            return self.create(&request, &change).await;
        };
        let mut state = session::State::of(&record);
        let (visits, changed) = state.apply(&request, |v| change(v));
        if !changed {
            return Ok(visits);
        }
        state.store(&mut record);
        let bytes = crate::record::renewed(&mut record, plain.ttl, plain.codec)
            .ok_or(Failure::Unavailable)?;
        self.claim()?;
        let px = Expiration::PX(i64::try_from(plain.ttl.as_millis()).unwrap_or(i64::MAX));
        let set: Value = plain
            .pool
            .set(key, bytes, Some(px), Some(SetOptions::XX), false)
            .await
            .map_err(|err| {
                plain.errors.inc();
                tracing::warn!(%err, "session write not confirmed");
                Failure::Unknown
            })?;
        if set.is_null() {
            // Deleted meanwhile (a logout in another tab): it stays deleted.
            return Err(Failure::Gone.into());
        }
        self.written().await;
        Ok(visits)
    }

    async fn update_memory(&self, request: RequestKey, change: Change) -> Result<Visits, AppError> {
        let mut state = session::load(&self.session).await?;
        let (visits, changed) = state.apply(&request, |v| change(v));
        if changed {
            // The session layer saves it after the handler, in this process's memory.
            session::put(&self.session, &state).await?;
        }
        Ok(visits)
    }

    /// Makes a new session holding `change` applied once: `SET … NX` with a fresh id,
    /// through tower-sessions, which then sets the cookie.
    async fn create(&self, request: &RequestKey, change: &Change) -> Result<Visits, AppError> {
        let mut state = session::State::default();
        let (visits, _) = state.apply(request, |v| change(v));
        if self.session.id().is_some() {
            // The cookie's session is gone: forget its id (the store deletes nothing).
            self.session.flush().await?;
        }
        session::put(&self.session, &state).await?;
        self.session.save().await?;
        self.written().await;
        Ok(visits)
    }

    /// Marks this request's write as sent, unless the request was cut off already: from now
    /// on a timeout cannot claim that nothing was written.
    fn claim(&self) -> Result<(), Failure> {
        if self.ticket.file() && self.ticket.take() {
            Ok(())
        } else {
            Err(Failure::Unavailable)
        }
    }

    /// After a confirmed write: empties the request's copy of the session, so the session
    /// layer only re-sends the cookie, with its expiry renewed.
    async fn written(&self) {
        self.session.clear().await;
    }

    /// Ends the session: deletes the record and, through the layer, clears the cookie.
    pub async fn delete(&self) -> Result<(), AppError> {
        if let Some(id) = self.session.id() {
            match &self.backend {
                Backend::Locked(writers) => {
                    self.ask(writers, id, Order::Delete).await?;
                }
                Backend::Plain(plain) => {
                    self.claim()?;
                    plain
                        .pool
                        .del::<i64, _>(plain.keys.record(id))
                        .await
                        .map_err(|err| {
                            plain.errors.inc();
                            tracing::warn!(%err, "session delete not confirmed");
                            Failure::Unknown
                        })?;
                }
                Backend::Memory => {}
            }
        }
        self.session.flush().await?;
        Ok(())
    }

    /// The current session id, abbreviated, if the session exists.
    pub fn short_id(&self) -> Option<String> {
        session::short_id(&self.session)
    }
}

impl From<Failure> for AppError {
    fn from(failure: Failure) -> AppError {
        AppError::Store(failure)
    }
}
