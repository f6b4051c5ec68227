//! session-cluster's load balancer: a hyper 1 round-robin reverse proxy that discovers
//! replicas by DNS, routes around dead ones, and only retries where nothing can run twice.
//! Clients speak HTTP/1.1 on the plain port, and HTTP/2 or HTTP/1.1 over TLS on the TLS port
//! ([`run_with_tls`]); the replicas always get HTTP/1.1.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests start it on
//! `127.0.0.1:0` and stop it with a channel.

mod accept;
mod admin;
mod backend_notes;
mod backend_set;
mod backend_state;
mod body;
mod client_conn;
mod client_io;
mod config;
mod dashboard;
mod discovery;
mod error;
mod framing;
mod h2_request;
mod headers;
mod health;
mod internal_paths;
mod keep_alive;
mod memory;
mod metrics;
mod proxy;
mod round_robin;
mod server;
mod shutdown;
mod spare;
mod stall;
mod telemetry;
mod tls;
mod tunnel;
mod upgrade;
mod upstream_io;
mod upstream_pool;
mod verdict;
mod workers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

/// The balancer's settings (flags or environment variables), the form of one upstream
/// (`host:port`) and of the log lines.
pub use config::{Config, LogFormat, TlsConfig, Upstream};
/// How upstream host names become addresses: the system resolver, or one a test steers.
pub use discovery::{ResolveFuture, Resolver, StaticResolver, SystemResolver};
/// How long a keep-alive connection idles on its worker before it is parked (tests wait past
/// it to prove parked connections are still served).
pub use keep_alive::PARK_AFTER as KEEP_ALIVE_PARK_AFTER;
/// How often the memory trimmer looks at freed memory (`MEMORY_TRIM`; tests wait in ticks).
pub use memory::TICK as MEMORY_TRIM_TICK;
/// Completes on SIGTERM or Ctrl-C: the binary's shutdown signal.
pub use shutdown::signal as shutdown_signal;
/// Sets up logging in `LOG_FORMAT`, the level from `RUST_LOG`.
pub use telemetry::init as init_tracing;
/// The TLS port's certificate and settings ([`Tls::load`]), and where the certificate came
/// from.
pub use tls::{CertSource, Tls};

/// Runs the balancer with the system DNS resolver. See [`run_with_resolver`].
pub async fn run(
    listener: TcpListener,
    admin: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_with_resolver(listener, admin, config, Arc::new(SystemResolver), shutdown).await
}

/// Runs the balancer until `shutdown` completes, then drains and returns. Serves the plain
/// port only; see [`run_with_tls`].
///
/// Before serving, upstreams are resolved and checked once, so the first clients do not get
/// 503 merely because no health round has run yet (they wait in the listen backlog instead).
pub async fn run_with_resolver(
    listener: TcpListener,
    admin: TcpListener,
    config: Config,
    resolver: Arc<dyn Resolver>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    serve(listener, None, admin, config, resolver, shutdown).await
}

/// As [`run_with_resolver`], with a TLS port too: `tls_listener` serves `tls`'s
/// certificate (reloaded on SIGHUP) with HTTP/2 and HTTP/1.1 by ALPN. `HTTPS_REDIRECT`
/// sends plain requests to `tls_listener`'s port.
pub async fn run_with_tls(
    listener: TcpListener,
    tls_listener: TcpListener,
    tls: Tls,
    admin: TcpListener,
    config: Config,
    resolver: Arc<dyn Resolver>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let mut config = config;
    // The port clients are redirected to is the one bound (tests bind port 0).
    config.tls.tls_listen_addr = Some(tls_listener.local_addr()?);
    let reloading = tokio::spawn(tls::reload_on_sighup(tls.clone()));
    let served = serve(
        listener,
        Some((tls_listener, tls)),
        admin,
        config,
        resolver,
        shutdown,
    )
    .await;
    reloading.abort();
    served
}

/// What [`run_with_resolver`] and [`run_with_tls`] share.
async fn serve(
    listener: TcpListener,
    tls: Option<(TcpListener, Tls)>,
    admin: TcpListener,
    config: Config,
    resolver: Arc<dyn Resolver>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    let set = Arc::new(backend_set::BackendSet::new(
        config.eject_cooldown,
        config.max_conns_per_backend as usize,
    ));
    let health = health::HealthChecker::new(
        &config.health_path,
        config.health_timeout,
        config.connect_timeout,
        (config.health_rise, config.health_fall),
    );
    let mut discovery = discovery::Discovery::new(
        config.upstreams.clone(),
        resolver,
        Arc::clone(&set),
        health,
        config.resolve_interval.max(Duration::from_secs(1)),
    );
    discovery.resolve_round().await;
    let maintenance =
        tokio::spawn(discovery.run_forever(config.resolve_interval, config.health_interval));

    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = Arc::new(metrics::Metrics::new(Arc::clone(&set)));
    let (dashboard, sampling) = dashboard::start(Arc::clone(&set), Arc::clone(&metrics));
    let sampling = tokio::spawn(sampling);
    let admin_task = tokio::spawn(admin::serve(
        admin,
        Arc::clone(&set),
        Arc::clone(&metrics),
        dashboard,
        async move {
            let _ = admin_stopped.await;
        },
    ));

    let trimmer = Arc::new(memory::Trimmer::new(metrics.memory_trims.clone()));
    let trimming = config.memory_trim.then(|| {
        let trimmer = Arc::clone(&trimmer);
        tokio::spawn(async move { trimmer.run().await })
    });

    let served = workers::serve(listener, tls, set, metrics, trimmer, &config, shutdown).await;

    maintenance.abort();
    // Ends the dashboard's event streams, which would otherwise hold the admin server open.
    sampling.abort();
    if let Some(trimming) = trimming {
        trimming.abort();
    }
    let _ = stop_admin.send(());
    match tokio::time::timeout(Duration::from_secs(2), admin_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "admin server error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "admin task failed"),
        Err(_) => tracing::warn!("admin server did not stop in time"),
        Ok(Ok(Ok(()))) => {}
    }
    tracing::info!("balancer stopped");
    served
}
