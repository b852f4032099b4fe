//! The agent's HTTP API.
//!
//! * `GET /v1/sites`: the site table ([`geomesh_scope::SitesDocument`]), what
//!   the scope filter fetches every tick;
//! * `GET /v1/heartbeat?from=<site>`: what peers ask every interval
//!   ([`geomesh_scope::HeartbeatReply`]);
//! * `GET /healthz`: `ok` while the agent runs;
//! * `GET /metrics`: Prometheus text format ([`crate::metrics`]);
//! * `GET /`: a small HTML status page (refreshes itself every 2 s), with
//!   the replicants, queues and recent operations when replication runs;
//! * `/v1/replication/...`: [`crate::replication::api`].
//!
//! With `peer_listen`, the heartbeat and the agent-to-agent replication endpoints are served
//! there only ([`Part::Peers`], TLS with client certificates when `tls` is configured) and
//! `listen` keeps the rest ([`Part::Local`]); without it `listen` serves everything.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use geomesh_scope::health::{HEARTBEAT_PATH, SITES_PATH};

pub use crate::replication::api::Part;
use crate::replication::db::SiteQueue;
use crate::replication::node::Node;
use crate::replication::{Operation, Replicant};
use crate::store::Store;

/// The router over `store` for the endpoints of `part`, with the replication endpoints of
/// `node`.
pub fn router(store: Store, node: Option<Arc<Node>>, part: Part) -> Router {
    if part == Part::Peers {
        return Router::new()
            .route(HEARTBEAT_PATH, get(heartbeat))
            .with_state(store)
            .merge(crate::replication::api::router(node, part));
    }
    let page_node = node.clone();
    let metrics_node = node.clone();
    let r = Router::new()
        .route(
            "/metrics",
            get(move |State(store): State<Store>| {
                let node = metrics_node.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                        crate::metrics::render(store, node).await,
                    )
                }
            }),
        )
        .route(SITES_PATH, get(sites))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/",
            get(move |State(store): State<Store>| status_page(store, page_node.clone())),
        );
    let r = if part == Part::All { r.route(HEARTBEAT_PATH, get(heartbeat)) } else { r };
    r.with_state(store).merge(crate::replication::api::router(node, part))
}

/// What the status page shows of the replication.
#[derive(Debug, Default)]
pub struct ReplicationView {
    /// Replicants (first ones in meta-id order).
    pub replicants: Vec<Replicant>,
    /// Per-site queues of this leader's log.
    pub queues: BTreeMap<String, SiteQueue>,
    /// Latest operations, newest first.
    pub recent: Vec<Operation>,
    /// Sites removed from the system.
    pub removed: Vec<crate::replication::db::RemovedSite>,
    /// A store error, if reading failed.
    pub error: Option<String>,
}

impl ReplicationView {
    /// Reads the view from the store (on the blocking pool).
    pub async fn load(node: &Node) -> ReplicationView {
        let db = node.db.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<ReplicationView, String> {
            Ok(ReplicationView {
                replicants: db.replicants(None, 200).map_err(|e| e.to_string())?,
                queues: db.queues().map_err(|e| e.to_string())?,
                recent: db.recent_ops(20).map_err(|e| e.to_string())?,
                removed: db.removed_sites().map_err(|e| e.to_string())?,
                error: None,
            })
        })
        .await;
        match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => ReplicationView { error: Some(e), ..Default::default() },
            Err(e) => ReplicationView { error: Some(e.to_string()), ..Default::default() },
        }
    }
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
    status_html_with(store, None)
}

