//! How the replies of the parts of one client request become the client's reply.

use bytes::{BufMut, Bytes};
use geomesh_core::{ClusterId, RoutingTable};

use super::replies::{error, named_error, unexpected, NO_REPLY};
use crate::commands::Merge;
use crate::{write_array_header, write_integer, write_map_header, Kind, Protocol, Reply, Value};

/// One part of a request as the pipeline keeps it.
pub(crate) type Part = geomesh_kit::Part<Reply>;

/// The SCAN cursor the client sees: the server cursor in the high bits, the index of the
/// cluster in `active_clusters()` in the low [`SCAN_INDEX_BITS`] bits.
pub(crate) const SCAN_INDEX_BITS: u32 = 12;

/// The first error among the parts, re-worded to name its cluster.
fn first_error(table: &RoutingTable, parts: &[Part]) -> Option<Bytes> {
    parts.iter().find_map(|p| {
        let r = p.answer.as_ref()?;
        r.is_error().then(|| named_error(table, p.cluster, &r.root()))
    })
}

fn missing(table: &RoutingTable, parts: &[Part]) -> Option<Bytes> {
    parts
        .iter()
        .find(|p| p.answer.is_none())
        .map(|p| error(super::replies::cluster_error(table, p.cluster, "no reply").as_bytes()))
}

fn is_aggregate_list(v: &Value<'_>) -> bool {
    matches!(v.kind(), Kind::Array | Kind::Set | Kind::Push)
}

/// The client's reply for finished parts (connection-state merges are the session's own:
/// they reset connections, see `state.rs`; here the local cluster's reply stands for them).
pub(crate) fn finalize(kind: &Merge, parts: &[Part], table: &RoutingTable, proto: Protocol) -> Bytes {
    if let Some(e) = missing(table, parts) {
        return e;
    }
    match kind {
        Merge::Session { .. } => match parts.first().and_then(|p| p.answer.as_ref()) {
            Some(r) => r.raw().clone(),
            None => error(NO_REPLY.as_bytes()),
        },
        Merge::Confirm { replies } => {
            first_error(table, parts).unwrap_or_else(|| replies.clone())
        }
        Merge::Mget { order } => mget(order, parts, table),
        Merge::Mset => mset(parts, table),
        Merge::Sum => {
            if let Some(e) = first_error(table, parts) {
                return e;
            }
            let mut total: i64 = 0;
            for p in parts {
                match p.answer.as_ref().and_then(|r| r.root().as_integer()) {
                    Some(n) => total = total.saturating_add(n),
                    None => return unexpected(table, p.cluster, "a counting command"),
                }
            }
            let mut v = Vec::with_capacity(24);
            write_integer(&mut v, total);
            Bytes::from(v)
        }
        Merge::Union => {
            if let Some(e) = first_error(table, parts) {
                return e;
            }
            let mut seen = std::collections::HashSet::new();
            let mut items: Vec<&[u8]> = Vec::new();
            for p in parts {
                let Some(r) = p.answer.as_ref() else { continue };
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
        Merge::AllOk => first_error(table, parts).unwrap_or_else(|| {
            parts
                .first()
                .and_then(|p| p.answer.as_ref())
                .map(|r| r.raw().clone())
                .unwrap_or_default()
        }),
        Merge::Any => {
            let ok = parts
                .iter()
                .filter_map(|p| p.answer.as_ref())
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
        Merge::OneOk => parts
            .iter()
            .filter_map(|p| p.answer.as_ref())
            .find(|r| !r.is_error())
            .map(|r| r.raw().clone())
            .or_else(|| first_error(table, parts))
            .unwrap_or_default(),
        Merge::Min | Merge::And => min_merge(parts, table, false),
        Merge::Max => min_merge(parts, table, true),
        Merge::NumSub => numsub(parts, table, proto),
        Merge::Scan => scan(parts, table),
    }
}

fn mget(order: &[(u32, u32)], parts: &[Part], table: &RoutingTable) -> Bytes {
    if let Some(e) = first_error(table, parts) {
        return e;
    }
    let mut elems: Vec<Vec<&[u8]>> = Vec::with_capacity(parts.len());
    for p in parts {
        let Some(r) = p.answer.as_ref() else {
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
        match p.answer.as_ref() {
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
        let Some(r) = p.answer.as_ref() else { continue };
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
        let Some(r) = p.answer.as_ref() else { continue };
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

/// The page of the cluster at index `idx` of the table's active clusters, read against the
/// table in force when the reply comes (a cluster no longer active ends the scan).
fn scan(parts: &[Part], table: &RoutingTable) -> Bytes {
    if let Some(e) = first_error(table, parts) {
        return e;
    }
    let Some(p) = parts.first() else {
        return error(NO_REPLY.as_bytes());
    };
    let active = table.active_clusters();
    let count = active.len() as u64;
    let idx = active.iter().position(|c| *c == p.cluster).map_or(count, |i| i as u64);
    let Some(r) = p.answer.as_ref() else {
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
    let next = if server == 0 || idx >= count {
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
