//! The replies and error texts the proxy writes itself, in one place.
//!
//! Texts that Redis itself uses are kept word for word (clients and Redis's own test suite
//! match on them); geomesh's own errors start with `ERR geomesh:` and name the cluster at
//! fault.

use bytes::Bytes;
use geomesh_core::{ClusterId, RoutingTable};

use crate::Value;

pub(crate) const OK: &[u8] = b"+OK\r\n";
pub(crate) const QUEUED: &[u8] = b"+QUEUED\r\n";
pub(crate) const PONG: &[u8] = b"+PONG\r\n";
pub(crate) const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
pub(crate) const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
pub(crate) const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";
/// EXEC aborted by a watched key (RESP2).
pub(crate) const NULL_ARRAY: &[u8] = b"*-1\r\n";

// Redis's own words.
pub(crate) const PING_ARITY: &str = "ERR wrong number of arguments for 'ping' command";
pub(crate) const INVALID_CURSOR: &str = "ERR invalid cursor";
pub(crate) const NESTED_MULTI: &str = "ERR MULTI calls can not be nested";
pub(crate) const DISCARD_WITHOUT_MULTI: &str = "ERR DISCARD without MULTI";
pub(crate) const EXEC_WITHOUT_MULTI: &str = "ERR EXEC without MULTI";
pub(crate) const WATCH_IN_MULTI: &str = "ERR WATCH inside MULTI is not allowed";
pub(crate) const EXEC_ABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
pub(crate) const NOT_IN_MULTI: &str = "ERR Command not allowed inside a transaction";

// geomesh's own.
pub(crate) const NO_REPLY: &str = "ERR geomesh: no reply";

/// `-ERR Can't execute '<cmd>': only (P|S)SUBSCRIBE / ... are allowed in this context`
pub(crate) fn subscribed_context(name: &str) -> String {
    format!(
        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
        name.replace('|', " ")
    )
}

pub(crate) fn too_many_pending(limit: usize) -> String {
    format!("ERR geomesh: too many requests waiting for replies on this connection (limit {limit})")
}

pub(crate) fn unsupported(name: &str, reason: &str) -> String {
    format!("ERR geomesh: {} is not supported through the sharding proxy: {reason}", upper(name))
}

pub(crate) fn unsupported_in_multi(name: &str, why: &str) -> String {
    format!(
        "ERR geomesh: {} is not supported inside MULTI through the sharding proxy: {why}",
        upper(name)
    )
}

pub(crate) fn too_many_in_multi(max: usize) -> String {
    format!("ERR geomesh: more than {max} commands in one transaction")
}

/// `-CROSSSLOT ...`, naming the clusters.
pub(crate) fn crossslot(table: &RoutingTable, clusters: &[ClusterId]) -> String {
    let names: Vec<&str> = clusters.iter().map(|c| table.cluster_name(*c)).collect();
    format!(
        "CROSSSLOT Keys in request don't hash to the same slot (geomesh: they route to clusters {})",
        names.join(", ")
    )
}

pub(crate) fn crossslot_watch(table: &RoutingTable, keys: ClusterId, watched: ClusterId) -> String {
    format!(
        "CROSSSLOT Keys in request don't hash to the same slot (geomesh: WATCH keys route to cluster {}, this transaction already watches keys on {})",
        table.cluster_name(keys),
        table.cluster_name(watched)
    )
}

/// `ERR geomesh: cluster <name>: <what>`: a cluster that failed.
pub(crate) fn cluster_error(table: &RoutingTable, cluster: ClusterId, what: &str) -> String {
    format!("ERR geomesh: cluster {}: {what}", table.cluster_name(cluster))
}

pub(crate) fn no_reply_within(budget_ms: u64) -> String {
    format!("no reply within {budget_ms} ms")
}

pub(crate) fn replay_refused(table: &RoutingTable, cluster: ClusterId, state: &str, text: &[u8]) -> String {
    cluster_error(
        table,
        cluster,
        &format!("refused the session's {state}: {}", String::from_utf8_lossy(text)),
    )
}

pub(crate) fn state_refused(table: &RoutingTable, cluster: ClusterId, shown: &str, text: &[u8]) -> String {
    cluster_error(table, cluster, &format!("refused {shown}: {}", String::from_utf8_lossy(text)))
}

pub(crate) fn state_accepted_alone(table: &RoutingTable, cluster: ClusterId, shown: &str) -> String {
    cluster_error(
        table,
        cluster,
        &format!("connection reset: it accepted {shown}, which failed on the local cluster"),
    )
}

pub(crate) fn state_no_reply(table: &RoutingTable, cluster: ClusterId, shown: &str) -> String {
    cluster_error(table, cluster, &format!("no reply to {shown}"))
}

pub(crate) fn state_lost(table: &RoutingTable, cluster: ClusterId, shown: &str) -> String {
    cluster_error(
        table,
        cluster,
        &format!("connection reset: {shown} failed, this connection may hold its state"),
    )
}

/// A table name as users write it: `client|setname` -> `CLIENT SETNAME`.
pub(crate) fn upper(name: &str) -> String {
    name.to_ascii_uppercase().replace('|', " ")
}

/// `-<message>\r\n`
pub(crate) fn error(message: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(message.len() + 3);
    crate::write_error(&mut v, message);
    Bytes::from(v)
}

/// A server error re-worded to name the cluster, its code kept:
/// `WRONGTYPE Operation...` -> `-WRONGTYPE geomesh: cluster redis2: Operation...`.
pub(crate) fn named_error(table: &RoutingTable, cluster: ClusterId, v: &Value<'_>) -> Bytes {
    let text = v.as_bytes().unwrap_or_default();
    let (code, rest) = match memchr::memchr(b' ', text) {
        Some(i) => (text.get(..i).unwrap_or_default(), text.get(i + 1..).unwrap_or_default()),
        None => (text, &b""[..]),
    };
    let code = if code.is_empty() { &b"ERR"[..] } else { code };
    let mut msg = Vec::with_capacity(text.len() + 48);
    msg.extend_from_slice(code);
    msg.extend_from_slice(b" geomesh: cluster ");
    msg.extend_from_slice(table.cluster_name(cluster).as_bytes());
    if !rest.is_empty() {
        msg.extend_from_slice(b": ");
        msg.extend_from_slice(rest);
    }
    error(&msg)
}

/// `ERR geomesh: cluster <name>: unexpected reply to <what>`
pub(crate) fn unexpected(table: &RoutingTable, cluster: ClusterId, what: &str) -> Bytes {
    error(cluster_error(table, cluster, &format!("unexpected reply to {what}")).as_bytes())
}
