//! Header rewriting at the proxy hop: hop-by-hop removal (RFC 9110 §7.6.1), and the
//! forwarding headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`), believed only from
//! `TRUSTED_PROXIES`.
//!
//! Underscore spellings of the headers this hop sets or vouches for (`X_Forwarded_For`,
//! `X-Real_IP`, `x_request_id`, ...) are dropped from every request, trusted or not: a
//! CGI-style backend reads `X_Forwarded_For` and `X-Forwarded-For` as the one variable
//! `HTTP_X_FORWARDED_FOR`, so a forged underscore spelling could stand in for the value
//! replaced here. (nginx drops every header with an underscore by default.)
//!
//! Everything works in place on the `HeaderMap` hyper parsed, with `remove`/`insert` only for
//! single-valued hop-by-hop or forwarding headers, so repeated end-to-end headers such as several
//! `Set-Cookie` pass through untouched (rebuilding the map with `insert` would keep only the last).

use http::HeaderMap;
use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE};

/// `Keep-Alive` (RFC 9112 appendix C.2.2), not in `http::header`.
pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection`, sent by old clients and some libraries; never end-to-end.
pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `X-Forwarded-For`: the client chain, appended to rather than replaced.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used to reach us.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the `Host` the client asked for.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `Forwarded` (RFC 7239).
pub static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// `X-Real-IP`: a single client address some proxies set; believed only from trusted ones.
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// `X-Request-Id`: set or kept by the shared `request-id` rule.
static X_REQUEST_ID: &str = "x-request-id";

/// The headers whose underscore spellings are dropped (see the module docs).
const VOUCHED: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    X_REQUEST_ID,
];

/// True when `name` is the spelling of a [`VOUCHED`] header with an underscore for one of
/// its dashes or more.
fn is_underscore_spelling(name: &str) -> bool {
    name.contains('_')
        && VOUCHED.iter().any(|v| {
            v.len() == name.len()
                && v.bytes()
                    .zip(name.bytes())
                    .all(|(v, n)| v == n || (v == b'-' && n == b'_'))
        })
}

/// `X-Upstream`: response header naming the backend address that answered.
pub static X_UPSTREAM: HeaderName = HeaderName::from_static("x-upstream");

/// True if `token` names a header this module removes (or handles) on its own, so a
/// `Connection: keep-alive` or `Connection: upgrade` costs no allocation.
fn handled_token(token: &str) -> bool {
    [
        "close",
        "keep-alive",
        "upgrade",
        "te",
        "transfer-encoding",
        "proxy-connection",
    ]
    .iter()
    .any(|t| token.eq_ignore_ascii_case(t))
}

/// True if any `Connection` header value lists `token` (case-insensitive comma list).
fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// A request asks for a protocol upgrade (e.g. WebSocket) when it has `Upgrade` and
/// `Connection` lists `upgrade`; only then are those two headers forwarded.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && connection_has(headers, "upgrade")
}

/// Which of the headers this module handles a map holds, found in one pass over its names.
/// Most requests and responses carry none of them: a `remove` or `contains_key` per name
/// would hash every one of those names on every message.
#[derive(Debug, Default, Clone, Copy)]
struct Present {
    connection: bool,
    keep_alive: bool,
    proxy_connection: bool,
    transfer_encoding: bool,
    te: bool,
    upgrade: bool,
    x_forwarded_for: bool,
    x_forwarded_proto: bool,
    x_forwarded_host: bool,
    forwarded: bool,
    x_real_ip: bool,
    /// An underscore spelling of a forwarding header.
    underscored: bool,
}

impl Present {
    fn scan(headers: &HeaderMap) -> Present {
        let mut p = Present::default();
        for name in headers.keys() {
            // A match on the (lower-case) name compiles to a switch on its length and one
            // comparison, cheaper than comparing it with each name in turn.
            let flag = match name.as_str() {
                "connection" => &mut p.connection,
                "keep-alive" => &mut p.keep_alive,
                "proxy-connection" => &mut p.proxy_connection,
                "transfer-encoding" => &mut p.transfer_encoding,
                "te" => &mut p.te,
                "upgrade" => &mut p.upgrade,
                "x-forwarded-for" => &mut p.x_forwarded_for,
                "x-forwarded-proto" => &mut p.x_forwarded_proto,
                "x-forwarded-host" => &mut p.x_forwarded_host,
                "forwarded" => &mut p.forwarded,
                "x-real-ip" => &mut p.x_real_ip,
                // `VOUCHED`'s names all start with `x` and have these lengths: most names
                // are passed over after two comparisons.
                other
                    if other.as_bytes().first() == Some(&b'x')
                        && matches!(other.len(), 9 | 12 | 15..=17)
                        && is_underscore_spelling(other) =>
                {
                    &mut p.underscored
                }
                _ => continue,
            };
            *flag = true;
        }
        p
    }
}

/// Removes hop-by-hop headers in place.
///
/// `keep_upgrade` is set while proxying an upgrade (request with `Upgrade`, or a 101 response):
/// `Upgrade` then stays and `Connection` is re-set to exactly `upgrade`.
///
/// Returns true when `Connection` listed `Host`, which is then kept: a request must not
/// lose its `Host` at a proxy, and the caller refuses it (400).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) -> bool {
    let present = Present::scan(headers);
    let mut lists_host = false;
    if present.connection {
        // Collected first because the names borrow from the map we are about to change.
        let mut listed: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            let Ok(s) = value.to_str() else { continue };
            for token in s.split(',').map(str::trim) {
                if token.is_empty() || handled_token(token) {
                    continue;
                }
                if token.eq_ignore_ascii_case("host") {
                    lists_host = true;
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    listed.push(name);
                }
            }
        }
        for name in listed {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    if present.keep_alive {
        headers.remove(&KEEP_ALIVE);
    }
    if present.proxy_connection {
        headers.remove(&PROXY_CONNECTION);
    }
    if present.transfer_encoding {
        headers.remove(TRANSFER_ENCODING);
    }
    if present.te {
        // `TE: trailers` is the one value that may travel on (RFC 9110 §10.1.4); drop the rest.
        let wants_trailers = headers.get_all(TE).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',').any(|t| {
                        t.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .eq_ignore_ascii_case("trailers")
                    })
                })
                .unwrap_or(false)
        });
        headers.remove(TE);
        if wants_trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present.upgrade {
        headers.remove(UPGRADE);
    }
    lists_host
}

/// Who sent the request to us, as the forwarding headers need it.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The peer's address, rendered.
    pub client_ip: &'a HeaderValue,
    /// True when the peer is one of `TRUSTED_PROXIES`: its forwarding headers are kept and
    /// appended to. Otherwise they are replaced, so a client cannot forge its address.
    pub trusted: bool,
    /// The scheme the peer used to reach us: `https` on the TLS port, else `http`.
    pub scheme: &'static str,
}

/// Sets the forwarding headers for `hop`. `authority` is the request-target authority, used
/// when an HTTP/1.0 client sent no `Host`.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    hop: Hop<'_>,
    authority: Option<&http::uri::Authority>,
) {
    let client_ip = hop.client_ip;
    let present = Present::scan(headers);
    if present.underscored {
        let forged: Vec<HeaderName> = headers
            .keys()
            .filter(|n| is_underscore_spelling(n.as_str()))
            .cloned()
            .collect();
        for name in forged {
            headers.remove(name);
        }
    }
    if hop.trusted && present.x_forwarded_for {
        let mut joined: Vec<u8> = Vec::with_capacity(64);
        for v in headers.get_all(&X_FORWARDED_FOR) {
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(v.as_bytes());
        }
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(client_ip.as_bytes());
        // Every part is already a valid header value, so this only fails on a bug; fall back
        // to the client address alone rather than forwarding an unverified chain.
        let value = HeaderValue::from_bytes(&joined).unwrap_or_else(|_| client_ip.clone());
        headers.insert(&X_FORWARDED_FOR, value);
    } else {
        headers.insert(&X_FORWARDED_FOR, client_ip.clone());
    }
    if !hop.trusted || !present.x_forwarded_proto {
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(hop.scheme));
    }
    let host = headers
        .get(HOST)
        .cloned()
        .or_else(|| authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    if !hop.trusted || !present.x_forwarded_host {
        match &host {
            Some(h) => {
                headers.insert(&X_FORWARDED_HOST, h.clone());
            }
            None if present.x_forwarded_host => {
                // A client-supplied value we could not confirm must not reach the backend.
                headers.remove(&X_FORWARDED_HOST);
            }
            None => {}
        }
    }
    if !hop.trusted {
        if present.forwarded {
            headers.remove(&FORWARDED);
        }
        if present.x_real_ip {
            headers.remove(&X_REAL_IP);
        }
    }
    if let Some(element) = forwarded_element(client_ip, host.as_ref(), hop.scheme) {
        headers.append(&FORWARDED, element);
    }
}

/// `for=…;host="…";proto=…` for this hop (IPv6 addresses quoted and bracketed).
fn forwarded_element(
    client_ip: &HeaderValue,
    host: Option<&HeaderValue>,
    scheme: &str,
) -> Option<HeaderValue> {
    // Built by appending bytes into a buffer of the exact length, which becomes the header
    // value without a copy: this runs on every request.
    let ip = client_ip.as_bytes();
    let v6 = ip.contains(&b':');
    let host = host
        .map(HeaderValue::as_bytes)
        .filter(|h| !h.contains(&b'"') && !h.contains(&b'\\'));
    let len = "for=".len()
        + ip.len()
        + if v6 { "\"[]\"".len() } else { 0 }
        + host.map_or(0, |h| ";host=\"\"".len() + h.len())
        + ";proto=".len()
        + scheme.len();
    let mut element = Vec::with_capacity(len);
    if v6 {
        element.extend_from_slice(b"for=\"[");
        element.extend_from_slice(ip);
        element.extend_from_slice(b"]\"");
    } else {
        element.extend_from_slice(b"for=");
        element.extend_from_slice(ip);
    }
    if let Some(host) = host {
        element.extend_from_slice(b";host=\"");
        element.extend_from_slice(host);
        element.push(b'"');
    }
    element.extend_from_slice(b";proto=");
    element.extend_from_slice(scheme.as_bytes());
    // Length equal to capacity: `Bytes` takes the buffer over as it is.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(element)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn strips_standard_and_connection_listed_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "gzip"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["set-cookie"]);
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn a_message_without_hop_by_hop_headers_is_left_as_it_was() {
        let pairs = [
            ("host", "example.test"),
            ("accept", "*/*"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("x-request-id", "abc"),
        ];
        let mut h = map(&pairs);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&pairs));
    }

    #[test]
    fn keeps_te_trailers_only() {
        let mut h = map(&[("te", "trailers, deflate;q=0.5")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.get(TE).expect("te"), "trailers");
    }

    #[test]
    fn upgrade_survives_only_when_proxying_an_upgrade() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(UPGRADE).expect("upgrade"), "websocket");
        assert_eq!(h.get(CONNECTION).expect("connection"), "upgrade");

        let mut h = map(&[("upgrade", "websocket")]);
        assert!(!is_upgrade_request(&h));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }

    fn hop(ip: &HeaderValue, trusted: bool) -> Hop<'_> {
        Hop {
            client_ip: ip,
            trusted,
            scheme: "http",
        }
    }

    #[test]
    fn a_trusted_proxys_chain_is_appended_to() {
        let ip = HeaderValue::from_static("10.1.2.3");
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.9;proto=https"),
            ("host", "example.test"),
        ]);
        set_forwarded(&mut h, hop(&ip, true), None);
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.9, 10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "example.test");
        let forwarded: Vec<_> = h.get_all(&FORWARDED).iter().collect();
        assert_eq!(
            forwarded,
            [
                "for=203.0.113.9;proto=https",
                "for=10.1.2.3;host=\"example.test\";proto=http"
            ]
        );
    }

    #[test]
    fn an_untrusted_clients_forwarding_headers_are_replaced() {
        let ip = HeaderValue::from_static("::1");
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.test"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("host", "example.test"),
        ]);
        set_forwarded(&mut h, hop(&ip, false), None);
        assert_eq!(h[&X_FORWARDED_FOR], "::1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "example.test");
        assert_eq!(
            h[&FORWARDED],
            "for=\"[::1]\";host=\"example.test\";proto=http"
        );
        assert!(!h.contains_key(&X_REAL_IP));
    }

    #[test]
    fn underscore_spellings_of_forwarding_headers_are_dropped_even_from_trusted_peers() {
        let ip = HeaderValue::from_static("10.0.0.7");
        for trusted in [false, true] {
            let mut h = map(&[
                ("x_forwarded_for", "6.6.6.6"),
                ("x-forwarded_proto", "https"),
                ("x_forwarded_host", "evil.test"),
                ("x_real_ip", "6.6.6.6"),
                ("x_request_id", "forged"),
                ("x_custom_header", "kept"),
                ("host", "example.test"),
            ]);
            set_forwarded(&mut h, hop(&ip, trusted), None);
            let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
            assert!(
                !names
                    .iter()
                    .any(|n| n.starts_with("x_forwarded") || *n == "x-forwarded_proto"),
                "{names:?}"
            );
            assert!(
                !names.contains(&"x_real_ip") && !names.contains(&"x_request_id"),
                "{names:?}"
            );
            assert_eq!(h["x_custom_header"], "kept");
            assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.7");
        }
    }

    #[test]
    fn connection_listing_host_is_reported_and_host_kept() {
        let mut h = map(&[("connection", "close, Host"), ("host", "example.test")]);
        assert!(strip_hop_by_hop(&mut h, false));
        assert_eq!(h[HOST], "example.test");
        let mut h = map(&[("connection", "x-a"), ("host", "example.test")]);
        assert!(!strip_hop_by_hop(&mut h, false));
    }

    #[test]
    fn without_a_host_no_forwarded_host_is_made_up_or_kept() {
        let ip = HeaderValue::from_static("10.0.0.7");
        let mut h = map(&[("x-forwarded-host", "evil.test")]);
        set_forwarded(&mut h, hop(&ip, false), None);
        assert!(!h.contains_key(&X_FORWARDED_HOST));
        assert_eq!(h[&FORWARDED], "for=10.0.0.7;proto=http");

        let mut h = HeaderMap::new();
        set_forwarded(&mut h, hop(&ip, false), None);
        assert!(!h.contains_key(&X_FORWARDED_HOST));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.7");
    }
}
