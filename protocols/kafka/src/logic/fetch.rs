//! Fetch across shards: split by partition, each part a sessionless full fetch, answers merged
//! into the client's order.
//!
//! Fetch sessions (KIP-227) are per broker: a client's session id means nothing to another
//! shard, so every part is sent as a full fetch without a session (`session_id` 0, epoch -1,
//! no forgotten topics) and the merged answer says `session_id` 0, which tells the client no
//! session exists: it keeps sending full fetches. `max_wait_ms`, `min_bytes`, `max_bytes` and
//! the isolation level go to every part as the client set them.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::partitions::{group, missing_code};
use crate::codes::{ErrorCode, NONE};
use crate::messages::fetch::{
    FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopic, FetchTopicResponse,
    FINAL_EPOCH, NO_SESSION_ID, TAG_CURRENT_LEADER,
};

/// The parts of a split Fetch, and the partitions the proxy answers itself.
pub struct FetchSplit<T: Ord> {
    pub parts: BTreeMap<T, FetchRequest>,
    pub refused: Vec<(Bytes, i32, ErrorCode)>,
}

/// Splits `req` by `route(topic, partition)` (see `produce::split`).
pub fn split<T: Ord + Copy>(
    req: &FetchRequest,
    route: impl FnMut(&[u8], i32) -> Result<T, ErrorCode>,
) -> FetchSplit<T> {
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
            let part = FetchRequest {
                session_id: NO_SESSION_ID,
                session_epoch: FINAL_EPOCH,
                topics: topics
                    .into_iter()
                    .map(|(topic, partitions, tagged)| FetchTopic {
                        topic,
                        partitions,
                        tagged,
                    })
                    .collect(),
                forgotten: Vec::new(),
                ..req.clone()
            };
            (target, part)
        })
        .collect();
    FetchSplit {
        parts,
        refused: g.refused,
    }
}

