//! One worker's connections to the backends: HTTP/1.1 over `hyper::client::conn::http1`,
//! kept alive between requests and reused last in, first out.
//!
//! Each worker (a single-threaded runtime, see [`crate::workers`]) owns its pool, so no lock
//! is shared between threads and no key is hashed: idle connections sit in one short list
//! per backend address, found by a scan over the handful of backends. A connection's task
//! runs on the worker's own thread, so a request and its upstream connection wake each other
//! without crossing threads, and a request goes straight to the connection's dispatcher
//! (`try_send_request`): no boxed client future, no pool checkout and check-in tasks.
//!
//! The settings mean what they meant with hyper-util's pool: `POOL_MAX_IDLE` idle
//! connections per backend (per worker), `POOL_IDLE_TIMEOUT` before an idle connection is
//! closed (checked at checkout and by a sweep), `CONNECT_TIMEOUT` per connect. Connections in
//! use per backend are bounded by its request slots (`MAX_CONNS_PER_BACKEND`, see
//! [`crate::backend_state`]).
//!
//! A connection goes back to the pool only after its response body was read to the end
//! ([`crate::body::ResponseBody`]); one whose body was cut short, or that was upgraded, is
//! closed.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Body;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;

use crate::upstream_io::{Refusal, UpstreamIo};

/// What a request body must be to travel over a pooled connection.
pub trait UpstreamBody:
    Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + Unpin + 'static
{
}

impl<B> UpstreamBody for B where
    B: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static
{
}

/// Idle connections to one backend address, oldest first.
#[derive(Debug)]
struct IdleList<B> {
    addr: SocketAddr,
    conns: Vec<Idle<B>>,
}

/// A kept-alive connection and when it went idle.
#[derive(Debug)]
struct Idle<B> {
    sender: SendRequest<B>,
    refusal: Arc<Refusal>,
    since: Instant,
}

/// The pool of one worker, for requests with bodies of type `B`.
#[derive(Debug)]
pub struct UpstreamPool<B> {
    /// Idle connections by backend.
    idle: Mutex<Vec<IdleList<B>>>,
    /// `POOL_MAX_IDLE`: most idle connections kept per backend.
    max_idle: usize,
    /// `POOL_IDLE_TIMEOUT`: an idle connection older than this is closed.
    idle_timeout: Duration,
    /// `CONNECT_TIMEOUT`.
    connect_timeout: Duration,
    /// hyper's settings for every connection (the response head limits).
    builder: http1::Builder,
    /// Counts every connection opened (the rest of the requests reused one).
    opened: Counter,
    /// This pool, for the connections it hands out to come back to.
    this: Weak<UpstreamPool<B>>,
}

/// A connection to one backend, in use by one request.
#[derive(Debug)]
pub struct Conn<B> {
    sender: SendRequest<B>,
    /// Whether the backend refused a write on it ([`crate::upstream_io`]).
    refusal: Arc<Refusal>,
    addr: SocketAddr,
    /// Whether it served an earlier request (then a failure before anything was written
    /// means the backend closed it while idle, not that the backend is down).
    reused: bool,
    pool: Weak<UpstreamPool<B>>,
}

