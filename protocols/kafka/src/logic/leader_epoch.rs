//! OffsetForLeaderEpoch across shards: split by partition, answers merged into the client's
//! order with each partition's end offset (or error) as its shard reports it.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::partitions::{group, missing_code};
use crate::codes::ErrorCode;
use crate::messages::leader_epoch::{
    EpochEndOffset, EpochTopic, EpochTopicResult, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

pub struct EpochSplit<T: Ord> {
    pub parts: BTreeMap<T, OffsetForLeaderEpochRequest>,
    pub refused: Vec<(Bytes, i32, ErrorCode)>,
}

/// Splits `req` by `route(topic, partition)` (see `produce::split`).
pub fn split<T: Ord + Copy>(
    req: &OffsetForLeaderEpochRequest,
    route: impl FnMut(&[u8], i32) -> Result<T, ErrorCode>,
) -> EpochSplit<T> {
    let g = group(
        req.topics
            .iter()
            .map(|t| (&t.topic, &t.partitions[..], &t.tagged)),
        |p| p.partition,
        route,
    );
    let parts = g
        .parts
        .into_iter()
        .map(|(target, topics)| {
            let part = OffsetForLeaderEpochRequest {
                topics: topics
                    .into_iter()
                    .map(|(topic, partitions, tagged)| EpochTopic {
                        topic,
                        partitions,
                        tagged,
                    })
                    .collect(),
                ..req.clone()
            };
            (target, part)
        })
        .collect();
    EpochSplit {
        parts,
        refused: g.refused,
    }
}

/// Merges the parts' answers into one answer to `req`: every partition of the request in its
/// order, its owner's answer, else the code it was refused with, else `missing`'s.
pub fn merge(
    req: &OffsetForLeaderEpochRequest,
    answers: &[OffsetForLeaderEpochResponse],
    refused: &[(Bytes, i32, ErrorCode)],
    mut missing: impl FnMut(&[u8], i32) -> ErrorCode,
) -> OffsetForLeaderEpochResponse {
    let mut got: BTreeMap<(&[u8], i32), &EpochEndOffset> = BTreeMap::new();
    for a in answers {
        for t in &a.topics {
            for p in &t.partitions {
                got.entry((&t.topic[..], p.partition)).or_insert(p);
            }
        }
    }
    let topics = req
        .topics
        .iter()
        .map(|t| EpochTopicResult {
            topic: t.topic.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| match got.get(&(&t.topic[..], p.partition)) {
                    Some(found) => (*found).clone(),
                    None => EpochEndOffset::error(
                        p.partition,
                        missing_code(refused, &t.topic, p.partition, &mut missing),
                    ),
                })
                .collect(),
            tagged: Bytes::new(),
        })
        .collect();
    OffsetForLeaderEpochResponse {
        throttle_time_ms: answers
            .iter()
            .map(|a| a.throttle_time_ms)
            .max()
            .unwrap_or(0),
        topics,
        tagged: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codes::{NONE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, UNSUPPORTED_VERSION};
    use crate::messages::leader_epoch::EpochPartition;

    fn ep(partition: i32) -> EpochPartition {
        EpochPartition {
            partition,
            current_leader_epoch: 3,
            leader_epoch: 2,
            tagged: Bytes::new(),
        }
    }

    #[test]
    fn split_by_owner_and_merged_in_the_clients_order() {
        let req = OffsetForLeaderEpochRequest {
            replica_id: -1,
            topics: vec![
                EpochTopic {
                    topic: Bytes::from_static(b"xa"),
                    partitions: vec![ep(0), ep(1)],
                    tagged: Bytes::new(),
                },
                EpochTopic {
                    topic: Bytes::from_static(b"b"),
                    partitions: vec![ep(0), ep(1)],
                    tagged: Bytes::new(),
                },
            ],
            tagged: Bytes::new(),
        };
        let s = split(&req, |t, p| match (t, p) {
            (b"b", 1) => Err(UNSUPPORTED_VERSION),
            (t, _) => Ok(u16::from(t.first() == Some(&b'x'))),
        });
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.parts[&1].topics.len(), 1);
        assert_eq!(s.parts[&1].topics[0].partitions, vec![ep(0), ep(1)]);
        assert_eq!(s.parts[&0].topics[0].partitions, vec![ep(0)]);
        // Shard 0 answers for b-0; shard 1 (xa) failed.
        let answer = OffsetForLeaderEpochResponse {
            throttle_time_ms: 5,
            topics: vec![EpochTopicResult {
                topic: Bytes::from_static(b"b"),
                partitions: vec![EpochEndOffset {
                    error_code: NONE,
                    partition: 0,
                    leader_epoch: 2,
                    end_offset: 40,
                    tagged: Bytes::new(),
                }],
                tagged: Bytes::new(),
            }],
            tagged: Bytes::new(),
        };
        let m = merge(&req, &[answer], &s.refused, |t, _| {
            if t == b"xa" {
                NOT_LEADER_OR_FOLLOWER
            } else {
                REQUEST_TIMED_OUT
            }
        });
        let flat: Vec<(&[u8], i32, ErrorCode, i64)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (&t.topic[..], p.partition, p.error_code, p.end_offset))
            })
            .collect();
        assert_eq!(
            flat,
            vec![
                (&b"xa"[..], 0, NOT_LEADER_OR_FOLLOWER, -1),
                (&b"xa"[..], 1, NOT_LEADER_OR_FOLLOWER, -1),
                (&b"b"[..], 0, NONE, 40),
                (&b"b"[..], 1, UNSUPPORTED_VERSION, -1),
            ]
        );
        assert_eq!(m.throttle_time_ms, 5);
    }
}
