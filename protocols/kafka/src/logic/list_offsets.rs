//! ListOffsets across shards: split by partition, answers merged into the client's order with
//! each partition's offset as its shard reports it.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::partitions::{group, missing_code};
use crate::codes::ErrorCode;
use crate::messages::list_offsets::{
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopic,
    ListOffsetsTopicResponse,
};

pub struct ListOffsetsSplit<T: Ord> {
    pub parts: BTreeMap<T, ListOffsetsRequest>,
    pub refused: Vec<(Bytes, i32, ErrorCode)>,
}

/// Splits `req` by `route(topic, partition)` (see `produce::split`).
pub fn split<T: Ord + Copy>(
    req: &ListOffsetsRequest,
    route: impl FnMut(&[u8], i32) -> Result<T, ErrorCode>,
) -> ListOffsetsSplit<T> {
    let g = group(
        req.topics
            .iter()
            .map(|t| (&t.name, &t.partitions[..], &t.tagged)),
        |p| p.partition_index,
        route,
    );
    let parts = g
        .parts
        .into_iter()
        .map(|(target, topics)| {
            let part = ListOffsetsRequest {
                topics: topics
                    .into_iter()
                    .map(|(name, partitions, tagged)| ListOffsetsTopic {
                        name,
                        partitions,
                        tagged,
                    })
                    .collect(),
                ..req.clone()
            };
            (target, part)
        })
        .collect();
    ListOffsetsSplit {
        parts,
        refused: g.refused,
    }
}

/// Merges the parts' answers into one answer to `req` (see `produce::merge`).
pub fn merge(
    req: &ListOffsetsRequest,
    answers: &[ListOffsetsResponse],
    refused: &[(Bytes, i32, ErrorCode)],
    mut missing: impl FnMut(&[u8], i32) -> ErrorCode,
) -> ListOffsetsResponse {
    let mut got: BTreeMap<(&[u8], i32), &ListOffsetsPartitionResponse> = BTreeMap::new();
    for a in answers {
        for t in &a.topics {
            for p in &t.partitions {
                got.entry((&t.name[..], p.partition_index)).or_insert(p);
            }
        }
    }
    let topics = req
        .topics
        .iter()
        .map(|t| ListOffsetsTopicResponse {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| match got.get(&(&t.name[..], p.partition_index)) {
                    Some(found) => (*found).clone(),
                    None => ListOffsetsPartitionResponse::error(
                        p.partition_index,
                        missing_code(refused, &t.name, p.partition_index, &mut missing),
                    ),
                })
                .collect(),
            tagged: Bytes::new(),
        })
        .collect();
    ListOffsetsResponse {
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
    use crate::codes::{NONE, NOT_LEADER_OR_FOLLOWER};
    use crate::messages::list_offsets::ListOffsetsPartition;

    #[test]
    fn split_and_merge_in_the_clients_order() {
        let lp = |partition_index| ListOffsetsPartition {
            partition_index,
            current_leader_epoch: -1,
            timestamp: -1,
            tagged: Bytes::new(),
        };
        let req = ListOffsetsRequest {
            replica_id: -1,
            isolation_level: 0,
            topics: vec![
                ListOffsetsTopic {
                    name: Bytes::from_static(b"xa"),
                    partitions: vec![lp(0)],
                    tagged: Bytes::new(),
                },
                ListOffsetsTopic {
                    name: Bytes::from_static(b"b"),
                    partitions: vec![lp(0), lp(1)],
                    tagged: Bytes::new(),
                },
            ],
            tagged: Bytes::new(),
        };
        let s = split(&req, |t, p| match (t, p) {
            (b"b", 1) => Err(NOT_LEADER_OR_FOLLOWER),
            (t, _) => Ok(u16::from(t.first() == Some(&b'x'))),
        });
        assert_eq!(s.parts.len(), 2);
        let answer = ListOffsetsResponse {
            throttle_time_ms: 4,
            topics: vec![ListOffsetsTopicResponse {
                name: Bytes::from_static(b"b"),
                partitions: vec![ListOffsetsPartitionResponse {
                    offset: 40,
                    error_code: NONE,
                    ..ListOffsetsPartitionResponse::error(0, NONE)
                }],
                tagged: Bytes::new(),
            }],
            tagged: Bytes::new(),
        };
        let m = merge(&req, &[answer], &s.refused, |_, _| {
            crate::codes::REQUEST_TIMED_OUT
        });
        let flat: Vec<(i32, ErrorCode, i64)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.error_code, p.offset))
            })
            .collect();
        assert_eq!(
            flat,
            vec![
                (0, crate::codes::REQUEST_TIMED_OUT, -1),
                (0, NONE, 40),
                (1, NOT_LEADER_OR_FOLLOWER, -1)
            ]
        );
        assert_eq!(m.throttle_time_ms, 4);
    }
}
