//! The agent's HTTP API.
//!
//! * `GET /v1/sites`: the site table ([`geomesh_scope::SitesDocument`]), what
//!   the scope filter fetches every tick;
//! * `GET /v1/heartbeat?from=<site>`: what peers ask every interval
//!   ([`geomesh_scope::HeartbeatReply`]);
//! * `GET /healthz`: `ok` while the agent runs;
//! * `GET /`: a small HTML status page (refreshes itself every 2 s).

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use geomesh_scope::health::{HEARTBEAT_PATH, SITES_PATH};

use crate::store::Store;

/// The router over `store`.
pub fn router(store: Store) -> Router {
    Router::new()
        .route(SITES_PATH, get(sites))
        .route(HEARTBEAT_PATH, get(heartbeat))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(status_page))
        .with_state(store)
}

async fn sites(State(store): State<Store>) -> impl IntoResponse {
    let doc = store.read().sites_document();
    ([(header::CACHE_CONTROL, "no-store")], Json(doc))
}

async fn heartbeat(
    State(store): State<Store>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let mut s = store.write();
    s.heartbeats_served = s.heartbeats_served.saturating_add(1);
    if let Some(from) = q.get("from") {
        tracing::trace!(%from, "heartbeat");
    }
    Json(s.heartbeat_reply())
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The status page as HTML (also used by tests).
pub fn status_html(store: &Store) -> String {
    let (doc, served, uptime) = {
        let s = store.read();
        (s.sites_document(), s.heartbeats_served, s.started.elapsed())
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">\
         <title>geomesh-agent {site}</title><style>\
         body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}\
         .up{{color:#070}}.down{{color:#b00;font-weight:bold}}.unknown{{color:#888}}\
         </style></head><body><h1>geomesh-agent &mdash; site {site}</h1>\
         <p>up {secs} s, {served} heartbeats answered. JSON: <a href=\"/v1/sites\">/v1/sites</a></p>\
         <table><tr><th>site</th><th>state</th><th>RTT</th><th>services</th><th>last heartbeat</th><th>error</th></tr>",
        site = esc(&doc.site),
        secs = uptime.as_secs(),
    );
    for s in &doc.sites {
        let (class, state) = match s.up {
            Some(true) => ("up", "up"),
            Some(false) => ("down", "down"),
            None => ("unknown", "unknown"),
        };
        let source = match (s.local, s.up_source) {
            (true, _) => " (this site)".to_owned(),
            (false, geomesh_scope::health::UpSource::Static) => " (static)".to_owned(),
            _ => String::new(),
        };
        let rtt = match (s.rtt_ms, s.rtt_source) {
            (Some(ms), Some(geomesh_scope::health::RttSource::Static)) => format!("{ms:.1} ms (static)"),
            (Some(ms), _) => format!("{ms:.2} ms"),
            (None, _) => "&ndash;".to_owned(),
        };
        let services: Vec<String> = s
            .services
            .iter()
            .map(|(n, up)| {
                format!(
                    "<span class=\"{}\">{}</span>",
                    if *up { "up" } else { "down" },
                    esc(n)
                )
            })
            .collect();
        let last = match s.last_heartbeat_ms_ago {
            Some(ms) => format!("{ms} ms ago"),
            None if s.local => "&ndash;".to_owned(),
            None => "never".to_owned(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{class}\">{state}{source}</td><td>{rtt}</td><td>{}</td><td>{last}</td><td>{}</td></tr>",
            esc(&s.name),
            services.join(" "),
            esc(s.error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table><h2>Round-trip times</h2><table><tr><th>between</th><th>RTT</th><th>source</th></tr>");
    for e in &doc.rtt {
        let _ = write!(
            h,
            "<tr><td>{} &harr; {}</td><td>{:.2} ms</td><td>{:?}</td></tr>",
            esc(&e.a),
            esc(&e.b),
            e.ms,
            e.source
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

async fn status_page(State(store): State<Store>) -> Html<String> {
    Html(status_html(&store))
}
