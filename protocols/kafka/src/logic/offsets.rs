//! Committed offsets across shards (measured: tansu, like Apache Kafka, refuses an OffsetCommit
//! for a topic it does not host, and accepts a standalone commit, generation -1 and no member,
//! for a group without members there).
//!
//! So a group's offsets live where its topics live, under the same group id: the home shard
//! (which runs the group's membership) gets the client's commit for its own partitions, with
//! the client's generation and member id, which fences a stale member; every other owning shard
//! gets a standalone commit of its partitions. The session sends them all at once (it can write
//! to shards only while it handles client bytes), so it fences the foreign parts itself from the
//! generations JoinGroup answers showed it (`session/groups.rs`). [`fencing_heartbeat`] and
//! [`is_membership_error`] are for a session that could wait for the home shard first. OffsetFetch is split
//! by owner and merged.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::partitions::{group, missing_code};
use crate::codes::ErrorCode;
use crate::messages::offsets::{
    CommitTopic, FetchOffsetsTopic, FetchedOffset, FetchedTopic, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, PartitionResult, TopicResults,
};
use crate::wire::Writer;

/// Error codes that mean "this member may not commit": the commit stops at the home shard.
pub const ILLEGAL_GENERATION: ErrorCode = 22;
pub const UNKNOWN_MEMBER_ID: ErrorCode = 25;
pub const REBALANCE_IN_PROGRESS: ErrorCode = 27;
pub const FENCED_INSTANCE_ID: ErrorCode = 82;

/// True for an answer that fences the committing member.
pub fn is_membership_error(code: ErrorCode) -> bool {
    matches!(
        code,
        ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | REBALANCE_IN_PROGRESS | FENCED_INSTANCE_ID
    )
}

/// The parts of one OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSplit<T: Ord> {
    /// The home shard's part: the client's generation and member id, the home shard's own
    /// partitions (possibly none).
    pub home: OffsetCommitRequest,
    /// Standalone commits (generation -1, no member), one per other owning shard.
    pub foreign: BTreeMap<T, OffsetCommitRequest>,
    pub refused: Vec<(Bytes, i32, ErrorCode)>,
}

/// Splits `req` between the group's `home` and the shards owning its topics
/// (`owner(topic, partition)`).
pub fn split_commit<T: Ord + Copy>(
    req: &OffsetCommitRequest,
    home: T,
    owner: impl FnMut(&[u8], i32) -> Result<T, ErrorCode>,
) -> CommitSplit<T> {
    let g = group(
        req.topics
            .iter()
            .map(|t| (&t.name, &t.partitions[..], &t.tagged)),
        |p| p.partition_index,
        owner,
    );
    let topics_of = |shares: Vec<super::partitions::TopicShare<_>>| -> Vec<CommitTopic> {
        shares
            .into_iter()
            .map(|(name, partitions, tagged)| CommitTopic {
                name,
                partitions,
                tagged,
            })
            .collect()
    };
    let mut home_part = OffsetCommitRequest {
        topics: Vec::new(),
        ..req.clone()
    };
    let mut foreign = BTreeMap::new();
    for (target, shares) in g.parts {
        if target == home {
            home_part.topics = topics_of(shares);
        } else {
            foreign.insert(
                target,
                OffsetCommitRequest {
                    generation_id: -1,
                    member_id: Bytes::new(),
                    group_instance_id: None,
                    topics: topics_of(shares),
                    ..req.clone()
                },
            );
        }
    }
    CommitSplit {
        home: home_part,
        foreign,
        refused: g.refused,
    }
}

/// The body of a Heartbeat (v0-v4, at `version`) checking the committing member on the home
/// shard when that shard owns none of the committed partitions.
pub fn fencing_heartbeat(req: &OffsetCommitRequest, version: i16) -> Bytes {
    let flexible = version >= 4;
    let mut w = Writer::new();
    w.string(flexible, &req.group_id);
    w.i32(req.generation_id);
    w.string(flexible, &req.member_id);
    if version >= 3 {
        w.nullable_string(flexible, req.group_instance_id.as_deref());
    }
    w.tagged_fields(flexible, &[]);
    w.buf.freeze()
}

