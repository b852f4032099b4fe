//! Partition leaders of shards of several brokers: each partition's requests go to the broker
//! its shard's Metadata names as its leader, reached through an endpoint link
//! (`Ctx::bind(link, cluster, "host:port")`; the bridge opens `cluster@host:port` only if the
//! cluster allows that endpoint, docs/bridge-protocol.md "Endpoint targets").
//!
//! A client asks Metadata on one connection and produces on another (one per virtual broker,
//! all to this listener), so what a shard's Metadata said is kept where every connection finds
//! it: [`VmLeaders`] per Wasm VM, and `filters/kafka` a host-wide store behind
//! [`LeaderRegistry`] (Proxy-Wasm shared data holding [`encode`]). A partition whose leader is
//! not known yet goes to the table cluster (the shard's bootstrap address): a broker that does
//! not lead it answers NOT_LEADER_OR_FOLLOWER, the client refreshes Metadata, and its retry
//! follows the leader the proxy learnt from that answer.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use geomesh_core::ClusterId;

use super::groups::GroupState;
use crate::codes::NONE;
use crate::messages::metadata::MetadataResponse;
use crate::wire::{Reader, Writer};

/// Topics (per shard) whose leaders a VM remembers.
pub const MAX_TOPICS: usize = 10_000;
/// Partitions kept per topic (more are routed to the table cluster).
pub const MAX_PARTITIONS: usize = 4096;
/// The longest `host:port` kept (the bridge's limit for an endpoint).
pub const MAX_ENDPOINT: usize = 261;
/// Endpoint links one connection binds (each is a broker of a shard).
pub const MAX_LINKS: usize = 256;

/// One topic's partition leaders in one shard: (partition, `host:port`), by partition.
pub type TopicLeaders = Vec<(i32, String)>;

/// Where the shards' partition leaders are kept.
/// Groups' coordinators and generations (`groups.rs`) are kept there too.
pub trait LeaderRegistry {
    fn put(&self, shard: u16, topic: &[u8], leaders: &TopicLeaders);
    fn get(&self, shard: u16, topic: &[u8]) -> Option<TopicLeaders>;
    fn put_group(&self, shard: u16, group: &[u8], state: &GroupState);
    fn get_group(&self, shard: u16, group: &[u8]) -> Option<GroupState>;
}

#[derive(Default)]
struct Local {
    map: BTreeMap<(u16, Bytes), TopicLeaders>,
    order: VecDeque<(u16, Bytes)>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// Forgets this thread's leaders: tests start from an empty VM. Natively each test has its
/// own thread; under wasm-bindgen-test every test shares one, as connections share a VM.
#[cfg(test)]
pub(crate) fn clear_vm() {
    LOCAL.with(|l| *l.borrow_mut() = Local::default());
}

/// The per-VM registry (per Envoy worker; per test thread natively), bounded.
#[derive(Debug, Default, Clone, Copy)]
pub struct VmLeaders;

impl LeaderRegistry for VmLeaders {
    fn put(&self, shard: u16, topic: &[u8], leaders: &TopicLeaders) {
        LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            let key = (shard, Bytes::copy_from_slice(topic));
            if l.map.insert(key.clone(), leaders.clone()).is_none() {
                l.order.push_back(key);
            }
            while l.order.len() > MAX_TOPICS {
                if let Some(old) = l.order.pop_front() {
                    l.map.remove(&old);
                }
            }
        })
    }

    fn put_group(&self, shard: u16, group: &[u8], state: &GroupState) {
        super::groups::vm_put(shard, group, state)
    }

    fn get_group(&self, shard: u16, group: &[u8]) -> Option<GroupState> {
        super::groups::vm_get(shard, group)
    }

    fn get(&self, shard: u16, topic: &[u8]) -> Option<TopicLeaders> {
        LOCAL.with(|l| {
            l.borrow()
                .map
                .get(&(shard, Bytes::copy_from_slice(topic)))
                .cloned()
        })
    }
}

