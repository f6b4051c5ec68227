//! A server run in this process on `127.0.0.1:0`, such as an app replica: the caller says how
//! to run it (`|listener, shutdown| app::run(listener, config, shutdown)`), so this crate
//! needs none of the servers it starts.

use std::{fmt::Display, future::Future, net::SocketAddr, pin::Pin};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// The shutdown future handed to a server: completes when the test stops it.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server (an app replica) served in-process on `127.0.0.1:0`; aborted on drop.
#[derive(Debug)]
pub struct Replica {
    /// Where it listens.
    addr: SocketAddr,
    /// Its node name, as the test knows it.
    node: String,
    /// Completes the shutdown future.
    stop: Option<oneshot::Sender<()>>,
    /// The serving task.
    task: Option<JoinHandle<()>>,
}

impl Replica {
    /// Binds `127.0.0.1:0` and serves `run(listener, shutdown)` in a task; returns once it
    /// accepts connections (the listener is bound before). A `run` that fails panics the task.
    pub async fn start<F, Fut, E>(node: &str, run: F) -> Replica
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        let serving = run(listener, shutdown);
        let task = tokio::spawn(async move {
            if let Err(err) = serving.await {
                panic!("replica failed: {err}");
            }
        });
        Replica {
            addr,
            node: node.to_owned(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Graceful shutdown; returns once the server stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
