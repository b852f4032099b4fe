//! The proxy listener (`replication.listen`): where the scope filter of this
//! site's Envoy hands over every request for a service whose resources may
//! be replicated (docs/replication.md, "Filter -> agent hand-over"), and
//! what the agent does with it:
//!
//! * `x-geomesh-replicate` on a write to a path naming no replicant: a
//!   **create** (body spooled, [`Applier::create`](super::Applier::create));
//! * a path naming a replicant (meta-id, or this site's local id of one):
//!   a **read** served local-first (this site's replica, else the nearest
//!   live replica's agent through `peer/read`, unless pinned), or a
//!   **write** appended to the leader's log (here, or `peer/submit` to the
//!   leader; a leader that cannot be reached makes the resource read-only
//!   here: 503 with the message);
//! * anything else: **passed through** to the local instance, both bodies
//!   streamed (list answers of a collection holding replicas get their
//!   local ids replaced by meta-ids).
//!
//! Every answer the agent writes itself carries `x-geomesh-error:
//! replication`; instances never see an `x-geomesh-*` header.

use std::sync::Arc;

use axum::body::Body as AxBody;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Response as HttpResponse};
use axum::response::Response;
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;

use super::applier::{Answer, CreateRequest, WriteRequest};
use super::executor::LocalService;
use super::instance::{forwardable, HOP_BY_HOP};
use super::metaid::MetaId;
use super::model::{LocalId, OpKind, Replicant, ReplicantState, Reply};
use super::node::Node;
use super::paths::{normalize_collection, Split};
use super::peers::{decoded, describe, is_geomesh, text, value, ERROR_MARK};
use super::resolve::{path_names, read_plan, resolve, write_plan, Named, ReadPlan, WritePlan};
use super::rewrite::{
    is_json_type, parse_json_body, replace_at, reply_to_meta, rewrite_location, Skip,
};
use super::spool::{SpoolError, Spooled};
use super::{blocking, parse_site_list, ReplicationError};

/// The proxy listener's router.
pub fn router(node: Arc<Node>) -> Router {
    Router::new().fallback(handle).with_state(node)
}

/// A text answer written by the agent.
pub fn plain(status: u16, text: impl Into<String>) -> Response {
    let mut t = text.into();
    if !t.ends_with('\n') {
        t.push('\n');
    }
    HttpResponse::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header(ERROR_MARK, "replication")
        .body(AxBody::from(t))
        .unwrap_or_else(|_| Response::new(AxBody::empty()))
}

/// An engine error as an answer.
pub fn error_response(e: &ReplicationError) -> Response {
    plain(e.http_status(), e.to_string())
}

/// An answer kept in memory.
pub fn reply_response(reply: Reply) -> Response {
    let mut b = HttpResponse::builder().status(reply.status);
    for (n, v) in &reply.headers {
        if HOP_BY_HOP.contains(&n.as_str()) || n == "content-length" {
            continue;
        }
        if let Some(v) = value(v) {
            b = b.header(n.as_str(), v);
        }
    }
    b.body(AxBody::from(reply.body))
        .unwrap_or_else(|_| plain(500, "geomesh: bad answer headers"))
}

/// What a client gets for an [`Answer`].
pub fn answer_response(a: Answer) -> Response {
    match a {
        Answer::Replied { reply, .. } => reply_response(reply),
        Answer::Accepted { meta, seq } => {
            let body = serde_json::json!({
                "meta": meta,
                "operation": seq,
                "state": format!("/v1/replication/operations/{seq}"),
            });
            HttpResponse::builder()
                .status(202)
                .header("content-type", "application/json")
                .header("x-geomesh-meta", meta.as_str())
                .header("x-geomesh-operation", seq.to_string())
                .body(AxBody::from(body.to_string()))
                .unwrap_or_else(|_| plain(500, "geomesh: bad answer"))
        }
    }
}

