//! The base URLs under test. Several comma-separated URLs are used round robin from the client
//! side, so one session's requests can be spread over replicas without a balancer in front.

use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use reqwest::Url;

use crate::error::RunError;

/// One base URL, with the pieces the raw HTTP/1 path of the throughput mode needs precomputed.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, without a trailing slash, so paths can be appended.
    base: String,
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header value for requests to this target.
    host_header: HeaderValue,
}

impl Target {
    /// Parses one `http://host[:port][/prefix]` URL.
    pub fn parse(raw: &str) -> Result<Target, String> {
        let url = Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "`{raw}`: only http:// targets are supported (this build has no TLS)"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("`{raw}` has no host"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("`{raw}` has no port"))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{raw}`: a target is a base URL, without ?query or #fragment"
            ));
        }
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let host_header =
            HeaderValue::from_str(&authority).map_err(|e| format!("`{raw}`: bad host: {e}"))?;
        Ok(Target {
            base: url.as_str().trim_end_matches('/').to_owned(),
            addr: format!("{host}:{port}"),
            host_header,
        })
    }

    /// The full URL of `path` (which starts with `/`) on this target.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `host:port` for a TCP connect.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// Any path prefix of the base URL (empty for `http://host:port`), for origin-form request targets.
    pub fn path_prefix(&self) -> &str {
        // `base` is "http://authority[/prefix]"; skip the scheme and the authority.
        let after_scheme = &self.base["http://".len().min(self.base.len())..];
        match after_scheme.find('/') {
            Some(i) => &after_scheme[i..],
            None => "",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// The non-empty list of targets, used round robin.
#[derive(Debug, Clone)]
pub struct Targets(Vec<Target>);

impl Targets {
    /// Parses `URL[,URL…]`, as given to `--target`.
    pub fn parse(raw: &str) -> Result<Targets, String> {
        let targets = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Target::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() {
            return Err("no target URL given".to_owned());
        }
        Ok(Targets(targets))
    }

    /// The target for the `n`-th request of a rotation.
    pub fn pick(&self, n: usize) -> &Target {
        &self.0[n % self.0.len()]
    }

    /// All targets.
    #[cfg(test)]
    pub fn all(&self) -> &[Target] {
        &self.0
    }

    /// The base URLs, for reports.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|t| t.base.clone()).collect()
    }

    /// Fails fast with a message naming the target when one cannot even be connected to, so an
    /// unreachable cluster is "could not run" (exit 2), not a run full of errors (exit 1).
    pub async fn check_reachable(&self, timeout: Duration) -> Result<(), RunError> {
        for target in &self.0 {
            let connect = tokio::net::TcpStream::connect(target.addr());
            match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(_stream)) => {}
                Ok(Err(error)) => {
                    return Err(RunError::Unreachable {
                        target: target.base.clone(),
                        reason: error.to_string(),
                    });
                }
                Err(_elapsed) => {
                    return Err(RunError::Unreachable {
                        target: target.base.clone(),
                        reason: format!(
                            "no TCP connection within {}",
                            humantime::format_duration(timeout)
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_url_with_default_port() {
        let targets = Targets::parse("http://localhost").expect("valid");
        let t = targets.pick(0);
        assert_eq!(t.addr(), "localhost:80");
        assert_eq!(t.host_header(), "localhost");
        assert_eq!(t.url("/session"), "http://localhost/session");
        assert_eq!(t.path_prefix(), "");
    }

    #[test]
    fn parses_a_comma_separated_list_and_rotates() {
        let targets = Targets::parse("http://127.0.0.1:1/, http://127.0.0.1:2,http://127.0.0.1:3")
            .expect("valid");
        assert_eq!(targets.all().len(), 3);
        assert_eq!(targets.pick(0).addr(), "127.0.0.1:1");
        assert_eq!(targets.pick(4).addr(), "127.0.0.1:2");
        assert_eq!(targets.pick(0).url("/x"), "http://127.0.0.1:1/x");
        assert_eq!(targets.pick(1).host_header(), "127.0.0.1:2");
    }

    #[test]
    fn keeps_a_path_prefix() {
        let targets = Targets::parse("http://h:8/app/").expect("valid");
        assert_eq!(targets.pick(0).url("/session"), "http://h:8/app/session");
        assert_eq!(targets.pick(0).path_prefix(), "/app");
    }

    #[test]
    fn rejects_https_garbage_and_empty() {
        assert!(
            Targets::parse("https://h")
                .expect_err("https")
                .contains("http://")
        );
        assert!(Targets::parse("not a url").is_err());
        assert!(Targets::parse(" , ").is_err());
        assert!(Targets::parse("http://h/?a=1").is_err());
    }

    #[tokio::test]
    async fn unreachable_target_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let targets = Targets::parse(&format!("http://127.0.0.1:{port}")).expect("valid");
        let error = targets
            .check_reachable(Duration::from_secs(2))
            .await
            .expect_err("nothing listens there");
        assert!(
            error
                .to_string()
                .contains(&format!("http://127.0.0.1:{port}"))
        );
    }
}