/// Every partition of `req`, in its order, with its shard's result or `missing`'s code.
pub fn merge_commit(
    req: &OffsetCommitRequest,
    answers: &[OffsetCommitResponse],
    refused: &[(Bytes, i32, ErrorCode)],
    mut missing: impl FnMut(&[u8], i32) -> ErrorCode,
) -> OffsetCommitResponse {
    let mut got: BTreeMap<(&[u8], i32), ErrorCode> = BTreeMap::new();
    for a in answers {
        for t in &a.topics {
            for p in &t.partitions {
                got.entry((&t.name[..], p.partition_index))
                    .or_insert(p.error_code);
            }
        }
    }
    let topics = req
        .topics
        .iter()
        .map(|t| TopicResults {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| PartitionResult {
                    tagged: Bytes::new(),
                    partition_index: p.partition_index,
                    error_code: got
                        .get(&(&t.name[..], p.partition_index))
                        .copied()
                        .unwrap_or_else(|| {
                            missing_code(refused, &t.name, p.partition_index, &mut missing)
                        }),
                })
                .collect(),
            tagged: Bytes::new(),
        })
        .collect();
    OffsetCommitResponse {
        throttle_time_ms: answers
            .iter()
            .map(|a| a.throttle_time_ms)
            .max()
            .unwrap_or(0),
        topics,
        tagged: Bytes::new(),
    }
}

/// Splits an OffsetFetch by topic owner. "Every topic" (null) goes to every shard of
/// `shards`, each answering for the topics it hosts.
pub fn split_fetch<T: Ord + Copy>(
    req: &OffsetFetchRequest,
    shards: &[T],
    mut owner: impl FnMut(&[u8]) -> T,
) -> BTreeMap<T, OffsetFetchRequest> {
    let mut parts: BTreeMap<T, OffsetFetchRequest> = BTreeMap::new();
    let Some(topics) = &req.topics else {
        for s in shards {
            parts.insert(*s, req.clone());
        }
        return parts;
    };
    for t in topics {
        parts
            .entry(owner(&t.name))
            .or_insert_with(|| OffsetFetchRequest {
                topics: Some(Vec::new()),
                ..req.clone()
            })
            .topics
            .get_or_insert_with(Vec::new)
            .push(FetchOffsetsTopic { ..t.clone() });
    }
    parts
}