/// Streams an upstream answer (an instance's or a peer agent's) back,
/// with `extra` headers added and `Location` translated by `location`.
pub fn stream_response(
    resp: reqwest::Response,
    extra: &[(&str, String)],
    location: Option<(&LocalId, &MetaId)>,
) -> Response {
    let mut b = HttpResponse::builder().status(resp.status().as_u16());
    for (n, v) in resp.headers() {
        if HOP_BY_HOP.contains(&n.as_str()) {
            continue;
        }
        let v = match (n.as_str(), location, v.to_str()) {
            ("location", Some((l, m)), Ok(loc)) => match rewrite_location(loc, l, m.as_str()) {
                Some(new) => value(&new).unwrap_or_else(|| v.clone()),
                None => v.clone(),
            },
            _ => v.clone(),
        };
        b = b.header(n, v);
    }
    for (n, v) in extra {
        if let Some(v) = value(v) {
            b = b.header(*n, v);
        }
    }
    b.body(AxBody::from_stream(resp.bytes_stream()))
        .unwrap_or_else(|_| plain(502, "geomesh: bad upstream answer"))
}

/// Whether a request has a body (a length above 0, or chunked).
pub fn has_body(h: &HeaderMap) -> bool {
    h.contains_key("transfer-encoding")
        || text(h, "content-length").is_some_and(|l| l.trim() != "0")
}

/// The request's length, when it says.
pub fn content_length(h: &HeaderMap) -> Option<u64> {
    text(h, "content-length").and_then(|l| l.trim().parse().ok())
}

