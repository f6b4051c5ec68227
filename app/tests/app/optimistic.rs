//! The lock's optimistic first try (`SESSION_LOCK_OPTIMISTIC`, on by default): a write of a
//! session that nobody else uses takes no lock and is written by compare-and-set; when the
//! record changed meanwhile (or somebody took the lock), nothing is written and the request
//! runs again, whole, under the lock.
//!
//! Attacked as a hostile but legal client would: two replicas racing on one session, a body
//! and a request id that must count exactly once across the second run, a replay of the
//! racing request, a body of unknown length, a Redis that stalls the compare-and-set, and a
//! session deleted under an optimistic write.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Cluster, Slow, commands_during, metric, open_session, plain, views_of};

/// `POST /api/session/views` at `url` with `cookie`, `{"by": by}` and request id `id`, when
/// given; the status and the JSON answer (`null` when the answer is not JSON).
async fn post_views(
    url: String,
    cookie: String,
    by: Option<u64>,
    id: Option<&str>,
) -> (u16, Value) {
    let mut req = plain().post(url).header("cookie", cookie);
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    if let Some(by) = by {
        req = req.json(&serde_json::json!({ "by": by }));
    }
    let res = req.send().await.expect("increment");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// `POST /api/session/views` on `replica` with `cookie`, `{"by": by}` and a request id.
async fn add(cluster: &Cluster, replica: usize, cookie: &str, by: u64, id: &str) -> (u16, Value) {
    let url = cluster.url(replica, "/api/session/views");
    post_views(url, cookie.to_owned(), Some(by), Some(id)).await
}

/// Starts a `POST /api/session/views` on node-0 with `cookie` (and `{"by": by}` and request
/// id `id`, when given), and returns once it has read the session (100 ms in) and waits in
/// its handler.
async fn start_write_on_node0(
    cluster: &Cluster,
    cookie: &str,
    by: Option<u64>,
    id: Option<&'static str>,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let url = cluster.url(0, "/api/session/views");
    let write = tokio::spawn(post_views(url, cookie.to_owned(), by, id));
    tokio::time::sleep(Duration::from_millis(100)).await;
    write
}

/// Two replicas on one Redis, node-0 waiting 300 ms between reading a session and writing
/// it, and a session opened on node-0: its cookie.
async fn node0_slow() -> (Cluster, String) {
    let cluster = Cluster::start_slow(
        2,
        |node| (node == "node-0").then_some(Slow::Saves(Duration::from_millis(300))),
        |_| {},
    )
    .await;
    let (cookie, _) = open_session(&cluster, "/api/session/views").await;
    (cluster, cookie)
}

#[tokio::test]
async fn a_write_that_lost_the_race_runs_again_under_the_lock_and_counts_once() {
    // Arrange: node-0 waits 300 ms between reading the session and writing it; node-1
    // writes three times in that window.
    let (cluster, cookie) = node0_slow().await;
    let slow = start_write_on_node0(&cluster, &cookie, Some(10), Some("the-slow-one")).await;

    // Act
    for i in 0..3 {
        let (status, _) = add(&cluster, 1, &cookie, 1, &format!("fast-{i}")).await;
        assert_eq!(status, 200);
    }
    let (status, slow) = slow.await.expect("task");

    // Assert: the slow request's compare-and-set failed, nothing of it was written, and its
    // second run counted its body once, after the three.
    assert_eq!(status, 200);
    assert_eq!(slow["views"], 1 + 3 + 10, "{slow}");
    assert_eq!(views_of(&cluster, &cookie).await, 14);
    let node0 = cluster.metrics(0).await;
    assert_eq!(metric(&node0, "session_optimistic_conflicts_total"), 1.0);
    // A replay of the slow request (a client retrying it elsewhere) is not counted again.
    let (status, replay) = add(&cluster, 1, &cookie, 10, "the-slow-one").await;
    assert_eq!(status, 200);
    assert_eq!(
        replay["views"], 14,
        "the replay repeats the count it produced"
    );
    assert_eq!(views_of(&cluster, &cookie).await, 14);
}

#[tokio::test]
async fn parallel_writes_on_two_replicas_lose_nothing_and_then_take_the_lock() {
    // Each write takes 20 ms, so the 40 overlap however slowly they arrive.
    let cluster =
        Cluster::start_slow(2, |_| Some(Slow::Loads(Duration::from_millis(20))), |_| {}).await;
    let (cookie, _) = open_session(&cluster, "/api/session/views").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (cookie, url) = (cookie.clone(), cluster.url(i % 2, "/api/session/views"));
        tasks.push(tokio::spawn(post_views(url, cookie, None, None)));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task").0, 200);
    }

    assert_eq!(views_of(&cluster, &cookie).await, 41);
    // None was lost; the session was contended, so its writes went to the lock.
    let mut conflicts = 0.0;
    let mut written = 0.0;
    for replica in 0..2 {
        let m = cluster.metrics(replica).await;
        conflicts += metric(&m, "session_optimistic_conflicts_total");
        written += metric(&m, "session_optimistic_writes_total");
    }
    // Per replica, only the first request found the session quiet; the others queued behind
    // it and took the lock. Each try either landed or ran again.
    assert!(
        written + conflicts <= 2.0,
        "at most one optimistic try per replica: {written} written, {conflicts} conflicts"
    );
}

