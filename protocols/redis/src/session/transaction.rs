//! MULTI/EXEC/DISCARD/WATCH/UNWATCH: a transaction runs on one cluster (Redis Cluster's rule);
//! its commands are queued here and sent with MULTI and EXEC at EXEC.

use bytes::Bytes;
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Plan};

use super::replies::{self, error};
use super::route::same_shard;
use super::{local_error, Redis};
use crate::commands::{self, Category, CommandSpec, PubSub, Transaction};
use crate::{write_null, Command, Protocol};

/// A transaction being queued.
#[derive(Debug, Default)]
pub(super) struct Tx {
    cmds: Vec<Command>,
    clusters: Vec<ClusterId>,
    pub dirty: bool,
}

/// The cluster holding the keys WATCHed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Watch {
    pub cluster: ClusterId,
    /// The connection holding the WATCH went away: EXEC must fail.
    pub broken: bool,
}

impl Redis {
    /// A command between MULTI and EXEC: checked and queued (`+QUEUED`), or refused (and the
    /// transaction marked to fail at EXEC).
    pub(super) fn queue_in_tx(&mut self, cmd: Command, spec: &'static CommandSpec, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let table = cx.table().clone();
        let multi_cluster = table.active_clusters().len() > 1;
        let problem: Option<String> = if spec.has_flag(commands::flags::NO_MULTI) {
            Some(replies::NOT_IN_MULTI.to_owned())
        } else {
            match spec.category {
                Category::Unsupported(reason) => Some(replies::unsupported(spec.name, reason)),
                Category::Session(_) => Some(replies::unsupported_in_multi(
                    spec.name,
                    "it changes the state of every shard connection",
                )),
                Category::PubSub(PubSub::Publish | PubSub::SPublish) => None,
                Category::PubSub(_) => Some(replies::unsupported_in_multi(spec.name, "subscriptions span every cluster")),
                Category::Broadcast(_) if multi_cluster => {
                    Some(replies::unsupported_in_multi(spec.name, "it runs on every cluster"))
                }
                _ => None,
            }
        };
        if let Some(p) = problem {
            if let Some(tx) = self.tx.as_mut() {
                tx.dirty = true;
            }
            return local_error(&p);
        }
        let clusters: Result<Vec<ClusterId>, &'static str> = match spec.category {
            Category::PubSub(_) => {
                let ch = cmd.arg(1).unwrap_or_default();
                Ok(vec![table.route_message(Some(ch), commands::publish_payload(&cmd))])
            }
            _ => spec.keys(&cmd).map_err(|e| e.message()).map(|ks| {
                let mut v: Vec<ClusterId> = Vec::new();
                for i in ks {
                    if let Some(k) = cmd.arg(i) {
                        let c = table.route(k);
                        if !v.contains(&c) {
                            v.push(c);
                        }
                    }
                }
                v
            }),
        };
        let max = self.max_tx;
        let watch = self.watch;
        let Some(tx) = self.tx.as_mut() else {
            return Plan::Done;
        };
        match clusters {
            Err(m) => {
                tx.dirty = true;
                local_error(m)
            }
            Ok(_) if tx.cmds.len() >= max => {
                tx.dirty = true;
                local_error(&replies::too_many_in_multi(max))
            }
            Ok(cs) => {
                // Redis Cluster's rule: the command that would make the transaction span two
                // clusters gets -CROSSSLOT and the transaction is aborted at EXEC.
                let mut all = tx.clusters.clone();
                if let Some(w) = watch.filter(|w| !w.broken) {
                    if !all.contains(&w.cluster) {
                        all.insert(0, w.cluster);
                    }
                }
                for c in cs {
                    if !all.contains(&c) {
                        all.push(c);
                    }
                }
                if all.len() > 1 {
                    tx.dirty = true;
                    return local_error(&replies::crossslot(&table, &all));
                }
                tx.clusters = all;
                tx.cmds.push(cmd);
                Plan::Local(Bytes::from_static(replies::QUEUED))
            }
        }
    }

    /// Drops the WATCH held on its cluster (its reply is not the client's).
    fn unwatch(w: Option<Watch>, cx: &mut Ctx<'_, Self>) {
        if let Some(w) = w {
            if !w.broken {
                cx.send_discard(w.cluster, replies::UNWATCH, 1, ());
            }
        }
    }

    pub(super) fn transaction(&mut self, cmd: Command, spec: &CommandSpec, t: Transaction, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        match t {
            Transaction::Multi => {
                if self.tx.is_some() {
                    return local_error(replies::NESTED_MULTI);
                }
                self.tx = Some(Tx::default());
                Plan::Local(Bytes::from_static(replies::OK))
            }
            Transaction::Discard => {
                if self.tx.take().is_none() {
                    return local_error(replies::DISCARD_WITHOUT_MULTI);
                }
                Self::unwatch(self.watch.take(), cx);
                Plan::Local(Bytes::from_static(replies::OK))
            }
            Transaction::Watch => {
                if self.tx.is_some() {
                    return local_error(replies::WATCH_IN_MULTI);
                }
                let c = match same_shard(&cmd, spec, cx.table()) {
                    Ok(c) => c,
                    Err(m) => return local_error(&m),
                };
                if let Some(w) = self.watch {
                    if w.cluster != c && !w.broken {
                        return local_error(&replies::crossslot_watch(cx.table(), c, w.cluster));
                    }
                    if w.broken {
                        // EXEC must fail anyway; keep the broken watch.
                        return Plan::Local(Bytes::from_static(replies::OK));
                    }
                }
                self.watch = Some(Watch {
                    cluster: c,
                    broken: false,
                });
                Plan::Forward {
                    cluster: c,
                    bytes: cmd.into_raw(),
                }
            }
            Transaction::Unwatch => match self.watch.take() {
                Some(w) if !w.broken => Plan::Forward {
                    cluster: w.cluster,
                    bytes: cmd.into_raw(),
                },
                _ => Plan::Local(Bytes::from_static(replies::OK)),
            },
            Transaction::Exec => self.exec(cx),
        }
    }

    fn exec(&mut self, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let Some(tx) = self.tx.take() else {
            return local_error(replies::EXEC_WITHOUT_MULTI);
        };
        let watch = self.watch.take();
        if tx.dirty {
            Self::unwatch(watch, cx);
            return local_error(replies::EXEC_ABORT);
        }
        let mut clusters = tx.clusters;
        if let Some(w) = watch {
            if w.broken {
                // The WATCH is lost with its connection: abort as a watched change does.
                let mut v = Vec::new();
                match self.proto {
                    Protocol::Resp2 => v.extend_from_slice(replies::NULL_ARRAY),
                    Protocol::Resp3 => write_null(&mut v, Protocol::Resp3),
                }
                return Plan::Local(Bytes::from(v));
            }
            if !clusters.contains(&w.cluster) {
                clusters.insert(0, w.cluster);
            }
        }
        if clusters.len() > 1 {
            Self::unwatch(watch, cx);
            return Plan::Local(error(replies::crossslot(cx.table(), &clusters).as_bytes()));
        }
        let c = clusters.first().copied().unwrap_or_else(|| cx.table().local_cluster());
        let mut b = Vec::with_capacity(32 + tx.cmds.iter().map(|c| c.raw().len()).sum::<usize>());
        b.extend_from_slice(replies::MULTI);
        for q in &tx.cmds {
            b.extend_from_slice(q.raw());
        }
        b.extend_from_slice(replies::EXEC);
        // MULTI's +OK and every +QUEUED are read and dropped; EXEC's reply is the client's.
        let n = tx.cmds.len() as u32 + 1;
        cx.send_discard(c, &[], n, ());
        let budget = cx.budget();
        cx.forward(c, &b, budget);
        Plan::Done
    }
}