/// Merges the parts' answers into one answer to `req` (see `produce::merge`). A part whose
/// answer carries a top-level error gives it to each of its partitions; the `current_leader`
/// hint (a real node id) is dropped.
pub fn merge(
    req: &FetchRequest,
    answers: &[FetchResponse],
    refused: &[(Bytes, i32, ErrorCode)],
    mut missing: impl FnMut(&[u8], i32) -> ErrorCode,
) -> FetchResponse {
    let mut got: BTreeMap<(&[u8], i32), FetchPartitionResponse> = BTreeMap::new();
    for a in answers {
        for t in &a.topics {
            for p in &t.partitions {
                let mut p = p.clone();
                p.tagged.retain(|(tag, _)| *tag != TAG_CURRENT_LEADER);
                if a.error_code != NONE && p.error_code == NONE {
                    p = FetchPartitionResponse::error(p.partition_index, a.error_code);
                }
                got.entry((&t.topic[..], p.partition_index)).or_insert(p);
            }
        }
    }
    let topics = req
        .topics
        .iter()
        .map(|t| FetchTopicResponse {
            topic: t.topic.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    got.remove(&(&t.topic[..], p.partition)).unwrap_or_else(|| {
                        let code = missing_code(refused, &t.topic, p.partition, &mut missing);
                        FetchPartitionResponse::error(p.partition, code)
                    })
                })
                .collect(),
            tagged: Bytes::new(),
        })
        .collect();
    FetchResponse {
        throttle_time_ms: answers
            .iter()
            .map(|a| a.throttle_time_ms)
            .max()
            .unwrap_or(0),
        error_code: NONE,
        session_id: NO_SESSION_ID,
        topics,
        tagged: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codes::{NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT};
    use crate::messages::fetch::{FetchPartition, ForgottenTopic};

    /// Tagged field values as a v12 broker writes them: diverging epoch (epoch 1, end offset
    /// 5) and current leader (node 111, epoch 0).
    const DIVERGING: &[u8] = &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0];
    const LEADER_111: &[u8] = &[0, 0, 0, 111, 0, 0, 0, 0, 0];

    fn p(partition: i32) -> FetchPartition {
        FetchPartition {
            partition,
            current_leader_epoch: 0,
            fetch_offset: 5,
            last_fetched_epoch: -1,
            log_start_offset: -1,
            partition_max_bytes: 1 << 20,
            tagged: Bytes::new(),
        }
    }

    fn req() -> FetchRequest {
        FetchRequest {
            replica_id: -1,
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 50 << 20,
            isolation_level: 1,
            session_id: 77,
            session_epoch: 3,
            topics: vec![
                FetchTopic {
                    topic: Bytes::from_static(b"a"),
                    partitions: vec![p(0), p(1)],
                    tagged: Bytes::new(),
                },
                FetchTopic {
                    topic: Bytes::from_static(b"xb"),
                    partitions: vec![p(0)],
                    tagged: Bytes::new(),
                },
            ],
            forgotten: vec![ForgottenTopic {
                topic: Bytes::from_static(b"old"),
                partitions: vec![1],
                tagged: Bytes::new(),
            }],
            rack_id: Bytes::new(),
            tagged: Bytes::new(),
        }
    }

    fn route(topic: &[u8], _p: i32) -> Result<u16, ErrorCode> {
        Ok(u16::from(topic.first() == Some(&b'x')))
    }

    fn answer(part: &FetchRequest, hw: i64) -> FetchResponse {
        FetchResponse {
            throttle_time_ms: 0,
            error_code: NONE,
            session_id: 0,
            topics: part
                .topics
                .iter()
                .map(|t| FetchTopicResponse {
                    topic: t.topic.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|q| FetchPartitionResponse {
                            error_code: NONE,
                            high_watermark: hw,
                            records: Some(Bytes::from_static(b"batch")),
                            tagged: vec![
                                (0, Bytes::from_static(DIVERGING)),
                                (TAG_CURRENT_LEADER, Bytes::from_static(LEADER_111)),
                            ],
                            ..FetchPartitionResponse::error(q.partition, NONE)
                        })
                        .collect(),
                    tagged: Bytes::new(),
                })
                .collect(),
            tagged: Bytes::new(),
        }
    }

    #[test]
    fn parts_are_sessionless_full_fetches_with_the_clients_waits() {
        let s = split(&req(), route);
        assert!(s.refused.is_empty());
        for part in s.parts.values() {
            assert_eq!(
                (part.session_id, part.session_epoch),
                (NO_SESSION_ID, FINAL_EPOCH)
            );
            assert!(part.forgotten.is_empty());
            assert_eq!(
                (part.max_wait_ms, part.min_bytes, part.isolation_level),
                (500, 1, 1)
            );
        }
        assert_eq!(s.parts[&0].topics[0].partitions.len(), 2);
        assert_eq!(s.parts[&1].topics[0].topic, "xb");
    }

    #[test]
    fn merge_keeps_the_clients_order_drops_leader_hints_and_fills_gaps() {
        let r = req();
        let s = split(&r, route);
        let m = merge(&r, &[answer(&s.parts[&1], 9)], &s.refused, |_, _| {
            REQUEST_TIMED_OUT
        });
        assert_eq!(m.session_id, NO_SESSION_ID);
        let a = &m.topics[0].partitions;
        assert_eq!(
            (a[0].error_code, a[1].error_code),
            (REQUEST_TIMED_OUT, REQUEST_TIMED_OUT)
        );
        let b = &m.topics[1].partitions[0];
        assert_eq!((b.error_code, b.high_watermark), (NONE, 9));
        assert_eq!(b.tagged, vec![(0, Bytes::from_static(DIVERGING))]);
        // A part answering with a top-level error gives it to its partitions.
        let mut bad = answer(&s.parts[&0], 3);
        bad.error_code = NOT_LEADER_OR_FOLLOWER;
        let m = merge(&r, &[bad, answer(&s.parts[&1], 9)], &s.refused, |_, _| {
            REQUEST_TIMED_OUT
        });
        assert!(m.topics[0]
            .partitions
            .iter()
            .all(|p| p.error_code == NOT_LEADER_OR_FOLLOWER));
        for v in 4..=12 {
            let body = m.encode(v);
            let kp = <kafka_protocol::messages::FetchResponse as kafka_protocol::protocol::Decodable>::decode(&mut body.clone(), v).unwrap();
            assert_eq!(kp.responses.len(), 2, "v{v}");
        }
    }
}
