//! The replication endpoints of the agent's API listener
//! (docs/replication.md, "The agent's API"; reference in agent/README.md):
//!
//! * JSON for people and tools: `GET /v1/replication/replicants`,
//!   `.../replicants/<meta>`, `.../operations`, `.../operations/<seq>`,
//!   `.../queues`, `.../removed`, `POST .../sites/<site>/remove`;
//! * agent to agent: `POST /v1/replication/peer/apply`, `.../peer/submit`,
//!   `.../peer/read`, `.../peer/removed` (wire form in [`super::peers`]), and the replicant
//!   look-up `GET .../replicants/<meta>` peers make too.
//!
//! [`Part`] says which of them a listener serves: with `peer_listen` the agent-to-agent
//! endpoints are served there only (over TLS when configured), the others on `listen`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::Response as HttpResponse;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::applier::WriteRequest;
use super::db::OpFilter;
use super::metaid::MetaId;
use super::model::{Body, OpKind, Operation};
use super::node::Node;
use super::paths::Split;
use super::peers::{b64url_decode, decoded, take_forwarded, text, value, APPLIED, BODY_LEN, TRUNCATED};
use super::proxy::{answer_response, error_response, local_read, plain};
use super::resolve::{read_plan, ReadPlan};
use super::transport::Delivery;
use super::{blocking, DbError};

fn json_error(status: u16, msg: impl Into<String>) -> Response {
    let mut r = Json(json!({ "error": msg.into() })).into_response();
    *r.status_mut() = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn store_error(e: DbError) -> Response {
    json_error(500, format!("replication store: {e}"))
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything (one listener for all: `listen` without `peer_listen`).
    All,
    /// For people, tools and the local filter (`listen` beside a `peer_listen`).
    Local,
    /// For the other sites' agents (`peer_listen`).
    Peers,
}

/// The replication routes of `part` over `node`; without replication, every
/// `/v1/replication/...` path answers 404 saying so.
pub fn router(node: Option<Arc<Node>>, part: Part) -> Router {
    let Some(node) = node else {
        return Router::new().route(
            "/v1/replication/{*rest}",
            axum::routing::any(|| async {
                json_error(404, "replication is not configured on this agent (no `replication:` section)")
            }),
        );
    };
    let mut r = Router::new().route("/v1/replication/replicants/{meta}", get(replicant));
    if part != Part::Peers {
        r = r
            .route("/v1/replication/replicants", get(replicants))
            .route("/v1/replication/operations", get(operations))
            .route("/v1/replication/operations/{seq}", get(operation))
            .route("/v1/replication/queues", get(queues))
            .route("/v1/replication/sites/{site}/remove", post(remove_site))
            .route("/v1/replication/removed", get(removed));
    }
    if part != Part::Local {
        r = r
            .route("/v1/replication/peer/removed", post(peer_removed))
            .route("/v1/replication/peer/apply", post(peer_apply))
            .route("/v1/replication/peer/submit", post(peer_submit))
            .route("/v1/replication/peer/read", post(peer_read));
    }
    r.with_state(node)
}

fn limit(q: &HashMap<String, String>) -> Result<u32, &'static str> {
    match q.get("limit") {
        None => Ok(100),
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err("`limit`: expected 1 to 1000"),
        },
    }
}

async fn replicants(State(node): State<Arc<Node>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let limit = match limit(&q) {
        Ok(l) => l,
        Err(m) => return json_error(400, m),
    };
    let after = match q.get("after") {
        None => None,
        Some(a) => match MetaId::parse(a) {
            Some(m) => Some(m),
            None => return json_error(400, "`after`: expected a meta-id"),
        },
    };
    match blocking(&node.db, move |db| db.replicants(after.as_ref(), limit)).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}

async fn replicant(State(node): State<Arc<Node>>, Path(meta): Path<String>) -> Response {
    let Some(meta) = MetaId::parse(&meta) else {
        return json_error(400, format!("{meta:?} is not a meta-id"));
    };
    let m = meta.clone();
    match blocking(&node.db, move |db| db.replicant(&m)).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => json_error(404, format!("no replicant {meta} here")),
        Err(e) => store_error(e),
    }
}

