//! A request id counts once per session, whatever arrived in between, on whichever replica;
//! ids are tied to method and path; ids outside the shared rule are refused.

use futures_util::future::join_all;

use crate::helpers::{Cluster, read, user};

/// `GET /session` with `X-Request-Id: id` on replica `replica`; the counter it printed.
async fn visit_with_id(
    cluster: &Cluster,
    client: &reqwest::Client,
    replica: usize,
    id: &str,
) -> u64 {
    let res = client
        .get(cluster.url(replica, "/session"))
        .header("x-request-id", id)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "id {id}");
    let body = res.text().await.expect("body");
    body.strip_prefix("Session View Cnt  ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected body {body:?}"))
}

#[tokio::test]
async fn replays_of_older_ids_after_newer_requests_count_once() {
    // Arrange
    let cluster = Cluster::start(2, |_| {}).await;
    let client = user();

    // Act: r1 r2 r1 r3 r2 r1, alternating replicas.
    let mut answers = Vec::new();
    for (i, id) in ["r1", "r2", "r1", "r3", "r2", "r1"].into_iter().enumerate() {
        answers.push(visit_with_id(&cluster, &client, i % 2, id).await);
    }

    // Assert: four requests, each answered with the count it produced the first time.
    assert_eq!(answers, [1, 2, 1, 3, 2, 1]);
    assert_eq!(read(&client, &cluster.replicas[0].url()).await["views"], 3);
    assert_eq!(visit_with_id(&cluster, &client, 1, "r4").await, 4);
}

#[tokio::test]
async fn the_same_id_sent_in_parallel_to_every_replica_counts_once() {
    let cluster = Cluster::start(3, |_| {}).await;
    let client = user();
    visit_with_id(&cluster, &client, 0, "open").await;
    let copies = (0..12).map(|i| visit_with_id(&cluster, &client, i % 3, "same"));

    let answers = join_all(copies).await;

    assert!(answers.iter().all(|n| *n == 2), "{answers:?}");
    assert_eq!(read(&client, &cluster.replicas[0].url()).await["views"], 2);
}

#[tokio::test]
async fn an_id_is_tied_to_method_and_path() {
    let cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    let posted = client
        .post(cluster.url(0, "/api/session/views"))
        .header("x-request-id", "shared")
        .header("content-type", "application/json")
        .body(r#"{"by": 5}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(
        posted.json::<serde_json::Value>().await.expect("json")["views"],
        5
    );

    // A GET reusing the POST's id is another request: counted, not answered with "5".
    assert_eq!(visit_with_id(&cluster, &client, 0, "shared").await, 6);
    assert_eq!(visit_with_id(&cluster, &client, 0, "shared").await, 6);
}

#[tokio::test]
async fn an_id_outside_the_shared_rule_is_a_400_and_counts_nothing() {
    let cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    visit_with_id(&cluster, &client, 0, "open").await;
    let long = "x".repeat(129);
    let cases: [&[&[u8]]; 5] = [
        &[b""],
        &[long.as_bytes()],
        &["zürich".as_bytes()],
        &[b"two words"],
        &[b"r1", b"r2"],
    ];
    for ids in cases {
        let mut req = client.get(cluster.url(0, "/session"));
        for id in ids {
            req = req.header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(id).expect("legal header value"),
            );
        }
        let res = req.send().await.expect("request");
        assert_eq!(res.status(), 400, "{ids:?}");
        assert!(
            res.text().await.expect("body").contains("X-Request-Id"),
            "the answer names the header"
        );
    }
    assert_eq!(read(&client, &cluster.replicas[0].url()).await["views"], 1);
}
