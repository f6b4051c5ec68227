//! The TLS port in front of real replicas: a browser-like client (one connection, its
//! cookie sent back, HTTP/2 by ALPN, the development certificate trusted) counts 1, 2, 3 across the replicas, and the
//! session cookie carries `Secure` when the app has `COOKIE_SECURE=true`.

use std::collections::HashSet;
use std::sync::Arc;

use balancer::{SystemResolver, Tls};
use http::Version;
use test_kit::{HttpsConn, InProcessBalancer};
use tokio::net::TcpListener;

use crate::helpers::{Cluster, test_config, upstreams};

/// A balancer with a TLS port (development certificate) in front of `cluster`; returns it,
/// the TLS port's address and the certificate file.
async fn tls_balancer(
    cluster: &Cluster,
    name: &str,
) -> (InProcessBalancer, std::net::SocketAddr, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("cluster-tls-{name}-{}", std::process::id()));
    let mut config = test_config(&upstreams(&cluster.addrs()));
    config.tls.tls_self_signed = true;
    config.tls.tls_self_signed_dir = Some(dir.clone());
    let tls_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind TLS");
    let tls_addr = tls_listener.local_addr().expect("addr");
    config.tls.tls_listen_addr = Some(tls_addr);
    let tls = Tls::load(&config.tls).expect("development certificate");
    let lb = InProcessBalancer::start(move |listener, admin, shutdown| {
        balancer::run_with_tls(
            listener,
            tls_listener,
            tls,
            admin,
            config,
            Arc::new(SystemResolver),
            shutdown,
        )
    })
    .await;
    (lb, tls_addr, dir.join("cert.pem"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_count_goes_1_2_3_across_replicas_with_a_secure_cookie() {
    // Arrange
    let cluster = Cluster::configured(3, |c| c.cookie_secure = true).await;
    let (lb, tls_addr, cert) = tls_balancer(&cluster, "secure").await;
    lb.wait_healthy(3).await;

    for (offer_h2, version) in [(true, Version::HTTP_2), (false, Version::HTTP_11)] {
        // One connection, as a browser keeps; the cookie it got is sent back.
        let mut conn = HttpsConn::connect(tls_addr, "localhost", &cert, offer_h2)
            .await
            .expect("TLS connection");
        assert_eq!(conn.version(), version);
        let mut cookie: Option<String> = None;
        let mut nodes = HashSet::new();
        for i in 1..=3u32 {
            // Act
            let sent: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
            let resp = conn.get("/session", &sent).await.expect("TLS request");

            // Assert
            assert_eq!(resp.status, 200, "{}", resp.body);
            if let Some(set) = resp.headers.get("set-cookie").and_then(|v| v.to_str().ok()) {
                assert!(
                    set.split(';')
                        .any(|a| a.trim().eq_ignore_ascii_case("secure")),
                    "the session cookie is Secure: {set}"
                );
                cookie = set.split(';').next().map(str::to_owned);
            }
            assert!(cookie.is_some(), "the first answer sets the session cookie");
            nodes.insert(
                resp.headers["x-served-by"]
                    .to_str()
                    .expect("ascii")
                    .to_owned(),
            );
            assert_eq!(
                resp.body.trim_end(),
                format!("Session View Cnt  {i}"),
                "{version:?}"
            );
        }
        assert_eq!(nodes.len(), 3, "one request per replica: {nodes:?}");
    }
}