async fn operations(State(node): State<Arc<Node>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let limit = match limit(&q) {
        Ok(l) => l,
        Err(m) => return json_error(400, m),
    };
    let meta = match q.get("meta").filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => match MetaId::parse(m) {
            Some(m) => Some(m),
            None => return json_error(400, "`meta`: expected a meta-id"),
        },
    };
    let after = match q.get("after").map(|a| a.parse::<u64>()) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => return json_error(400, "`after`: expected an operation number"),
    };
    let f = OpFilter {
        meta,
        site: q.get("site").filter(|s| !s.is_empty()).cloned(),
        open_only: matches!(q.get("open").map(String::as_str), Some("1" | "true")),
        after,
        limit: Some(limit),
    };
    match blocking(&node.db, move |db| db.ops(&f)).await {
        Ok(v) => Json(v.into_iter().map(redacted).collect::<Vec<_>>()).into_response(),
        Err(e) => store_error(e),
    }
}

async fn operation(State(node): State<Arc<Node>>, Path(seq): Path<String>) -> Response {
    let Ok(seq) = seq.parse::<u64>() else {
        return json_error(400, "expected an operation number");
    };
    match blocking(&node.db, move |db| db.op(seq)).await {
        Ok(Some(op)) => Json(redacted(op)).into_response(),
        Ok(None) => json_error(404, format!("no operation {seq} in this agent's log")),
        Err(e) => store_error(e),
    }
}

/// Request headers that carry credentials: kept in the log (every replica needs them), shown by
/// the API as `[redacted]`.
const CREDENTIAL_HEADERS: [&str; 6] =
    ["authorization", "proxy-authorization", "cookie", "x-auth-token", "x-api-key", "x-subject-token"];

/// An operation as the API shows it: credential headers' values hidden.
fn redacted(mut op: Operation) -> Operation {
    for (name, value) in &mut op.headers {
        if CREDENTIAL_HEADERS.iter().any(|c| name.eq_ignore_ascii_case(c)) {
            *value = "[redacted]".to_owned();
        }
    }
    op
}

async fn queues(State(node): State<Arc<Node>>) -> Response {
    match blocking(&node.db, |db| db.queues()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}

async fn remove_site(State(node): State<Arc<Node>>, Path(site): Path<String>) -> Response {
    match node.remove_from_system(&site).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => json_error(e.http_status(), e.to_string()),
    }
}

async fn removed(State(node): State<Arc<Node>>) -> Response {
    match blocking(&node.db, |db| db.removed_sites()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}

/// A removal notice from the agent a removal was asked of.
#[derive(serde::Deserialize)]
struct RemovedNotice {
    site: String,
    requested_at: String,
}

/// `peer/removed`: another agent says `site` is removed from the system;
/// applied here (idempotent), 200 once done.
async fn peer_removed(State(node): State<Arc<Node>>, body: axum::body::Bytes) -> Response {
    let n: RemovedNotice = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return json_error(400, format!("peer/removed: {e}")),
    };
    match node.apply_removal(&n.site, &n.requested_at, &[]).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => json_error(e.http_status(), e.to_string()),
    }
}

/// A site removed from the system takes no part in the replication any
/// more: neither the calls of a removed site nor calls to one (this site,
/// removed) are served.
fn refuse_removed(node: &Node, site: &str, what: &str) -> Option<Response> {
    let gone = [site, node.site.as_str()].into_iter().find(|s| node.health.is_removed(s))?;
    Some(plain(
        409,
        format!("geomesh: site {gone} was removed from the system: {what} from {site} refused by {}", node.site),
    ))
}

/// `peer/apply`: a leader's delivery, applied by this site's executor.
async fn peer_apply(State(node): State<Arc<Node>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let bad = |what: &str| plain(400, format!("geomesh peer/apply: missing or bad {what}"));
    let Some(leader) = decoded(h, "x-geomesh-leader") else { return bad("x-geomesh-leader") };
    let Some(seq) = text(h, "x-geomesh-seq").and_then(|s| s.parse::<u64>().ok()) else {
        return bad("x-geomesh-seq");
    };
    let Some(kind) = text(h, "x-geomesh-kind").and_then(OpKind::parse) else {
        return bad("x-geomesh-kind");
    };
    let Some(method) = decoded(h, "x-geomesh-method") else { return bad("x-geomesh-method") };
    let Some(target) = decoded(h, "x-geomesh-target") else { return bad("x-geomesh-target") };
    let ack = match text(h, "x-geomesh-ack") {
        None => None,
        Some(a) => match a.parse::<u64>() {
            Ok(a) => Some(a),
            Err(_) => return bad("x-geomesh-ack"),
        },
    };
    if let Some(r) = refuse_removed(&node, &leader, "its delivery") {
        return r;
    }
    let Some(replicant) = text(h, "x-geomesh-replicant")
        .and_then(b64url_decode)
        .and_then(|b| serde_json::from_slice(&b).ok())
    else {
        return bad("x-geomesh-replicant");
    };
    let headers = take_forwarded(h);
    let body = text(h, BODY_LEN).map(|l| Body::Stream {
        body: reqwest::Body::wrap_stream(body.into_data_stream()),
        len: l.parse().ok(),
    });
    let d = Delivery {
        leader,
        seq,
        kind,
        method,
        target,
        headers,
        body,
        replicant,
        ack,
    };
    match node.executor.apply(d).await {
        Ok(reply) => {
            let mut b = HttpResponse::builder().status(reply.status).header(APPLIED, "1");
            if let Some(t) = reply.truncated {
                b = b.header(TRUNCATED, t.to_string());
            }
            for (n, v) in &reply.headers {
                if n == "content-length" || super::instance::HOP_BY_HOP.contains(&n.as_str()) {
                    continue;
                }
                if let Some(v) = value(v) {
                    b = b.header(n.as_str(), v);
                }
            }
            b.body(axum::body::Body::from(reply.body))
                .unwrap_or_else(|_| plain(502, "geomesh peer/apply: bad answer headers"))
        }
        Err(e) => plain(502, e.0),
    }
}

