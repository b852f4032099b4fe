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
                for list in [
                    &mut p.replica_nodes,
                    &mut p.isr_nodes,
                    &mut p.offline_replicas,
                ] {
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
            throttle_time_ms: answers
                .iter()
                .map(|(_, a)| a.throttle_time_ms)
                .max()
                .unwrap_or(0),
            brokers,
            cluster_id: ctx.cluster_id.clone(),
            controller_id,
            topics,
            cluster_authorized_operations: first.map_or(AUTHORIZED_OPERATIONS_UNKNOWN, |a| {
                a.cluster_authorized_operations
            }),
            tagged: Bytes::new(),
        },
        topic_ids,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::messages::metadata::{MetadataPartition, MetadataRequestTopic};

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    /// Topics starting with "x" live on shard 1, the others on shard 0.
    fn owner(name: &[u8]) -> u16 {
        u16::from(name.first() == Some(&b'x'))
    }

    fn req(names: Option<&[&'static str]>) -> MetadataRequest {
        MetadataRequest {
            topics: names.map(|ns| {
                ns.iter()
                    .map(|n| MetadataRequestTopic {
                        topic_id: [0; 16],
                        name: Some(b(n)),
                        tagged: Bytes::new(),
                    })
                    .collect()
            }),
            allow_auto_topic_creation: true,
            include_cluster_authorized_operations: false,
            include_topic_authorized_operations: false,
            tagged: Bytes::new(),
        }
    }

    /// A tansu-like answer: one broker, node 111, at its own port; `topics` with 2 partitions.
    fn tansu(port: i32, topics: &[&'static str], id: u8) -> MetadataResponse {
        MetadataResponse {
            throttle_time_ms: 0,
            brokers: vec![MetadataBroker {
                node_id: 111,
                host: b("127.0.0.1"),
                port,
                rack: None,
                tagged: Bytes::new(),
            }],
            cluster_id: Some(b("tansu_cluster")),
            controller_id: 111,
            topics: topics
                .iter()
                .map(|t| MetadataTopic {
                    error_code: NONE,
                    name: Some(b(t)),
                    topic_id: [id; 16],
                    is_internal: false,
                    partitions: (0..2)
                        .map(|i| MetadataPartition {
                            error_code: NONE,
                            partition_index: i,
                            leader_id: 111,
                            leader_epoch: 0,
                            replica_nodes: vec![111],
                            isr_nodes: vec![111],
                            offline_replicas: vec![],
                            tagged: Bytes::new(),
                        })
                        .collect(),
                    topic_authorized_operations: AUTHORIZED_OPERATIONS_UNKNOWN,
                    tagged: Bytes::new(),
                })
                .collect(),
            cluster_authorized_operations: AUTHORIZED_OPERATIONS_UNKNOWN,
            tagged: Bytes::new(),
        }
    }

    fn advertised() -> Advertised {
        Advertised {
            host: b("envoy.local"),
            port: 9092,
        }
    }

    #[test]
    fn every_shard_is_asked_each_for_its_own_topics() {
        let s = split_request(&req(Some(&["a", "xb", "c"])), 12, &[0, 1, 2], owner, &[]);
        let names = |s: u16, split: &MetadataSplit| -> Vec<Bytes> {
            split.parts[&s]
                .topics
                .as_ref()
                .unwrap()
                .iter()
                .map(|t| t.name.clone().unwrap())
                .collect()
        };
        assert_eq!(names(0, &s), vec![b("a"), b("c")]);
        assert_eq!(names(1, &s), vec![b("xb")]);
        assert_eq!(names(2, &s), Vec::<Bytes>::new());
        // All topics: the same request everywhere. v0 cannot ask for none: all, filtered later.
        let all = split_request(&req(None), 12, &[0, 1], owner, &[]);
        assert!(all.parts.values().all(|p| p.topics.is_none()));
        let v0 = split_request(&req(Some(&["a"])), 0, &[0, 1], owner, &[]);
        assert!(v0.parts[&1].topics.is_none());
    }

    #[test]
    fn topics_by_id_go_to_the_shard_that_reported_the_id() {
        let mut r = req(Some(&[]));
        r.topics = Some(vec![
            MetadataRequestTopic {
                topic_id: [9; 16],
                name: None,
                tagged: Bytes::new(),
            },
            MetadataRequestTopic {
                topic_id: [4; 16],
                name: None,
                tagged: Bytes::new(),
            },
        ]);
        let ids = [KnownTopicId {
            topic_id: [9; 16],
            name: b("xq"),
            shard: 1,
        }];
        let s = split_request(&r, 12, &[0, 1], owner, &ids);
        assert_eq!(s.parts[&1].topics.as_ref().unwrap().len(), 1);
        assert_eq!(s.unknown_ids, vec![[4; 16]]);
    }

    #[test]
    fn two_brokers_called_111_become_two_virtual_brokers_at_the_proxy() {
        let r = req(Some(&["a", "xb", "missing"]));
        let ctx = MergeContext {
            request: &r,
            advertised: &advertised(),
            cluster_id: Some(b("geomesh")),
            failed: &[],
        };
        // Shard 1 also holds a stale "a": hidden (shard 0 owns it).
        let answers = [
            (1, tansu(9001, &["xb", "a"], 2)),
            (0, tansu(9000, &["a"], 1)),
        ];
        let m = merge(&ctx, &answers, owner, &[]);
        let brokers: Vec<(i32, &[u8], i32)> = m
            .response
            .brokers
            .iter()
            .map(|b| (b.node_id, &b.host[..], b.port))
            .collect();
        assert_eq!(
            brokers,
            vec![
                (111, &b"envoy.local"[..], 9092),
                (1_000_111, b"envoy.local", 9092)
            ]
        );
        assert_eq!(m.response.controller_id, 111);
        assert_eq!(m.response.cluster_id, Some(b("geomesh")));
        let topics: Vec<&[u8]> = m
            .response
            .topics
            .iter()
            .map(|t| t.name.as_deref().unwrap())
            .collect();
        assert_eq!(topics, vec![&b"a"[..], b"xb"]);
        let xb = &m.response.topics[1];
        assert_eq!(xb.topic_id, [2; 16]);
        assert!(xb.partitions.iter().all(|p| p.leader_id == 1_000_111
            && p.replica_nodes == [1_000_111]
            && p.isr_nodes == [1_000_111]));
        assert_eq!(m.response.topics[0].partitions[0].leader_id, 111);
        assert_eq!(
            m.topic_ids,
            vec![
                KnownTopicId {
                    topic_id: [1; 16],
                    name: b("a"),
                    shard: 0
                },
                KnownTopicId {
                    topic_id: [2; 16],
                    name: b("xb"),
                    shard: 1
                }
            ]
        );
        // Readable by the oracle at every version.
        for v in 1..=12 {
            let body = m.response.encode(v);
            let kp = <kafka_protocol::messages::MetadataResponse as kafka_protocol::protocol::Decodable>::decode(&mut body.clone(), v).unwrap();
            assert_eq!(kp.brokers.len(), 2);
            assert_eq!(kp.topics[1].partitions[0].leader_id.0, 1_000_111);
        }
    }

    #[test]
    fn a_shard_down_gives_its_topics_leader_not_available() {
        let r = req(Some(&["a", "xb"]));
        let ctx = MergeContext {
            request: &r,
            advertised: &advertised(),
            cluster_id: None,
            failed: &[1],
        };
        let m = merge(&ctx, &[(0, tansu(9000, &["a"], 1))], owner, &[]);
        assert_eq!(m.response.topics.len(), 2);
        assert_eq!(m.response.topics[0].error_code, NONE);
        assert_eq!(m.response.topics[1].error_code, LEADER_NOT_AVAILABLE);
        assert_eq!(m.response.brokers.len(), 1);
    }

    #[test]
    fn a_broker_id_outside_the_virtual_space_leaves_its_partitions_leaderless() {
        let mut a = tansu(9000, &["a"], 1);
        a.brokers[0].node_id = 5_000_000;
        for p in &mut a.topics[0].partitions {
            p.leader_id = 5_000_000;
            p.replica_nodes = vec![5_000_000, 3];
        }
        let r = req(None);
        let ctx = MergeContext {
            request: &r,
            advertised: &advertised(),
            cluster_id: None,
            failed: &[],
        };
        let m = merge(&ctx, &[(0, a)], owner, &[]);
        assert!(m.response.brokers.is_empty());
        let p = &m.response.topics[0].partitions[0];
        assert_eq!(
            (p.leader_id, p.error_code, p.replica_nodes.clone()),
            (-1, LEADER_NOT_AVAILABLE, vec![3])
        );
    }
}
