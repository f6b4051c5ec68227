//! The TLS port: HTTP/2 and HTTP/1.1 by ALPN to HTTP/1.1 backends, the forwarding headers
//! that say https, plain HTTP and stalled handshakes on the TLS port, the plain port's
//! redirect, and (with the real binary) certificate reload on SIGHUP and exit code 2 for bad
//! files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use balancer::{Config, SystemResolver, Tls};
use test_kit::InProcessBalancer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{TestServer, header_lines, init_tracing, test_config, text, upstreams};
use http::Version;
use test_kit::HttpsConn;

/// A temporary directory of this test's own.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("balancer-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// An in-process balancer with a TLS port, and where that port is.
struct TlsBalancer {
    lb: InProcessBalancer,
    tls_addr: SocketAddr,
    cert: PathBuf,
}

impl TlsBalancer {
    /// Starts `config` with a development certificate written to a directory named `name`.
    async fn start(mut config: Config, name: &str) -> TlsBalancer {
        init_tracing();
        let dir = temp_dir(name);
        config.tls.tls_self_signed = true;
        config.tls.tls_self_signed_dir = Some(dir.clone());
        let tls_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind TLS");
        let tls_addr = tls_listener.local_addr().expect("TLS addr");
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
        TlsBalancer {
            lb,
            tls_addr,
            cert: dir.join("cert.pem"),
        }
    }
}

/// A backend that answers with the request's version and header lines.
async fn echo_backend() -> TestServer {
    TestServer::start(
        |req| async move { text(format!("{:?}\n{}", req.version(), header_lines(&req))) },
    )
    .await
}

#[tokio::test]
async fn h2_and_http11_over_tls_reach_the_backend_as_http11_with_proto_https() {
    // Arrange
    let backend = echo_backend().await;
    let lb = TlsBalancer::start(test_config(&upstreams(&[backend.addr])), "proto").await;
    let port = lb.tls_addr.port();

    for (offer_h2, version) in [(true, Version::HTTP_2), (false, Version::HTTP_11)] {
        // Act: the certificate is checked for both names it was made for.
        for host in ["localhost", "127.0.0.1"] {
            let mut conn = HttpsConn::connect(lb.tls_addr, host, &lb.cert, offer_h2)
                .await
                .expect("TLS connection");
            let resp = conn.get("/session", &[]).await.expect("TLS request");

            // Assert
            assert_eq!(resp.status, 200);
            assert_eq!(resp.version, version, "ALPN chose the client's protocol");
            let body = resp.body;
            assert!(
                body.starts_with("HTTP/1.1\n"),
                "backends get HTTP/1.1: {body}"
            );
            assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
            assert!(
                body.contains(&format!("\nhost: {host}:{port}\n")),
                ":authority is the Host: {body}"
            );
            assert!(
                body.contains(&format!("x-forwarded-host: {host}:{port}\n")),
                "{body}"
            );
        }
    }
    // The plain port says http.
    let plain = reqwest::get(lb.lb.url("/"))
        .await
        .expect("plain request")
        .text()
        .await
        .expect("body");
    assert!(plain.contains("x-forwarded-proto: http\n"), "{plain}");
}

