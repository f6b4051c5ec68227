//! The dashboard on the admin port: the page names each backend's replica (from the
//! `X-Served-By` of its health checks) and counts its requests, needs nothing from outside,
//! `/events` sends a fresh live part about once a second, and an open event stream does not
//! hold up shutdown.

use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::helpers::{TestBalancer, TestServer, http_client, test_config, text, upstreams};

/// A backend that names itself `fake-a`, as the app does on every answer.
async fn named_backend() -> TestServer {
    TestServer::start(|_req| async move {
        let mut resp = text("ok");
        resp.headers_mut()
            .insert("x-served-by", HeaderValue::from_static("fake-a"));
        resp
    })
    .await
}

/// Reads `/events` until `n` events arrived (at most 5 s); returns each event's arrival time
/// and text.
async fn read_events(resp: &mut reqwest::Response, n: usize) -> Vec<(Instant, String)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut events = Vec::new();
    let mut buffer = String::new();
    while events.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .expect("events keep coming")
            .expect("read /events")
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        // An event ends with a blank line.
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if event.starts_with("event: live") {
                events.push((Instant::now(), event));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_named_backends_streams_updates_and_lets_shutdown_through() {
    // Arrange
    let backend = named_backend().await;
    let mut lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;
    let client = http_client();
    for _ in 0..5 {
        let resp = client.get(lb.url("/")).send().await.expect("request");
        assert_eq!(resp.status(), 200);
    }
    let admin = format!("http://{}", lb.admin);

    // Act
    let page = client.get(format!("{admin}/")).send().await.expect("page");
    let content_type = page.headers()["content-type"].clone();
    let page = page.text().await.expect("page text");
    let mut stream = client
        .get(format!("{admin}/events"))
        .send()
        .await
        .expect("events");
    let events = read_events(&mut stream, 3).await;
    lb.signal_shutdown();
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    let joined = tokio::time::timeout(Duration::from_secs(10), lb.join()).await;

    // Assert: the page.
    assert!(
        content_type
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    assert!(
        page.contains(&format!("data-addr=\"{}\"", backend.addr)),
        "{page}"
    );
    assert!(page.contains("data-name=\"fake-a\""), "{page}");
    assert!(page.contains("data-state=\"ready\""), "{page}");
    for outside in ["src=\"http", "href=\"http", "<link", "@import", "url("] {
        assert!(!page.contains(outside), "the page loads {outside}…");
    }
    // Assert: the events, a fresh one about every second, with the requests counted.
    let gaps: Vec<Duration> = events.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        gaps.iter().all(|gap| *gap <= Duration::from_millis(1500)),
        "events more than a second apart: {gaps:?}"
    );
    let last = &events.last().expect("events").1;
    assert!(last.contains("data-requests=\"5\""), "{last}");
    assert!(last.contains("data: "), "{last}");
    // Assert: shutdown ended the stream and the balancer.
    assert!(ended.is_ok(), "the event stream outlived the shutdown");
    joined.expect("shutdown took too long").expect("run failed");
}
