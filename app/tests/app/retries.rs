//! A write whose answer is lost with its connection is retried by the Redis client, and the
//! retry does not apply it twice: each save carries an id, and a save whose id is already on
//! the session's list of recent saves answers "applied" without writing again.
//!
//! Between the replica and `redis-server` sits [`CuttingProxy`], a plain TCP relay on
//! loopback that, once, forwards a save script's `EVALSHA` to Redis, lets it run, and then
//! closes the client's connection instead of relaying the answer: exactly the failure a
//! retry must survive (the script ran, its answer never came).

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU32, Ordering},
};
use std::time::Duration;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::helpers::{Cluster, open_session, plain, views_of};

/// A TCP relay to Redis that cuts the first connection to send `trigger` (a script's SHA1)
/// right after Redis received it, dropping Redis's answer.
struct CuttingProxy {
    /// `redis://…` URL of the relay, with the credentials of the real server's URL.
    url: String,
    /// How many connections were cut (at most one).
    cuts: Arc<AtomicU32>,
    /// The accept loop.
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    async fn start(redis_url: &str, redis_port: u16, trigger: String) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = redis_url.replace(&format!(":{redis_port}"), &format!(":{port}"));
        let cuts = Arc::new(AtomicU32::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn({
            let cuts = Arc::clone(&cuts);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)).await else {
                        continue;
                    };
                    tokio::spawn(relay(
                        client,
                        server,
                        trigger.clone(),
                        Arc::clone(&armed),
                        Arc::clone(&cuts),
                    ));
                }
            }
        });
        CuttingProxy { url, cuts, task }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays both ways; the first time `trigger` goes by (while `armed`), forwards it, waits
/// for Redis to answer, and closes both sides without relaying the answer.
async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    trigger: String,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicU32>,
) {
    let (mut up, mut down) = ([0u8; 16384], [0u8; 16384]);
    // The end of the previous chunk, so a SHA1 split across two reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            read = client.read(&mut up) => {
                let Ok(n @ 1..) = read else { return };
                let mut window = std::mem::take(&mut tail);
                window.extend_from_slice(&up[..n]);
                let seen = window
                    .windows(trigger.len())
                    .any(|w| w == trigger.as_bytes());
                tail = window[window.len().saturating_sub(trigger.len())..].to_vec();
                if server.write_all(&up[..n]).await.is_err() {
                    return;
                }
                if seen && armed.swap(false, Ordering::SeqCst) {
                    // The script ran once Redis answers anything after it: read, then drop.
                    let _ = tokio::time::timeout(Duration::from_secs(2), server.read(&mut down)).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    cuts.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            read = server.read(&mut down) => {
                let Ok(n @ 1..) = read else { return };
                if client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One replica reaching Redis through a proxy that cuts the connection after `trigger`
/// (optimistic writes `optimistic`), and a session opened on it (before the cut is armed for
/// anything but a save): the cluster, the proxy and the cookie.
async fn replica_behind_cut(
    pick: fn(app::SessionScripts) -> String,
    optimistic: bool,
) -> (Cluster, CuttingProxy, String, String) {
    let redis = test_kit::RedisServer::start();
    let proxy = CuttingProxy::start(&redis.url(), redis.port(), pick(app::session_scripts())).await;
    let url = proxy.url.clone();
    let cluster = Cluster::start_on(redis, 1, |c| {
        c.redis_url = url.clone();
        c.session_lock_optimistic = optimistic;
        // A single Redis: retries are off by default (REDIS_RETRY_WRITES).
        c.redis_retry_writes = Some(true);
    })
    .await;
    let (cookie, id) = open_session(&cluster, "/api/session/views").await;
    (cluster, proxy, cookie, id)
}

async fn increment(cluster: &Cluster, cookie: &str) -> (u16, Value) {
    let res = plain()
        .post(cluster.url(0, "/api/session/views"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("increment");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn a_save_whose_answer_was_lost_is_retried_and_applied_once(
    pick: fn(app::SessionScripts) -> String,
    optimistic: bool,
) {
    // Arrange: a session at 1, behind a proxy armed to cut the next save's answer.
    let (cluster, proxy, cookie, id) = replica_behind_cut(pick, optimistic).await;

    // Act
    let (status, body) = increment(&cluster, &cookie).await;

    // Assert: one cut; the request succeeded once, the count is 2, and one save is recorded.
    assert_eq!(
        proxy.cuts.load(Ordering::SeqCst),
        1,
        "the connection was cut"
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["views"], 2, "{body}");
    assert_eq!(views_of(&cluster, &cookie).await, 2);
    let saves = format!("session:{{{id}}}:saves");
    assert_eq!(
        cluster.redis.cli(&["LLEN", &saves]),
        "1",
        "one save applied"
    );
    let (status, body) = increment(&cluster, &cookie).await;
    assert_eq!((status, body["views"].as_u64()), (200, Some(3)), "{body}");
}

#[tokio::test]
async fn a_locked_save_whose_answer_was_lost_is_retried_and_applied_once() {
    a_save_whose_answer_was_lost_is_retried_and_applied_once(|s| s.save.sha, false).await;
}

#[tokio::test]
async fn an_optimistic_save_whose_answer_was_lost_is_retried_and_applied_once() {
    a_save_whose_answer_was_lost_is_retried_and_applied_once(|s| s.compare_and_set.sha, true).await;
}
