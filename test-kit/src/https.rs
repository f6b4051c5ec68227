//! An HTTPS client connection for tests of the balancer's TLS port: one TLS connection
//! (ring, trusting only the certificate the test names), HTTP/2 or HTTP/1.1 by ALPN, that a
//! test keeps and sends requests on, so it can tell one connection from the next (which
//! certificate each was made with, whether an old one still works after a reload).
//!
//! Built on hyper and tokio-rustls rather than reqwest's TLS: turning that on would change
//! reqwest's features for every crate built with the tests (the loadtest binary included).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// One response, read whole.
#[derive(Debug)]
pub struct HttpsResponse {
    /// Its status.
    pub status: StatusCode,
    /// The HTTP version of the connection.
    pub version: Version,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body as text.
    pub body: String,
}

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// One TLS connection to `addr`, named `host` (SNI, Host / `:authority`).
pub struct HttpsConn {
    sender: Sender,
    host: String,
    port: u16,
    peer_certificate: Vec<u8>,
}

/// A TLS client setting that trusts only the PEM certificate in `cert` and offers `alpn`.
pub fn client_config(cert: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cert).expect("certificate file") {
        roots
            .add(der.expect("PEM certificate"))
            .expect("trusted root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

impl HttpsConn {
    /// Connects and shakes hands, offering `h2` and `http/1.1` (or only `http/1.1`), trusting
    /// only `cert`; the server's choice decides the protocol.
    pub async fn connect(
        addr: SocketAddr,
        host: &str,
        cert: &Path,
        offer_h2: bool,
    ) -> std::io::Result<HttpsConn> {
        let alpn: &[&[u8]] = if offer_h2 {
            &[b"h2", b"http/1.1"]
        } else {
            &[b"http/1.1"]
        };
        let connector = tokio_rustls::TlsConnector::from(client_config(cert, alpn));
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tcp = TcpStream::connect(addr).await?;
        let tls = connector.connect(name, tcp).await?;
        let (_, session) = tls.get_ref();
        let h2 = session.alpn_protocol() == Some(&b"h2"[..]);
        let peer_certificate = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let io = TokioIo::new(tls);
        let broken = |e: hyper::Error| std::io::Error::other(e);
        let sender = if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(broken)?;
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await.map_err(broken)?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(HttpsConn {
            sender,
            host: host.to_owned(),
            port: addr.port(),
            peer_certificate,
        })
    }

    /// The HTTP version negotiated.
    pub fn version(&self) -> Version {
        match self.sender {
            Sender::H1(_) => Version::HTTP_11,
            Sender::H2(_) => Version::HTTP_2,
        }
    }

    /// The server's certificate (DER) this connection was made with.
    pub fn peer_certificate(&self) -> &[u8] {
        &self.peer_certificate
    }

    /// `GET path` with `headers` on this connection.
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpsResponse, hyper::Error> {
        let authority = format!("{}:{}", self.host, self.port);
        let mut builder = match self.sender {
            // HTTP/2: the authority travels as `:authority`.
            Sender::H2(_) => {
                Request::get(format!("https://{authority}{path}")).version(Version::HTTP_2)
            }
            Sender::H1(_) => Request::get(path).header("host", authority),
        };
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder.body(Empty::new()).expect("request");
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(HttpsResponse {
            status: parts.status,
            version: self.version(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
