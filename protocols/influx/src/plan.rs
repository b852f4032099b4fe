//! What the filter does with a request: the [`Plan`] a planner returns, the calls it makes and
//! the answers it feeds back to a merge. Sans-IO: the filter only carries these out.

use geomesh_core::ClusterId;

use crate::query::QueryMerge;
use crate::write::WriteMerge;

/// The decision for one HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// One shard: Envoy's router forwards the request as received (body untouched, streamed).
    Forward(ClusterId),
    /// Several shards: one call each, their answers merged by `merge`.
    Fanout { calls: Vec<Call>, merge: Merge },
    /// Answered by the filter.
    Reply(Reply),
}

/// A request to one shard (`dispatch_http_call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub cluster: ClusterId,
    /// `/write?...` or `/query?...`.
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// How the answers of a fan-out become the client's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    Write(WriteMerge),
    Query(QueryMerge),
}

/// A shard's answer to a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `None`: no answer (connection failure, timeout, or an answer over the size limit).
    pub status: Option<u16>,
    pub body: Vec<u8>,
}

/// An answer the filter writes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// InfluxDB's content type for JSON answers.
pub const JSON: &str = "application/json";
/// InfluxDB's content type for CSV answers.
pub const CSV: &str = "application/csv";
/// The content type of line protocol sent to a shard.
pub const LINE_PROTOCOL: &str = "text/plain; charset=utf-8";
/// The content type of a query form sent to a shard.
pub const FORM: &str = "application/x-www-form-urlencoded";

impl Reply {
    /// An InfluxDB-shaped error: `{"error":"..."}`.
    pub fn error(status: u16, message: &str) -> Reply {
        let mut body = serde_json::json!({ "error": message })
            .to_string()
            .into_bytes();
        body.push(b'\n');
        Reply {
            status,
            content_type: JSON,
            body,
        }
    }
}
/// The content type InfluxDB gives its CSV answers.
pub const CSV_OUT: &str = "text/csv";
