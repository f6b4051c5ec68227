//! The balancer's dashboard, watched in Chromium while a real cluster serves load: every row's
//! request count rises, a stopped replica's row turns ejected or down within seconds, and a
//! replica that joins (through DNS re-resolution) gets a row of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use balancer::{ResolveFuture, Resolver, Upstream};
use fantoccini::{Client, Locator};
use serde::Deserialize;
use test_kit::{InProcessBalancer, RedisServer, Replica, http_client};

use crate::helpers::{ChromeDriver, output_dir, text_when};

/// The one name the balancer resolves, as `app` in docker compose.
const SERVICE: &str = "replicas";

/// DNS as the test sets it: `SERVICE` resolves to the replicas the test says are up.
#[derive(Default)]
struct Dns {
    addrs: Mutex<Vec<SocketAddr>>,
}

impl Dns {
    fn set(&self, addrs: Vec<SocketAddr>) {
        *self.addrs.lock().expect("dns lock") = addrs;
    }
}

impl Resolver for Dns {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> ResolveFuture<'a> {
        let answer = (host == SERVICE).then(|| self.addrs.lock().expect("dns lock").clone());
        Box::pin(async move {
            answer.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "unknown host"))
        })
    }
}

/// A row of the dashboard, read from its `data-` attributes.
#[derive(Debug, Clone, Deserialize)]
struct Row {
    addr: String,
    name: String,
    state: String,
    requests: u64,
}

/// Every backend row the page shows now, by address.
async fn rows(browser: &Client) -> HashMap<String, Row> {
    let value = browser
        .execute(
            "return Array.from(document.querySelectorAll('tr.backend')).map(r => ({ \
               addr: r.dataset.addr, name: r.dataset.name, state: r.dataset.state, \
               requests: Number(r.dataset.requests) }))",
            vec![],
        )
        .await
        .expect("read the rows");
    let rows: Vec<Row> = serde_json::from_value(value).expect("rows as JSON");
    rows.into_iter().map(|r| (r.addr.clone(), r)).collect()
}

