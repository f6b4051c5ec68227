//! Request framing by the RFCs, checked before anything is forwarded: what the proxy cannot
//! pass on faithfully is refused with the status the RFC names, never silently altered.
//!
//! - CONNECT: 405. This is a reverse proxy; it opens tunnels to its backends only.
//! - More than one `Host`: 400 (RFC 9112 §3.2).
//! - A request in absolute form (`GET http://host/path`): its authority wins over `Host`
//!   (RFC 9112 §3.2.2), so `Host` is replaced with it.
//! - A transfer coding other than `chunked` (`gzip, chunked`): 501 (RFC 9112 §6.1). hyper
//!   removes the chunked framing, so the coding underneath would reach the backend unlabelled.
//! - `Via` already naming this proxy: 508, a loop.
//! - A body without `Content-Length` on any method (a chunked `GET`) is forwarded chunked:
//!   hyper's client would otherwise send a `GET` with no body at all.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING, VIA};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method};

use crate::error::ProxyError;

/// Checks and normalises a request head; `via_name` is this proxy's name in `Via`.
pub fn check_request(parts: &mut Parts, via_name: &str) -> Result<(), ProxyError> {
    if parts.method == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    if parts.headers.get_all(HOST).iter().count() > 1 {
        return Err(ProxyError::BadRequest(
            "400 Bad Request: more than one Host header\n",
        ));
    }
    if let Some(authority) = parts.uri.authority() {
        match HeaderValue::from_str(authority.as_str()) {
            Ok(host) => {
                parts.headers.insert(HOST, host);
            }
            Err(_) => return Err(ProxyError::BadRequest("400 Bad Request: bad authority\n")),
        }
    }
    if !only_chunked(&parts.headers) {
        return Err(ProxyError::NotImplemented);
    }
    if passed_through(&parts.headers, via_name) {
        return Err(ProxyError::Loop);
    }
    Ok(())
}

/// True when every transfer coding listed is `chunked` (or there is none).
fn only_chunked(headers: &HeaderMap) -> bool {
    headers.get_all(TRANSFER_ENCODING).iter().all(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .all(|t| t.eq_ignore_ascii_case("chunked"))
        })
    })
}

/// True when a `Via` entry was added by a proxy named `via_name`.
fn passed_through(headers: &HeaderMap, via_name: &str) -> bool {
    headers.get_all(VIA).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|entry| {
                // `1.1 name (comment)`: the received-by is the second word.
                entry
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|by| by.eq_ignore_ascii_case(via_name))
            })
        })
    })
}

/// Appends `1.1 <via_name>` to `Via`.
pub fn add_via(headers: &mut HeaderMap, via: &HeaderValue) {
    headers.append(VIA, via.clone());
}

/// The `Via` entry of this proxy.
pub fn via_value(via_name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("1.1 {via_name}"))
        .unwrap_or_else(|_| HeaderValue::from_static("1.1 balancer"))
}

/// Makes a request body without a length travel chunked (after hop-by-hop headers, the
/// client's `Transfer-Encoding` among them, were removed).
pub fn frame_body(headers: &mut HeaderMap, has_body: bool) {
    if has_body && !headers.contains_key(CONTENT_LENGTH) {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
}

/// A response with both `Transfer-Encoding` and `Content-Length` is framed by the former
/// (RFC 9112 §6.3): the length is dropped before the response is passed on.
pub fn fix_response_length(headers: &mut HeaderMap) {
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).expect("request").into_parts().0
    }

    #[test]
    fn refuses_connect_duplicate_host_foreign_codings_and_loops() {
        let status = |p: &mut Parts| check_request(p, "lb").err().map(|e| e.status().as_u16());
        assert_eq!(
            status(&mut parts("CONNECT", "example.test:443", &[])),
            Some(405)
        );
        assert_eq!(
            status(&mut parts("GET", "/", &[("host", "a"), ("host", "b")])),
            Some(400)
        );
        assert_eq!(
            status(&mut parts(
                "POST",
                "/",
                &[("transfer-encoding", "gzip, chunked")]
            )),
            Some(501)
        );
        assert_eq!(
            status(&mut parts("GET", "/", &[("via", "1.0 other, 1.1 lb")])),
            Some(508)
        );
        assert_eq!(
            status(&mut parts(
                "POST",
                "/",
                &[("transfer-encoding", "chunked"), ("via", "1.1 other")]
            )),
            None
        );
    }

    #[test]
    fn the_absolute_form_authority_wins_over_host() {
        let mut p = parts("GET", "http://right.test/x", &[("host", "wrong.test")]);
        check_request(&mut p, "lb").expect("valid");
        assert_eq!(p.headers[HOST], "right.test");
    }

    #[test]
    fn bodies_without_length_go_chunked_and_responses_lose_a_conflicting_length() {
        let mut h = HeaderMap::new();
        frame_body(&mut h, true);
        assert_eq!(h[TRANSFER_ENCODING], "chunked");
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
        frame_body(&mut h, true);
        assert!(!h.contains_key(TRANSFER_ENCODING));

        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        fix_response_length(&mut h);
        assert!(!h.contains_key(CONTENT_LENGTH));
    }
}
