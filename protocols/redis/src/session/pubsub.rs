//! Pub/sub: PUBLISH routed by channel and payload, (P|S)SUBSCRIBE fanned out to every cluster a
//! message can come from, the confirmations merged, and messages fanned in between replies.

use std::collections::BTreeMap;

use bytes::Bytes;
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Disposition, PartSend, Plan, SlotView};

use super::route::one_cluster;
use super::{local_error, Link, Redis};
use crate::commands::{self, Merge, PubSub};
use crate::{write_bulk, write_integer, write_null, write_push_header, Command, Kind, Reply};

/// The client's subscriptions and the clusters each is held on.
#[derive(Debug, Default)]
pub(crate) struct Subs {
    channels: BTreeMap<Bytes, Vec<ClusterId>>,
    patterns: BTreeMap<Bytes, Vec<ClusterId>>,
    shard: BTreeMap<Bytes, Vec<ClusterId>>,
}

impl Subs {
    pub fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard.len()
    }

    /// The map a (un)subscribe of family `p` works on.
    fn map_mut(&mut self, p: PubSub) -> &mut BTreeMap<Bytes, Vec<ClusterId>> {
        match p {
            PubSub::Subscribe | PubSub::Unsubscribe => &mut self.channels,
            PubSub::PSubscribe | PubSub::PUnsubscribe => &mut self.patterns,
            _ => &mut self.shard,
        }
    }

    /// The count a confirmation of family `p` carries: shard channels are counted apart, as in
    /// Redis.
    fn count(&self, p: PubSub) -> usize {
        match p {
            PubSub::SSubscribe | PubSub::SUnsubscribe => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    /// The connection to `cluster` is gone, and the subscriptions it held.
    pub fn forget_cluster(&mut self, cluster: ClusterId) {
        for map in [&mut self.channels, &mut self.patterns, &mut self.shard] {
            for cl in map.values_mut() {
                cl.retain(|c| *c != cluster);
            }
        }
    }
}

fn is_sub_keyword(b: &[u8]) -> bool {
    matches!(
        b,
        b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe" | b"sunsubscribe"
    )
}

fn is_message_keyword(b: &[u8]) -> bool {
    matches!(b, b"message" | b"pmessage" | b"smessage")
}

/// RESP3 pushes and RESP2 pub/sub messages are not replies: they go to the client at once. A
/// subscription confirmation answers the slot of the (un)subscribe that asked for it.
pub(super) fn classify(link: &Link, reply: &Reply, head: Option<SlotView<'_, ()>>) -> Disposition {
    let head_confirm = head.is_some_and(|h| h.many);
    let kind = reply.root().kind();
    if kind == Kind::Push || (kind == Kind::Array && (link.subs > 0 || head_confirm)) {
        let first = reply.root().get(0);
        let word = first.as_ref().and_then(|v| v.as_bytes()).unwrap_or_default();
        let confirmation = head_confirm && is_sub_keyword(word);
        if kind == Kind::Push && !confirmation {
            return Disposition::Push(reply.raw().clone());
        }
        if kind == Kind::Array && is_message_keyword(word) {
            return Disposition::Push(reply.raw().clone());
        }
    }
    Disposition::Answer
}

/// Adds `name` to the names going to cluster `c`.
fn group_by_cluster(per_cluster: &mut Vec<(ClusterId, Vec<Bytes>)>, c: ClusterId, name: &Bytes) {
    match per_cluster.iter_mut().find(|(pc, _)| *pc == c) {
        Some((_, v)) => v.push(name.clone()),
        None => per_cluster.push((c, vec![name.clone()])),
    }
}

impl Redis {
    fn confirmation(&self, out: &mut Vec<u8>, kind: &[u8], name: Option<&[u8]>, count: usize) {
        write_push_header(out, 3, self.proto);
        write_bulk(out, kind);
        match name {
            Some(n) => write_bulk(out, n),
            None => write_null(out, self.proto),
        }
        write_integer(out, count as i64);
    }

    pub(super) fn pubsub(&mut self, cmd: &Command, p: PubSub, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        match p {
            PubSub::Publish | PubSub::SPublish => {
                let ch = cmd.arg(1).unwrap_or_default();
                let cluster = cx.table().route_message(Some(ch), commands::publish_payload(cmd));
                Plan::Forward {
                    cluster,
                    bytes: cmd.raw().clone(),
                }
            }
            PubSub::Subscribe | PubSub::PSubscribe | PubSub::SSubscribe => self.subscribe(cmd, p, cx),
            PubSub::Unsubscribe | PubSub::PUnsubscribe | PubSub::SUnsubscribe => self.unsubscribe(cmd, p, cx),
        }
    }

    /// A channel is listened to on every cluster a message published on it can be routed to
    /// ([`geomesh_core::RoutingTable::message_clusters`]), a pattern on every active cluster.
    /// Each cluster gets the names it lacks; names already subscribed there are not sent again.
    fn subscribe(&mut self, cmd: &Command, p: PubSub, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let (kind, verb): (&[u8], &[u8]) = match p {
            PubSub::Subscribe => (b"subscribe", b"SUBSCRIBE"),
            PubSub::PSubscribe => (b"psubscribe", b"PSUBSCRIBE"),
            _ => (b"ssubscribe", b"SSUBSCRIBE"),
        };
        let table = cx.table().clone();
        if p == PubSub::SSubscribe {
            // Shard channels share one slot, as in Redis Cluster.
            if let Err(m) = one_cluster(&table, (1..cmd.len()).filter_map(|i| cmd.arg(i))) {
                return local_error(&m);
            }
        }
        let mut replies = Vec::new();
        let mut per_cluster: Vec<(ClusterId, Vec<Bytes>)> = Vec::new();
        for i in 1..cmd.len() {
            let Some(name) = cmd.arg_bytes(i) else {
                continue;
            };
            let want: Vec<ClusterId> = match p {
                PubSub::PSubscribe => table.active_clusters().to_vec(),
                _ => table.message_clusters(&name),
            };
            let have = self.subs.map_mut(p).entry(name.clone()).or_default();
            for c in want {
                if !have.contains(&c) {
                    have.push(c);
                    group_by_cluster(&mut per_cluster, c, &name);
                }
            }
            self.confirmation(&mut replies, kind, Some(&name), self.subs.count(p));
        }
        for (c, names) in &per_cluster {
            if let Some(l) = cx.link(*c) {
                l.subs = l.subs.saturating_add(names.len() as u32);
            }
        }
        self.send_pubsub(verb, per_cluster, replies, cx)
    }

    /// Sends `verb names..` to each cluster and waits for one confirmation per name from each;
    /// `replies` (the client's confirmations) go out when all have come, at once when none is
    /// awaited.
    fn send_pubsub(&mut self, verb: &[u8], per_cluster: Vec<(ClusterId, Vec<Bytes>)>, replies: Vec<u8>, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        if per_cluster.is_empty() {
            return Plan::Local(Bytes::from(replies));
        }
        let parts = per_cluster
            .into_iter()
            .map(|(c, names)| {
                let mut b = Vec::new();
                crate::write_command(
                    &mut b,
                    std::iter::once(verb).chain(names.iter().map(|n| &n[..])).collect::<Vec<_>>(),
                );
                let mut part = PartSend::new(c, b);
                part.answers = names.len() as u32;
                part.many = true;
                part
            })
            .collect();
        let budget = cx.budget();
        cx.dispatch(
            parts,
            Merge::Confirm {
                replies: Bytes::from(replies),
            },
            budget,
        );
        Plan::Done
    }

    fn unsubscribe(&mut self, cmd: &Command, p: PubSub, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let (kind, verb): (&[u8], &[u8]) = match p {
            PubSub::Unsubscribe => (b"unsubscribe", b"UNSUBSCRIBE"),
            PubSub::PUnsubscribe => (b"punsubscribe", b"PUNSUBSCRIBE"),
            _ => (b"sunsubscribe", b"SUNSUBSCRIBE"),
        };
        let names: Vec<Bytes> = if cmd.len() > 1 {
            (1..cmd.len()).filter_map(|i| cmd.arg_bytes(i)).collect()
        } else {
            self.subs.map_mut(p).keys().cloned().collect()
        };
        let mut replies = Vec::new();
        let mut per_cluster: Vec<(ClusterId, Vec<Bytes>)> = Vec::new();
        for name in &names {
            if let Some(clusters) = self.subs.map_mut(p).remove(name) {
                for c in clusters {
                    if let Some(l) = cx.open_link(c) {
                        l.subs = l.subs.saturating_sub(1);
                        group_by_cluster(&mut per_cluster, c, name);
                    }
                }
            }
            self.confirmation(&mut replies, kind, Some(name), self.subs.count(p));
        }
        if names.is_empty() {
            self.confirmation(&mut replies, kind, None, self.subs.count(p));
        }
        self.send_pubsub(verb, per_cluster, replies, cx)
    }
}
