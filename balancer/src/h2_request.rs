//! What an HTTP/2 request needs before the framing checks ([`crate::framing`]) and its trip
//! to a backend as HTTP/1.1.
//!
//! - `:authority` is the request's Host (RFC 9113 §8.3.1): hyper puts it in the URI's
//!   authority and sends no `Host` header, so it becomes `Host` here, and the Host rules of
//!   RFC 9112 (present, once, well-formed) apply to it as to an HTTP/1.1 request. A request
//!   with both, naming different hosts, is malformed: 400 (the RFC's SHOULD; nginx does the
//!   same). One with neither fails the Host check like an HTTP/1.1 request without `Host`.
//! - Browsers split `Cookie` into one field per cookie for header compression; an HTTP/1.1
//!   backend must get them joined with `"; "` (RFC 9113 §8.2.3), or it may read only one.
//!
//! The connection-specific headers (`Connection`, `Upgrade`, `Transfer-Encoding`, ...) are
//! malformed in HTTP/2 and refused by the h2 library before a request gets here.

use http::header::{COOKIE, HOST};
use http::request::Parts;
use http::{HeaderValue, Version};

use crate::error::ProxyError;

/// Turns an HTTP/2 request head into what the HTTP/1.1 rules expect; other versions are
/// left alone.
pub fn normalise(parts: &mut Parts) -> Result<(), ProxyError> {
    if parts.version != Version::HTTP_2 {
        return Ok(());
    }
    if let Some(authority) = parts.uri.authority() {
        let mut hosts = parts.headers.get_all(HOST).iter();
        let differs = hosts.any(|h| {
            !h.as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
        });
        if differs {
            return Err(ProxyError::BadRequest(
                "400 Bad Request: Host differs from :authority\n",
            ));
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| ProxyError::BadRequest("400 Bad Request: bad :authority\n"))?;
        parts.headers.insert(HOST, host);
    }
    join_cookies(parts);
    Ok(())
}

/// Joins several `Cookie` fields into one, in order.
fn join_cookies(parts: &mut Parts) {
    let mut cookies = parts.headers.get_all(COOKIE).iter();
    if cookies.next().is_none() || cookies.next().is_none() {
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for value in parts.headers.get_all(COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    // Each part is a valid header value and "; " is too, so this only fails on a bug; the
    // separate fields then stay as they came.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        parts.headers.insert(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn h2(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::get(uri).version(Version::HTTP_2);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    #[test]
    fn authority_becomes_host() {
        let mut parts = h2("https://localhost:8443/session", &[]);
        normalise(&mut parts).expect("valid");
        assert_eq!(parts.headers[HOST], "localhost:8443");
    }

    #[test]
    fn a_host_naming_another_authority_is_refused() {
        let mut parts = h2("https://localhost:8443/", &[("host", "evil.example")]);
        assert!(matches!(
            normalise(&mut parts),
            Err(ProxyError::BadRequest(_))
        ));
        let mut same = h2("https://LocalHost:8443/", &[("host", "localhost:8443")]);
        normalise(&mut same).expect("the same host in another case");
    }

    #[test]
    fn split_cookies_are_joined_in_order() {
        let mut parts = h2("https://a/", &[("cookie", "a=1"), ("cookie", "b=2")]);
        normalise(&mut parts).expect("valid");
        let cookies: Vec<_> = parts.headers.get_all(COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);
    }

    #[test]
    fn http1_requests_are_left_alone() {
        let mut parts = Request::get("/")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(())
            .expect("request")
            .into_parts()
            .0;
        normalise(&mut parts).expect("untouched");
        assert_eq!(parts.headers.get_all(COOKIE).iter().count(), 2);
        assert!(parts.headers.get(HOST).is_none());
    }
}
