//! A balancer run in this process on two `127.0.0.1:0` listeners (clients, admin), and the
//! admin queries tests make. The caller says how to run it
//! (`|listener, admin, shutdown| balancer::run(listener, admin, config, shutdown)`), so this
//! crate does not depend on the balancer.

use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{http::http_client, replica::Shutdown};

/// A running in-process balancer; aborted on drop.
#[derive(Debug)]
pub struct InProcessBalancer {
    /// Client-facing address.
    pub addr: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// Completes the shutdown future.
    stop: Option<oneshot::Sender<()>>,
    /// The serving task.
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcessBalancer {
    /// Binds both listeners and serves `run(listener, admin, shutdown)` in a task; returns
    /// once the listeners are bound (requests sent before it serves wait in the backlog).
    pub async fn start<F, Fut>(run: F) -> InProcessBalancer
    where
        F: FnOnce(TcpListener, TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let addr = listener.local_addr().expect("addr");
        let admin_addr = admin.local_addr().expect("admin addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(run(listener, admin, shutdown));
        InProcessBalancer {
            addr,
            admin: admin_addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://addr{path}` on the client port.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `/status` as JSON.
    pub async fn status(&self) -> serde_json::Value {
        http_client()
            .get(format!("http://{}/status", self.admin))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json")
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> String {
        http_client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of the unlabelled counter `name` (e.g. `balancer_retries_total`) in `/metrics`.
    pub async fn counter(&self, name: &str) -> u64 {
        let metrics = self.metrics().await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"))
    }

    /// Waits (at most 10 s) until exactly `n` backends are in rotation.
    pub async fn wait_healthy(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status().await;
            if status["healthy"].as_u64() == Some(n) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never reached {n} healthy backends: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The number of ejections `/status` reports in all.
    pub async fn ejections(&self) -> u64 {
        self.status().await["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .filter_map(|b| b["ejections"].as_u64())
            .sum()
    }

    /// The 5xx responses `/status` counts against backends, in all.
    pub async fn backend_5xx(&self) -> u64 {
        self.status().await["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .filter_map(|b| b["responses"]["5xx"].as_u64())
            .sum()
    }

    /// Sends the shutdown signal (what SIGTERM does in the binary) without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the balancer's `run` to return.
    pub async fn join(&mut self) -> anyhow::Result<()> {
        match self.task.take() {
            Some(t) => t.await.expect("balancer task panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for InProcessBalancer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
