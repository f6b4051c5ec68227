//! The indicatif progress bar: drawn on stderr only when it is a terminal. The hot path only
//! bumps an atomic counter; a ticker task moves the bar ten times a second.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// What the bar measures progress against.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// A known number of requests.
    Requests(u64),
    /// A fixed duration; the bar shows time, the message the requests done.
    Duration(Duration),
}

/// A progress display that costs one relaxed atomic add per request.
#[derive(Debug)]
pub struct Progress {
    /// Requests completed so far.
    done: Arc<AtomicU64>,
    /// The ticker redrawing the bar; `None` when not drawing.
    ticker: Option<(ProgressBar, tokio::task::JoinHandle<()>)>,
}

impl Progress {
    /// Starts a bar if `enabled` and stderr is a terminal; otherwise only counts.
    pub fn start(enabled: bool, goal: Goal) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { done, ticker: None };
        }
        let (length, template) = match goal {
            Goal::Requests(n) => (n, "{bar:40} {pos}/{len} requests  {elapsed} {msg}"),
            Goal::Duration(d) => (
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                "{bar:40} {elapsed}  {msg}",
            ),
        };
        let bar = ProgressBar::new(length);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let ticker = tokio::spawn({
            let bar = bar.clone();
            let done = Arc::clone(&done);
            let started = Instant::now();
            async move {
                let mut interval = tokio::time::interval(Duration::from_millis(100));
                loop {
                    interval.tick().await;
                    let count = done.load(Ordering::Relaxed);
                    match goal {
                        Goal::Requests(_) => bar.set_position(count),
                        Goal::Duration(_) => {
                            let elapsed =
                                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                            bar.set_position(elapsed.min(bar.length().unwrap_or(elapsed)));
                            bar.set_message(format!("{count} requests"));
                        }
                    }
                }
            }
        });
        Progress {
            done,
            ticker: Some((bar, ticker)),
        }
    }

    /// A counter handle for tasks; add 1 per completed request.
    pub fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.done)
    }

    /// Requests counted so far.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the ticker and clears the bar, so the summary prints on a clean screen.
    pub fn finish(self) {
        if let Some((bar, ticker)) = self.ticker {
            ticker.abort();
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_without_a_terminal() {
        let progress = Progress::start(false, Goal::Requests(3));
        let counter = progress.counter();
        counter.fetch_add(2, Ordering::Relaxed);
        assert_eq!(progress.count(), 2);
        progress.finish();
    }
}
