//! Graceful drain: in-flight requests finish after the stop signal, then the process exits 0.
//! Also the binary's exit code 2 on bad configuration.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{
    TestBalancer, TestServer, closed_port_addr, http_client, test_config, text, upstreams,
};

/// A backend that takes 1 s to answer anything but health checks.
async fn slow_backend() -> TestServer {
    TestServer::start(|req| async move {
        if req.uri().path() != "/readyz" {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        text("finished")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_completes_after_shutdown_signal() {
    // Arrange
    let backend = slow_backend().await;
    let mut lb = TestBalancer::start(test_config(&upstreams(&[backend.addr]))).await;
    lb.wait_healthy(1).await;
    let url = lb.url("/slow");
    let in_flight = tokio::spawn(async move { http_client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Act
    lb.signal_shutdown();
    let result = tokio::time::timeout(Duration::from_secs(5), lb.join()).await;

    // Assert: the request finished normally, run() returned Ok, new connections are refused.
    let resp = in_flight
        .await
        .expect("task")
        .expect("in-flight request failed");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "finished");
    result.expect("drain took too long").expect("run failed");
    assert!(tokio::net::TcpStream::connect(lb.addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_binary_and_exits_zero() {
    // Arrange: the real binary on free loopback ports.
    let backend = slow_backend().await;
    let listen = closed_port_addr().await;
    let admin = closed_port_addr().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .env_clear()
        .env("UPSTREAMS", backend.addr.to_string())
        .env("LISTEN_ADDR", listen.to_string())
        .env("ADMIN_ADDR", admin.to_string())
        .env("HEALTH_INTERVAL", "100ms")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn balancer");
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = client.get(format!("http://{admin}/status")).send().await;
        if let Ok(r) = ready
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["healthy"] == 1
        {
            break;
        }
        assert!(Instant::now() < deadline, "binary never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://{listen}/slow");
    let in_flight = tokio::spawn(async move { http_client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Act
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let resp = in_flight
        .await
        .expect("task")
        .expect("in-flight request failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "binary did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let mut log = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut log);
    }

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "finished");
    assert_eq!(exit.code(), Some(0));
    // Logs to a pipe carry no terminal colour codes.
    assert!(log.contains("drained"), "{log}");
    assert!(!log.contains('\x1b'), "{log:?}");
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    for (var, value) in [
        ("UPSTREAMS", "no-port-here"),
        ("RESOLVE_INTERVAL", "soonish"),
        ("MAX_HEADER_SIZE", "100"),
        ("HEALTH_PATH", "readyz"),
        ("INTERNAL_PATHS", "metrics"),
        ("INTERNAL_PATHS", "/metrics, /has space"),
        ("MEMORY_TRIM", "sometimes"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
            .env_clear()
            .env("UPSTREAMS", "127.0.0.1:9")
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("ADMIN_ADDR", "127.0.0.1:0")
            .env(var, value)
            .output()
            .expect("run balancer");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(
            stderr.contains(var),
            "{var}={value}: message does not name it: {stderr}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
        .env_clear()
        .output()
        .expect("run balancer");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("UPSTREAMS"));
}