/// Every end-to-end header of a pass-through request (geomesh's removed).
fn passthrough_headers(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter(|(n, _)| !is_geomesh(n.as_str()) && !HOP_BY_HOP.contains(&n.as_str()))
        .filter_map(|(n, v)| {
            std::str::from_utf8(v.as_bytes())
                .ok()
                .map(|v| (n.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

/// The headers of a replicated write (docs/replication.md: validators,
/// lengths, encodings and geomesh's own dropped).
pub fn write_headers(h: &HeaderMap) -> Vec<(String, String)> {
    forwardable(h.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))).0
}

/// Spools a request body; the answer to give when it fails.
pub async fn spool_body(node: &Node, h: &HeaderMap, body: AxBody) -> Result<Option<Spooled>, Response> {
    if !has_body(h) {
        return Ok(None);
    }
    match node.spool.write(body.into_data_stream()).await {
        Ok(s) => Ok(Some(s)),
        Err(e @ SpoolError::TooLarge { .. }) => Err(plain(413, format!("geomesh: {e}"))),
        Err(e @ SpoolError::Body(_)) => Err(plain(400, format!("geomesh: {e}"))),
        Err(e @ SpoolError::Io(_)) => Err(plain(500, format!("geomesh: {e}"))),
    }
}

fn is_read(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

fn target(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

/// The message of a write refused because the leader cannot be reached.
pub fn read_only(meta: &MetaId, site: &str, leader: &str, reason: &str) -> Response {
    plain(
        503,
        format!("geomesh: {meta} is read-only on site {site} until it reaches its leader {leader} ({reason})"),
    )
}

/// A request as the proxy sees it (the body apart: it is not `Sync`).
struct Incoming {
    service: String,
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    pinned: bool,
}

async fn handle(State(node): State<Arc<Node>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(service) = decoded(&parts.headers, "x-geomesh-service") else {
        return plain(
            400,
            "geomesh: no x-geomesh-service header: this listener takes requests from the scope filter",
        );
    };
    let inc = Incoming {
        service,
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        pinned: text(&parts.headers, "x-geomesh-pinned") == Some("1"),
        headers: parts.headers,
    };
    let replicate = match text(&inc.headers, "x-geomesh-replicate") {
        None => None,
        Some(v) => match parse_site_list(v) {
            Ok(s) => Some(s),
            Err(e) => return plain(400, format!("geomesh: x-geomesh-replicate: {e}")),
        },
    };
    let Some(local) = node.executor.service(&inc.service).cloned() else {
        return plain(
            502,
            format!("geomesh: site {} has no instance of service '{}'", node.site, inc.service),
        );
    };
    let named = {
        let (svc, site, path) = (inc.service.clone(), node.site.clone(), inc.path.clone());
        match blocking(&node.db, move |db| resolve(db, &svc, &site, &path)).await {
            Ok(n) => n,
            Err(e) => return plain(500, format!("geomesh: replication store: {e}")),
        }
    };
    tracing::debug!(
        method = %inc.method, path = %inc.path, service = %inc.service, pinned = inc.pinned,
        replicate = ?replicate, scope = text(&inc.headers, "x-geomesh-scope").unwrap_or(""),
        "proxy request"
    );
    match named {
        Named::Plain => match replicate {
            Some(sites) if !is_read(&inc.method) => create(&node, inc, body, sites).await,
            Some(sites) if !sites.contains(&node.site) => plain(
                400,
                format!(
                    "geomesh: `&` replicates creates; {} {} names no replicated resource and site {} is not among {}",
                    inc.method,
                    inc.path,
                    node.site,
                    sites.join(" & ")
                ),
            ),
            _ => passthrough(&node, &local, inc, body).await,
        },
        Named::Known { replicant, split, .. } => {
            known(&node, &local, inc, body, replicant, split).await
        }
        Named::UnknownMeta { meta, split } => match find_remote(&node, &meta).await {
            Some(r) if path_names(&r, &inc.service, &split) => {
                known(&node, &local, inc, body, r, split).await
            }
            Some(_) => passthrough(&node, &local, inc, body).await,
            None => plain(
                404,
                format!("geomesh: no replicant {meta} on site {} nor on any reachable site", node.site),
            ),
        },
    }
}

/// Asks the peers that are up for `meta`; the first answer.
async fn find_remote(node: &Node, meta: &MetaId) -> Option<Replicant> {
    let mut asks: FuturesUnordered<_> = node
        .peers
        .sites()
        .filter(|s| node.health.down_reason(s).is_none())
        .map(|s| {
            let s = s.to_owned();
            async move { (node.peers.replicant(&s, meta).await, s) }
        })
        .collect();
    while let Some((r, site)) = asks.next().await {
        match r {
            Ok(Some(r)) => return Some(r),
            Ok(None) => {}
            Err(e) => tracing::debug!(%site, %meta, error = %e, "replicant look-up failed"),
        }
    }
    None
}

async fn create(node: &Node, inc: Incoming, body: AxBody, sites: Vec<String>) -> Response {
    if let Some(bad) = sites.iter().find(|s| !node.knows_site(s)) {
        return plain(400, format!("geomesh: x-geomesh-replicate names an unknown site {bad}"));
    }
    if let Some(gone) = sites
        .iter()
        .chain(std::iter::once(&node.site))
        .find(|s| node.health.is_removed(s))
    {
        return plain(400, format!("geomesh: site {gone} was removed from the system: no replica can be created there"));
    }
    let headers = write_headers(&inc.headers);
    let body = match spool_body(node, &inc.headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req = CreateRequest {
        service: inc.service,
        path: inc.path,
        query: inc.query,
        method: inc.method,
        headers,
        body,
        sites,
        origin: node.site.clone(),
    };
    match node.applier.create(req).await {
        Ok(a) => answer_response(a),
        Err(e) => error_response(&e),
    }
}

async fn known(
    node: &Node,
    local: &LocalService,
    inc: Incoming,
    body: AxBody,
    r: Replicant,
    split: Split,
) -> Response {
    if is_read(&inc.method) {
        drop(body);
        return read(node, local, &inc, &r, &split).await;
    }
    match r.state {
        ReplicantState::Deleted | ReplicantState::Deleting => {
            return plain(404, format!("geomesh: {} is {}", r.meta, r.state))
        }
        ReplicantState::Failed => {
            return plain(404, format!("geomesh: {} could not be created on any site", r.meta))
        }
        ReplicantState::Active => {}
    }
    let suffix = if split.suffix == "/" { String::new() } else { split.suffix.clone() };
    let kind = if inc.method == "DELETE" && suffix.is_empty() {
        OpKind::Delete
    } else {
        OpKind::Update
    };
    let headers = write_headers(&inc.headers);
    match write_plan(&r, &node.site) {
        WritePlan::Here => {
            let body = match spool_body(node, &inc.headers, body).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let req = WriteRequest {
                meta: r.meta.clone(),
                kind,
                method: inc.method,
                suffix,
                query: inc.query,
                headers,
                body,
                origin: node.site.clone(),
            };
            match node.applier.submit(req).await {
                Ok(a) => answer_response(a),
                Err(e) => error_response(&e),
            }
        }
        WritePlan::Leader(leader) => {
            if let Some(reason) = node.health.down_reason(&leader) {
                return read_only(&r.meta, &node.site, &leader, &reason);
            }
            let body = has_body(&inc.headers).then(|| {
                (
                    reqwest::Body::wrap_stream(body.into_data_stream()),
                    content_length(&inc.headers),
                )
            });
            match node
                .peers
                .submit(&leader, &r.meta, &inc.method, &suffix, inc.query.as_deref(), &headers, body)
                .await
            {
                Ok(resp) => stream_response(resp, &[], None),
                Err(e) if e.is_connect() || !node.peers.sites().any(|s| s == leader) => {
                    read_only(&r.meta, &node.site, &leader, &describe(&e))
                }
                Err(e) => plain(
                    504,
                    format!(
                        "geomesh: lost the leader {leader} of {} while submitting the write ({}); it may or may not be applied: GET /v1/replication/operations?meta={} on {leader}'s agent tells",
                        r.meta,
                        describe(&e),
                        r.meta
                    ),
                ),
            }
        }
    }
}

async fn read(node: &Node, local: &LocalService, inc: &Incoming, r: &Replicant, split: &Split) -> Response {
    let plan = read_plan(r, split, &node.site, inc.pinned, |s| node.health.rtt_ms(s));
    let headers = passthrough_headers(&inc.headers);
    match plan {
        ReadPlan::Local { path, local_id } => {
            let t = target(&path, inc.query.as_deref());
            match local_read(node, local, &inc.method, &t, &headers, r, &local_id).await {
                Ok(resp) => resp,
                Err(e) if inc.pinned => plain(502, format!("geomesh: {e}")),
                Err(e) => {
                    // This site's instance is unreachable: another replica, if there is one.
                    let others: Vec<String> = r
                        .live_sites()
                        .filter(|s| *s != node.site)
                        .map(str::to_owned)
                        .collect();
                    tracing::warn!(meta = %r.meta, error = %e, "local replica unreachable, reading elsewhere");
                    remote_read(node, inc, r, &split.suffix, &others, &headers, Some(e)).await
                }
            }
        }
        ReadPlan::Remote(sites) => {
            remote_read(node, inc, r, &split.suffix, &sites, &headers, None).await
        }
        ReadPlan::NotFound(m) => plain(404, format!("geomesh: {m}")),
        ReadPlan::NotReady(m) => plain(503, format!("geomesh: {m}")),
    }
}

async fn remote_read(
    node: &Node,
    inc: &Incoming,
    r: &Replicant,
    suffix: &str,
    sites: &[String],
    headers: &[(String, String)],
    first_error: Option<String>,
) -> Response {
    let mut errors: Vec<String> = first_error.map(|e| format!("{}: {e}", node.site)).into_iter().collect();
    let mut all_404 = true;
    for s in sites {
        if let Some(why) = node.health.down_reason(s) {
            errors.push(format!("{s}: {why}"));
            all_404 = false;
            continue;
        }
        match node
            .peers
            .read(s, &r.meta, &inc.method, suffix, inc.query.as_deref(), headers)
            .await
        {
            Ok(resp) if !resp.headers().contains_key(ERROR_MARK) => {
                return stream_response(resp, &[], None)
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                all_404 &= status == 404;
                let body = resp.text().await.unwrap_or_default();
                errors.push(format!("{s}: {status} {}", body.trim()));
            }
            Err(e) => {
                all_404 = false;
                errors.push(format!("{s}: {e}"));
            }
        }
    }
    let status = if all_404 && !errors.is_empty() { 404 } else { 503 };
    plain(
        status,
        format!("geomesh: no replica of {} could serve the read ({})", r.meta, errors.join("; ")),
    )
}

/// Reads a prefix of at most `max` bytes; `Err(prefix, rest)` when longer.
async fn read_prefix<S>(mut stream: S, max: usize) -> Result<Result<Bytes, (Bytes, S)>, reqwest::Error>
where
    S: futures_util::Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() > max {
            return Ok(Err((buf.freeze(), stream)));
        }
    }
    Ok(Ok(buf.freeze()))
}

/// Whether an answer may be JSON to rewrite (by its headers).
fn maybe_json(h: &reqwest::header::HeaderMap, max: usize) -> Result<(), Skip> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    if let Some(enc) = get("content-encoding") {
        if !enc.trim().eq_ignore_ascii_case("identity") {
            return Err(Skip::Encoded);
        }
    }
    if let Some(ct) = get("content-type") {
        if !is_json_type(ct) {
            return Err(Skip::NotJson);
        }
    }
    if get("content-length").and_then(|l| l.trim().parse::<u64>().ok()).is_some_and(|l| l > max as u64) {
        return Err(Skip::TooLarge);
    }
    Ok(())
}

fn to_reply(status: u16, h: &reqwest::header::HeaderMap, body: Bytes) -> Reply {
    Reply {
        status,
        headers: h
            .iter()
            .filter(|(n, _)| !HOP_BY_HOP.contains(&n.as_str()) && n.as_str() != "content-length")
            .filter_map(|(n, v)| {
                std::str::from_utf8(v.as_bytes())
                    .ok()
                    .map(|v| (n.as_str().to_owned(), v.to_owned()))
            })
            .collect(),
        body,
        truncated: None,
    }
}

/// `method target` to this site's instance; `Err` when it is unreachable or answers 503.
async fn instance_read(
    node: &Node,
    local: &LocalService,
    r: &Replicant,
    method: &str,
    target: &str,
    headers: &[(String, String)],
) -> Result<reqwest::Response, String> {
    let resp = local
        .instance
        .send_streaming(method, target, headers, None, true)
        .await
        .map_err(|e| format!("site {}: instance of '{}': {e}", node.site, r.service))?;
    if resp.status().as_u16() == 503 {
        return Err(format!("site {}: instance of '{}' answered 503", node.site, r.service));
    }
    Ok(resp)
}

/// A read served by this site's replica: `local_id` hidden in the answer
/// (body at the id pointers when it is JSON of a bounded size, `Location`),
/// anything else streamed unchanged. `Err`: the instance is unreachable.
pub async fn local_read(
    node: &Node,
    local: &LocalService,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    r: &Replicant,
    local_id: &LocalId,
) -> Result<Response, String> {
    let send = |m| instance_read(node, local, r, m, target, headers);
    let head = method.eq_ignore_ascii_case("HEAD");
    let mut resp = send(method).await?;
    if head && maybe_json(resp.headers(), node.cfg.max_rewrite_bytes).is_ok() {
        // The instance's Content-Length counts its body before the ids are hidden: read the
        // body with GET, rewrite it, and answer its headers with the rewritten length.
        resp = send("GET").await?;
    }
    let tags = [
        ("x-geomesh-meta", r.meta.to_string()),
        ("x-geomesh-replica", crate::replication::header_site(&node.site)),
    ];
    let max = node.cfg.max_rewrite_bytes;
    if let Err(skip) = maybe_json(resp.headers(), max) {
        let mut extra = tags.to_vec();
        if method != "HEAD" {
            extra.push(("x-geomesh-rewrite", skip.as_str().to_owned()));
        }
        return Ok(stream_response(resp, &extra, Some((local_id, &r.meta))));
    }
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let prefix = read_prefix(Box::pin(resp.bytes_stream()), max)
        .await
        .map_err(|e| format!("site {}: instance of '{}': {}", node.site, r.service, describe(&e)))?;
    match prefix {
        Ok(body) => {
            let mut reply = to_reply(status, &h, body);
            let w = reply_to_meta(&mut reply, local_id, &r.meta, &node.ids(&r.service), max);
            for (n, v) in tags {
                reply.set_header(n, Some(v));
            }
            if let Some(skip) = w.body_skipped.filter(|s| !matches!(s, Skip::NoMatch | Skip::Empty)) {
                reply.set_header("x-geomesh-rewrite", Some(skip.as_str().to_owned()));
            }
            if head {
                let len = std::mem::take(&mut reply.body).len();
                let mut resp = reply_response(reply);
                resp.headers_mut().insert(axum::http::header::CONTENT_LENGTH, len.into());
                return Ok(resp);
            }
            Ok(reply_response(reply))
        }
        Err((prefix, rest)) => {
            // Longer than announced: what was read, then the rest, unchanged.
            let mut b = HttpResponse::builder().status(status);
            for (n, v) in &h {
                if !HOP_BY_HOP.contains(&n.as_str()) {
                    b = b.header(n, v.clone());
                }
            }
            for (n, v) in tags.iter().cloned().chain([("x-geomesh-rewrite", "too-large".to_owned())]) {
                if let Some(v) = value(&v) {
                    b = b.header(n, v);
                }
            }
            let stream = futures_util::stream::once(async move { Ok::<_, reqwest::Error>(prefix) }).chain(rest);
            Ok(b.body(AxBody::from_stream(stream))
                .unwrap_or_else(|_| plain(502, "geomesh: bad upstream answer")))
        }
    }
}

/// A request naming no replicant, to the local instance, streamed both
/// ways; a GET of a collection holding replicas gets its list translated.
async fn passthrough(node: &Node, local: &LocalService, inc: Incoming, body: AxBody) -> Response {
    let collection = normalize_collection(&inc.path);
    let list = inc.method == "GET" && {
        let (svc, c) = (inc.service.clone(), collection.clone());
        blocking(&node.db, move |db| db.has_collection(&svc, &c)).await.unwrap_or(false)
    };
    let headers = passthrough_headers(&inc.headers);
    let body = has_body(&inc.headers).then(|| {
        (
            reqwest::Body::wrap_stream(body.into_data_stream()),
            content_length(&inc.headers),
        )
    });
    let t = target(&inc.path, inc.query.as_deref());
    let resp = match local.instance.send_streaming(&inc.method, &t, &headers, body, list).await {
        Ok(r) => r,
        Err(e) => {
            return plain(502, format!("geomesh: site {}: instance of '{}': {e}", node.site, inc.service))
        }
    };
    let max = node.cfg.max_rewrite_bytes;
    if !list || !resp.status().is_success() || maybe_json(resp.headers(), max).is_err() {
        return stream_response(resp, &[], None);
    }
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let body = match read_prefix(Box::pin(resp.bytes_stream()), max).await {
        Ok(Ok(b)) => b,
        Ok(Err((prefix, rest))) => {
            let mut b = HttpResponse::builder().status(status);
            for (n, v) in &h {
                if !HOP_BY_HOP.contains(&n.as_str()) {
                    b = b.header(n, v.clone());
                }
            }
            let stream = futures_util::stream::once(async move { Ok::<_, reqwest::Error>(prefix) }).chain(rest);
            return b
                .header("x-geomesh-rewrite", "too-large")
                .body(AxBody::from_stream(stream))
                .unwrap_or_else(|_| plain(502, "geomesh: bad upstream answer"));
        }
        Err(e) => return plain(502, format!("geomesh: instance answer cut: {}", describe(&e))),
    };
    let mut reply = to_reply(status, &h, body);
    let fields = local.ids.clone();
    let ct = reply.header("content-type").map(str::to_owned);
    if let Ok(mut doc) = parse_json_body(ct.as_deref(), None, &reply.body, max) {
        let ids: Vec<String> = fields
            .list_pointers
            .iter()
            .flat_map(|p| p.get_all(&doc))
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect();
        if !ids.is_empty() {
            let (svc, site) = (inc.service.clone(), node.site.clone());
            let map = blocking(&node.db, move |db| db.lookup_locals(&svc, &site, &collection, &ids))
                .await
                .unwrap_or_default();
            if !map.is_empty() {
                let n = replace_at(&mut doc, &fields.list_pointers, &mut |v| {
                    let key = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    map.get(&key).map(|m| Value::String(m.to_string()))
                });
                if n > 0 {
                    if let Ok(b) = serde_json::to_vec(&doc) {
                        reply.body = Bytes::from(b);
                    }
                }
            }
        }
    }
    reply_response(reply)
}
