//! `GET /`: the HTML page a person sees at the balancer's port, or, for a client that does
//! not ask for HTML (curl), the original demo's `Hello, World!!`.
//!
//! Each page load counts a visit and shows which replica served it, the counter, and the last
//! replicas that served this session, each with its own colour so hops stand out. No
//! build step and no script: two forms, a little CSS.

use std::fmt::Write as _;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
};
use html_escape::encode_text as esc;

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

fn chip(node: &str) -> String {
    format!(
        r#"<span class="chip" style="--h:{}">{}</span>"#,
        hue(node),
        esc(node)
    )
}

/// Renders the page for `visits` as served by `node`, with a link to the balancer's
/// dashboard when its URL is known.
pub fn render(
    node: &str,
    visits: &Visits,
    session_id: Option<&str>,
    dashboard: Option<&str>,
) -> String {
    let dashboard = dashboard
        .map(|url| {
            format!(
                r#"<p class="muted"><a id="dashboard" href="{}">Watch the cluster: the balancer's dashboard</a></p>"#,
                html_escape::encode_double_quoted_attribute(url)
            )
        })
        .unwrap_or_default();
    let mut history = String::new();
    for (i, name) in visits.history.iter().enumerate().rev() {
        let views = visits
            .views
            .saturating_sub((visits.history.len() - 1 - i) as u64);
        let _ = write!(
            history,
            "<li><span class=\"n\">#{views}</span>{}</li>",
            chip(name)
        );
    }
    let distinct = {
        let mut names: Vec<&str> = visits.history.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>session-cluster · {node_text}</title>
<style>
  :root {{ color-scheme: light dark; --bg:#f5f6f8; --card:#fff; --fg:#1d2330; --muted:#667085; --line:#e4e7ec; }}
  @media (prefers-color-scheme: dark) {{ :root {{ --bg:#0f1218; --card:#171b23; --fg:#e6e9ef; --muted:#98a2b3; --line:#2a303b; }} }}
  * {{ box-sizing: border-box; }}
  body {{ margin:0; min-height:100vh; display:grid; place-items:center; background:var(--bg); color:var(--fg);
         font:16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }}
  main {{ width:min(560px, 92vw); background:var(--card); border:1px solid var(--line); border-radius:16px;
          padding:28px 32px; box-shadow:0 8px 30px rgba(0,0,0,.06); }}
  h1 {{ font-size:15px; font-weight:600; letter-spacing:.04em; text-transform:uppercase; color:var(--muted); margin:0 0 18px; }}
  .served {{ display:flex; align-items:center; gap:10px; flex-wrap:wrap; }}
  .count {{ font-size:72px; font-weight:700; line-height:1; margin:22px 0 4px; font-variant-numeric:tabular-nums; }}
  .muted {{ color:var(--muted); font-size:14px; }}
  .chip {{ display:inline-block; padding:2px 10px; border-radius:999px; font:600 13px/1.6 ui-monospace, SFMono-Regular, Menlo, monospace;
           background:hsl(var(--h) 70% 92%); color:hsl(var(--h) 60% 28%); border:1px solid hsl(var(--h) 55% 80%); }}
  @media (prefers-color-scheme: dark) {{ .chip {{ background:hsl(var(--h) 45% 22%); color:hsl(var(--h) 80% 85%); border-color:hsl(var(--h) 40% 35%); }} }}
  .chip.big {{ font-size:16px; padding:4px 14px; }}
  ol {{ list-style:none; padding:0; margin:10px 0 0; display:grid; gap:6px; }}
  li {{ display:flex; align-items:center; gap:10px; }}
  li .n {{ width:3.5em; text-align:right; color:var(--muted); font-variant-numeric:tabular-nums; font-size:14px; }}
  h2 {{ font-size:14px; margin:26px 0 0; color:var(--muted); font-weight:600; }}
  .actions {{ display:flex; gap:10px; margin-top:26px; }}
  button {{ font:inherit; font-weight:600; padding:10px 18px; border-radius:10px; border:1px solid var(--line); cursor:pointer;
            background:var(--card); color:var(--fg); }}
  button.primary {{ background:#2563eb; border-color:#2563eb; color:#fff; }}
  button:hover {{ filter:brightness(1.05); }}
  footer {{ margin-top:22px; font-size:12px; color:var(--muted); }}
  code {{ font-family:ui-monospace, SFMono-Regular, Menlo, monospace; }}
</style>
</head>
<body>
<main>
  <h1>session-cluster</h1>
  <div class="served"><span class="muted">Served by</span> <span id="node" class="chip big" style="--h:{node_hue}">{node_text}</span></div>
  <div class="count" id="views">{views}</div>
  <div class="muted">views in this session · {distinct} replica(s) in the last {shown}</div>
  <h2>Recent visits</h2>
  <ol id="history">{history}</ol>
  <div class="actions">
    <form method="get" action="/"><button class="primary" id="visit" type="submit">Visit again</button></form>
    <form method="post" action="/logout"><button id="end" type="submit">End session</button></form>
  </div>
  <footer>Session <code id="session">{session}</code> lives in the shared store, so any replica can serve the next request.</footer>
  {dashboard}
</main>
</body>
</html>
"#,
        node_text = esc(node),
        node_hue = hue(node),
        views = visits.views,
        distinct = distinct,
        shown = visits.history.len(),
        history = history,
        session = esc(session_id.unwrap_or("-")),
        dashboard = dashboard,
    )
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
        )),
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
        let page = render("<x>", &visits, Some("abc"), None);
        assert!(page.contains("&lt;x&gt;"));
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
        let page = render("a", &visits, None, Some("http://127.0.0.1:8081/?a=1&b=2"));
        assert!(
            page.contains(r#"<a id="dashboard" href="http://127.0.0.1:8081/?a=1&amp;b=2">"#),
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
