//! Request framing by the RFCs, checked before anything is forwarded: what the proxy cannot
//! pass on faithfully is refused with the status the RFC names, never silently altered.
//!
//! - CONNECT: 405. This is a reverse proxy; it opens tunnels to its backends only.
//! - The request-target (RFC 9112 §3.2): the authority form (`host:port`) is CONNECT's
//!   alone, and the asterisk form (`*`) OPTIONS' alone: 400 otherwise. An absolute form
//!   (`GET http://host/path`) with userinfo (`http://user@host/`) or a malformed host: 400.
//! - `Host` (RFC 9112 §3.2): required in HTTP/1.1 (an HTTP/1.0 request may go without it),
//!   exactly once, and well-formed, `uri-host [":" port]` with no userinfo, path or
//!   whitespace, not empty: 400 otherwise (nginx does the same). Listing `Host` in
//!   `Connection` would have a proxy strip it: 400 too (see [`crate::headers`]).
//! - A request in absolute form: its authority wins over `Host` (RFC 9112 §3.2.2), so `Host`
//!   is replaced with it.
//! - HTTP/2: `:authority` is the `Host` these rules check ([`crate::h2_request`]).
//! - A transfer coding other than `chunked` (`gzip, chunked`): 501 (RFC 9112 §6.1). hyper
//!   removes the chunked framing, so the coding underneath would reach the backend unlabelled.
//! - `Via` already naming this proxy: 508, a loop.
//! - A body without `Content-Length` on any method (a chunked `GET`) is forwarded chunked:
//!   hyper's client would otherwise send a `GET` with no body at all.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING, VIA};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Version};

use crate::error::ProxyError;

/// The fewest bytes a header line takes (`a:` and a bare LF, which the parser accepts).
const SHORTEST_HEADER_LINE: usize = 3;

/// Most header lines in a response head, whatever `MAX_HEADER_SIZE` allows.
///
/// hyper parses a head into arrays of `max_headers` entries (64 bytes per entry in all):
/// up to 100 on the stack, more in a heap allocation made and freed for every response. At
/// this count that is 64 KiB per response, which glibc serves from the heap without a system
/// call; at 2,000 entries (128 KiB) a worker's heap was trimmed (`madvise`) on one response
/// in ten, and with entries for every line 64 KiB could hold (21,845: 1.4 MB per response)
/// on every response, measured with `strace -c` under wrk. 1,024 lines is ten times the 100
/// that failed a real response (120 `Set-Cookie` lines), and more than nginx relays with its
/// default 4-8 KiB `proxy_buffer_size`.
pub const MAX_RESPONSE_HEADER_LINES: usize = 1024;

/// How many header lines fit in a head of `head_size` bytes.
pub fn max_header_lines(head_size: usize) -> usize {
    head_size / SHORTEST_HEADER_LINE
}

/// hyper's count limit for a response head of up to `head_size` bytes: as many lines as fit,
/// up to [`MAX_RESPONSE_HEADER_LINES`].
pub fn max_response_header_lines(head_size: usize) -> usize {
    max_header_lines(head_size).min(MAX_RESPONSE_HEADER_LINES)
}

fn bad(why: &'static str) -> ProxyError {
    ProxyError::BadRequest(why)
}

/// The bytes of a reg-name (RFC 3986 §3.2.2): unreserved, `%` (of a percent-encoding) and
/// sub-delims. A table: this runs on every request.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
};

/// True for a valid `Host` value: `uri-host [":" port]` (RFC 9112 §3.2, RFC 3986 §3.2.2),
/// not empty, no userinfo, path, query or whitespace; an IP literal in brackets. One pass,
/// no allocation: this runs on every request.
pub fn is_valid_host(host: &[u8]) -> bool {
    let name_end = if host.first() == Some(&b'[') {
        match host.iter().position(|&b| b == b']') {
            Some(end)
                if end > 1
                    && host[1..end]
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') =>
            {
                end + 1
            }
            _ => return false,
        }
    } else {
        // A reg-name never holds ':' (the table says so), so this stops at the port.
        let end = host
            .iter()
            .position(|&b| !REG_NAME[usize::from(b)])
            .unwrap_or(host.len());
        if end == 0 {
            return false;
        }
        end
    };
    // port: ":" and up to five digits, at most 65535 (an empty port is allowed by RFC 3986).
    match &host[name_end..] {
        [] => true,
        [b':', digits @ ..] if digits.len() <= 5 => {
            let mut port = 0u32;
            for &d in digits {
                if !d.is_ascii_digit() {
                    return false;
                }
                port = port * 10 + u32::from(d - b'0');
            }
            port <= 65_535
        }
        _ => false,
    }
}

