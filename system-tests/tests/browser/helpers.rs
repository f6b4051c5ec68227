//! What the browser test needs, started for real and stopped on drop: the cluster under test
//! (in-process, or the one named by `BROWSER_TARGET`); `chromedriver` with a headless
//! Chromium session comes from `test-kit`.

use std::{net::SocketAddr, time::Duration};

use balancer::Upstream;
pub use test_kit::{ChromeDriver, output_dir, text_when};
use test_kit::{InProcessBalancer, RedisServer, Replica};

/// The cluster the browser talks to.
pub enum Target {
    /// A cluster someone else runs (`BROWSER_TARGET`), e.g. docker compose in deploy/e2e.sh.
    External(String),
    /// Our own: redis-server, three replicas and the balancer, all on loopback.
    Local(LocalCluster),
}

impl Target {
    /// `BROWSER_TARGET` when set, else a freshly started local cluster.
    pub async fn from_env_or_start() -> Target {
        match std::env::var("BROWSER_TARGET") {
            Ok(url) if !url.trim().is_empty() => {
                Target::External(url.trim().trim_end_matches('/').to_owned())
            }
            _ => Target::Local(LocalCluster::start(3).await),
        }
    }

    /// Base URL of the balancer.
    pub fn url(&self) -> String {
        match self {
            Target::External(url) => url.clone(),
            Target::Local(cluster) => format!("http://{}", cluster.balancer_addr),
        }
    }

    /// Stops what we started (nothing for an external cluster).
    pub async fn stop(self) {
        if let Target::Local(cluster) = self {
            cluster.stop().await;
        }
    }
}

/// Redis, N replicas and the real balancer, in this process.
pub struct LocalCluster {
    /// Kept alive for the replicas; killed on drop.
    _redis: RedisServer,
    replicas: Vec<Replica>,
    balancer_addr: SocketAddr,
    balancer: InProcessBalancer,
}

impl LocalCluster {
    async fn start(n: usize) -> LocalCluster {
        let redis = RedisServer::start();
        let mut replicas = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("replica-{}", char::from(b'a' + i as u8));
            let config = app::Config::for_test(&redis.url(), &name);
            replicas.push(
                Replica::start(&name, move |listener, shutdown| {
                    app::run(listener, config, shutdown)
                })
                .await,
            );
        }
        let upstreams = replicas
            .iter()
            .map(|r| Upstream {
                host: "127.0.0.1".to_owned(),
                port: r.addr().port(),
            })
            .collect();
        let config = balancer::Config::with_upstreams(upstreams);
        let balancer = InProcessBalancer::start(move |listener, admin, shutdown| {
            balancer::run(listener, admin, config, shutdown)
        })
        .await;
        LocalCluster {
            _redis: redis,
            replicas,
            balancer_addr: balancer.addr,
            balancer,
        }
    }

    async fn stop(self) {
        let mut balancer = self.balancer;
        balancer.signal_shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(15), balancer.join()).await;
        for replica in self.replicas {
            replica.stop().await;
        }
    }
}