/// A usable endpoint: `host:port`, printable, no `@`, bounded (the mux's rule too).
pub fn endpoint(host: &[u8], port: i32) -> Option<String> {
    let port = u16::try_from(port).ok().filter(|p| *p > 0)?;
    let host = std::str::from_utf8(host).ok()?;
    let e = format!("{host}:{port}");
    let ok = !host.is_empty()
        && e.len() <= MAX_ENDPOINT
        && e.bytes().all(|b| b.is_ascii_graphic() && b != b'@');
    ok.then_some(e)
}

/// Every topic's partition leaders in one shard's Metadata answer: `(topic, leaders)` for
/// the topics it answered without error. A leader the answer's broker list does not name (or
/// names at an unusable address) is left out: its partitions go to the table cluster.
pub fn from_metadata(answer: &MetadataResponse) -> Vec<(Bytes, TopicLeaders)> {
    let brokers: BTreeMap<i32, String> = answer
        .brokers
        .iter()
        .filter_map(|b| Some((b.node_id, endpoint(&b.host, b.port)?)))
        .collect();
    let mut out = Vec::new();
    for t in &answer.topics {
        let Some(name) = &t.name else { continue };
        if t.error_code != NONE {
            continue;
        }
        let mut leaders: TopicLeaders = t
            .partitions
            .iter()
            .filter_map(|p| Some((p.partition_index, brokers.get(&p.leader_id)?.clone())))
            .take(MAX_PARTITIONS)
            .collect();
        leaders.sort_by_key(|(i, _)| *i);
        leaders.dedup_by_key(|(i, _)| *i);
        out.push((name.clone(), leaders));
    }
    out
}

/// The leader of `partition` in `leaders`.
pub fn leader_of(leaders: &TopicLeaders, partition: i32) -> Option<&str> {
    leaders
        .binary_search_by_key(&partition, |(i, _)| *i)
        .ok()
        .and_then(|i| leaders.get(i))
        .map(|(_, e)| e.as_str())
}

/// The stored form of one topic's leaders (shared data): count, then (partition, endpoint).
pub fn encode(leaders: &TopicLeaders) -> Vec<u8> {
    let mut w = Writer::with_capacity(8 + leaders.len() * 24);
    w.i32(leaders.len() as i32);
    for (i, e) in leaders {
        w.i32(*i);
        w.string(false, e.as_bytes());
    }
    w.buf.to_vec()
}

/// [`encode`] read back; `None` for bytes that are not its output.
pub fn decode(bytes: &[u8]) -> Option<TopicLeaders> {
    let mut r = Reader::new(Bytes::copy_from_slice(bytes));
    let n = usize::try_from(r.i32("count").ok()?).ok()?;
    if n > MAX_PARTITIONS || n > r.remaining() / 6 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let i = r.i32("partition").ok()?;
        let e = r.string(false, "endpoint").ok()?;
        out.push((i, String::from_utf8(e.to_vec()).ok()?));
    }
    Some(out)
}

/// The endpoint links one connection bound: link n is `links[n]` (table cluster, endpoint).
#[derive(Debug, Default)]
pub struct Links {
    links: Vec<(ClusterId, String)>,
}

impl Links {
    /// The link to `endpoint` of `cluster`, and whether it is new (to bind); `None` when the
    /// connection has bound as many as it may.
    pub fn link(&mut self, cluster: ClusterId, endpoint: &str) -> Option<(ClusterId, bool)> {
        if let Some(n) = self
            .links
            .iter()
            .position(|(c, e)| *c == cluster && e == endpoint)
        {
            return Some((ClusterId::endpoint(n as u16), false));
        }
        if self.links.len() >= MAX_LINKS {
            return None;
        }
        self.links.push((cluster, endpoint.to_owned()));
        Some((ClusterId::endpoint((self.links.len() - 1) as u16), true))
    }

    /// The table cluster a link belongs to (itself for a table cluster).
    pub fn cluster_of(&self, c: ClusterId) -> ClusterId {
        if !c.is_endpoint() {
            return c;
        }
        self.links
            .get(usize::from(c.0 & 0x7fff))
            .map_or(c, |(t, _)| *t)
    }
}
