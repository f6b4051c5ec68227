//! `HTTPS_REDIRECT`: the plain port answers every request with a 308 to the same URL on the
//! TLS port, so a browser that typed `http://` ends up on TLS (and its `Secure` cookie).
//!
//! 308 rather than 301: the method and body are kept, so a `POST` is not turned into a
//! `GET`. The host name is the client's own (its `Host`, or an absolute-form target's
//! authority), with the TLS port's number (left out when it is 443). A request without a
//! valid host cannot be redirected and gets 400, as it would from the proxy.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use crate::error::ProxyError;
use crate::framing::is_valid_host;

/// Redirects plain requests to the TLS port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsRedirect {
    /// The TLS port's number, as clients reach it.
    port: u16,
}

impl HttpsRedirect {
    /// Redirects to `port`.
    pub fn to_port(port: u16) -> HttpsRedirect {
        HttpsRedirect { port }
    }

    /// The redirect for `req`, or a 400 when it names no valid host.
    pub fn respond<T>(&self, req: &Request<T>) -> Response<Full<Bytes>> {
        match self.location(req) {
            Some(location) => {
                let mut resp = Response::new(Full::new(Bytes::from_static(
                    b"308 Permanent Redirect: use https\n",
                )));
                *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
                resp.headers_mut().insert(LOCATION, location);
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                resp
            }
            None => ProxyError::BadRequest("400 Bad Request: no valid Host to redirect to\n")
                .to_response(),
        }
    }

    /// `https://<host>[:port]<path and query>`, or `None` without a valid host.
    fn location<T>(&self, req: &Request<T>) -> Option<HeaderValue> {
        let host = match req.uri().authority() {
            Some(authority) => authority.as_str(),
            None => req.headers().get(HOST)?.to_str().ok()?,
        };
        if !is_valid_host(host.as_bytes()) || host.contains('@') {
            return None;
        }
        let name = host_name(host);
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let location = if self.port == 443 {
            format!("https://{name}{path}")
        } else {
            format!("https://{name}:{}{path}", self.port)
        };
        HeaderValue::from_str(&location).ok()
    }
}

/// The host without its port: an IPv6 literal keeps its brackets; a reg-name or IPv4
/// address never holds a `:` (see [`is_valid_host`]).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, host: Option<&str>) -> Request<()> {
        let mut builder = Request::get(target);
        if let Some(host) = host {
            builder = builder.header(HOST, host);
        }
        builder.body(()).expect("request")
    }

    fn location(resp: &Response<Full<Bytes>>) -> &str {
        resp.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn keeps_host_name_path_and_query_and_swaps_the_port() {
        let redirect = HttpsRedirect::to_port(8443);
        let resp = redirect.respond(&request("/session?x=1", Some("localhost:8080")));
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(location(&resp), "https://localhost:8443/session?x=1");
        let resp = redirect.respond(&request("/", Some("[::1]:8080")));
        assert_eq!(location(&resp), "https://[::1]:8443/");
        let resp = redirect.respond(&request("http://example.com/a", Some("other")));
        assert_eq!(location(&resp), "https://example.com:8443/a");
    }

    #[test]
    fn port_443_is_left_out() {
        let resp = HttpsRedirect::to_port(443).respond(&request("/", Some("example.com")));
        assert_eq!(location(&resp), "https://example.com/");
    }

    #[test]
    fn a_missing_or_bad_host_is_a_bad_request() {
        let redirect = HttpsRedirect::to_port(8443);
        for host in [None, Some("a b"), Some(""), Some("evil.com/x")] {
            let resp = redirect.respond(&request("/", host));
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{host:?}");
            assert!(resp.headers().get(LOCATION).is_none());
        }
    }
}