fn replication_html(h: &mut String, v: &ReplicationView) {
    if !v.removed.is_empty() {
        h.push_str("<h2>Removed sites</h2><table><tr><th>site</th><th>asked of</th><th>notices</th></tr>");
        for r in &v.removed {
            let notices: Vec<String> = r
                .notices
                .iter()
                .map(|(p, n)| {
                    format!("{}: {}{}", esc(p), esc(&n.state), n.error.as_deref().map(|e| format!(" ({})", esc(e))).unwrap_or_default())
                })
                .collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.site),
                esc(&r.requested_at),
                notices.join("<br>")
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Replicants</h2>");
    if let Some(e) = &v.error {
        let _ = write!(h, "<p class=\"down\">replication store: {}</p>", esc(e));
    }
    let _ = write!(
        h,
        "<p>{} shown. JSON: <a href=\"/v1/replication/replicants\">/v1/replication/replicants</a>, \
         <a href=\"/v1/replication/operations\">/v1/replication/operations</a>, \
         <a href=\"/v1/replication/queues\">/v1/replication/queues</a></p>",
        v.replicants.len()
    );
    h.push_str("<table><tr><th>meta-id</th><th>service</th><th>collection</th><th>leader</th><th>state</th><th>version</th><th>replicas (site: local id, status)</th></tr>");
    for r in &v.replicants {
        let replicas: Vec<String> = r
            .replicas
            .iter()
            .map(|(site, p)| {
                let class = match p.status {
                    crate::replication::ReplicaStatus::Ok => "up",
                    crate::replication::ReplicaStatus::Pending => "unknown",
                    _ => "down",
                };
                format!(
                    "<span class=\"{class}\">{}: {} {}</span>{}",
                    esc(site),
                    esc(&p.local_id.as_ref().map(|l| l.text()).unwrap_or_else(|| "-".into())),
                    p.status,
                    p.error.as_deref().map(|e| format!(" ({})", esc(e))).unwrap_or_default()
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td><a href=\"/v1/replication/replicants/{m}\">{m}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.service),
            esc(&r.collection),
            esc(&r.leader),
            r.state,
            r.version,
            replicas.join("<br>"),
            m = r.meta,
        );
    }
    h.push_str("</table><h2>Queues of this site's log</h2><table><tr><th>site</th><th>next operation</th><th>open</th><th>finished</th><th>attempts</th><th>last error</th></tr>");
    for (site, q) in &v.queues {
        let class = if q.open > 0 { "down" } else { "up" };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(site),
            q.next_seq.map(|s| s.to_string()).unwrap_or_else(|| "&ndash;".into()),
            q.open,
            q.finished,
            q.attempts,
            esc(q.error.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table><h2>Recent operations</h2><table><tr><th>#</th><th>kind</th><th>request</th><th>meta-id</th><th>origin</th><th>body</th><th>per site</th></tr>");
    for op in &v.recent {
        let sites: Vec<String> = op
            .sites
            .iter()
            .map(|(site, s)| {
                let class = if s.state.is_open() { "down" } else { "up" };
                format!(
                    "<span class=\"{class}\">{}: {}{}{}</span>",
                    esc(site),
                    s.state,
                    s.status.map(|c| format!(" {c}")).unwrap_or_default(),
                    s.error.as_deref().map(|e| format!(" ({})", esc(e))).unwrap_or_default()
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td><a href=\"/v1/replication/operations/{seq}\">{seq}</a></td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{} B</td><td>{}</td></tr>",
            op.kind,
            esc(&op.method),
            esc(&op.suffix),
            op.meta,
            esc(&op.origin),
            op.body_len,
            sites.join("<br>"),
            seq = op.seq,
        );
    }
    h.push_str("</table>");
}

/// The status page, with the replication tables when `replication` is given.
pub fn status_html_with(store: &Store, replication: Option<&ReplicationView>) -> String {
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
    h.push_str("</table>");
    if let Some(v) = replication {
        replication_html(&mut h, v);
    }
    h.push_str("</body></html>\n");
    h
}

async fn status_page(store: Store, node: Option<Arc<Node>>) -> Html<String> {
    let view = match &node {
        Some(n) => Some(ReplicationView::load(n).await),
        None => None,
    };
    Html(status_html_with(&store, view.as_ref()))
}
