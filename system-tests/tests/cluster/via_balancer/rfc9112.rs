//! Header counts consistent with what a real replica accepts: a request the balancer lets
//! through is never refused by the app with 431 (RFC 9112 limits, both hops).

use crate::helpers::{
    Cluster, TestBalancer, backend_5xx, parse_response, raw_exchange, test_config, upstreams,
};

/// `GET /nonexistent` with `Host` and `extra` more header lines.
fn with_headers(extra: usize) -> Vec<u8> {
    let mut r = b"GET /nonexistent HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".to_vec();
    for i in 0..extra {
        r.extend_from_slice(format!("x-h{i}: {i}\r\n").as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_balancer_accepts_is_never_431_by_the_app() {
    // Arrange: a real replica (hyper's default limit: 100 header lines) and the default
    // UPSTREAM_MAX_HEADERS.
    let cluster = Cluster::start(1).await;
    let lb = TestBalancer::start(test_config(&upstreams(&cluster.addrs()))).await;
    lb.wait_healthy(1).await;

    // Act: from well under to over the limit, counting this hop's additions.
    let mut accepted = 0;
    let mut refused_here = 0;
    for extra in 80..=102 {
        let raw = raw_exchange(lb.addr, &with_headers(extra)).await;
        let (line, headers, _) = parse_response(&raw);
        // A relayed answer carries this hop's `Via`; one made here does not.
        let relayed = headers.iter().any(|(k, _)| k == "via");
        // Assert: either the app answered it (and not with 431), or the balancer refused
        // it with its own 431; never the app's 431.
        if relayed {
            assert!(!line.contains(" 431"), "{extra}: {raw}");
            assert!(headers.iter().any(|(k, _)| k == "x-served-by"), "{raw}");
            accepted += 1;
        } else {
            assert!(line.starts_with("HTTP/1.1 431"), "{extra}: {raw}");
            refused_here += 1;
        }
    }
    assert!(
        accepted > 0 && refused_here > 0,
        "{accepted} {refused_here}"
    );
    assert_eq!(backend_5xx(&lb).await, 0);
}
