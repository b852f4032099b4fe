//! The entry point the filter calls: a request's path, method and headers first
//! ([`on_headers`]), then, when the plan needs it, its whole body ([`on_body`]).
//!
//! | path | what |
//! |---|---|
//! | `POST /write` | [`crate::write::plan_write`] on the body |
//! | `GET /query` | [`crate::query::plan_query`] on the URL's parameters |
//! | `POST /query` | same, with the form body's parameters |
//! | `/debug/*` | 403 |
//! | anything else (`/ping`, `/health`, ...) | `local_cluster` |

use geomesh_core::RoutingTable;

use crate::params::{split_path, Params};
use crate::plan::{Plan, Reply};
use crate::query::plan_query;
use crate::replies;
use crate::settings::Settings;
use crate::write::plan_write;

/// What the filter read of the request's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: &'a [u8],
    /// `:path`, query string included.
    pub path: &'a [u8],
    /// `Content-Encoding: gzip`.
    pub gzip: bool,
    /// `Accept: application/csv` (or `text/csv`).
    pub csv: bool,
    /// `Content-Type: application/x-www-form-urlencoded`.
    pub form: bool,
    /// `Content-Length`, when given.
    pub content_length: Option<u64>,
}

/// The decision at the headers.
#[derive(Debug, Clone, PartialEq)]
pub enum AtHeaders {
    /// Decided (no body needed).
    Plan(Plan),
    /// Buffer the body (at most `max_body_bytes`), then call [`on_body`].
    NeedBody,
}

/// Which endpoint a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Write,
    Query,
    Debug,
    Other,
}

fn endpoint(path: &[u8]) -> Endpoint {
    let path = path
        .strip_suffix(b"/")
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    match path {
        b"/write" => Endpoint::Write,
        b"/query" => Endpoint::Query,
        p if p == b"/debug" || p.starts_with(b"/debug/") => Endpoint::Debug,
        _ => Endpoint::Other,
    }
}

/// The request type a request's metrics are counted under (`command.<family>.*`): `write`,
/// `query`, `ping`, `health`, `debug` or `other`.
pub fn family(path: &[u8]) -> &'static str {
    let (path, _) = split_path(path);
    match endpoint(path) {
        Endpoint::Write => "write",
        Endpoint::Query => "query",
        Endpoint::Debug => "debug",
        Endpoint::Other => match path.strip_suffix(b"/").unwrap_or(path) {
            b"/ping" => "ping",
            b"/health" => "health",
            _ => "other",
        },
    }
}

/// Whether `:path` is `/write` (query string ignored).
pub fn is_write(path: &[u8]) -> bool {
    endpoint(split_path(path).0) == Endpoint::Write
}

fn too_large(settings: &Settings) -> Plan {
    Plan::Reply(Reply::error(
        413,
        &format!(
            "{} {} bytes",
            replies::BODY_TOO_LARGE,
            settings.max_body_bytes
        ),
    ))
}

/// Decides what it can from the headers.
pub fn on_headers(table: &RoutingTable, settings: &Settings, head: &Head<'_>) -> AtHeaders {
    let (path, query) = split_path(head.path);
    match (endpoint(path), head.method) {
        (Endpoint::Debug, _) => {
            AtHeaders::Plan(Plan::Reply(Reply::error(403, replies::DEBUG_REFUSED)))
        }
        (Endpoint::Write | Endpoint::Query, b"POST")
            if head
                .content_length
                .is_some_and(|n| n > settings.max_body_bytes as u64) =>
        {
            AtHeaders::Plan(too_large(settings))
        }
        (Endpoint::Write, b"POST") => AtHeaders::NeedBody,
        (Endpoint::Query, b"POST") => AtHeaders::NeedBody,
        (Endpoint::Query, b"GET") => {
            AtHeaders::Plan(plan_query(table, settings, &Params::parse(query), head.csv))
        }
        _ => AtHeaders::Plan(Plan::Forward(table.local_cluster())),
    }
}

/// Decides with the whole body (after [`AtHeaders::NeedBody`]); `now_ns` stamps the points
/// without a timestamp of a split write.
pub fn on_body(
    table: &RoutingTable,
    settings: &Settings,
    head: &Head<'_>,
    body: &[u8],
    now_ns: u64,
) -> Plan {
    if body.len() > settings.max_body_bytes {
        return too_large(settings);
    }
    let (path, query) = split_path(head.path);
    let params = Params::parse(query);
    match endpoint(path) {
        Endpoint::Write => plan_write(table, settings, &params, body, head.gzip, now_ns),
        Endpoint::Query => {
            let mut params = params;
            if head.form {
                params.extend(Params::parse(body));
            }
            plan_query(table, settings, &params, head.csv)
        }
        Endpoint::Debug | Endpoint::Other => Plan::Forward(table.local_cluster()),
    }
}
