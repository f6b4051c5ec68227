//! Test scaffolding: a balancer on 127.0.0.1:0 and a resolver tests can steer; the fake
//! backends (small hyper servers for header/slow/upgrade cases, a raw-socket backend) and the
//! raw TCP client for requests an HTTP library would refuse to send come from `test-kit`.
//! Tests that need real app replicas live in `system-tests`.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Once};
use std::time::Duration;

use balancer::{Config, Resolver, SystemResolver};
use test_kit::InProcessBalancer;
pub use test_kit::{
    RawBackend, RawReply, StreamingServer, TestServer, big_stream, closed_port_addr, header_lines,
    http_client, parse_response, raw_exchange, read_message, read_responses, text,
};

/// Logs stay quiet unless `TEST_LOG` is set.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "debug,hyper=info,hyper_util=info",
                ))
                .with_test_writer()
                .init();
        }
    });
}

/// A balancer config for tests: fast discovery and health rounds so tests stay short.
pub fn test_config(upstreams: &[String]) -> Config {
    let mut config = Config::with_upstreams(
        upstreams
            .iter()
            .map(|u| u.parse().expect("valid upstream"))
            .collect(),
    );
    config.resolve_interval = Duration::from_millis(200);
    config.health_interval = Duration::from_millis(100);
    config.health_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_millis(500);
    config.drain_timeout = Duration::from_secs(5);
    // Tests read which backend answered; off by default (it reveals internal addresses).
    config.expose_upstream = true;
    config
}

/// `host:port` strings for socket addresses.
pub fn upstreams(addrs: &[SocketAddr]) -> Vec<String> {
    addrs.iter().map(ToString::to_string).collect()
}

/// A running in-process balancer (see [`InProcessBalancer`] for what a test can ask it).
pub struct TestBalancer(InProcessBalancer);

impl TestBalancer {
    /// Starts with the system resolver.
    pub async fn start(config: Config) -> TestBalancer {
        Self::start_with_resolver(config, Arc::new(SystemResolver)).await
    }

    /// Starts with `resolver`; returns once the listeners are bound (the first discovery
    /// round runs before serving, so early requests wait in the backlog).
    pub async fn start_with_resolver(config: Config, resolver: Arc<dyn Resolver>) -> TestBalancer {
        init_tracing();
        TestBalancer(
            InProcessBalancer::start(move |listener, admin, shutdown| {
                balancer::run_with_resolver(listener, admin, config, resolver, shutdown)
            })
            .await,
        )
    }
}

impl Deref for TestBalancer {
    type Target = InProcessBalancer;
    fn deref(&self) -> &InProcessBalancer {
        &self.0
    }
}

impl DerefMut for TestBalancer {
    fn deref_mut(&mut self) -> &mut InProcessBalancer {
        &mut self.0
    }
}

/// A resolver whose answers the test sets.
pub use balancer::StaticResolver as TestResolver;

/// The number of ejections `/status` reports in all.
pub async fn ejections(lb: &TestBalancer) -> u64 {
    lb.ejections().await
}

/// The 5xx responses `/status` counts against backends, in all.
pub async fn backend_5xx(lb: &TestBalancer) -> u64 {
    lb.backend_5xx().await
}
