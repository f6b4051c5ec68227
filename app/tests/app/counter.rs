//! The counter is right on one replica and across replicas sharing Redis, and wrong
//! (reset) when each replica keeps its own sessions.

use app::SessionStoreKind;

use crate::helpers::{Cluster, increment, read, seed_visit, user};

#[tokio::test]
async fn counter_goes_one_to_n_on_one_replica() {
    let cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    for expected in 1..=10 {
        let (count, node) = seed_visit(&client, &cluster.url(0, "/session")).await;
        assert_eq!(count, expected);
        assert_eq!(node, "node-0");
    }
}

#[tokio::test]
async fn counter_survives_hops_between_replicas() {
    let cluster = Cluster::start(2, |_| {}).await;
    let client = user();
    for expected in 1..=10u64 {
        let replica = (expected % 2) as usize;
        let (count, node) = seed_visit(&client, &cluster.url(replica, "/session")).await;
        assert_eq!(count, expected, "no gap, no reset");
        assert_eq!(node, format!("node-{replica}"), "X-Served-By alternates");
    }
}

#[tokio::test]
async fn json_api_reads_without_counting_and_remembers_recent_nodes() {
    let cluster = Cluster::start(2, |_| {}).await;
    let client = user();
    let fresh = read(&client, &cluster.replicas[0].url()).await;
    assert_eq!(fresh["views"], 0);
    assert!(fresh["session"].is_null());

    increment(&client, &cluster.replicas[0].url()).await;
    let after = increment(&client, &cluster.replicas[1].url()).await;
    assert_eq!(after["views"], 2);
    assert_eq!(after["node"], "node-1");
    assert_eq!(after["history"], serde_json::json!(["node-0", "node-1"]));

    for _ in 0..3 {
        assert_eq!(read(&client, &cluster.replicas[1].url()).await["views"], 2);
    }
}

#[tokio::test]
async fn ending_the_session_clears_it_everywhere() {
    let cluster = Cluster::start(2, |_| {}).await;
    let client = user();
    increment(&client, &cluster.replicas[0].url()).await;
    let res = client
        .delete(cluster.url(1, "/api/session"))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 204);
    assert_eq!(read(&client, &cluster.replicas[0].url()).await["views"], 0);
    assert_eq!(
        increment(&client, &cluster.replicas[0].url()).await["views"],
        1
    );
}

#[tokio::test]
async fn memory_sessions_reset_when_requests_hop() {
    let cluster = Cluster::start(2, |c| c.session_store = SessionStoreKind::Memory).await;
    let client = user();
    let mut counts = Vec::new();
    for i in 0..6usize {
        counts.push(seed_visit(&client, &cluster.url(i % 2, "/session")).await.0);
    }
    // The other replica does not know the session, starts a new one and replaces the
    // cookie, so every hop resets the count: the symptom a shared store cures.
    assert_eq!(counts, vec![1; 6]);
}

#[tokio::test]
async fn the_page_shows_node_counter_and_history() {
    let cluster = Cluster::start(2, |_| {}).await;
    let client = user();
    client
        .get(cluster.url(0, "/"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .expect("first");
    let res = client
        .get(cluster.url(1, "/"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .expect("second");
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let page = res.text().await.expect("body");
    assert!(page.contains(r#"id="views">2<"#), "{page}");
    assert!(page.contains("node-0") && page.contains("node-1"));
    assert!(page.contains("Visit again") && page.contains("End session"));
}

#[tokio::test]
async fn a_replayed_request_id_counts_once_on_any_replica() {
    // What the balancer does when a replica dies mid-request: the same GET, same
    // X-Request-Id, on another replica.
    let cluster = Cluster::start(2, |_| {}).await;
    let client = user();
    let visit = |replica: usize, id: &'static str| {
        let client = client.clone();
        let url = cluster.url(replica, "/session");
        async move {
            let res = client
                .get(url)
                .header("x-request-id", id)
                .send()
                .await
                .expect("request");
            res.text().await.expect("body")
        }
    };
    assert_eq!(visit(0, "req-1").await, "Session View Cnt  1");
    assert_eq!(
        visit(1, "req-1").await,
        "Session View Cnt  1",
        "a replay is not counted"
    );
    assert_eq!(visit(1, "req-2").await, "Session View Cnt  2");
    assert_eq!(visit(0, "req-2").await, "Session View Cnt  2");
    assert_eq!(seed_visit(&client, &cluster.url(0, "/session")).await.0, 3);
}

/// What Chromium sends for a page.
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";

#[tokio::test]
async fn a_client_that_does_not_ask_for_html_gets_hello_world_and_no_session() {
    let cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    for accept in [None, Some("*/*"), Some("text/plain"), Some("text/html;q=0")] {
        let mut req = client.get(cluster.url(0, "/"));
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        let res = req.send().await.expect("request");
        assert_eq!(res.status(), 200, "{accept:?}");
        assert_eq!(
            res.headers()["content-type"],
            "text/plain; charset=utf-8",
            "{accept:?}"
        );
        assert!(res.headers().get("set-cookie").is_none(), "{accept:?}");
        assert_eq!(res.bytes().await.expect("body").as_ref(), b"Hello, World!!");
    }
    // Nothing was written for them.
    assert_eq!(cluster.redis.cli(&["dbsize"]), "0");
}
