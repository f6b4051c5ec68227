//! Exactly once through the balancer, end to end on real replicas and a real Redis: a `GET`
//! that a replica applied before dying is replayed on another replica and counted once,
//! even after another tab's request of the same session, and whatever `X-Request-Id` the
//! client sent (none, empty, too long, UTF-8, repeated): the balancer and the app share one
//! rule for valid ids, and the balancer replaces an id the app would refuse.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::helpers::{Cluster, TestBalancer, read_message, test_config, upstreams};

/// A backend in front of a real replica: it forwards a request, reads the replica's whole
/// answer (so the request was applied), reports it, and once told to, closes the connection
/// without answering: a replica killed after its write, before its answer.
struct ApplyThenDie {
    addr: SocketAddr,
    /// One message per applied request: its head, and the switch that kills the connection.
    applied: mpsc::UnboundedReceiver<(String, oneshot::Sender<()>)>,
}

impl ApplyThenDie {
    async fn start(replica: SocketAddr) -> ApplyThenDie {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, applied) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let request = read_message(&mut client).await;
                    let head = request.to_lowercase();
                    if head.starts_with("get /readyz") {
                        let _ = client
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                        return;
                    }
                    let mut upstream = TcpStream::connect(replica).await.expect("replica");
                    upstream
                        .write_all(request.as_bytes())
                        .await
                        .expect("forward");
                    let _answer = read_message(&mut upstream).await;
                    let (die, dead) = oneshot::channel();
                    let _ = tx.send((head, die));
                    let _ = dead.await;
                    // Dropping `client` closes the connection with no answer.
                });
            }
        });
        ApplyThenDie { addr, applied }
    }
}

/// The counter in a `Session View Cnt  N` body.
fn count(body: &str) -> u64 {
    body.trim()
        .strip_prefix("Session View Cnt  ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected body {body:?}"))
}

/// Sends `GET /session` with `cookie` and the raw `ids` through the balancer until one
/// attempt goes to the dying backend; meanwhile applies a second tab's request directly on
/// `tab_url`. Returns (counts answered to the client, the count the dying backend's
/// request first produced, the request id it carried).
async fn replay_after_second_tab(
    lb: &TestBalancer,
    dying: &mut ApplyThenDie,
    tab_url: &str,
    cookie: &str,
    ids: &[&[u8]],
) -> (Vec<u64>, u64, String) {
    let client = crate::helpers::http_client();
    let mut answers = Vec::new();
    for attempt in 0..4 {
        let mut req = client.get(lb.url("/session")).header("cookie", cookie);
        for id in ids {
            // A valid id names one request: each new attempt is a new request.
            let id = match std::str::from_utf8(id) {
                Ok(valid) if request_id::validate(id).is_ok() => {
                    format!("{valid}-{attempt}").into_bytes()
                }
                _ => id.to_vec(),
            };
            req = req.header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(&id).expect("legal header value"),
            );
        }
        let mut request = tokio::spawn(async move {
            let res = req.send().await.expect("transport");
            assert_eq!(res.status(), 200);
            count(&res.text().await.expect("body"))
        });
        tokio::select! {
            answered = &mut request => {
                let answered = answered.expect("task");
                // Round robin sent it straight to the healthy replica.
                answers.push(answered);
            }
            Some((head, die)) = dying.applied.recv() => {
                let id = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-request-id: "))
                    .expect("the balancer sent an id")
                    .trim()
                    .to_owned();
                // The replica applied the request; read what it made of the counter.
                let applied_at = answers.last().copied().unwrap_or(1) + 1;
                // A second tab's request lands before the replay (with an id of its own, as
                // every GET through the balancer has).
                let tab = client
                    .get(tab_url)
                    .header("cookie", cookie)
                    .header("x-request-id", "second-tab")
                    .send()
                    .await
                    .expect("tab");
                assert_eq!(count(&tab.text().await.expect("body")), applied_at + 1);
                let _ = die.send(());
                answers.push(request.await.expect("task"));
                return (answers, applied_at, id);
            }
        }
    }
    panic!("no request reached the dying backend");
}

/// The session's counter read directly from a replica.
async fn views(url: &str, cookie: &str) -> u64 {
    let res = crate::helpers::http_client()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("read");
    res.json::<serde_json::Value>().await.expect("json")["views"]
        .as_u64()
        .expect("views")
}

/// Runs the replay with the client sending `ids`; `kept` says the id must reach the app
/// unchanged.
async fn run_case(ids: &[&[u8]], kept: bool) {
    // Arrange: node-0 behind a backend that dies after applying; node-1 healthy.
    let cluster = Cluster::start(2).await;
    let addrs = cluster.addrs();
    let mut dying = ApplyThenDie::start(addrs[0]).await;
    let mut config = test_config(&upstreams(&[dying.addr, addrs[1]]));
    config.health_interval = Duration::from_secs(30);
    let lb = TestBalancer::start(config).await;
    lb.wait_healthy(2).await;
    let direct = format!("http://{}", addrs[1]);
    let opened = crate::helpers::http_client()
        .get(format!("{direct}/session"))
        .send()
        .await
        .expect("open");
    let cookie = opened
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next().filter(|c| c.starts_with("sid=")))
        .expect("a session cookie")
        .to_owned();

    // Act
    let (answers, applied_at, id) =
        replay_after_second_tab(&lb, &mut dying, &format!("{direct}/session"), &cookie, ids).await;

    // Assert: the replay was answered with the count its first application produced, and
    // the counter holds each request once: the opening, the client's, the other tab's.
    assert!(request_id::validate(id.as_bytes()).is_ok(), "{id:?}");
    let sent = ids
        .first()
        .map(|id| String::from_utf8_lossy(id).into_owned())
        .filter(|id| !id.is_empty());
    assert_eq!(
        kept,
        sent.is_some_and(|sent| id.starts_with(&sent)),
        "the client's id {ids:?}, the id the app saw {id:?}"
    );
    assert_eq!(answers.last().copied(), Some(applied_at), "{answers:?}");
    let expected = 1 + answers.len() as u64 + 1;
    assert_eq!(
        views(&format!("{direct}/api/session"), &cookie).await,
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_second_tabs_request_counts_once() {
    run_case(&[], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_client_id_is_kept_and_its_replay_counts_once() {
    run_case(&[b"client-chosen-id"], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_client_ids_are_replaced_and_their_replays_count_once() {
    let long = "x".repeat(200);
    for ids in [
        &[b"" as &[u8]][..],
        &[long.as_bytes()],
        &["zürich".as_bytes()],
        &[b"dup", b"dup"],
    ] {
        run_case(ids, false).await;
    }
}
