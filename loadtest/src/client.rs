//! The reqwest side of the checker: one cookie jar per virtual user (as goose does; a shared
//! jar would merge users into one session) and the classification of one increment's answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::endpoint::{Counter, Endpoint, SERVED_BY};
use crate::error::RunError;

/// A client with its own cookie jar. `no_proxy` because the targets are local: a proxy from
/// the environment would silently put another hop in the path under test.
pub fn build(timeout: Duration) -> Result<reqwest::Client, RunError> {
    builder(timeout)
        .cookie_store(true)
        .build()
        .map_err(|e| RunError::Client(e.to_string()))
}

/// One user as a browser is: two clients, so at least two connections, sharing one cookie jar.
/// A user that alternates between them carries its session in the cookie alone: a server that
/// keyed its count on the connection (and set a cookie it never reads) would count each
/// connection from 1 and show resets, where one keep-alive connection would count 1, 2, 3.
pub fn build_user(timeout: Duration) -> Result<[reqwest::Client; 2], RunError> {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = || {
        builder(timeout)
            .cookie_provider(Arc::clone(&jar))
            .build()
            .map_err(|e| RunError::Client(e.to_string()))
    };
    Ok([client()?, client()?])
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .tcp_nodelay(true)
}

/// What one request achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx with a readable counter.
    Counted(Counter),
    /// 2xx but the counter could not be read: applied, value unknown.
    AckedUnreadable(String),
    /// 4xx: the server refused, nothing was applied.
    Refused(String),
    /// Transport error, timeout, or 5xx: may or may not have been applied.
    Unknown(String),
}

/// One request's outcome, the replica that answered and how long it took.
#[derive(Debug, Clone)]
pub struct Answer {
    /// What happened.
    pub outcome: Outcome,
    /// `X-Served-By`: the replica that answered. Never taken from the body, which is the
    /// second witness it is compared with ([`crate::evidence`]).
    pub node: Option<String>,
    /// The answer set a cookie: the server keeps a session for this client.
    pub set_cookie: bool,
    /// Time from send to the end of the body.
    pub latency: Duration,
}

/// Sends one request to `url` and reads the counter out of the answer.
pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    parse: impl Fn(&str) -> Result<Counter, String>,
) -> Answer {
    let started = Instant::now();
    let response = match client.request(method, url).send().await {
        Ok(response) => response,
        Err(error) => {
            return Answer {
                outcome: Outcome::Unknown(describe(&error)),
                node: None,
                set_cookie: false,
                latency: started.elapsed(),
            };
        }
    };
    let status = response.status();
    let node = response
        .headers()
        .get(SERVED_BY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let set_cookie = response.headers().contains_key(http::header::SET_COOKIE);
    let body = response.text().await;
    let latency = started.elapsed();
    let outcome = match body {
        Err(error) if status.is_success() => {
            Outcome::AckedUnreadable(format!("body lost: {}", describe(&error)))
        }
        Err(error) => Outcome::Unknown(format!("HTTP {status}, body lost: {}", describe(&error))),
        Ok(text) if status.is_success() => match parse(&text) {
            Ok(counter) => Outcome::Counted(counter),
            Err(error) => Outcome::AckedUnreadable(error),
        },
        Ok(_) if status.is_client_error() => Outcome::Refused(format!("HTTP {status}")),
        Ok(_) => Outcome::Unknown(format!("HTTP {status}")),
    };
    Answer {
        outcome,
        node,
        set_cookie,
        latency,
    }
}

/// Sends one increment to the endpoint on `url`.
pub async fn increment(client: &reqwest::Client, endpoint: Endpoint, url: &str) -> Answer {
    send(client, endpoint.method(), url, |body| endpoint.parse(body)).await
}

/// A short, stable description of a reqwest error (the kind first, so examples group well).
pub fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect error"
    } else if error.is_body() || error.is_decode() {
        "body error"
    } else {
        "request error"
    };
    let mut message = kind.to_owned();
    let mut source = std::error::Error::source(error);
    // The innermost cause says the most (e.g. "Connection refused").
    while let Some(cause) = source {
        if cause.source().is_none() {
            message.push_str(": ");
            message.push_str(&cause.to_string());
        }
        source = cause.source();
    }
    message
}
