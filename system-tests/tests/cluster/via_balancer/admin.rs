//! Admin endpoints: /healthz, /status JSON and /metrics in Prometheus text.

use crate::helpers::{Cluster, TestBalancer, http_client, test_config, upstreams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_backends_and_metrics() {
    // Arrange
    let cluster = Cluster::start(2).await;
    let lb = TestBalancer::start(test_config(&upstreams(&cluster.addrs()))).await;
    lb.wait_healthy(2).await;
    let client = http_client();

    // Act
    for _ in 0..4 {
        assert_eq!(
            client
                .get(lb.url("/"))
                .send()
                .await
                .expect("request")
                .status(),
            200
        );
    }
    let healthz = client
        .get(format!("http://{}/healthz", lb.admin))
        .send()
        .await
        .expect("healthz");
    let status = lb.status().await;
    let metrics = lb.metrics().await;

    // Assert
    assert_eq!(healthz.status(), 200);
    assert_eq!(status["healthy"], 2, "{status}");
    let backends = status["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), 2);
    for (b, addr) in backends.iter().zip(cluster.addrs()) {
        assert_eq!(b["address"], addr.to_string());
        assert_eq!(b["healthy"], true);
        assert_eq!(b["requests"], 2, "{status}");
        assert_eq!(b["responses"]["2xx"], 2, "{status}");
        assert_eq!(b["in_flight"], 0, "{status}");
    }
    for addr in cluster.addrs() {
        let line = format!("balancer_requests_total{{backend=\"{addr}\",status=\"2xx\"}} 2");
        assert!(metrics.contains(&line), "missing {line}:\n{metrics}");
    }
    for name in [
        "balancer_healthy_backends 2",
        "balancer_retries_total 0",
        "balancer_ejections_total 0",
        "balancer_request_duration_seconds_count 4",
        "balancer_backend_in_flight{",
        "balancer_backend_up{",
    ] {
        assert!(metrics.contains(name), "missing {name}:\n{metrics}");
    }
}