/// Merges OffsetFetch answers: the topics asked for in their order (each partition from the
/// answer that has it, else `missing`), or for "every topic" each answer's topics whose owner
/// is the shard that answered (`answers`: shard, answer).
pub fn merge_fetch<T: Ord + Copy>(
    req: &OffsetFetchRequest,
    answers: &[(T, OffsetFetchResponse)],
    mut owner: impl FnMut(&[u8]) -> T,
    missing: ErrorCode,
) -> OffsetFetchResponse {
    let throttle_time_ms = answers
        .iter()
        .map(|(_, a)| a.throttle_time_ms)
        .max()
        .unwrap_or(0);
    let error_code = answers
        .iter()
        .map(|(_, a)| a.error_code)
        .find(|c| *c != 0)
        .unwrap_or(0);
    let topics = match &req.topics {
        None => answers
            .iter()
            .flat_map(|(s, a)| {
                a.topics
                    .iter()
                    .filter(|t| owner(&t.name) == *s)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect(),
        Some(asked) => asked
            .iter()
            .map(|t| FetchedTopic {
                name: t.name.clone(),
                partitions: t
                    .partition_indexes
                    .iter()
                    .map(|&i| {
                        answers
                            .iter()
                            .flat_map(|(_, a)| a.topics.iter())
                            .filter(|at| at.name == t.name)
                            .flat_map(|at| at.partitions.iter())
                            .find(|p| p.partition_index == i)
                            .cloned()
                            .unwrap_or_else(|| FetchedOffset::none(i, missing))
                    })
                    .collect(),
                tagged: Bytes::new(),
            })
            .collect(),
    };
    OffsetFetchResponse {
        throttle_time_ms,
        topics,
        error_code,
        tagged: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codes::{NONE, NOT_COORDINATOR, REQUEST_TIMED_OUT};
    use crate::messages::offsets::CommitPartition;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn cp(partition_index: i32, committed_offset: i64) -> CommitPartition {
        CommitPartition {
            partition_index,
            committed_offset,
            committed_leader_epoch: -1,
            committed_metadata: None,
            tagged: Bytes::new(),
        }
    }

    fn commit() -> OffsetCommitRequest {
        OffsetCommitRequest {
            group_id: b("g1"),
            generation_id: 4,
            member_id: b("m-1"),
            group_instance_id: Some(b("i-1")),
            retention_time_ms: -1,
            topics: vec![
                CommitTopic {
                    name: b("home-t"),
                    partitions: vec![cp(0, 10)],
                    tagged: Bytes::new(),
                },
                CommitTopic {
                    name: b("xb"),
                    partitions: vec![cp(0, 20), cp(1, 21)],
                    tagged: Bytes::new(),
                },
            ],
            tagged: Bytes::new(),
        }
    }

    fn owner(t: &[u8]) -> u16 {
        u16::from(t.first() == Some(&b'x'))
    }

    #[test]
    fn home_keeps_the_members_commit_others_get_standalone_commits() {
        let s = split_commit(&commit(), 0u16, |t, _| Ok(owner(t)));
        assert_eq!(
            (s.home.generation_id, &s.home.member_id[..]),
            (4, &b"m-1"[..])
        );
        assert_eq!(s.home.topics.len(), 1);
        let f = &s.foreign[&1];
        assert_eq!(
            (
                f.generation_id,
                f.member_id.len(),
                f.group_instance_id.clone()
            ),
            (-1, 0, None)
        );
        assert_eq!(f.group_id, "g1");
        assert_eq!(f.topics[0].partitions, vec![cp(0, 20), cp(1, 21)]);
        // Home owning nothing: an empty home part; the session sends the fencing Heartbeat.
        let s = split_commit(&commit(), 5u16, |t, _| Ok(owner(t)));
        assert!(s.home.topics.is_empty());
        for v in 0..=4 {
            let hb = fencing_heartbeat(&commit(), v);
            let kp = <kafka_protocol::messages::HeartbeatRequest as kafka_protocol::protocol::Decodable>::decode(&mut hb.clone(), v).unwrap();
            assert_eq!((kp.generation_id, kp.member_id.as_str()), (4, "m-1"));
            assert_eq!(kp.group_instance_id.is_some(), v >= 3);
        }
        assert!(is_membership_error(ILLEGAL_GENERATION) && !is_membership_error(NONE));
    }

    #[test]
    fn commit_results_merge_in_request_order() {
        let req = commit();
        let home = OffsetCommitResponse {
            throttle_time_ms: 1,
            topics: vec![TopicResults {
                name: b("home-t"),
                partitions: vec![PartitionResult {
                    partition_index: 0,
                    error_code: NONE,
                    tagged: Bytes::new(),
                }],
                tagged: Bytes::new(),
            }],
            tagged: Bytes::new(),
        };
        let m = merge_commit(&req, &[home], &[], |_, _| REQUEST_TIMED_OUT);
        let flat: Vec<(i32, ErrorCode)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.error_code))
            })
            .collect();
        assert_eq!(
            flat,
            vec![(0, NONE), (0, REQUEST_TIMED_OUT), (1, REQUEST_TIMED_OUT)]
        );
    }

    #[test]
    fn offset_fetch_by_owner_and_back() {
        let req = OffsetFetchRequest {
            group_id: b("g1"),
            topics: Some(vec![
                FetchOffsetsTopic {
                    name: b("xb"),
                    partition_indexes: vec![1],
                    tagged: Bytes::new(),
                },
                FetchOffsetsTopic {
                    name: b("a"),
                    partition_indexes: vec![0],
                    tagged: Bytes::new(),
                },
            ]),
            require_stable: true,
            tagged: Bytes::new(),
        };
        let parts = split_fetch(&req, &[0u16, 1], owner);
        assert_eq!(parts[&1].topics.as_ref().unwrap()[0].name, "xb");
        assert_eq!(parts[&0].topics.as_ref().unwrap()[0].name, "a");
        let answer = |name: &'static str, i, off| OffsetFetchResponse {
            throttle_time_ms: 0,
            topics: vec![FetchedTopic {
                name: b(name),
                partitions: vec![FetchedOffset {
                    committed_offset: off,
                    error_code: NONE,
                    ..FetchedOffset::none(i, NONE)
                }],
                tagged: Bytes::new(),
            }],
            error_code: NONE,
            tagged: Bytes::new(),
        };
        let m = merge_fetch(
            &req,
            &[(1, answer("xb", 1, 21)), (0, answer("a", 0, 7))],
            owner,
            NOT_COORDINATOR,
        );
        let offs: Vec<i64> = m
            .topics
            .iter()
            .map(|t| t.partitions[0].committed_offset)
            .collect();
        assert_eq!(offs, vec![21, 7]);
        // A shard that did not answer: its partitions carry the error.
        let m = merge_fetch(&req, &[(0, answer("a", 0, 7))], owner, NOT_COORDINATOR);
        assert_eq!(m.topics[0].partitions[0].error_code, NOT_COORDINATOR);
        // Every topic: each shard's own topics only.
        let all = OffsetFetchRequest {
            topics: None,
            ..req
        };
        assert_eq!(split_fetch(&all, &[0u16, 1], owner).len(), 2);
        let m = merge_fetch(
            &all,
            &[(1, answer("xb", 1, 21)), (0, answer("xb", 1, 99))],
            owner,
            NOT_COORDINATOR,
        );
        assert_eq!(m.topics.len(), 1);
        assert_eq!(m.topics[0].partitions[0].committed_offset, 21);
    }
}
