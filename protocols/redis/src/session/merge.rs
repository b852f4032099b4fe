//! How the replies of the parts of one client request become the client's reply.

use bytes::{BufMut, Bytes};
use geomesh_core::{ClusterId, RoutingTable};

use crate::{write_array_header, write_integer, write_map_header, Kind, Protocol, Reply, Value};

/// One sub-request of a client request: where it went and what came back.
#[derive(Debug)]
pub(crate) struct Part {
    pub cluster: ClusterId,
    pub reply: Option<Reply>,
}

/// How parts are merged.
#[derive(Debug)]
pub(crate) enum MergeKind {
    /// One part; its reply is the client's reply.
    Forward,
    /// MGET split by cluster: for each of the client's keys, (part, element index).
    Mget { order: Vec<(u32, u32)> },
    /// MSET split by cluster: `+OK` if every part said OK.
    Mset,
    /// Integers summed (DEL, UNLINK, EXISTS, TOUCH, DBSIZE).
    Sum,
    /// Arrays concatenated, duplicates removed (KEYS, PUBSUB CHANNELS).
    Union,
    /// Every part must succeed; the first part's reply (FLUSHDB, SCRIPT LOAD, ...).
    AllOk,
    /// The first non-null reply (RANDOMKEY).
    Any,
    /// The smallest integer, element-wise for arrays (WAIT, WAITAOF).
    Min,
    /// The largest integer (PUBSUB NUMPAT).
    Max,
    /// Element-wise AND of integer arrays (SCRIPT EXISTS).
    And,
    /// One success is enough (SCRIPT KILL, FUNCTION KILL).
    OneOk,
    /// `[channel, count, ...]`, the largest count per channel (PUBSUB NUMSUB): one client's
    /// subscription is on every cluster the channel can be published to.
    NumSub,
    /// SCAN on the active cluster of index `idx` (of `count`).
    Scan { idx: u64, count: u64 },
    /// A connection-state command: the first part (local cluster) answers, the others must
    /// agree. `name` for messages.
    Session { name: &'static str },
    /// (P|S)(UN)SUBSCRIBE: the confirmations the client gets once every part confirmed.
    Confirm { replies: Bytes },
}

/// The SCAN cursor the client sees: the server cursor in the high bits, the index of the
/// cluster in `active_clusters()` in the low [`SCAN_INDEX_BITS`] bits.
pub(crate) const SCAN_INDEX_BITS: u32 = 12;

/// A server error re-worded to name the cluster, its code kept:
/// `WRONGTYPE Operation...` -> `-WRONGTYPE geomesh: cluster redis2: Operation...`.
pub(crate) fn named_error(table: &RoutingTable, cluster: ClusterId, v: &Value<'_>) -> Bytes {
    named_error_text(table, cluster, v.as_bytes().unwrap_or_default())
}

pub(crate) fn named_error_text(table: &RoutingTable, cluster: ClusterId, text: &[u8]) -> Bytes {
    let (code, rest) = match memchr::memchr(b' ', text) {
        Some(i) => (
            text.get(..i).unwrap_or_default(),
            text.get(i + 1..).unwrap_or_default(),
        ),
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

/// `-<message>\r\n`
pub(crate) fn error(message: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(message.len() + 3);
    crate::write_error(&mut v, message);
    Bytes::from(v)
}

fn unexpected(table: &RoutingTable, cluster: ClusterId, what: &str) -> Bytes {
    error(
        format!(
            "ERR geomesh: cluster {}: unexpected reply to {what}",
            table.cluster_name(cluster)
        )
        .as_bytes(),
    )
}

/// The first error among the parts, re-worded to name its cluster.
fn first_error(table: &RoutingTable, parts: &[Part]) -> Option<Bytes> {
    parts.iter().find_map(|p| {
        let r = p.reply.as_ref()?;
        r.is_error()
            .then(|| named_error(table, p.cluster, &r.root()))
    })
}

fn missing(table: &RoutingTable, parts: &[Part]) -> Option<Bytes> {
    parts.iter().find(|p| p.reply.is_none()).map(|p| {
        error(
            format!(
                "ERR geomesh: cluster {}: no reply",
                table.cluster_name(p.cluster)
            )
            .as_bytes(),
        )
    })
}

fn is_aggregate_list(v: &Value<'_>) -> bool {
    matches!(v.kind(), Kind::Array | Kind::Set | Kind::Push)
}

/// The client's reply for finished parts.
pub(crate) fn finalize(
    kind: &MergeKind,
    parts: &[Part],
    table: &RoutingTable,
    proto: Protocol,
) -> Bytes {
    if let Some(e) = missing(table, parts) {
        return e;
    }
    match kind {
        MergeKind::Forward | MergeKind::Session { .. } => {
            match parts.first().and_then(|p| p.reply.as_ref()) {
                Some(r) => r.raw().clone(),
                None => error(b"ERR geomesh: no reply"),
            }
        }
        MergeKind::Confirm { replies } => {
            first_error(table, parts).unwrap_or_else(|| replies.clone())
        }
        MergeKind::Mget { order } => mget(order, parts, table),
        MergeKind::Mset => mset(parts, table),
        MergeKind::Sum => {
            if let Some(e) = first_error(table, parts) {
                return e;
            }
            let mut total: i64 = 0;
            for p in parts {
                match p.reply.as_ref().and_then(|r| r.root().as_integer()) {
                    Some(n) => total = total.saturating_add(n),
                    None => return unexpected(table, p.cluster, "a counting command"),
                }
            }
            let mut v = Vec::with_capacity(24);
            write_integer(&mut v, total);
            Bytes::from(v)
        }
        MergeKind::Union => {
            if let Some(e) = first_error(table, parts) {
                return e;
            }
            let mut seen = std::collections::HashSet::new();
            let mut items: Vec<&[u8]> = Vec::new();
            for p in parts {
                let Some(r) = p.reply.as_ref() else { continue };
                let root = r.root();
                if !is_aggregate_list(&root) {
                    return unexpected(table, p.cluster, "a listing command");
                }
                for e in root.elements() {
                    let raw = e.raw_with_attributes();
                    if seen.insert(raw) {
                        items.push(raw);
                    }
                }
            }
            let mut v = Vec::with_capacity(items.iter().map(|i| i.len()).sum::<usize>() + 16);
            write_array_header(&mut v, items.len());
            for i in items {
                v.put_slice(i);
            }
            Bytes::from(v)
        }
        MergeKind::AllOk => first_error(table, parts).unwrap_or_else(|| {
            parts
                .first()
                .and_then(|p| p.reply.as_ref())
                .map(|r| r.raw().clone())
                .unwrap_or_default()
        }),
        MergeKind::Any => {
            let ok = parts
                .iter()
                .filter_map(|p| p.reply.as_ref())
                .filter(|r| !r.is_error());
            let mut first_ok = None;
            for r in ok {
                if !r.root().is_null() {
                    return r.raw().clone();
                }
                first_ok.get_or_insert(r);
            }
            match first_ok {
                Some(r) => r.raw().clone(),
                None => first_error(table, parts).unwrap_or_default(),
            }
        }
        MergeKind::OneOk => parts
            .iter()
            .filter_map(|p| p.reply.as_ref())
            .find(|r| !r.is_error())
            .map(|r| r.raw().clone())
            .or_else(|| first_error(table, parts))
            .unwrap_or_default(),
        MergeKind::Min | MergeKind::And => min_merge(parts, table, false),
        MergeKind::Max => min_merge(parts, table, true),
        MergeKind::NumSub => numsub(parts, table, proto),
        MergeKind::Scan { idx, count } => scan(*idx, *count, parts, table),
    }
}

fn mget(order: &[(u32, u32)], parts: &[Part], table: &RoutingTable) -> Bytes {
    if let Some(e) = first_error(table, parts) {
        return e;
    }
    let mut elems: Vec<Vec<&[u8]>> = Vec::with_capacity(parts.len());
    for p in parts {
        let Some(r) = p.reply.as_ref() else {
            return unexpected(table, p.cluster, "MGET");
        };
        let root = r.root();
        if root.kind() != Kind::Array {
            return unexpected(table, p.cluster, "MGET");
        }
        elems.push(root.elements().map(|e| e.raw_with_attributes()).collect());
    }
    let mut v = Vec::with_capacity(elems.iter().flatten().map(|e| e.len()).sum::<usize>() + 16);
    write_array_header(&mut v, order.len());
    for &(p, i) in order {
        match elems.get(p as usize).and_then(|e| e.get(i as usize)) {
            Some(raw) => v.put_slice(raw),
            None => {
                let c = parts
                    .get(p as usize)
                    .map(|p| p.cluster)
                    .unwrap_or(ClusterId(0));
                return unexpected(table, c, "MGET");
            }
        }
    }
    Bytes::from(v)
}

fn mset(parts: &[Part], table: &RoutingTable) -> Bytes {
    let mut failed = Vec::new();
    let mut ok = Vec::new();
    for p in parts {
        let name = table.cluster_name(p.cluster);
        match p.reply.as_ref() {
            Some(r)
                if r.root().kind() == Kind::SimpleString && r.root().as_bytes() == Some(b"OK") =>
            {
                ok.push(name.to_owned())
            }
            Some(r) => {
                let text = r
                    .root()
                    .as_bytes()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                failed.push(format!("{name} ({text})"));
            }
            None => failed.push(format!("{name} (no reply)")),
        }
    }
    if failed.is_empty() {
        return Bytes::from_static(b"+OK\r\n");
    }
    let mut msg = format!("ERR geomesh: MSET failed on cluster {}", failed.join(", "));
    if !ok.is_empty() {
        msg.push_str(&format!("; applied on {}", ok.join(", ")));
    }
    error(msg.as_bytes())
}

/// Element-wise minimum (or maximum, `max`) of integers or integer arrays.
fn min_merge(parts: &[Part], table: &RoutingTable, max: bool) -> Bytes {
    if let Some(e) = first_error(table, parts) {
        return e;
    }
    let mut acc: Option<Vec<i64>> = None;
    let mut scalar = false;
    for p in parts {
        let Some(r) = p.reply.as_ref() else { continue };
        let root = r.root();
        let vals: Vec<i64> = if let Some(n) = root.as_integer() {
            scalar = true;
            vec![n]
        } else if is_aggregate_list(&root) {
            let mut v = Vec::with_capacity(root.len());
            for e in root.elements() {
                match e.as_integer() {
                    Some(n) => v.push(n),
                    None => {
                        return unexpected(table, p.cluster, "a command answered by every cluster")
                    }
                }
            }
            v
        } else {
            return unexpected(table, p.cluster, "a command answered by every cluster");
        };
        acc = Some(match acc {
            None => vals,
            Some(a) => a
                .iter()
                .zip(vals.iter())
                .map(|(x, y)| if max { (*x).max(*y) } else { (*x).min(*y) })
                .collect(),
        });
    }
    let acc = acc.unwrap_or_default();
    let mut v = Vec::with_capacity(8 + 24 * acc.len());
    if scalar {
        write_integer(&mut v, acc.first().copied().unwrap_or(0));
    } else {
        write_array_header(&mut v, acc.len());
        for n in acc {
            write_integer(&mut v, n);
        }
    }
    Bytes::from(v)
}

fn numsub(parts: &[Part], table: &RoutingTable, proto: Protocol) -> Bytes {
    if let Some(e) = first_error(table, parts) {
        return e;
    }
    let mut counts: Vec<(&[u8], i64)> = Vec::new();
    let mut map = false;
    for p in parts {
        let Some(r) = p.reply.as_ref() else { continue };
        let root = r.root();
        if root.kind() == Kind::Map {
            map = true;
        } else if !is_aggregate_list(&root) {
            return unexpected(table, p.cluster, "PUBSUB NUMSUB");
        }
        let mut it = root.elements();
        while let (Some(ch), Some(n)) = (it.next(), it.next()) {
            let raw = ch.raw_with_attributes();
            let n = n.as_integer().unwrap_or(0);
            match counts.iter_mut().find(|(c, _)| *c == raw) {
                Some(slot) => slot.1 = slot.1.max(n),
                None => counts.push((raw, n)),
            }
        }
    }
    let mut v = Vec::new();
    if map {
        write_map_header(&mut v, counts.len(), proto);
    } else {
        write_array_header(&mut v, counts.len() * 2);
    }
    for (c, n) in counts {
        v.put_slice(c);
        write_integer(&mut v, n);
    }
    Bytes::from(v)
}

fn scan(idx: u64, count: u64, parts: &[Part], table: &RoutingTable) -> Bytes {
    if let Some(e) = first_error(table, parts) {
        return e;
    }
    let Some(p) = parts.first() else {
        return error(b"ERR geomesh: no reply");
    };
    let Some(r) = p.reply.as_ref() else {
        return unexpected(table, p.cluster, "SCAN");
    };
    let root = r.root();
    let (Some(cur), Some(keys)) = (root.get(0), root.get(1)) else {
        return unexpected(table, p.cluster, "SCAN");
    };
    let Some(server) = cur
        .as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return unexpected(table, p.cluster, "SCAN");
    };
    let next = if server == 0 {
        if idx + 1 < count {
            idx + 1
        } else {
            0
        }
    } else if server >> (64 - SCAN_INDEX_BITS) != 0 {
        return error(
            format!(
                "ERR geomesh: cluster {}: SCAN cursor {server} is too large to be combined with a cluster index",
                table.cluster_name(p.cluster)
            )
            .as_bytes(),
        );
    } else {
        (server << SCAN_INDEX_BITS) | idx
    };
    let cursor = next.to_string();
    let keys = keys.raw_with_attributes();
    let mut v = Vec::with_capacity(keys.len() + 32);
    write_array_header(&mut v, 2);
    crate::write_bulk(&mut v, cursor.as_bytes());
    v.put_slice(keys);
    Bytes::from(v)
}
