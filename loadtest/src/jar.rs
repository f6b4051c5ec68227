//! A minimal cookie jar for one throughput connection: remembers `name=value` pairs from
//! `Set-Cookie` and precomputes the `Cookie` header value, so the prebuilt request is rebuilt
//! only when a cookie changes. (The sequential and parallel modes use reqwest's cookie store.)

/// The cookies of one connection.
#[derive(Debug, Default, Clone)]
pub struct Jar {
    /// Stored cookies, in arrival order.
    pairs: Vec<(String, String)>,
    /// The `Cookie` header value for `pairs`, rebuilt only when they change.
    header: Option<String>,
}

impl Jar {
    /// Applies one `Set-Cookie` header value; `Max-Age=0` (or negative) deletes the cookie.
    /// Returns whether the `Cookie` header changed.
    pub fn store(&mut self, set_cookie: &[u8]) -> bool {
        let Ok(raw) = std::str::from_utf8(set_cookie) else {
            return false;
        };
        let Some((name, value, delete)) = parse_set_cookie(raw) else {
            return false;
        };
        let position = self.pairs.iter().position(|(n, _)| n == name);
        let changed = match (position, delete) {
            (Some(i), true) => {
                self.pairs.remove(i);
                true
            }
            (Some(i), false) if self.pairs[i].1 != value => {
                self.pairs[i].1 = value.to_owned();
                true
            }
            (None, false) => {
                self.pairs.push((name.to_owned(), value.to_owned()));
                true
            }
            _ => false,
        };
        if changed {
            self.rebuild();
        }
        changed
    }

    /// The `Cookie` header value to send, if any cookie is stored.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    fn rebuild(&mut self) {
        let joined = self
            .pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        // A value with CR or LF would split the request: such a cookie is not sent.
        self.header = if joined.is_empty() || joined.contains(['\r', '\n']) {
            None
        } else {
            Some(joined)
        };
    }
}

/// Splits `name=value; Attr; Max-Age=0` into the pair and whether it deletes the cookie.
fn parse_set_cookie(raw: &str) -> Option<(&str, &str, bool)> {
    let mut parts = raw.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let delete = parts.any(|attribute| {
        let Some((key, val)) = attribute.split_once('=') else {
            return false;
        };
        key.trim().eq_ignore_ascii_case("max-age")
            && val.trim().parse::<i64>().is_ok_and(|age| age <= 0)
    });
    Some((name, value.trim(), delete))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &'static str) -> &'static [u8] {
        s.as_bytes()
    }

    #[test]
    fn stores_and_sends_back_a_session_cookie() {
        let mut jar = Jar::default();
        assert!(jar.header().is_none());
        assert!(jar.store(hv("sid=abc123; Path=/; HttpOnly; SameSite=Strict")));
        assert_eq!(jar.header(), Some("sid=abc123"));
        assert!(
            !jar.store(hv("sid=abc123; Path=/")),
            "same value: no change"
        );
    }

    #[test]
    fn replaces_updates_and_keeps_others() {
        let mut jar = Jar::default();
        jar.store(hv("sid=1; Path=/"));
        jar.store(hv("theme=dark"));
        jar.store(hv("sid=2; Path=/"));
        assert_eq!(jar.header(), Some("sid=2; theme=dark"));
    }

    #[test]
    fn max_age_zero_deletes() {
        let mut jar = Jar::default();
        jar.store(hv("sid=1"));
        jar.store(hv("sid=; Max-Age=0; Path=/"));
        assert!(jar.header().is_none());
    }

    #[test]
    fn ignores_garbage() {
        let mut jar = Jar::default();
        jar.store(hv("no equals sign"));
        jar.store(hv("=value"));
        assert!(jar.header().is_none());
    }
}