impl<B: UpstreamBody> UpstreamPool<B> {
    /// An empty pool; every connection it opens is counted in `opened`. A response head may
    /// take up to `head_limit` bytes (`MAX_HEADER_SIZE`), in up to
    /// [`crate::framing::max_response_header_lines`] lines. Starts the sweep of idle
    /// connections on the current (worker) runtime; it ends with the pool.
    pub fn new(
        max_idle: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
        head_limit: usize,
        opened: Counter,
    ) -> Arc<UpstreamPool<B>> {
        let mut builder = http1::Builder::new();
        builder
            .max_header_size(head_limit)
            .max_headers(crate::framing::max_response_header_lines(head_limit));
        let pool = Arc::new_cyclic(|this| UpstreamPool {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
            connect_timeout,
            builder,
            opened,
            this: this.clone(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep(Arc::downgrade(&pool), idle_timeout));
        }
        pool
    }

    fn lists(&self) -> std::sync::MutexGuard<'_, Vec<IdleList<B>>> {
        // Only this worker's thread takes it, and nothing in it can panic half-way.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection to `addr`: the most recently used idle one that is still open and
    /// ready, else a new one. Fails only when connecting fails (nothing was sent).
    pub async fn get(&self, addr: SocketAddr) -> io::Result<Conn<B>> {
        while let Some((mut sender, refusal)) = self.pop(addr) {
            if !sender.is_ready() {
                // Its last response just ended; the dispatcher (on this thread) has not run
                // since. Anything but a prompt "ready" means it is of no use.
                let ready = tokio::time::timeout(
                    Duration::from_millis(50),
                    poll_fn(|cx| sender.poll_ready(cx)),
                )
                .await;
                if !matches!(ready, Ok(Ok(()))) {
                    continue;
                }
            }
            return Ok(Conn {
                sender,
                refusal,
                addr,
                reused: true,
                pool: self.this.clone(),
            });
        }
        // Connecting is the cold path (the pool usually has a connection), and its connect
        // and handshake futures are large: behind a pointer they do not make every request's
        // future that large.
        Box::pin(self.connect(addr)).await
    }

    /// The newest idle connection to `addr` that is open and not too old; older or closed
    /// ones met on the way are dropped.
    fn pop(&self, addr: SocketAddr) -> Option<(SendRequest<B>, Arc<Refusal>)> {
        let mut lists = self.lists();
        let list = lists.iter_mut().find(|l| l.addr == addr)?;
        while let Some(idle) = list.conns.pop() {
            if self.usable(&idle) {
                return Some((idle.sender, idle.refusal));
            }
        }
        None
    }

    /// Still open and idle for less than `POOL_IDLE_TIMEOUT`.
    fn usable(&self, idle: &Idle<B>) -> bool {
        !idle.sender.is_closed() && idle.since.elapsed() < self.idle_timeout
    }

    /// Opens a new connection to `addr` within `CONNECT_TIMEOUT`; its task runs on this
    /// worker.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<Conn<B>> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        let refusal = Arc::new(Refusal::default());
        let io = UpstreamIo::new(stream, Arc::clone(&refusal));
        let (sender, conn) = self
            .builder
            .handshake(TokioIo::new(io))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, upstream = %addr, "upstream connection ended with error");
            }
        });
        self.opened.inc();
        Ok(Conn {
            sender,
            refusal,
            addr,
            reused: false,
            pool: self.this.clone(),
        })
    }

    /// Keeps `sender` for the next request to `addr`, unless the backend's list is full or
    /// the connection closed.
    fn put(&self, addr: SocketAddr, sender: SendRequest<B>, refusal: Arc<Refusal>) {
        if self.max_idle == 0 || sender.is_closed() || refusal.is_refused() {
            return;
        }
        let mut lists = self.lists();
        let index = match lists.iter().position(|l| l.addr == addr) {
            Some(i) => i,
            None => {
                lists.push(IdleList {
                    addr,
                    conns: Vec::new(),
                });
                lists.len() - 1
            }
        };
        let list = &mut lists[index];
        if list.conns.len() < self.max_idle {
            list.conns.push(Idle {
                sender,
                refusal,
                since: Instant::now(),
            });
        }
    }

    /// Closes idle connections older than `POOL_IDLE_TIMEOUT`, and forgets backends with
    /// none left.
    fn sweep_once(&self) {
        let mut lists = self.lists();
        for list in lists.iter_mut() {
            list.conns.retain(|idle| self.usable(idle));
        }
        lists.retain(|l| !l.conns.is_empty());
    }

    /// Idle connections held now (all backends), for the unit tests.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.lists().iter().map(|l| l.conns.len()).sum()
    }
}

/// Sweeps `pool` every half `POOL_IDLE_TIMEOUT` until it is gone.
async fn sweep<B: UpstreamBody>(pool: Weak<UpstreamPool<B>>, idle_timeout: Duration) {
    let period = (idle_timeout / 2).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        match pool.upgrade() {
            Some(pool) => pool.sweep_once(),
            None => return,
        }
    }
}

impl<B: UpstreamBody> Conn<B> {
    /// Whether it served an earlier request.
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Its request sender (`try_send_request`: when nothing was written, the error carries
    /// the request back) and what it knows of a refused write, borrowed together.
    pub fn split(&mut self) -> (&mut SendRequest<B>, &Refusal) {
        (&mut self.sender, &self.refusal)
    }

    /// Back to the pool, for the next request to the same backend. Only for a connection
    /// whose response was read to the end; one the backend refused a write on is closed.
    pub fn release(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(self.addr, self.sender, self.refusal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connect_is_an_error_and_counts_nothing() {
        let opened = Counter::default();
        let pool = UpstreamPool::<http_body_util::Empty<Bytes>>::new(
            4,
            Duration::from_secs(1),
            Duration::from_secs(1),
            65_536,
            opened.clone(),
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        assert!(pool.get(addr).await.is_err());
        assert_eq!(opened.get(), 0);
        assert_eq!(pool.idle_count(), 0);
    }
}
