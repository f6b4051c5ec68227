//! The counter endpoints of the app contract and how to read a counter value out of each answer.

use clap::ValueEnum;
use http::Method;
use serde::{Deserialize, Serialize};

/// The response header naming the replica that answered.
pub const SERVED_BY: &str = "x-served-by";

/// Where the checker increments the session counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /api/session/views`, JSON `{"views":N,"node":"…",…}`.
    Json,
    /// `GET /session`, text `Session View Cnt  N`, as the original Express app answers.
    Text,
}

/// The read-only session endpoint: JSON without incrementing.
pub const READ_PATH: &str = "/api/session";

/// A counter value read from a response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The session's view count after this request.
    pub views: u64,
    /// The replica named in the body (JSON only), the second witness beside `X-Served-By`.
    pub node: Option<String>,
    /// The replicas that counted the session's last visits, oldest first (JSON only).
    pub history: Option<Vec<String>>,
    /// The abbreviated session id the app reports (JSON only), for the parallel report.
    pub session: Option<String>,
}

#[derive(Deserialize)]
struct JsonBody {
    views: u64,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    history: Option<Vec<String>>,
    #[serde(default)]
    session: Option<String>,
}

impl Endpoint {
    /// The method of the incrementing request.
    pub fn method(self) -> Method {
        match self {
            Endpoint::Json => Method::POST,
            Endpoint::Text => Method::GET,
        }
    }

    /// The path of the incrementing request.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Json => "/api/session/views",
            Endpoint::Text => "/session",
        }
    }

    /// Reads the counter out of a 2xx body from this endpoint.
    pub(crate) fn parse(self, body: &str) -> Result<Counter, String> {
        match self {
            Endpoint::Json => parse_json(body),
            Endpoint::Text => parse_text(body),
        }
    }
}

/// Parses the JSON shape shared by `/api/session` and `/api/session/views`.
pub fn parse_json(body: &str) -> Result<Counter, String> {
    let parsed: JsonBody =
        serde_json::from_str(body).map_err(|e| format!("not the session JSON: {e}"))?;
    Ok(Counter {
        views: parsed.views,
        node: parsed.node,
        history: parsed.history,
        session: parsed.session,
    })
}

/// Parses `Session View Cnt  N` (any whitespace between the label and the number).
pub fn parse_text(body: &str) -> Result<Counter, String> {
    const LABEL: &str = "Session View Cnt";
    let rest = body
        .trim()
        .strip_prefix(LABEL)
        .ok_or_else(|| format!("expected `{LABEL}  N`, got {:?}", shorten(body)))?;
    let views = rest
        .trim()
        .parse()
        .map_err(|_| format!("expected `{LABEL}  N`, got {:?}", shorten(body)))?;
    Ok(Counter {
        views,
        node: None,
        history: None,
        session: None,
    })
}

fn shorten(body: &str) -> &str {
    match body.char_indices().nth(60) {
        Some((i, _)) => &body[..i],
        None => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_seed_text() {
        assert_eq!(
            parse_text("Session View Cnt  7"),
            Ok(Counter {
                views: 7,
                node: None,
                history: None,
                session: None
            })
        );
        assert_eq!(parse_text("Session View Cnt 12\n").map(|c| c.views), Ok(12));
    }

    #[test]
    fn rejects_other_text() {
        assert!(parse_text("Hello").is_err());
        assert!(parse_text("Session View Cnt  many").is_err());
    }

    #[test]
    fn reads_the_json() {
        let body = r#"{"views":3,"node":"app-2","history":["app-1","app-2"],"session":"ab12"}"#;
        assert_eq!(
            parse_json(body),
            Ok(Counter {
                views: 3,
                node: Some("app-2".to_owned()),
                history: Some(vec!["app-1".to_owned(), "app-2".to_owned()]),
                session: Some("ab12".to_owned())
            })
        );
        assert!(parse_json("{}").is_err());
        assert!(parse_json("<html>").is_err());
    }

    #[test]
    fn endpoints_use_the_contract_routes() {
        assert_eq!(Endpoint::Json.method(), Method::POST);
        assert_eq!(Endpoint::Json.path(), "/api/session/views");
        assert_eq!(Endpoint::Text.method(), Method::GET);
        assert_eq!(Endpoint::Text.path(), "/session");
        assert_eq!(
            Endpoint::Text.parse("Session View Cnt  1").map(|c| c.views),
            Ok(1)
        );
    }
}