/// `POST /api/session/views` with `{"by":5}` as a chunked body (no `Content-Length`).
async fn add_chunked(addr: std::net::SocketAddr, cookie: &str) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = r#"{"by":5}"#;
    let request = format!(
        "POST /api/session/views HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_of_unknown_length_runs_optimistically_like_any_other() {
    // A conflict reruns the change (a closure), never the HTTP request, so a chunked body
    // that cannot be read twice is no reason to take the lock.
    let cluster = Cluster::start(1, |_| {}).await;
    let (cookie, _) = open_session(&cluster, "/api/session/views").await;
    let addr = cluster.replicas[0].addr();
    add_chunked(addr, &cookie).await;

    let commands = commands_during(&cluster, add_chunked(addr, &cookie)).await;

    assert_eq!(
        commands,
        ["MGET", "EVALSHA"],
        "read record and lock, then compare-and-set"
    );
    assert_eq!(views_of(&cluster, &cookie).await, 11);
}

#[tokio::test]
async fn a_compare_and_set_stalled_past_its_timeout_is_answered_truthfully() {
    // REDIS_TIMEOUT 300ms: the compare-and-set, sent at ~200 ms (its read answered that
    // late) into a write pause that lasts until 1000 ms, times out at ~500 ms; its resolution
    // gets through after the pause.
    let cluster = Cluster::start_slow(
        1,
        |_| Some(Slow::Loads(Duration::from_millis(200))),
        |c| c.redis_timeout = Duration::from_millis(300),
    )
    .await;
    let (cookie, _) = open_session(&cluster, "/api/session/views").await;
    let request = start_write_on_node0(&cluster, &cookie, None, None).await;

    assert_eq!(
        cluster.redis.cli(&["CLIENT", "PAUSE", "900", "WRITE"]),
        "OK"
    );
    let (status, _) = request.await.expect("task");
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Whatever the answer, it matches the record: 200 applied, 503 not applied (and never
    // will be), 504 only when Redis could not tell.
    let views = views_of(&cluster, &cookie).await;
    match status {
        200 => assert_eq!(views, 2),
        503 => assert_eq!(views, 1),
        504 => assert!(views == 1 || views == 2),
        other => panic!("unexpected status {other}"),
    }
    assert_ne!(status, 504, "the resolution got through after the pause");
    // The session works on.
    let (status, after) = add(&cluster, 0, &cookie, 1, "after").await;
    assert_eq!(status, 200);
    assert_eq!(after["views"], views + 1);
}

#[tokio::test]
async fn a_session_deleted_under_an_optimistic_write_stays_deleted() {
    let (cluster, cookie) = node0_slow().await;
    let slow = start_write_on_node0(&cluster, &cookie, None, None).await;

    let logout = plain()
        .delete(cluster.url(1, "/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);

    assert_eq!(
        slow.await.expect("task").0,
        409,
        "the session ended meanwhile"
    );
    assert_eq!(cluster.redis.cli(&["DBSIZE"]), "0", "nothing came back");
}
