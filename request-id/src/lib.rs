//! The `X-Request-Id` header as the balancer and the app both understand it.
//!
//! The app applies a request id at most once per session, and the balancer replays a `GET`
//! whose replica died mid-request with the same id. That only works if both agree on what
//! a valid id is: an id the app refused would be counted again on replay. So the rule
//! lives here, in one place, and both crates call [`parse`]:
//!
//! - exactly one `X-Request-Id` header (two are ambiguous: which one would a replay carry?);
//! - 1 to [`MAX_LEN`] bytes;
//! - visible ASCII only (`!` to `~`): no spaces, no control bytes, no UTF-8, so the value
//!   reads the same in every log, in Redis and in every HTTP library.
//!
//! The balancer replaces an invalid id with one from [`generate`]; the app answers a
//! request that reaches it with an invalid id `400 Bad Request`.

use std::sync::{
    LazyLock,
    atomic::{AtomicU64, Ordering},
};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header naming a request. A replay of the request carries the same value.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id accepted, in bytes.
pub const MAX_LEN: usize = 128;

/// Why a request's `X-Request-Id` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The header appears more than once.
    Repeated,
    /// The value is empty.
    Empty,
    /// The value is longer than [`MAX_LEN`] bytes.
    TooLong,
    /// The value holds a byte outside visible ASCII (a space, a control byte, UTF-8).
    NotVisibleAscii,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Invalid::Repeated => "X-Request-Id must appear at most once",
            Invalid::Empty => "X-Request-Id must not be empty",
            Invalid::TooLong => "X-Request-Id must be at most 128 bytes",
            Invalid::NotVisibleAscii => {
                "X-Request-Id must be visible ASCII (no spaces, control bytes or UTF-8)"
            }
        })
    }
}

impl std::error::Error for Invalid {}

/// The request's id: `Ok(None)` without the header, `Ok(Some(id))` for a valid one.
pub fn parse(headers: &HeaderMap) -> Result<Option<&str>, Invalid> {
    let mut values = headers.get_all(&HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Invalid::Repeated);
    }
    validate(value.as_bytes()).map(Some)
}

/// Checks one header value against the rule.
pub fn validate(bytes: &[u8]) -> Result<&str, Invalid> {
    if bytes.is_empty() {
        return Err(Invalid::Empty);
    }
    if bytes.len() > MAX_LEN {
        return Err(Invalid::TooLong);
    }
    if !bytes.iter().all(|b| (b'!'..=b'~').contains(b)) {
        return Err(Invalid::NotVisibleAscii);
    }
    // Visible ASCII is always UTF-8.
    std::str::from_utf8(bytes).map_err(|_| Invalid::NotVisibleAscii)
}

/// A fresh id: random per process, then a counter, so ids never repeat within a process
/// and practically never across processes. 32 hex digits, valid under [`parse`].
pub fn generate() -> HeaderValue {
    static PREFIX: LazyLock<u64> = LazyLock::new(rand::random);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Hex digits written straight into a buffer: this runs on every proxied GET.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    for (i, word) in [*PREFIX, n].into_iter().enumerate() {
        for (j, digit) in id[i * 16..(i + 1) * 16].iter_mut().enumerate() {
            *digit = HEX[((word >> (60 - 4 * j)) & 0xf) as usize];
        }
    }
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0"))
}

/// Makes the request carry exactly one valid id: keeps a valid one, replaces a missing
/// (when `required`) or invalid one with [`generate`]. Returns whether it replaced one.
pub fn ensure(headers: &mut HeaderMap, required: bool) -> bool {
    match parse(headers) {
        Ok(Some(_)) => false,
        Ok(None) if !required => false,
        // `insert` replaces every value an invalid id had (repeated ones too).
        Ok(None) | Err(_) => {
            headers.insert(HEADER, generate());
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(HEADER, HeaderValue::from_bytes(v).expect("header value"));
        }
        map
    }

    #[test]
    fn accepts_one_visible_ascii_value_up_to_128_bytes() {
        assert_eq!(parse(&HeaderMap::new()), Ok(None));
        assert_eq!(parse(&headers(&[b"r1"])), Ok(Some("r1")));
        let longest = "a".repeat(MAX_LEN);
        assert_eq!(
            parse(&headers(&[longest.as_bytes()])),
            Ok(Some(longest.as_str()))
        );
        assert_eq!(parse(&headers(&[b"9f1c-4a!~{}"])), Ok(Some("9f1c-4a!~{}")));
    }

    #[test]
    fn refuses_what_the_app_could_not_apply_once() {
        assert_eq!(parse(&headers(&[b""])), Err(Invalid::Empty));
        let long = "a".repeat(MAX_LEN + 1);
        assert_eq!(parse(&headers(&[long.as_bytes()])), Err(Invalid::TooLong));
        assert_eq!(parse(&headers(&[b"a b"])), Err(Invalid::NotVisibleAscii));
        assert_eq!(parse(&headers(&[b"a\tb"])), Err(Invalid::NotVisibleAscii));
        assert_eq!(
            parse(&headers(&["Zürich".as_bytes()])),
            Err(Invalid::NotVisibleAscii)
        );
        assert_eq!(parse(&headers(&[b"r1", b"r1"])), Err(Invalid::Repeated));
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(validate(a.as_bytes()).is_ok());
        assert_eq!(a.len(), 32);
        // Same process prefix, then a counter that only goes up.
        let (a, b) = (a.to_str().expect("ascii"), b.to_str().expect("ascii"));
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(a[..16], b[..16]);
        let counter = |id: &str| u64::from_str_radix(&id[16..], 16).expect("hex");
        assert!(counter(b) > counter(a));
    }

    #[test]
    fn ensure_keeps_valid_ids_and_replaces_the_rest() {
        let mut map = headers(&[b"keep-me"]);
        assert!(!ensure(&mut map, true));
        assert_eq!(map[HEADER], "keep-me");

        let mut map = HeaderMap::new();
        assert!(!ensure(&mut map, false));
        assert!(map.get(HEADER).is_none());
        assert!(ensure(&mut map, true));
        assert!(parse(&map).expect("valid").is_some());

        for bad in [&[b"" as &[u8]][..], &[b"a b"], &[b"x", b"y"]] {
            let mut map = headers(bad);
            assert!(ensure(&mut map, false), "{bad:?}");
            assert_eq!(map.get_all(HEADER).iter().count(), 1);
            assert!(parse(&map).expect("valid").is_some());
        }
    }
}
