//! The lock holds for every legal spelling of the session cookie: the lock uses the id the
//! session layer itself parsed (last cookie of the name wins, percent-decoded, UTF-8
//! neighbours allowed, signature verified), so no spelling reaches the session unlocked.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::header::HeaderValue;
use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::helpers::{Cluster, Slow, plain, set_cookie};

/// Every way a legal client may send `sid=value`, as raw `Cookie` header lists.
fn spellings(value: &str) -> Vec<Vec<Vec<u8>>> {
    let encoded: String = value.bytes().map(|b| format!("%{b:02X}")).collect();
    let other = "AAAAAAAAAAAAAAAAAAAAAA";
    vec![
        vec![format!("sid={value}").into_bytes()],
        // A parent domain's cookie of the same name comes first; the last one wins.
        vec![format!("sid={other}; sid={value}").into_bytes()],
        vec![
            format!("sid={other}").into_bytes(),
            format!("sid={value}").into_bytes(),
        ],
        vec![format!("sid={encoded}").into_bytes()],
        // Browsers send raw UTF-8 in neighbouring cookies.
        vec![format!("city=Zürich; sid={value}").into_bytes()],
        vec![format!("sid={value}; theme=dark").into_bytes()],
    ]
}

fn with_cookies(mut req: reqwest::RequestBuilder, cookies: &[Vec<u8>]) -> reqwest::RequestBuilder {
    for cookie in cookies {
        req = req.header(
            "cookie",
            HeaderValue::from_bytes(cookie).expect("a legal header value"),
        );
    }
    req
}

/// Opens a session, then sends `per_spelling` increments through every spelling at once,
/// round robin over the replicas; asserts all were acknowledged and none was lost.
async fn assert_no_spelling_loses_updates(cluster: &Cluster, per_spelling: usize) {
    // Arrange
    let client = plain();
    let first = client
        .post(cluster.url(0, "/api/session/views"))
        .send()
        .await
        .expect("first");
    let cookie = set_cookie(&first).expect("a session");
    let value = cookie.split_once('=').expect("name=value").1.to_owned();
    let requests: Vec<_> = spellings(&value)
        .into_iter()
        .cycle()
        .take(per_spelling * 6)
        .enumerate()
        .map(|(i, cookies)| {
            let req = client.post(cluster.url(i % cluster.replicas.len(), "/api/session/views"));
            async move {
                let res = with_cookies(req, &cookies).send().await.expect("request");
                res.status().as_u16()
            }
        })
        .collect();
    let sent = requests.len() as u64;

    // Act
    let statuses = join_all(requests).await;

    // Assert
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let read = with_cookies(
        client.get(cluster.url(0, "/api/session")),
        &[cookie.into_bytes()],
    )
    .send()
    .await
    .expect("read");
    let views = read.json::<serde_json::Value>().await.expect("json")["views"].clone();
    assert_eq!(views, 1 + sent, "every acknowledged increment counted");
}

#[tokio::test]
async fn parallel_increments_through_every_cookie_spelling_lose_nothing() {
    let cluster =
        Cluster::start_slow(3, |_| Some(Slow::Saves(Duration::from_millis(2))), |_| {}).await;
    assert_no_spelling_loses_updates(&cluster, 12).await;
}

#[tokio::test]
async fn signed_cookies_in_every_spelling_lose_nothing() {
    let secret = app::Secret::new(&"k".repeat(64)).expect("long enough");
    let cluster = Cluster::start_slow(
        3,
        |_| Some(Slow::Saves(Duration::from_millis(2))),
        |c| c.session_secret = Some(secret.clone()),
    )
    .await;
    assert_no_spelling_loses_updates(&cluster, 12).await;
}

/// Starts a `POST /api/session/views` with `cookie` whose body never finishes arriving.
async fn slow_upload(addr: std::net::SocketAddr, cookie: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/session/views HTTP/1.1\r\nhost: x\r\ncookie: {cookie}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"by\":"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

#[tokio::test]
async fn a_slow_body_holds_no_lock_forged_or_not() {
    // Arrange: a signed session, and two uploads that stall after 6 bytes of body: one with
    // a forged signature over the victim's id, one with the victim's own cookie (a second
    // tab on a bad network).
    let secret = app::Secret::new(&"k".repeat(64)).expect("long enough");
    let cluster = Cluster::start(1, |c| c.session_secret = Some(secret.clone())).await;
    let client = plain();
    let url = cluster.url(0, "/api/session/views");
    let cookie = set_cookie(&client.post(&url).send().await.expect("first")).expect("cookie");
    let value = cookie.split_once('=').expect("name=value").1;
    let (signature, id) = value.split_at(value.len() - 22);
    let forged_signature: String = signature
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();
    let forged = format!("sid={forged_signature}{id}");
    let _forged_upload = slow_upload(cluster.replicas[0].addr(), &forged).await;
    let _own_upload = slow_upload(cluster.replicas[0].addr(), &cookie).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Act
    let start = Instant::now();
    let res = client
        .post(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("victim");

    // Assert: served at once (a held lock would make it wait SESSION_LOCK_WAIT, 5 s).
    let waited = start.elapsed();
    assert_eq!(res.status(), 200);
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    assert_eq!(
        res.json::<serde_json::Value>().await.expect("json")["views"],
        2
    );
}

#[tokio::test]
async fn concurrent_requests_on_an_expired_cookie_each_start_a_session_of_their_own() {
    // An expired session is gone: like requests with no cookie at all, each request on its
    // old cookie starts a fresh session under a new id (never the client-chosen one). None
    // fails, and no lock is left behind.
    let cluster = Cluster::start(2, |_| {}).await;
    let expired = "sid=AAAAAAAAAAAAAAAAAAAAAA";
    let requests = (0..4).map(|i| {
        let req = plain()
            .get(cluster.url(i % 2, "/session"))
            .header("cookie", expired);
        async move {
            let res = req.send().await.expect("request");
            let cookie = set_cookie(&res).expect("a new session");
            (res.text().await.expect("body"), cookie)
        }
    });
    let answers = join_all(requests).await;

    let mut cookies: Vec<&str> = answers.iter().map(|(_, c)| c.as_str()).collect();
    cookies.sort_unstable();
    cookies.dedup();
    assert_eq!(cookies.len(), 4, "four new sessions: {answers:?}");
    assert!(!cookies.contains(&expired));
    assert!(
        answers
            .iter()
            .all(|(body, _)| body == "Session View Cnt  1")
    );
    assert_eq!(cluster.redis.cli(&["KEYS", "session:{*}:lock"]), "");
}
