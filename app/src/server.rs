//! Builds the router from a [`Config`] and serves it until shutdown.
//!
//! Layers, outermost first: request log, panic catcher, `X-Served-By`, metrics, then the
//! request timeout with the answer that matches what was written ([`crate::outcome`]); then
//! per route the session layer (the cookie and the id). Routes that write take a
//! [`crate::writer::SessionWriter`]; every write of a session goes through it.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    http::{HeaderName, HeaderValue},
    middleware,
    routing::{MethodRouter, get, post},
};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::{catch_panic::CatchPanicLayer, set_header::SetResponseHeaderLayer};
use tower_sessions::{
    Expiry, SessionManagerLayer,
    cookie::{Key, SameSite, time::Duration as CookieDuration},
    service::{CookieController, PlaintextCookie},
};

use crate::{
    config::{Config, SessionStoreKind},
    lock_wakeups::Wakeups,
    metrics::{self, Metrics},
    outcome,
    redis::{self, RedisSetupError},
    routes::{api, health, page},
    session_lock::{LockSettings, SessionLock},
    state::AppState,
    store::AppStore,
    telemetry,
    writer::{Backend, Plain, Writers},
};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "sid";
/// Response header naming the replica.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The Redis pool could not be built.
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
    /// The node name is not a valid header value.
    #[error("NODE_NAME {0:?} cannot be sent in a header")]
    NodeName(String),
    /// `SESSION_SECRET` is too short to derive a signing key from.
    #[error("SESSION_SECRET must be at least 64 bytes")]
    SecretTooShort,
    /// Accepting connections failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// A built application: its router and what must be closed after it stops.
pub struct App {
    /// The complete router, ready to serve.
    pub router: Router,
    /// The Redis client, closed on shutdown.
    pub redis: Option<redis::Redis>,
    /// Raised when shutdown begins; `/readyz` reads it.
    pub draining: Arc<AtomicBool>,
}

/// Builds the application for `config`. Connects to Redis in the background: the app
/// starts even while Redis is down.
pub fn build(config: &Config) -> Result<App, ServeError> {
    let node = config.node();
    let served_by = HeaderValue::from_str(&node).map_err(|_| ServeError::NodeName(node.clone()))?;
    let metrics = Arc::new(Metrics::new());
    let (store, mut redis) = match config.session_store {
        SessionStoreKind::Redis => {
            let redis = redis::connect(config)?;
            let store = AppStore::redis(
                redis.pool.clone(),
                metrics.redis_errors.clone(),
                config.session_key_prefix.clone(),
                config.session_codec,
            );
            (store, Some(redis))
        }
        SessionStoreKind::Memory => (AppStore::memory(), None),
    };
    let pool = redis.as_ref().map(|redis| redis.pool.clone());
    let session_ttl = config.session_ttl;
    let writer = match (&mut redis, config.session_lock) {
        (Some(redis), true) => {
            crate::lock_scripts::preload(&redis.pool);
            let wakeups = Arc::new(Wakeups::default());
            redis.wake_lock_waiters(config, &wakeups)?;
            let settings = LockSettings {
                lease: config.session_lock_lease,
                wait: config.session_lock_wait,
                // A save Redis did not confirm gets two more command timeouts to be resolved.
                resolve: config.redis_timeout * 2,
                hand_offs: config.session_lock_handoffs,
                group_commit: config.session_lock_group_commit,
                optimistic: config.session_lock_optimistic,
                codec: config.session_codec,
                replication: redis.replication.clone(),
                retry_writes: redis.retry_writes,
            };
            let lock = SessionLock::new(
                redis.pool.clone(),
                settings,
                config.session_key_prefix.clone(),
                wakeups,
                metrics.clone(),
            );
            Backend::Locked(Arc::new(Writers::new(lock, session_ttl)))
        }
        (Some(redis), false) => Backend::Plain(Arc::new(Plain {
            pool: redis.pool.clone(),
            keys: config.session_key_prefix.clone(),
            codec: config.session_codec,
            ttl: session_ttl,
            errors: metrics.redis_errors.clone(),
        })),
        (None, _) => Backend::Memory,
    };
    let draining = Arc::new(AtomicBool::new(false));
    let state = AppState {
        draining: draining.clone(),
        node: node.as_str().into(),
        redis: pool,
        metrics: metrics.clone(),
        writer,
        dashboard_url: config.dashboard_url.as_deref().map(Arc::from),
    };
    let ttl = CookieDuration::try_from(config.session_ttl).unwrap_or(CookieDuration::MAX);
    let sessions = SessionManagerLayer::new(store)
        .with_name(COOKIE_NAME)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.cookie_secure)
        .with_expiry(Expiry::OnInactivity(ttl));
    let routes = match &config.session_secret {
        Some(secret) => {
            let key = Key::try_from(secret.expose()).map_err(|_| ServeError::SecretTooShort)?;
            session_routes(sessions.with_signed(key))
        }
        None => session_routes::<PlaintextCookie>(sessions),
    };
    let router = routes
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::serve))
        .layer(middleware::from_fn_with_state(
            config.request_timeout,
            outcome::guard,
        ))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .layer(SetResponseHeaderLayer::overriding(SERVED_BY, served_by))
        .layer(CatchPanicLayer::new())
        .layer(telemetry::request_trace(&node))
        .with_state(state);
    Ok(App {
        router,
        redis,
        draining,
    })
}

