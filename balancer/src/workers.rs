//! Thread-per-core serving: one single-threaded tokio runtime per worker thread, each with
//! its own accept loop on a clone of the listening socket and its own upstream pool.
//!
//! Why not the work-stealing runtime: a proxied request wakes the client connection task,
//! then the upstream connection task, then the client task again. On one thread those are
//! cheap local wake-ups; spread over threads they cost cross-thread notifications and shared
//! queue atomics, which showed up as most of the balancer's extra CPU per request against
//! nginx (whose workers are single-threaded event loops too). The backend set, metrics and the
//! connection limit stay shared (lock-free reads) across workers.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};

use crate::backend_set::BackendSet;
use crate::config::Config;
use crate::memory::Trimmer;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::server;

/// Serves `listener` on `config.worker_threads` threads (0: one per core) until `shutdown`
/// completes, then lets every worker drain and waits for all of them.
///
/// If this future is dropped instead, the workers see the stop channel close and drain too.
pub async fn serve(
    listener: TcpListener,
    set: Arc<BackendSet>,
    metrics: Arc<Metrics>,
    trimmer: Arc<Trimmer>,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let threads = match config.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n as usize,
    };
    // Stays non-blocking, as tokio requires for `from_std` in each worker.
    let std_listener = listener.into_std()?;
    let limit = Arc::new(Semaphore::new(config.max_connections as usize));
    let (stop, stopped) = watch::channel(false);
    let mut finished = Vec::with_capacity(threads);
    for i in 0..threads {
        let listener = std_listener.try_clone()?;
        let set = Arc::clone(&set);
        let metrics = Arc::clone(&metrics);
        let trimmer = Arc::clone(&trimmer);
        let limit = Arc::clone(&limit);
        let config = config.clone();
        let mut stopped = stopped.clone();
        let (done, finished_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("proxy-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, worker = i, "cannot start worker runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, worker = i, "cannot register listener");
                            return;
                        }
                    };
                    let proxy = Arc::new(Proxy::new(&config, set, metrics));
                    // Stop when told to, or when the sender is gone (the caller was dropped).
                    let stop = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    server::serve(listener, proxy, limit, trimmer, &config, stop).await;
                });
                // Dropping the runtime ends what is left (idle pool connections, tunnels).
                drop(runtime);
                let _ = done.send(());
            })?;
        finished.push(finished_rx);
    }
    // The workers hold their own clones of the socket.
    drop(std_listener);
    tracing::info!(workers = threads, "serving");
    shutdown.await;
    let _ = stop.send(true);
    for f in finished {
        let _ = f.await;
    }
    Ok(())
}