/// Waits (at most `within`) until the rows satisfy `accept`; panics with the last rows.
async fn rows_when(
    browser: &Client,
    within: Duration,
    what: &str,
    accept: impl Fn(&HashMap<String, Row>) -> bool,
) -> HashMap<String, Row> {
    let deadline = Instant::now() + within;
    loop {
        let now = rows(browser).await;
        if accept(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed {what} within {within:?}; rows: {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    std::fs::write(output_dir().join(name), &png).expect("write the screenshot");
}

async fn start_replica(redis: &RedisServer, name: &str, dashboard: Option<String>) -> Replica {
    let mut config = app::Config::for_test(&redis.url(), name);
    config.dashboard_url = dashboard;
    Replica::start(name, move |listener, shutdown| {
        app::run(listener, config, shutdown)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_follows_load_a_stopped_replica_and_a_new_one() {
    // Arrange: redis, three replicas behind one DNS name, the real balancer, load.
    let redis = RedisServer::start();
    let mut replicas = Vec::new();
    for name in ["replica-a", "replica-b", "replica-c"] {
        replicas.push(start_replica(&redis, name, None).await);
    }
    let dns = Arc::new(Dns::default());
    dns.set(replicas.iter().map(Replica::addr).collect());
    let mut config = balancer::Config::with_upstreams(vec![Upstream {
        host: SERVICE.to_owned(),
        port: 8000,
    }]);
    config.resolve_interval = Duration::from_millis(300);
    config.health_interval = Duration::from_millis(200);
    config.health_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_millis(500);
    config.drain_timeout = Duration::from_secs(5);
    let resolver: Arc<dyn Resolver> = Arc::clone(&dns) as Arc<dyn Resolver>;
    let mut lb = InProcessBalancer::start(move |listener, admin, shutdown| {
        balancer::run_with_resolver(listener, admin, config, resolver, shutdown)
    })
    .await;
    lb.wait_healthy(3).await;
    let loading = Arc::new(AtomicBool::new(true));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let loading = Arc::clone(&loading);
            let url = lb.url("/");
            tokio::spawn(async move {
                let client = http_client();
                let mut answered = 0u64;
                while loading.load(Ordering::Relaxed) {
                    if client.get(&url).send().await.is_ok() {
                        answered += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                answered
            })
        })
        .collect();
    let driver = ChromeDriver::start();
    let browser = driver.session().await;

    // Act 1: open the dashboard while load runs.
    browser
        .goto(&format!("http://{}/", lb.admin))
        .await
        .expect("open the dashboard");
    text_when(&browser, "conn", |t| t == "live").await;
    let named = |rows: &HashMap<String, Row>, n: usize| {
        rows.len() == n && rows.values().all(|r| r.name.starts_with("replica-"))
    };
    let before = rows_when(&browser, Duration::from_secs(10), "3 named rows", |r| {
        named(r, 3)
    })
    .await;
    let risen = rows_when(
        &browser,
        Duration::from_secs(10),
        "requests rising on every row",
        |now| {
            before
                .iter()
                .all(|(addr, r)| now.get(addr).is_some_and(|n| n.requests > r.requests))
        },
    )
    .await;
    // The charts need a few seconds of history to show a line.
    tokio::time::sleep(Duration::from_secs(3)).await;
    screenshot(&browser, "dashboard-load.png").await;

    // Act 2: stop one replica (DNS still lists it, as right after a container dies).
    let stopped = replicas.remove(0);
    let stopped_addr = stopped.addr().to_string();
    stopped.stop().await;
    let after_stop = rows_when(
        &browser,
        Duration::from_secs(5),
        "the stopped replica ejected or down",
        |now| {
            now.get(&stopped_addr)
                .is_none_or(|r| r.state == "ejected" || r.state == "down")
        },
    )
    .await;
    screenshot(&browser, "dashboard-replica-stopped.png").await;

    // Act 3: a new replica joins through DNS, and the dead one leaves it.
    // It knows where the dashboard is (DASHBOARD_URL), so its page links there.
    let dashboard_url = format!("http://{}/", lb.admin);
    replicas.push(start_replica(&redis, "replica-d", Some(dashboard_url.clone())).await);
    let joined_addr = replicas[2].addr().to_string();
    dns.set(replicas.iter().map(Replica::addr).collect());
    let joined = rows_when(
        &browser,
        Duration::from_secs(10),
        "a ready row for the new replica with requests, and none for the removed one",
        |now| {
            !now.contains_key(&stopped_addr)
                && now
                    .get(&joined_addr)
                    .is_some_and(|r| r.name == "replica-d" && r.state == "ready" && r.requests > 0)
        },
    )
    .await;
    let timeline = text_when(&browser, "live", |t| {
        t.contains("removed") && t.contains("replica-d")
    })
    .await;
    screenshot(&browser, "dashboard-replica-joined.png").await;

    // Act 4: the new replica's page links to the dashboard, and the link opens it.
    browser
        .goto(&format!("{}/", replicas[2].url()))
        .await
        .expect("open replica-d's page");
    let link = browser
        .wait()
        .for_element(Locator::Id("dashboard"))
        .await
        .expect("a link to the dashboard on the page");
    let href = link.attr("href").await.expect("the link's href");
    link.click().await.expect("follow the link");
    let deadline = Instant::now() + Duration::from_secs(10);
    let title_after_click = loop {
        let title = browser.title().await.expect("title");
        if title.contains("dashboard") || Instant::now() > deadline {
            break title;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    loading.store(false, Ordering::Relaxed);
    let mut answered = 0;
    for task in load {
        answered += task.await.expect("load task");
    }
    browser.close().await.expect("close the browser");
    lb.signal_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(15), lb.join()).await;
    for replica in replicas {
        replica.stop().await;
    }

    // Assert
    assert!(answered > 0, "the load got answers");
    let mut names: Vec<_> = risen.values().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["replica-a", "replica-b", "replica-c"]);
    if let Some(row) = after_stop.get(&stopped_addr) {
        assert!(["ejected", "down"].contains(&row.state.as_str()), "{row:?}");
    }
    assert_eq!(joined.len(), 3, "{joined:#?}");
    assert_eq!(href.as_deref(), Some(dashboard_url.as_str()));
    assert!(
        title_after_click.contains("balancer dashboard"),
        "{title_after_click}"
    );
    for word in ["discovered", "ready", "removed"] {
        assert!(timeline.contains(word), "timeline lacks {word}: {timeline}");
    }
    eprintln!(
        "dashboard: {answered} requests answered; screenshots dashboard-*.png in {}",
        output_dir().display()
    );
}
