//! One load thread of the throughput mode, as in wrk: a single-threaded event loop driving a
//! fixed share of the connections, so the hot path has no work stealing and no cross-thread
//! wake-ups. Each connection connects before the clock starts, reports ready, then waits for
//! the common start. The thread's connections share one per-second [`Recorder`]: they take
//! turns on this one thread, so a `RefCell` needs no lock.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::connection::{self, Connection, Plan, Stats};
use crate::series::Recorder;
use crate::stop::Stop;
use crate::targets::Target;

/// What one load thread hands back.
#[derive(Debug, Default)]
pub(super) struct ThreadResult {
    /// Each connection's stats, or why it could not run.
    pub(super) connections: Vec<Result<Stats, String>>,
    /// The thread's requests second by second.
    pub(super) series: Recorder,
}

/// One load thread: a current-thread runtime driving its share of the connections.
pub(super) fn load_thread(
    share: Vec<(u64, Target)>,
    plan: &Arc<Plan>,
    stop: &Stop,
    ready: &mpsc::UnboundedSender<()>,
    start_rx: watch::Receiver<Option<Instant>>,
) -> ThreadResult {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            for _ in &share {
                ready.send(()).ok();
            }
            return ThreadResult {
                connections: vec![Err(format!("load thread runtime: {error}"))],
                series: Recorder::default(),
            };
        }
    };
    let local = tokio::task::LocalSet::new();
    let series = Rc::new(RefCell::new(Recorder::default()));
    let connections = local.block_on(&runtime, async {
        let tasks: Vec<_> = share
            .into_iter()
            .map(|(index, target)| {
                let plan = Arc::clone(plan);
                let stop = stop.clone();
                let ready = ready.clone();
                let mut start_rx = start_rx.clone();
                let series = Rc::clone(&series);
                tokio::task::spawn_local(async move {
                    // Connect before the clock starts, so setup is not measured as latency;
                    // a failure here is retried (and counted) inside the loop.
                    let link = connection::connect(&target, plan.timeout).await.ok();
                    ready.send(()).ok();
                    drop(ready);
                    let start = match start_rx.wait_for(Option::is_some).await {
                        Ok(start) => start.unwrap_or_else(Instant::now),
                        Err(_) => return Err("abandoned before the start".to_owned()),
                    };
                    let connection = Connection::new(index, &target, &plan, &stop, start, &series);
                    Ok(connection.run(link).await)
                })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(
                task.await
                    .unwrap_or_else(|e| Err(format!("connection task: {e}"))),
            );
        }
        results
    });
    ThreadResult {
        connections,
        series: series.take(),
    }
}