/// Checks the request-target's form (RFC 9112 §3.2): origin form for every method, the
/// asterisk form only for OPTIONS, the absolute form without userinfo; the authority form,
/// CONNECT's, never reaches here.
fn check_target(parts: &Parts) -> Result<(), ProxyError> {
    let uri = &parts.uri;
    match (uri.scheme(), uri.authority()) {
        (None, Some(_)) => Err(bad(
            "400 Bad Request: the authority form is for CONNECT only\n",
        )),
        (Some(_), Some(authority)) => {
            if authority.as_str().contains('@') || !is_valid_host(authority.as_str().as_bytes()) {
                Err(bad(
                    "400 Bad Request: bad authority in the request target\n",
                ))
            } else {
                Ok(())
            }
        }
        _ if uri.path() == "*" && parts.method != Method::OPTIONS => Err(bad(
            "400 Bad Request: the asterisk form is for OPTIONS only\n",
        )),
        _ => Ok(()),
    }
}

/// Checks and normalises a request head; `via_name` is this proxy's name in `Via`.
pub fn check_request(parts: &mut Parts, via_name: &str) -> Result<(), ProxyError> {
    if parts.method == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    // An HTTP/2 request's `:authority` becomes its `Host` first, so the rules below apply.
    crate::h2_request::normalise(parts)?;
    check_target(parts)?;
    let mut hosts = parts.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(bad("400 Bad Request: more than one Host header\n")),
        (None, None) if parts.version != Version::HTTP_10 => {
            return Err(bad(
                "400 Bad Request: an HTTP/1.1 request needs a Host header\n",
            ));
        }
        (Some(host), None) if !is_valid_host(host.as_bytes()) => {
            return Err(bad("400 Bad Request: invalid Host header\n"));
        }
        _ => {}
    }
    if let Some(authority) = parts.uri.authority() {
        match HeaderValue::from_str(authority.as_str()) {
            Ok(host) => {
                parts.headers.insert(HOST, host);
            }
            Err(_) => return Err(bad("400 Bad Request: bad authority\n")),
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
                &[("host", "x"), ("transfer-encoding", "gzip, chunked")]
            )),
            Some(501)
        );
        assert_eq!(
            status(&mut parts(
                "GET",
                "/",
                &[("host", "x"), ("via", "1.0 other, 1.1 lb")]
            )),
            Some(508)
        );
        assert_eq!(
            status(&mut parts(
                "POST",
                "/",
                &[
                    ("host", "x"),
                    ("transfer-encoding", "chunked"),
                    ("via", "1.1 other")
                ]
            )),
            None
        );
    }

    #[test]
    fn host_must_be_there_once_and_well_formed() {
        let status = |p: &mut Parts| check_request(p, "lb").err().map(|e| e.status().as_u16());
        assert_eq!(status(&mut parts("GET", "/", &[])), Some(400));
        let mut old = parts("GET", "/", &[]);
        old.version = Version::HTTP_10;
        assert_eq!(status(&mut old), None);
        for host in [
            "",
            "evil.test/x?y#z@a",
            "user@host",
            "a b",
            "host:99999",
            "host:x",
            "[zz]",
        ] {
            assert_eq!(
                status(&mut parts("GET", "/", &[("host", host)])),
                Some(400),
                "{host}"
            );
        }
        for host in [
            "example.test",
            "example.test:8080",
            "127.0.0.1",
            "[::1]:80",
            "host:",
            "xn--bcher-kva.test",
        ] {
            assert_eq!(
                status(&mut parts("GET", "/", &[("host", host)])),
                None,
                "{host}"
            );
        }
    }

    #[test]
    fn target_forms_are_kept_to_their_methods() {
        let status = |p: &mut Parts| check_request(p, "lb").err().map(|e| e.status().as_u16());
        let h = [("host", "x")];
        assert_eq!(status(&mut parts("GET", "example.test:80", &h)), Some(400));
        assert_eq!(status(&mut parts("GET", "*", &h)), Some(400));
        assert_eq!(status(&mut parts("OPTIONS", "*", &h)), None);
        assert_eq!(
            status(&mut parts("GET", "http://u:p@right.test/", &h)),
            Some(400)
        );
        assert_eq!(status(&mut parts("GET", "http://right.test/", &h)), None);
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