#[tokio::test]
async fn an_h2_host_naming_another_authority_is_refused_and_split_cookies_arrive_joined() {
    // Arrange
    let backend = echo_backend().await;
    let lb = TlsBalancer::start(test_config(&upstreams(&[backend.addr])), "authority").await;
    let mut conn = HttpsConn::connect(lb.tls_addr, "localhost", &lb.cert, true)
        .await
        .expect("TLS connection");

    // Act
    let refused = conn
        .get("/", &[("host", "elsewhere.example")])
        .await
        .expect("answered");
    let cookies = conn
        .get("/", &[("cookie", "a=1"), ("cookie", "b=2")])
        .await
        .expect("answered");

    // Assert
    assert_eq!(refused.version, Version::HTTP_2);
    assert_eq!(refused.status, 400);
    let body = cookies.body;
    assert!(body.contains("cookie: a=1; b=2\n"), "{body}");
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_400_and_a_close_not_a_hang() {
    // Arrange
    let backend = echo_backend().await;
    let lb = TlsBalancer::start(test_config(&upstreams(&[backend.addr])), "plain").await;

    // Act
    let started = Instant::now();
    let raw =
        test_kit::raw_exchange(lb.tls_addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;

    // Assert
    assert!(raw.starts_with("HTTP/1.1 400 "), "{raw:?}");
    assert!(raw.contains("https://"), "{raw:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed, not held"
    );
}

#[tokio::test]
async fn a_handshake_that_never_finishes_is_cut_by_the_handshake_timeout() {
    // Arrange
    let backend = echo_backend().await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.tls.tls_handshake_timeout = Duration::from_millis(500);
    // Longer than the handshake timeout, so that one is what closes the connection.
    config.header_read_timeout = Duration::from_secs(30);
    let lb = TlsBalancer::start(config, "handshake").await;

    for first_bytes in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        // Act: a silent client, and one that stops in the middle of its ClientHello.
        let mut stream = TcpStream::connect(lb.tls_addr).await.expect("connect");
        stream.write_all(first_bytes).await.expect("write");
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;

        // Assert: closed by the balancer, after the timeout and well before the test's.
        let closed = matches!(read, Ok(Ok(0)) | Ok(Err(_)));
        assert!(closed, "closed: {read:?} after {first_bytes:?}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
    }
}

#[tokio::test]
async fn an_h2_connection_without_streams_is_closed_after_the_idle_timeout() {
    // Arrange
    let backend = echo_backend().await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.header_read_timeout = Duration::from_millis(500);
    let lb = TlsBalancer::start(config, "idle").await;
    let connector =
        tokio_rustls::TlsConnector::from(test_kit::tls_client_config(&lb.cert, &[b"h2"]));

    // Act: a TLS connection that negotiates h2 and then sends nothing (not even the
    // preface).
    let tcp = TcpStream::connect(lb.tls_addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;

    // Assert: the balancer ended it (GOAWAY and close, or a close).
    assert!(read.is_ok(), "closed within 5 s");
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn https_redirect_sends_plain_requests_to_the_tls_port() {
    // Arrange
    let backend = echo_backend().await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.tls.https_redirect = true;
    let lb = TlsBalancer::start(config, "redirect").await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // Act
    let resp = client
        .post(format!(
            "http://localhost:{}/session?x=1",
            lb.lb.addr.port()
        ))
        .send()
        .await
        .expect("answered");

    // Assert
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!("https://localhost:{}/session?x=1", lb.tls_addr.port()).as_str()
    );
    // The TLS port itself serves.
    let mut conn = HttpsConn::connect(lb.tls_addr, "localhost", &lb.cert, true)
        .await
        .expect("TLS connection");
    let served = conn.get("/", &[]).await.expect("TLS request");
    assert_eq!(served.status, 200);
}

/// The balancer binary, started with `env`; killed on drop.
struct Binary(Child);

impl Binary {
    fn start(env: &[(&str, String)]) -> Binary {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_balancer"));
        cmd.env_clear()
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Binary(cmd.spawn().expect("start the balancer binary"))
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes a new certificate for localhost and its key to `dir` (replacing the old ones).
fn write_certificate(dir: &Path) -> Vec<u8> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    // Written beside and renamed, as a certificate manager does, so a reload never reads
    // half a file.
    std::fs::write(dir.join("key.tmp"), made.signing_key.serialize_pem()).expect("key");
    std::fs::write(dir.join("cert.tmp"), made.cert.pem()).expect("cert");
    std::fs::rename(dir.join("key.tmp"), dir.join("key.pem")).expect("rename key");
    std::fs::rename(dir.join("cert.tmp"), dir.join("cert.pem")).expect("rename cert");
    made.cert.der().to_vec()
}

#[tokio::test]
async fn sighup_serves_a_new_certificate_to_new_connections_and_keeps_old_ones() {
    // Arrange: the binary with certificate A.
    let backend = echo_backend().await;
    let dir = temp_dir("reload");
    let cert_a = write_certificate(&dir);
    std::fs::copy(dir.join("cert.pem"), dir.join("a.pem")).expect("keep A");
    let port = test_kit::free_port();
    let lb = Binary::start(&[
        ("UPSTREAMS", backend.addr.to_string()),
        (
            "LISTEN_ADDR",
            format!("127.0.0.1:{}", test_kit::free_port()),
        ),
        ("ADMIN_ADDR", format!("127.0.0.1:{}", test_kit::free_port())),
        ("TLS_LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("TLS_CERT", dir.join("cert.pem").display().to_string()),
        ("TLS_KEY", dir.join("key.pem").display().to_string()),
        ("HEALTH_INTERVAL", "100ms".to_owned()),
    ]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut old = loop {
        match HttpsConn::connect(addr, "localhost", &dir.join("a.pem"), true).await {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the balancer did not serve: {e}"),
        }
    };
    assert_eq!(old.peer_certificate(), cert_a.as_slice());
    let before = old.get("/", &[]).await.expect("served");
    assert_eq!(before.status, 200);

    // Act: certificate B in the files, then SIGHUP.
    let cert_b = write_certificate(&dir);
    let hup = Command::new("kill")
        .args(["-HUP", &lb.0.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());

    // Assert: new connections get B (once the reload ran)...
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fresh = loop {
        match HttpsConn::connect(addr, "localhost", &dir.join("cert.pem"), true).await {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no connection with the new certificate: {e}"),
        }
    };
    assert_eq!(fresh.peer_certificate(), cert_b.as_slice());
    assert_eq!(fresh.get("/", &[]).await.expect("served").status, 200);
    // ...a client that trusts only A cannot connect any more...
    let a_only = HttpsConn::connect(addr, "localhost", &dir.join("a.pem"), true).await;
    assert!(a_only.is_err(), "new connections get B");
    // ...and the connection opened before the reload is still served.
    let after = old
        .get("/", &[])
        .await
        .expect("old connection still served");
    assert_eq!(after.status, 200);
}

#[tokio::test]
async fn a_bad_or_missing_tls_file_exits_2_naming_the_variable() {
    let dir = temp_dir("badfiles");
    std::fs::write(dir.join("not-a-key.pem"), "not a key").expect("write");
    write_certificate(&dir);
    let base = |extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("UPSTREAMS", "127.0.0.1:9".to_owned()),
            ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("ADMIN_ADDR", "127.0.0.1:0".to_owned()),
            ("TLS_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    let cases = [
        (
            base(&[
                ("TLS_CERT", dir.join("missing.pem").display().to_string()),
                ("TLS_KEY", dir.join("key.pem").display().to_string()),
            ]),
            "TLS_CERT",
        ),
        (
            base(&[
                ("TLS_CERT", dir.join("cert.pem").display().to_string()),
                ("TLS_KEY", dir.join("not-a-key.pem").display().to_string()),
            ]),
            "TLS_KEY",
        ),
        (
            base(&[("TLS_CERT", dir.join("cert.pem").display().to_string())]),
            "TLS_KEY",
        ),
        (base(&[]), "TLS_LISTEN_ADDR"),
        (
            base(&[("TLS_HANDSHAKE_TIMEOUT", "soon".to_owned())]),
            "TLS_HANDSHAKE_TIMEOUT",
        ),
    ];
    for (env, variable) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_balancer"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run the balancer binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{variable}: {stderr}");
        assert!(stderr.contains(variable), "names {variable}: {stderr}");
    }
}

#[tokio::test]
async fn an_upgrade_over_tls_http11_is_tunnelled_both_ways() {
    // Arrange: a backend that switches to an "echo" protocol.
    let backend = TestServer::start(|mut req| async move {
        if !req.headers().contains_key("upgrade") {
            return text("plain");
        }
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = hyper_util::rt::TokioIo::new(up);
                let mut buf = [0u8; 64];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&[b"echo:", &buf[..n]].concat()).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = text("");
        *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("upgrade", http::HeaderValue::from_static("echo"));
        r.headers_mut()
            .insert("connection", http::HeaderValue::from_static("upgrade"));
        r
    })
    .await;
    let mut config = test_config(&upstreams(&[backend.addr]));
    config.upgrade_protocols = "echo".parse().expect("valid");
    let lb = TlsBalancer::start(config, "upgrade").await;
    let connector =
        tokio_rustls::TlsConnector::from(test_kit::tls_client_config(&lb.cert, &[b"http/1.1"]));
    let tcp = TcpStream::connect(lb.tls_addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");

    // Act
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut byte))
            .await
            .expect("head in time")
            .expect("read");
        head.push(byte[0]);
    }
    tls.write_all(b"hello")
        .await
        .expect("write through the tunnel");
    let mut echoed = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read");

    // Assert
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert_eq!(&echoed, b"echo:hello");
}
