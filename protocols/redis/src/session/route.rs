//! Commands routed by their keys: one key, keys that must share a cluster, blocking commands,
//! commands split per cluster, broadcasts and SCAN.

use bytes::{BufMut, Bytes};
use geomesh_core::{ClusterId, RoutingTable};
use geomesh_kit::{Ctx, PartSend, Plan};

use super::merge::SCAN_INDEX_BITS;
use super::replies;
use super::{local_error, Redis};
use crate::commands::{BlockTimeout, CommandSpec, Merge, Split};
use crate::{write_array_header, write_bulk, Command};

/// One key: its cluster; no key: the default cluster.
pub(super) fn keyed(cmd: &Command, spec: &CommandSpec, cx: &mut Ctx<'_, Redis>) -> Plan<Redis> {
    let mut keys = match spec.keys(cmd) {
        Ok(k) => k,
        Err(e) => return local_error(e.message()),
    };
    let table = cx.table();
    let cluster = match keys.next().and_then(|i| cmd.arg(i)) {
        Some(k) => table.route(k),
        None => table.default_cluster(),
    };
    Plan::Forward {
        cluster,
        bytes: cmd.raw().clone(),
    }
}

/// Keys that must share one cluster: forwarded there with `budget`, or `-CROSSSLOT`.
pub(super) fn same_shard_forward(cmd: &Command, spec: &CommandSpec, budget: Option<u64>, cx: &mut Ctx<'_, Redis>) -> Plan<Redis> {
    match same_shard(cmd, spec, cx.table()) {
        Ok(c) => {
            cx.forward(c, cmd.raw(), budget);
            Plan::Done
        }
        Err(m) => local_error(&m),
    }
}

/// A blocking command: its own timeout on top of the budget (none when it blocks forever).
pub(super) fn blocking(cmd: &Command, spec: &CommandSpec, cx: &mut Ctx<'_, Redis>) -> Plan<Redis> {
    let budget = match spec.timeout(cmd) {
        Ok(t) => block_budget(t, cx.budget()),
        Err(e) => return local_error(e.message()),
    };
    same_shard_forward(cmd, spec, budget, cx)
}

/// The budget of a command that may block for `t`.
fn block_budget(t: Option<BlockTimeout>, budget: Option<u64>) -> Option<u64> {
    match t {
        Some(BlockTimeout::Forever) => None,
        Some(BlockTimeout::Millis(ms)) => budget.map(|b| ms.saturating_add(b)),
        Some(BlockTimeout::NonBlocking) | None => budget,
    }
}

/// The one cluster all keys route to (default for none), or the `-CROSSSLOT` message.
pub(super) fn same_shard(cmd: &Command, spec: &CommandSpec, table: &RoutingTable) -> Result<ClusterId, String> {
    let keys = spec.keys(cmd).map_err(|e| e.message().to_owned())?;
    one_cluster(table, keys.filter_map(|i| cmd.arg(i)))
}

pub(super) fn one_cluster<'k>(table: &RoutingTable, keys: impl Iterator<Item = &'k [u8]>) -> Result<ClusterId, String> {
    let mut seen: Vec<ClusterId> = Vec::new();
    for k in keys {
        let c = table.route(k);
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    match seen.as_slice() {
        [] => Ok(table.default_cluster()),
        [c] => Ok(*c),
        many => Err(replies::crossslot(table, many)),
    }
}

/// MGET, MSET, DEL...: one command per cluster with its keys (a single cluster gets the
/// client's bytes).
pub(super) fn split(cmd: &Command, spec: &CommandSpec, split: Split, cx: &mut Ctx<'_, Redis>) -> Plan<Redis> {
    let keys = match spec.keys(cmd) {
        Ok(k) => k,
        Err(e) => return local_error(e.message()),
    };
    let table = cx.table().clone();
    // Arguments per cluster (the command name first), clusters in order of first use.
    let mut groups: Vec<(ClusterId, Vec<usize>)> = Vec::new();
    let mut order: Vec<(u32, u32)> = Vec::new();
    for i in keys {
        let Some(key) = cmd.arg(i) else { continue };
        let c = table.route(key);
        let g = match groups.iter().position(|(gc, _)| *gc == c) {
            Some(g) => g,
            None => {
                groups.push((c, vec![0]));
                groups.len() - 1
            }
        };
        if let Some((_, args)) = groups.get_mut(g) {
            args.push(i);
            if split == Split::Mset {
                args.push(i + 1);
            } else {
                order.push((g as u32, (args.len() - 2) as u32));
            }
        }
    }
    if groups.len() <= 1 {
        let cluster = groups.first().map(|g| g.0).unwrap_or_else(|| table.default_cluster());
        return Plan::Forward {
            cluster,
            bytes: cmd.raw().clone(),
        };
    }
    let parts = groups
        .into_iter()
        .map(|(c, args)| {
            let mut b = Vec::with_capacity(cmd.raw().len() / 2 + 16);
            cmd.write_subset(&args, &mut b);
            (c, b)
        })
        .collect();
    let merge = match split {
        Split::Mget => Merge::Mget { order },
        Split::Mset => Merge::Mset,
        Split::Sum => Merge::Sum,
    };
    Plan::Split { parts, merge }
}

/// No key: every active cluster, replies merged as the table says (SCAN walks them instead).
pub(super) fn broadcast(cmd: &Command, spec: &CommandSpec, m: &Merge, cx: &mut Ctx<'_, Redis>) -> Plan<Redis> {
    let budget = match spec.timeout(cmd) {
        Ok(t) => block_budget(t, cx.budget()),
        Err(e) => return local_error(e.message()),
    };
    if *m == Merge::Scan {
        return scan(cmd, cx);
    }
    let active: Vec<ClusterId> = cx.table().active_clusters().to_vec();
    if let [c] = active.as_slice() {
        cx.forward(*c, cmd.raw(), budget);
        return Plan::Done;
    }
    cx.broadcast(cmd.raw(), m.clone(), budget);
    Plan::Done
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// SCAN on the cluster the cursor's index names, with the server's own cursor.
fn scan(cmd: &Command, cx: &mut Ctx<'_, Redis>) -> Plan<Redis> {
    let Some(cursor) = cmd.arg(1).and_then(parse_u64) else {
        return local_error(replies::INVALID_CURSOR);
    };
    let idx = cursor & ((1 << SCAN_INDEX_BITS) - 1);
    let server = cursor >> SCAN_INDEX_BITS;
    let table = cx.table();
    let Some(&cluster) = usize::try_from(idx).ok().and_then(|i| table.active_clusters().get(i)) else {
        // Past the last cluster (the table shrank): the scan is over.
        let mut v = Vec::new();
        write_array_header(&mut v, 2);
        write_bulk(&mut v, b"0");
        write_array_header(&mut v, 0);
        return Plan::Local(Bytes::from(v));
    };
    let mut b = Vec::with_capacity(cmd.raw().len() + 8);
    write_array_header(&mut b, cmd.len());
    b.put_slice(cmd.arg_raw(0).unwrap_or_default());
    write_bulk(&mut b, server.to_string().as_bytes());
    for i in 2..cmd.len() {
        b.put_slice(cmd.arg_raw(i).unwrap_or_default());
    }
    let budget = cx.budget();
    cx.dispatch(vec![PartSend::new(cluster, b)], Merge::Scan, budget);
    Plan::Done
}
