//! Service discovery: resolve each `UPSTREAMS` host name to all its addresses, periodically.
//!
//! The DNS TTL is ignored on purpose: Docker's embedded DNS answers with TTL 600, and a
//! `--scale`d service must be followed within seconds. The resolver is a trait so tests can
//! move a name between addresses without DNS.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::backend_set::BackendSet;
use crate::config::Upstream;
use crate::health::HealthChecker;

/// A boxed resolution future (boxed so the trait stays object-safe).
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Turns `host:port` into socket addresses.
pub trait Resolver: Send + Sync + 'static {
    /// Every address `host` currently has, with `port`.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a>;
}

/// The system resolver (`getaddrinfo` via `tokio::net::lookup_host`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A resolver whose answers its owner sets, instead of DNS: for running the balancer where
/// the addresses come from elsewhere (a test that moves replicas, a service registry). A host
/// it has no answer for does not resolve.
#[derive(Debug, Default)]
pub struct StaticResolver {
    /// The addresses each host resolves to (their ports are used as given).
    answers: std::sync::Mutex<HashMap<String, Vec<SocketAddr>>>,
}

impl StaticResolver {
    /// From now on `host` resolves to `addrs` (the port in `UPSTREAMS` is ignored).
    pub fn set(&self, host: &str, addrs: Vec<SocketAddr>) {
        self.answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(host.to_owned(), addrs);
    }
}

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> ResolveFuture<'a> {
        let answer = self
            .answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(host)
            .cloned();
        Box::pin(async move {
            answer.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown host"))
        })
    }
}

/// Keeps the backend set in step with DNS and with health checks.
pub struct Discovery {
    /// Names and ports to resolve.
    upstreams: Vec<Upstream>,
    /// How names are resolved.
    resolver: Arc<dyn Resolver>,
    /// The set to update.
    set: Arc<BackendSet>,
    /// Checks new backends before they get traffic, and all of them each round.
    health: HealthChecker,
    /// Last good answer per upstream, kept when a lookup fails so a DNS hiccup does not empty
    /// the pool (dead addresses still leave the rotation through health checks).
    last_good: HashMap<Upstream, Vec<SocketAddr>>,
    /// Bound on one lookup.
    resolve_timeout: Duration,
}

impl Discovery {
    /// Discovery for `upstreams` feeding `set`.
    pub fn new(
        upstreams: Vec<Upstream>,
        resolver: Arc<dyn Resolver>,
        set: Arc<BackendSet>,
        health: HealthChecker,
        resolve_timeout: Duration,
    ) -> Discovery {
        Discovery {
            upstreams,
            resolver,
            set,
            health,
            last_good: HashMap::new(),
            resolve_timeout,
        }
    }

    /// Resolves every upstream once, applies the result, and health-checks new backends
    /// right away so they can enter rotation without waiting for the next health round.
    pub async fn resolve_round(&mut self) {
        for up in &self.upstreams {
            let lookup = tokio::time::timeout(
                self.resolve_timeout,
                self.resolver.resolve(&up.host, up.port),
            )
            .await;
            match lookup {
                Ok(Ok(addrs)) => {
                    self.last_good.insert(up.clone(), addrs);
                }
                Ok(Err(e)) => {
                    tracing::warn!(upstream = %up, error = %e, "resolve failed, keeping last addresses");
                }
                Err(_) => {
                    tracing::warn!(upstream = %up, "resolve timed out, keeping last addresses");
                }
            }
        }
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for up in &self.upstreams {
            for a in self.last_good.get(up).into_iter().flatten() {
                if !addrs.contains(a) {
                    addrs.push(*a);
                }
            }
        }
        let added = self.set.update_addresses(&addrs);
        if !added.is_empty() {
            self.health.check_all(&added).await;
            for b in added.iter().filter(|b| !b.is_passing()) {
                // check_all only logs changes, and a new backend starts out failing.
                tracing::warn!(upstream = %b.label(), "new backend not ready yet; kept out of rotation");
            }
            self.set.rebuild();
        }
    }

    /// Resolves and checks until dropped: names every `resolve_interval`, health every
    /// `health_interval`. The first round of both has already run in `run` before serving.
    pub async fn run_forever(mut self, resolve_interval: Duration, health_interval: Duration) {
        let mut resolve_tick = tokio::time::interval(resolve_interval);
        let mut health_tick = tokio::time::interval(health_interval);
        // A slow round must not cause a burst of catch-up rounds.
        resolve_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resolve_tick.tick().await;
        health_tick.tick().await;
        loop {
            tokio::select! {
                _ = resolve_tick.tick() => self.resolve_round().await,
                _ = health_tick.tick() => self.health.run_round(&self.set).await,
            }
        }
    }
}
