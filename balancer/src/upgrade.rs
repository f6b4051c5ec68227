//! Which protocol upgrades pass (`UPGRADE_PROTOCOLS`, default `websocket`).
//!
//! An upgrade hands the client a raw tunnel to a backend, past everything this proxy checks
//! per request (`INTERNAL_PATHS` among them). So only the protocols named in the allow-list
//! are offered to a backend; the rest of a client's `Upgrade` list is dropped, and a request
//! offering none of them is forwarded as an ordinary request, without `Upgrade` (a
//! hop-by-hop header). `Upgrade` is honoured only from HTTP/1.1 clients (RFC 9110 §7.8: a
//! server must ignore it in an HTTP/1.0 request) whose `Connection` lists `upgrade`. A
//! backend's 101 must switch to a protocol that was offered; any other 101 gets 502.
//!
//! Protocols are compared by name, case-insensitively, whatever their version
//! (`websocket` allows `WebSocket` and `websocket/13`).

use http::header::UPGRADE;
use http::{HeaderMap, HeaderValue, Version};

use crate::headers::is_upgrade_request;

/// The protocols clients may switch to through the balancer, lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeProtocols(Vec<String>);

impl Default for UpgradeProtocols {
    fn default() -> UpgradeProtocols {
        UpgradeProtocols(vec!["websocket".to_owned()])
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A comma-separated list of protocol names (tokens, without a version), or `none` for no
/// upgrades at all.
impl std::str::FromStr for UpgradeProtocols {
    type Err = String;

    fn from_str(s: &str) -> Result<UpgradeProtocols, String> {
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(UpgradeProtocols(Vec::new()));
        }
        s.split(',')
            .map(str::trim)
            .map(|p| {
                if !p.is_empty() && p.bytes().all(is_tchar) {
                    Ok(p.to_ascii_lowercase())
                } else {
                    Err(format!(
                        "`{p}` is not a protocol name (a token such as websocket, without a \
                         version); give a comma-separated list, or `none`"
                    ))
                }
            })
            .collect::<Result<_, _>>()
            .map(UpgradeProtocols)
    }
}

/// The protocol name of one `Upgrade` list entry (`websocket/13` -> `websocket`).
fn name(entry: &str) -> &str {
    entry.split('/').next().unwrap_or("").trim()
}

/// The entries of every `Upgrade` value.
fn entries(values: http::header::GetAll<'_, HeaderValue>) -> impl Iterator<Item = &str> {
    values
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

impl UpgradeProtocols {
    fn allows(&self, entry: &str) -> bool {
        let name = name(entry);
        self.0.iter().any(|p| p.eq_ignore_ascii_case(name))
    }

    /// The `Upgrade` value to offer a backend for a request of `version` with `headers`:
    /// the allowed entries of the client's list, in its order. `None` when the request is
    /// not an upgrade this proxy honours (then its `Upgrade` is dropped as hop-by-hop).
    pub fn offered(&self, version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
        if version != Version::HTTP_11 || !is_upgrade_request(headers) {
            return None;
        }
        let all = entries(headers.get_all(UPGRADE)).count();
        let allowed: Vec<&str> = entries(headers.get_all(UPGRADE))
            .filter(|e| self.allows(e))
            .collect();
        match (allowed.len(), headers.get_all(UPGRADE).iter().count()) {
            (0, _) => None,
            // The client's own value, when all of it is allowed.
            (n, 1) if n == all => headers.get(UPGRADE).cloned(),
            _ => HeaderValue::from_str(&allowed.join(", ")).ok(),
        }
    }

    /// True when a 101's `headers` switch to a protocol in `offered` (and to nothing else).
    pub fn switched_as_offered(offered: &HeaderValue, headers: &HeaderMap) -> bool {
        let Ok(offered) = offered.to_str() else {
            return false;
        };
        let mut switched = entries(headers.get_all(UPGRADE)).peekable();
        switched.peek().is_some()
            && switched.all(|s| {
                offered
                    .split(',')
                    .any(|o| name(o).eq_ignore_ascii_case(name(s)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_allowed_protocols_from_http_11_clients_are_offered() {
        let allow = UpgradeProtocols::default();
        let ws = headers(&[("connection", "Upgrade"), ("upgrade", "WebSocket")]);
        assert_eq!(
            allow.offered(Version::HTTP_11, &ws).expect("offered"),
            "WebSocket"
        );
        assert_eq!(allow.offered(Version::HTTP_10, &ws), None);
        let h2c = headers(&[
            ("connection", "upgrade, http2-settings"),
            ("upgrade", "h2c"),
        ]);
        assert_eq!(allow.offered(Version::HTTP_11, &h2c), None);
        let mixed = headers(&[("connection", "upgrade"), ("upgrade", "h2c, websocket/13")]);
        assert_eq!(
            allow.offered(Version::HTTP_11, &mixed).expect("offered"),
            "websocket/13"
        );
        let no_connection = headers(&[("upgrade", "websocket")]);
        assert_eq!(allow.offered(Version::HTTP_11, &no_connection), None);
        let none: UpgradeProtocols = "none".parse().expect("none");
        assert_eq!(none.offered(Version::HTTP_11, &ws), None);
    }

    #[test]
    fn a_101_must_switch_to_what_was_offered() {
        let offered = HeaderValue::from_static("websocket");
        let ok = headers(&[("upgrade", "WebSocket")]);
        assert!(UpgradeProtocols::switched_as_offered(&offered, &ok));
        let other = headers(&[("upgrade", "h2c")]);
        assert!(!UpgradeProtocols::switched_as_offered(&offered, &other));
        assert!(!UpgradeProtocols::switched_as_offered(
            &offered,
            &HeaderMap::new()
        ));
    }

    #[test]
    fn the_setting_takes_tokens_or_none() {
        let p: UpgradeProtocols = "websocket, My-Proto".parse().expect("valid");
        assert_eq!(p.0, ["websocket", "my-proto"]);
        assert!("websocket/13".parse::<UpgradeProtocols>().is_err());
        assert!("web socket".parse::<UpgradeProtocols>().is_err());
        assert!("".parse::<UpgradeProtocols>().is_err());
        assert_eq!(
            "NONE".parse::<UpgradeProtocols>(),
            Ok(UpgradeProtocols(Vec::new()))
        );
    }
}
