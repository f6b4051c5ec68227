//! `GET /`: the HTML page a person sees at the balancer's port, or, for a client that does
//! not ask for HTML (curl), the original demo's `Hello, World!!`.
//!
//! Each page load counts a visit and shows which replica served it, the counter, and the last
//! replicas that served this session, each with its own colour so hops stand out. The HTML
//! and CSS are in `app/templates/page.html`; this file only fills it in.

use askama::Template;
use axum::{
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
};

use crate::{
    error::AppError,
    replay::RequestKey,
    session::{self, Visits},
    state::AppState,
    writer::SessionWriter,
};

/// A stable hue per node name, so the same replica always has the same colour.
fn hue(node: &str) -> u32 {
    // FNV-1a: tiny, stable across runs and platforms (std's hasher is randomly seeded).
    let hash = node.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % 360
}

/// One entry of the page's list of recent visits.
struct Visit<'a> {
    /// The counter value this visit produced.
    number: u64,
    /// The replica that served it.
    node: &'a str,
    /// Its colour.
    hue: u32,
}

/// The page (`app/templates/page.html`); askama escapes every value.
#[derive(Template)]
#[template(path = "page.html")]
struct Page<'a> {
    /// The replica serving this request.
    node: &'a str,
    /// Its colour.
    node_hue: u32,
    /// The session's counter.
    views: u64,
    /// How many replicas served the visits listed.
    distinct: usize,
    /// How many visits are listed.
    shown: usize,
    /// The visits, newest first.
    history: Vec<Visit<'a>>,
    /// The session id's short form, or `-` before there is one.
    session: &'a str,
    /// Where a browser reaches the balancer's dashboard (`DASHBOARD_URL`), if known.
    dashboard: Option<&'a str>,
}

/// Renders the page for `visits` as served by `node`, with a link to the balancer's
/// dashboard when its URL is known.
pub fn render(
    node: &str,
    visits: &Visits,
    session_id: Option<&str>,
    dashboard: Option<&str>,
) -> Result<String, askama::Error> {
    let newest = visits.history.len().saturating_sub(1);
    let history = visits
        .history
        .iter()
        .enumerate()
        .rev()
        .map(|(i, name)| Visit {
            number: visits.views.saturating_sub((newest - i) as u64),
            node: name,
            hue: hue(name),
        })
        .collect();
    let distinct = {
        let mut names: Vec<&str> = visits.history.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    };
    Page {
        node,
        node_hue: hue(node),
        views: visits.views,
        distinct,
        shown: visits.history.len(),
        history,
        session: session_id.unwrap_or("-"),
        dashboard,
    }
    .render()
}

/// What `GET /` answers a client that does not ask for HTML, byte for byte the original
/// Express demo's.
pub const HELLO: &str = "Hello, World!!";

/// True when the `Accept` headers name `text/html` (or XHTML) with a non-zero quality: a
/// browser. curl's `*/*`, no `Accept` at all, or `text/html;q=0` are not.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let html = media.eq_ignore_ascii_case("text/html")
                || media.eq_ignore_ascii_case("application/xhtml+xml");
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, q)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            });
            html && !refused
        })
}

/// Middleware on `GET /`, outside the session layer: a client that does not ask for HTML
/// gets `Hello, World!!` as `text/plain`, and no session is read, made or locked for it.
pub async fn hello_unless_html(req: Request, next: Next) -> Response {
    if wants_html(req.headers()) {
        return next.run(req).await;
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], HELLO).into_response()
}

/// `GET /` from a browser: counts a visit and shows the page.
pub async fn index(
    State(state): State<AppState>,
    request: RequestKey,
    writer: SessionWriter,
) -> Result<impl IntoResponse, AppError> {
    let node = state.node.clone();
    let visits = writer
        .update(request, move |visits| session::count(visits, &node, 1))
        .await?;
    let id = writer.short_id();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Html(render(
            &state.node,
            &visits,
            id.as_deref(),
            state.dashboard_url.as_deref(),
        )?),
    ))
}

/// `POST /logout`: ends the session and goes back to the page, which starts a new one.
pub async fn logout(writer: SessionWriter) -> Result<Redirect, AppError> {
    writer.delete().await?;
    Ok(Redirect::to("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_escapes_node_names_and_lists_history_newest_first() {
        let visits = Visits {
            views: 3,
            history: vec!["a".into(), "<b>".into(), "c".into()],
        };
        let page = render("<x>", &visits, Some("abc"), None).expect("renders");
        // Askama escapes `<` and `>` as numeric references.
        assert!(page.contains("&#60;x&#62;"));
        assert!(!page.contains("<x>"));
        let c = page.find(">c<").expect("c listed");
        let a = page.find(">a<").expect("a listed");
        assert!(c < a, "newest first");
        assert!(page.contains("#3"));
        assert!(page.contains("#1"));
        assert!(
            !page.contains("id=\"dashboard\""),
            "no link without its URL"
        );
    }

    #[test]
    fn page_links_to_the_dashboard_when_its_url_is_set() {
        let visits = Visits {
            views: 1,
            history: vec!["a".into()],
        };
        let page =
            render("a", &visits, None, Some("http://127.0.0.1:8081/?a=1&b=2")).expect("renders");
        assert!(
            page.contains(r#"<a id="dashboard" href="http://127.0.0.1:8081/?a=1&#38;b=2">"#),
            "{page}"
        );
    }

    #[test]
    fn only_an_accept_that_names_html_gets_the_page() {
        let accept = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::ACCEPT, v.parse().expect("value"));
            }
            wants_html(&h)
        };
        assert!(accept(&[
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ]));
        assert!(accept(&["application/json", "TEXT/HTML"]));
        assert!(accept(&["application/xhtml+xml"]));
        assert!(!accept(&[]));
        assert!(!accept(&["*/*"]));
        assert!(!accept(&["text/plain"]));
        assert!(!accept(&["text/html;q=0", "*/*"]));
        assert!(!accept(&["text/htmlx"]));
    }

    #[test]
    fn hue_is_stable() {
        assert_eq!(hue("app-1"), hue("app-1"));
        assert!(hue("app-1") < 360);
    }
}
