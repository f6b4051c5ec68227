//! The routes the checker lets probes use are real: each answers 200 on a real app replica
//! and on a real balancer's admin listener, and a near miss answers 404, so the route lists
//! in `helpers.rs` cannot drift from the binaries.

use std::time::Duration;

use app::{Config, SessionStoreKind};
use test_kit::Replica;
use tokio::net::TcpListener;

use crate::helpers::{APP_ROUTES, BALANCER_ADMIN_ROUTES};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

#[tokio::test]
async fn app_probe_routes_answer_on_a_real_replica() {
    // Arrange: memory sessions, so /readyz answers 200 without a Redis.
    let mut config = Config::for_test("redis://127.0.0.1:1", "probe-check");
    config.session_store = SessionStoreKind::Memory;
    let replica = Replica::start("probe-check", move |listener, shutdown| {
        app::run(listener, config, shutdown)
    })
    .await;
    let client = client();

    // Act + Assert
    for path in APP_ROUTES {
        let status = client
            .get(format!("{}{path}", replica.url()))
            .send()
            .await
            .expect("request")
            .status();
        assert_eq!(status, 200, "app {path}");
    }
    let missing = client
        .get(format!("{}/ready", replica.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404, "a path the app does not serve");
    replica.stop().await;
}

#[tokio::test]
async fn balancer_admin_routes_answer_on_a_real_balancer() {
    // Arrange: an upstream that refuses connections; the admin endpoints answer regardless.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    let config = balancer::Config::with_upstreams(vec!["127.0.0.1:1".parse().expect("upstream")]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(balancer::run(listener, admin, config, async move {
        let _ = stopped.await;
    }));
    let client = client();

    // Act + Assert
    for path in BALANCER_ADMIN_ROUTES {
        let status = client
            .get(format!("http://{admin_addr}{path}"))
            .send()
            .await
            .expect("request")
            .status();
        assert_eq!(status, 200, "balancer admin {path}");
    }
    let missing = client
        .get(format!("http://{admin_addr}/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        missing.status(),
        404,
        "a path the admin listener does not serve"
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("balancer stops")
        .expect("task")
        .expect("balancer ran");
}
