//! Metadata across shards: which shard is asked what, and one answer made of theirs.
//!
//! Every shard is asked (so that every shard's brokers are in every answer: a Java client
//! replaces its broker list with each answer's), each for the topics it owns; the answers are
//! merged with virtual node ids and every broker at the proxy's address.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::nodes::{to_virtual, to_virtual_or_none, Advertised};
use crate::codes::{ErrorCode, LEADER_NOT_AVAILABLE, NONE, UNKNOWN_TOPIC_ID};
use crate::messages::metadata::{
    MetadataBroker, MetadataRequest, MetadataResponse, MetadataTopic, AUTHORIZED_OPERATIONS_UNKNOWN,
};
use crate::wire::Uuid;

/// A topic id one shard reported in Metadata (v10+), for requests naming topics by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownTopicId {
    pub topic_id: Uuid,
    pub name: Bytes,
    pub shard: u16,
}

/// The per-shard requests for one client Metadata request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataSplit {
    /// One request per shard of `shards` (every shard: see the module documentation).
    pub parts: BTreeMap<u16, MetadataRequest>,
    /// Topics asked for by an id no shard reported: answered `UNKNOWN_TOPIC_ID` by the proxy.
    pub unknown_ids: Vec<Uuid>,
}

/// Splits `req` over `shards`: a request for every topic goes to every shard as it is; named
/// topics go to their owner (`owner(name)`), topics by id to the shard that reported that id.
/// `version` is the client's (v0 cannot ask for no topic: a shard owning none of them is asked
/// for all, and the merge keeps only the topics asked for).
pub fn split_request(
    req: &MetadataRequest,
    version: i16,
    shards: &[u16],
    mut owner: impl FnMut(&[u8]) -> u16,
    ids: &[KnownTopicId],
) -> MetadataSplit {
    let mut parts: BTreeMap<u16, MetadataRequest> = BTreeMap::new();
    let mut unknown_ids = Vec::new();
    let empty = |topics| MetadataRequest {
        topics,
        allow_auto_topic_creation: req.allow_auto_topic_creation,
        include_cluster_authorized_operations: req.include_cluster_authorized_operations,
        include_topic_authorized_operations: req.include_topic_authorized_operations,
        tagged: req.tagged.clone(),
    };
    let Some(topics) = &req.topics else {
        for s in shards {
            parts.insert(*s, req.clone());
        }
        return MetadataSplit { parts, unknown_ids };
    };
    for t in topics {
        let shard = match &t.name {
            Some(name) => owner(name),
            None => match ids.iter().find(|k| k.topic_id == t.topic_id) {
                Some(k) => k.shard,
                None => {
                    unknown_ids.push(t.topic_id);
                    continue;
                }
            },
        };
        parts
            .entry(shard)
            .or_insert_with(|| empty(Some(Vec::new())))
            .topics
            .get_or_insert_with(Vec::new)
            .push(t.clone());
    }
    for s in shards {
        // v0: an empty list means "all topics"; the merge filters.
        parts
            .entry(*s)
            .or_insert_with(|| empty(if version == 0 { None } else { Some(Vec::new()) }));
    }
    MetadataSplit { parts, unknown_ids }
}

/// What the merge needs besides the answers.
pub struct MergeContext<'a> {
    /// The client's request (its topic list decides which topics and in which order).
    pub request: &'a MetadataRequest,
    /// Where the client reaches every broker.
    pub advertised: &'a Advertised,
    /// The cluster id the client sees (one logical cluster).
    pub cluster_id: Option<Bytes>,
    /// Shards that did not answer: their requested topics get [`LEADER_NOT_AVAILABLE`].
    pub failed: &'a [u16],
}

/// The merged answer and the topic ids learned from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedMetadata {
    pub response: MetadataResponse,
    pub topic_ids: Vec<KnownTopicId>,
}

fn error_topic(name: Option<Bytes>, topic_id: Uuid, error_code: ErrorCode) -> MetadataTopic {
    MetadataTopic {
        error_code,
        name,
        topic_id,
        is_internal: false,
        partitions: Vec::new(),
        topic_authorized_operations: AUTHORIZED_OPERATIONS_UNKNOWN,
        tagged: Bytes::new(),
    }
}

