//! Test scaffolding for the balancer and the loadtest against real app replicas: a real
//! `redis-server` (test-kit) and replicas served in-process on `127.0.0.1:0`, a balancer in
//! front of them, and the loadtest run in-process or as its real binary.

#![allow(dead_code)] // each topic module uses a different subset

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use balancer::{Resolver, SystemResolver};
use serde_json::Value;
use test_kit::{
    Hold, HoldingProxy, InProcessBalancer, RedisServer, Replica, nothing, session_saves,
};
pub use test_kit::{http_client, parse_response, raw_exchange, read_message};

/// A real redis-server and `n` real app replicas named node-0..node-(n-1).
pub struct Cluster {
    /// Their Redis (killed on drop).
    pub redis: RedisServer,
    /// The replicas; `None` once stopped.
    pub replicas: Vec<Option<Replica>>,
}

impl Cluster {
    /// Redis and `n` replicas with the app's test defaults (sessions shared, lock on).
    pub async fn start(n: usize) -> Cluster {
        Cluster::configured(n, |_| {}).await
    }

    /// Replicas sharing sessions in one Redis, with the app's defaults (session lock on).
    pub async fn shared(n: usize) -> Cluster {
        Cluster::start(n).await
    }

    /// Replicas each keeping sessions in their own memory (`SESSION_STORE=memory`).
    pub async fn memory(n: usize) -> Cluster {
        Cluster::configured(n, |c| c.session_store = app::SessionStoreKind::Memory).await
    }

    /// Redis and `n` replicas, each configured by `configure`.
    pub async fn configured(n: usize, configure: impl Fn(&mut app::Config)) -> Cluster {
        let redis = RedisServer::start();
        let mut replicas = Vec::new();
        for i in 0..n {
            let mut config = app::Config::for_test(&redis.url(), &format!("node-{i}"));
            configure(&mut config);
            replicas.push(Some(start_replica(config).await));
        }
        Cluster { redis, replicas }
    }

    /// Redis and `n` replicas whose session saves reach Redis `delay` after they were sent (a
    /// [`HoldingProxy`] in between), so every write's window between loading the session and
    /// saving it widens by `delay`; each configured by `configure`.
    pub async fn with_saves_held(
        n: usize,
        delay: Duration,
        configure: impl Fn(&mut app::Config),
    ) -> (Cluster, HoldingProxy) {
        let redis = RedisServer::start();
        let scripts = app::session_scripts();
        let saves = scripts
            .saves()
            .into_iter()
            .map(|s| (s.sha.clone(), s.text.to_owned()))
            .collect();
        let hold = Hold {
            delay,
            commands: session_saves(saves),
            answers: nothing(),
        };
        let held = HoldingProxy::start(redis.addr(), hold).await;
        let url = redis.url_via(held.addr());
        let mut replicas = Vec::new();
        for i in 0..n {
            let mut config = app::Config::for_test(&url, &format!("node-{i}"));
            // The pool takes its connections in turn: with the largest pool, a command comes
            // back to the connection of a held answer, and waits behind it, only after 64.
            config.redis_pool_size = 64;
            configure(&mut config);
            let replica = start_replica(config).await;
            // Its pool's connections open through the relay: wait until all answer.
            test_kit::wait_for_200(&format!("{}/readyz", replica.url())).await;
            replicas.push(Some(replica));
        }
        (Cluster { redis, replicas }, held)
    }

    /// Addresses of the running replicas.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.replicas.iter().flatten().map(Replica::addr).collect()
    }

    /// Every running replica's URL, comma-separated, for `--target` (client-side round robin).
    pub fn targets(&self) -> String {
        self.replicas
            .iter()
            .flatten()
            .map(Replica::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Gracefully stops replica `i` (its listener is dropped).
    pub async fn stop(&mut self, i: usize) {
        if let Some(r) = self.replicas[i].take() {
            r.stop().await;
        }
    }
}

/// `config`'s app served in-process on `127.0.0.1:0`.
pub async fn start_replica(config: app::Config) -> Replica {
    let node = config.node();
    Replica::start(&node, move |listener, shutdown| {
        app::run(listener, config, shutdown)
    })
    .await
}

/// A balancer config for tests: fast discovery and health rounds so tests stay short.
pub fn test_config(upstreams: &[String]) -> balancer::Config {
    let mut config = balancer::Config::with_upstreams(
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
    pub async fn start(config: balancer::Config) -> TestBalancer {
        Self::start_with_resolver(config, Arc::new(SystemResolver)).await
    }

    /// Starts with `resolver`; returns once the listeners are bound (the first discovery
    /// round runs before serving, so early requests wait in the backlog).
    pub async fn start_with_resolver(
        config: balancer::Config,
        resolver: Arc<dyn Resolver>,
    ) -> TestBalancer {
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

/// Parses a configuration exactly as the binary would.
pub fn config(args: &[&str]) -> loadtest::Config {
    loadtest::Config::try_from_args(std::iter::once("loadtest").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs the library entry point with no ctrl-c.
pub async fn run(args: &[&str]) -> loadtest::Report {
    let config = config(args);
    tokio::time::timeout(
        Duration::from_secs(60),
        loadtest::run(&config, std::future::pending()),
    )
    .await
    .expect("a bounded run finishes within 60 s")
    .expect("the run could take place")
}

/// What the binary did.
pub struct Cli {
    /// Its exit code.
    pub code: i32,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Cli {
    /// The `--json` report on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs the real `loadtest` binary (async, so in-process servers keep serving meanwhile).
pub async fn cli(args: &[&str], env: &[(&str, &str)]) -> Cli {
    let mut command = tokio::process::Command::new(test_kit::workspace_binary("loadtest"));
    command.args(args).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("LOADTEST_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("loadtest exits within 60 s")
        .expect("loadtest binary runs");
    Cli {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
