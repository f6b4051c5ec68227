//! Graceful shutdown: a request in flight when the stop comes still completes.

use std::sync::Arc;
use std::time::Duration;

use test_kit::{Hold, HoldingProxy, Pick, nothing};

use crate::helpers::{Cluster, start_replica, user};

#[tokio::test]
async fn an_in_flight_request_completes_after_shutdown() {
    let cluster = Cluster::start(0, |_| {}).await;
    // The request makes a new session, whose `SET … NX` reaches Redis 500 ms late: it is
    // still in flight when the stop comes.
    let creates: Pick = Arc::new(|args: &[Vec<u8>]| {
        args.first().is_some_and(|n| n.eq_ignore_ascii_case(b"SET"))
            && args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"NX"))
    });
    let held = HoldingProxy::start(
        cluster.redis.addr(),
        Hold {
            delay: Duration::from_millis(500),
            commands: creates,
            answers: nothing(),
        },
    )
    .await;
    let mut config = app::Config::for_test(&cluster.redis.url_via(held.addr()), "draining");
    config.redis_timeout = Duration::from_millis(1_200);
    let replica = start_replica(config).await;
    let url = format!("{}/session", replica.url());
    let in_flight = tokio::spawn(async move { user().get(&url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let addr = replica.addr();
    replica.stop().await;
    let status = in_flight
        .await
        .expect("task")
        .expect("the request completed");
    assert_eq!(status, 200);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn readyz_fails_during_the_shutdown_delay_while_requests_are_still_served() {
    let cluster = Cluster::start(0, |_| {}).await;
    let mut config = app::Config::for_test(&cluster.redis.url(), "leaving");
    config.shutdown_delay = Duration::from_secs(1);
    let replica = start_replica(config).await;
    let base = replica.url();
    let client = user();
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("r")
            .status(),
        200
    );

    let stopping = tokio::spawn(replica.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("still listening");
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.text().await.expect("body"), "draining\n");
    let served = client
        .get(format!("{base}/session"))
        .send()
        .await
        .expect("still serving");
    assert_eq!(served.status(), 200);

    stopping.await.expect("stopped");
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "closed after the delay"
    );
}