/// Merges the shards' answers (`answers`: shard, decoded answer; in any order). A topic is
/// taken only from the shard that owns it (`owner`), so a stale copy elsewhere stays hidden.
pub fn merge(
    ctx: &MergeContext<'_>,
    answers: &[(u16, MetadataResponse)],
    mut owner: impl FnMut(&[u8]) -> u16,
    unknown_ids: &[Uuid],
) -> MergedMetadata {
    let mut sorted: Vec<&(u16, MetadataResponse)> = answers.iter().collect();
    sorted.sort_by_key(|(s, _)| *s);
    let mut brokers = Vec::new();
    let mut controller_id = -1;
    let mut by_name: BTreeMap<Bytes, MetadataTopic> = BTreeMap::new();
    let mut order: Vec<Bytes> = Vec::new();
    let mut topic_ids = Vec::new();
    for (shard, a) in &sorted {
        let shard = *shard;
        for b in &a.brokers {
            if let Some(node_id) = to_virtual(shard, b.node_id) {
                brokers.push(MetadataBroker {
                    node_id,
                    host: ctx.advertised.host.clone(),
                    port: ctx.advertised.port,
                    rack: b.rack.clone(),
                    tagged: b.tagged.clone(),
                });
            }
        }
        if controller_id < 0 {
            controller_id = to_virtual_or_none(shard, a.controller_id);
        }
        for t in &a.topics {
            let Some(name) = &t.name else { continue };
            if owner(name) != shard || by_name.contains_key(name) {
                continue;
            }
            let mut t = t.clone();
            for p in &mut t.partitions {
                let leader = to_virtual_or_none(shard, p.leader_id);
                if leader < 0 && p.leader_id >= 0 && p.error_code == NONE {
                    p.error_code = LEADER_NOT_AVAILABLE;
                }
                p.leader_id = leader;
                for list in [&mut p.replica_nodes, &mut p.isr_nodes, &mut p.offline_replicas] {
                    list.retain_mut(|n| match to_virtual(shard, *n) {
                        Some(v) => {
                            *n = v;
                            true
                        }
                        None => false,
                    });
                }
            }
            if t.topic_id != [0; 16] {
                topic_ids.push(KnownTopicId {
                    topic_id: t.topic_id,
                    name: name.clone(),
                    shard,
                });
            }
            order.push(name.clone());
            by_name.insert(name.clone(), t);
        }
    }
    let topics = match &ctx.request.topics {
        None => order.iter().filter_map(|n| by_name.remove(n)).collect(),
        Some(asked) => {
            let mut out = Vec::with_capacity(asked.len());
            for t in asked {
                let name = match &t.name {
                    Some(n) => Some(n.clone()),
                    None => topic_ids
                        .iter()
                        .find(|k| k.topic_id == t.topic_id)
                        .map(|k| k.name.clone()),
                };
                if unknown_ids.contains(&t.topic_id) && t.name.is_none() {
                    out.push(error_topic(None, t.topic_id, UNKNOWN_TOPIC_ID));
                    continue;
                }
                let Some(name) = name else {
                    out.push(error_topic(None, t.topic_id, UNKNOWN_TOPIC_ID));
                    continue;
                };
                match by_name.remove(&name) {
                    Some(found) => out.push(found),
                    None if ctx.failed.contains(&owner(&name)) => {
                        out.push(error_topic(Some(name), t.topic_id, LEADER_NOT_AVAILABLE));
                    }
                    // Asked twice, or not in its owner's answer: the owner's answer normally
                    // carries an error entry for it; nothing to add.
                    None => {}
                }
            }
            out
        }
    };
    let first = sorted.first().map(|(_, a)| a);
    MergedMetadata {
        response: MetadataResponse {
            throttle_time_ms: answers.iter().map(|(_, a)| a.throttle_time_ms).max().unwrap_or(0),
            brokers,
            cluster_id: ctx.cluster_id.clone(),
            controller_id,
            topics,
            cluster_authorized_operations: first
                .map_or(AUTHORIZED_OPERATIONS_UNKNOWN, |a| a.cluster_authorized_operations),
            tagged: Bytes::new(),
        },
        topic_ids,
    }
}