/// The routes that use the session: reads take tower-sessions' `Session`, writes a
/// [`crate::writer::SessionWriter`]; both sit behind the same session layer.
fn session_routes<C: CookieController + Send + Sync + 'static>(
    sessions: SessionManagerLayer<AppStore, C>,
) -> Router<AppState> {
    // Each route gets its layers as one composed layer: one route level, so one boxed
    // service per request, however many layers it holds.
    let session = || {
        ServiceBuilder::new()
            .layer(sessions.clone())
            .layer(middleware::from_fn(telemetry::note_session))
            .into_inner()
    };
    let with_session =
        |route: MethodRouter<AppState>| -> MethodRouter<AppState> { route.layer(session()) };
    Router::new()
        .route(
            "/",
            with_session(get(page::index)).layer(middleware::from_fn(page::hello_unless_html)),
        )
        .route("/logout", with_session(post(page::logout)))
        .route("/session", with_session(get(api::count_view_as_text)))
        .route(
            "/api/session",
            with_session(get(api::show).delete(api::destroy)),
        )
        .route("/api/session/views", with_session(post(api::increment)))
}

/// Serves `config`'s app on `listener` until `shutdown` resolves, then drains in-flight
/// requests for at most `SHUTDOWN_GRACE`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let app = build(&config)?;
    let timing = ShutdownTiming {
        delay: config.shutdown_delay,
        grace: config.shutdown_grace,
    };
    serve(listener, app, timing, shutdown).await
}

/// How a stop unfolds: first `delay` with `/readyz` failing while everything is still
/// served, then the listener closes and in-flight requests get `grace` to finish.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownTiming {
    /// Time for balancers to notice the failing `/readyz`.
    pub delay: Duration,
    /// Time in-flight requests get once the listener closed.
    pub grace: Duration,
}

/// Serves an already built [`App`]; see [`run`].
pub async fn serve(
    listener: TcpListener,
    app: App,
    timing: ShutdownTiming,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let ShutdownTiming { delay, grace } = timing;
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let draining = app.draining.clone();
    let server = axum::serve(listener, app.router).with_graceful_shutdown(async move {
        shutdown.await;
        draining.store(true, Ordering::Relaxed);
        if !delay.is_zero() {
            tracing::info!(?delay, "failing /readyz before closing the listener");
            tokio::time::sleep(delay).await;
        }
        let _ = stopping_tx.send(true);
    });
    let drain_deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        res = server => res?,
        () = drain_deadline => tracing::warn!(?grace, "drain deadline passed; closing remaining connections"),
    }
    if let Some(redis) = app.redis {
        redis.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}
