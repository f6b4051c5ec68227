//! `INTERNAL_PATHS`: the replicas' internals, answered 404 on the public port, and the
//! canonical form of a request path they are checked against.
//!
//! The check must not depend on how a backend reads a path. A request for `//metrics`,
//! `/./metrics`, `/foo/../metrics`, `/%2fmetrics`, `/%2e%2e/metrics` or `/metrics/` names
//! `/metrics` to a backend that merges slashes, resolves dot-segments (RFC 3986 §5.2.4),
//! decodes `%2F` before routing, or ignores a trailing slash, so each is refused here. The
//! canonical form is: percent-decoded (again while that changes it, up to three times, so a
//! double-encoded `%252e` counts too), backslashes read as slashes (as some servers do),
//! runs of slashes merged, `.` and `..` segments resolved (never above the root), and a
//! trailing slash ignored.
//!
//! The path forwarded is the one the client sent, untouched, as nginx forwards it with
//! `proxy_pass http://app;` (a `proxy_pass` without a URI part) after matching its locations
//! on the normalised path. Rewriting it would change what applications that give `//` or
//! `%2F` a meaning receive, and any backend whose own normalisation is a subset of the above
//! sees a path the check already saw.

use std::borrow::Cow;

/// Paths the public port answers 404 itself: the replicas' internals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InternalPaths(Vec<String>);

impl InternalPaths {
    /// True when `path` (without its query) is one of them, in any spelling that
    /// [`canonical`] maps onto it.
    pub fn contains(&self, path: &str) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let canonical = canonical(path);
        let canonical = match canonical.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => &canonical,
        };
        self.0.iter().any(|p| p == canonical)
    }

    /// The default list: `/metrics`, `/readyz`, `/healthz`.
    pub fn defaults() -> InternalPaths {
        InternalPaths(vec![
            "/metrics".to_owned(),
            "/readyz".to_owned(),
            "/healthz".to_owned(),
        ])
    }
}

/// A comma-separated list of absolute paths, or `none`. Each is kept in canonical form, so
/// `/metrics/` in the list means `/metrics`.
impl std::str::FromStr for InternalPaths {
    type Err = String;

    fn from_str(s: &str) -> Result<InternalPaths, String> {
        if s.trim().is_empty() || s.trim().eq_ignore_ascii_case("none") {
            return Ok(InternalPaths::default());
        }
        s.split(',')
            .map(str::trim)
            .map(|p| {
                if p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_whitespace() || b == b'?') {
                    let c = canonical(p);
                    Ok(match c.strip_suffix('/') {
                        Some(trimmed) if !trimmed.is_empty() => trimmed.to_owned(),
                        _ => c.into_owned(),
                    })
                } else {
                    Err(format!(
                        "`{p}` must be an absolute path without a query (e.g. /metrics), or `none`"
                    ))
                }
            })
            .collect::<Result<_, _>>()
            .map(InternalPaths)
    }
}

/// True when `path` may differ from its canonical form: it holds a `%`, a backslash, or a
/// slash followed by a slash or a dot. Most paths hold none, and are used as they are.
fn needs_canonicalising(path: &[u8]) -> bool {
    path.iter().any(|&b| b == b'%' || b == b'\\')
        || path
            .windows(2)
            .any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
}

/// The canonical form of `path` (see the module docs); borrowed when it already is.
pub fn canonical(path: &str) -> Cow<'_, str> {
    if !needs_canonicalising(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    let mut bytes = path.as_bytes().to_vec();
    for _ in 0..3 {
        if !bytes.contains(&b'%') {
            break;
        }
        let decoded: Vec<u8> = percent_encoding::percent_decode(&bytes).collect();
        if decoded == bytes {
            break;
        }
        bytes = decoded;
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in bytes.split(|&b| b == b'/' || b == b'\\') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(bytes.len() + 1);
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_that_names_an_internal_path_is_caught() {
        let paths = InternalPaths::defaults();
        for path in [
            "/metrics",
            "/metrics/",
            "//metrics",
            "///metrics",
            "/./metrics",
            "/foo/../metrics",
            "/foo/bar/../../metrics",
            "/../metrics",
            "/%2fmetrics",
            "/%2Fmetrics",
            "/%6Detrics",
            "/%2e/metrics",
            "/foo/%2e%2e/metrics",
            "/foo%2f..%2fmetrics",
            "/%252e%252e/metrics",
            "/foo/..%5cmetrics",
            "/\\metrics",
            "/health%7A",
            "/readyz/.",
        ] {
            assert!(paths.contains(path), "{path}");
        }
        for path in [
            "/",
            "/metricsx",
            "/api/metrics",
            "/metrics/x",
            "/metrics/x/..x",
            "/.well-known/metrics",
            "*",
        ] {
            assert!(!paths.contains(path), "{path}");
        }
    }

    #[test]
    fn canonical_paths_are_borrowed_and_others_resolved() {
        assert!(matches!(canonical("/session"), Cow::Borrowed("/session")));
        assert!(matches!(canonical("/a/b.c"), Cow::Borrowed(_)));
        assert_eq!(canonical("/a//b/./c/../d"), "/a/b/d");
        assert_eq!(canonical("/.."), "/");
        assert_eq!(canonical("/a/%2e%2e"), "/");
        assert_eq!(canonical("/caf%C3%A9"), "/café");
    }

    #[test]
    fn the_list_is_parsed_canonical_or_refused() {
        let p: InternalPaths = "/metrics/, /a//b".parse().expect("valid");
        assert_eq!(p.0, ["/metrics", "/a/b"]);
        assert_eq!(
            "none".parse::<InternalPaths>(),
            Ok(InternalPaths::default())
        );
        assert!("metrics".parse::<InternalPaths>().is_err());
        assert!("/a?b".parse::<InternalPaths>().is_err());
    }
}