/// `peer/submit`: a write of a replicant led here, from another site's agent.
async fn peer_submit(State(node): State<Arc<Node>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let bad = |what: &str| plain(400, format!("geomesh peer/submit: missing or bad {what}"));
    let Some(meta) = text(h, "x-geomesh-meta").and_then(MetaId::parse) else {
        return bad("x-geomesh-meta");
    };
    let Some(method) = decoded(h, "x-geomesh-method") else { return bad("x-geomesh-method") };
    let Some(suffix) = decoded(h, "x-geomesh-suffix") else { return bad("x-geomesh-suffix") };
    let Some(origin) = decoded(h, "x-geomesh-origin") else { return bad("x-geomesh-origin") };
    if let Some(r) = refuse_removed(&node, &origin, "its write") {
        return r;
    }
    let query = decoded(h, "x-geomesh-query");
    let headers = take_forwarded(h);
    let body = if h.contains_key(BODY_LEN) {
        match node.spool.write(body.into_data_stream()).await {
            Ok(s) => Some(s),
            Err(e) => return plain(400, format!("geomesh: {e}")),
        }
    } else {
        None
    };
    let kind = if method == "DELETE" && (suffix.is_empty() || suffix == "/") {
        OpKind::Delete
    } else {
        OpKind::Update
    };
    let req = WriteRequest {
        meta,
        kind,
        method,
        suffix: if suffix == "/" { String::new() } else { suffix },
        query,
        headers,
        body,
        origin,
    };
    match node.applier.submit(req).await {
        Ok(a) => answer_response(a),
        Err(e) => error_response(&e),
    }
}

/// `peer/read`: a read served by this site's replica (pinned here).
async fn peer_read(State(node): State<Arc<Node>>, req: Request) -> Response {
    let h = req.headers();
    let bad = |what: &str| plain(400, format!("geomesh peer/read: missing or bad {what}"));
    let Some(meta) = text(h, "x-geomesh-meta").and_then(MetaId::parse) else {
        return bad("x-geomesh-meta");
    };
    let Some(method) = decoded(h, "x-geomesh-method") else { return bad("x-geomesh-method") };
    let Some(suffix) = decoded(h, "x-geomesh-suffix") else { return bad("x-geomesh-suffix") };
    let query = decoded(h, "x-geomesh-query");
    let headers = take_forwarded(h);
    let m = meta.clone();
    let r = match blocking(&node.db, move |db| db.replicant(&m)).await {
        Ok(Some(r)) => r,
        Ok(None) => return plain(404, format!("geomesh: site {} knows no replicant {meta}", node.site)),
        Err(e) => return plain(500, format!("geomesh: replication store: {e}")),
    };
    let split = Split {
        collection: r.collection.clone(),
        id: meta.to_string(),
        suffix,
    };
    match read_plan(&r, &split, &node.site, true, |_| None) {
        ReadPlan::Local { path, local_id } => {
            let Some(local) = node.executor.service(&r.service).cloned() else {
                return plain(502, format!("geomesh: site {} has no instance of '{}'", node.site, r.service));
            };
            let t = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            match local_read(&node, &local, &method, &t, &headers, &r, &local_id).await {
                Ok(resp) => resp,
                Err(e) => plain(503, format!("geomesh: {e}")),
            }
        }
        ReadPlan::NotFound(m) => plain(404, format!("geomesh: {m}")),
        ReadPlan::NotReady(m) => plain(503, format!("geomesh: {m}")),
        ReadPlan::Remote(_) => plain(404, format!("geomesh: site {} holds no replica of {meta}", node.site)),
    }
}
