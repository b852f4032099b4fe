//! Produce across shards: one request split by partition into per-target requests (each
//! partition's record batches moved whole, never cut), and their answers merged back into the
//! client's order with each partition's real offset or error.
//!
//! A target is whatever the session routes to (a shard, or a shard's partition leader); it
//! only needs an order. `acks` and `timeout_ms` go to every part as the client set them; with
//! `acks = 0` no broker answers and neither does the proxy ([`expects_response`]).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::partitions::{group, missing_code};
use crate::codes::{ErrorCode, CORRUPT_MESSAGE};
use crate::messages::produce::{
    ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse, ProduceTopic,
    ProduceTopicResponse,
};
use crate::record_batch::rewrite_producer;

/// True unless the client asked for no answer (`acks = 0`).
pub fn expects_response(req: &ProduceRequest) -> bool {
    req.acks != 0
}

/// The parts of a split Produce, and the partitions the proxy answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceSplit<T: Ord> {
    pub parts: BTreeMap<T, ProduceRequest>,
    /// (topic, partition, error) for partitions `route` had no target for.
    pub refused: Vec<(Bytes, i32, ErrorCode)>,
}

/// Splits `req` by `route(topic, partition)`: `Ok(target)`, or `Err(code)` to answer that
/// partition with `code` without sending it anywhere. Topics and partitions keep their order
/// within each part.
pub fn split<T: Ord + Copy>(
    req: &ProduceRequest,
    route: impl FnMut(&[u8], i32) -> Result<T, ErrorCode>,
) -> ProduceSplit<T> {
    let g = group(
        req.topics
            .iter()
            .map(|t| (&t.name, &t.partitions[..], &t.tagged)),
        |p| p.index,
        route,
    );
    let parts = g
        .parts
        .into_iter()
        .map(|(target, topics)| {
            let part = ProduceRequest {
                transactional_id: req.transactional_id.clone(),
                acks: req.acks,
                timeout_ms: req.timeout_ms,
                topics: topics
                    .into_iter()
                    .map(|(name, partitions, tagged)| ProduceTopic {
                        name,
                        partitions,
                        tagged,
                    })
                    .collect(),
                tagged: req.tagged.clone(),
            };
            (target, part)
        })
        .collect();
    ProduceSplit {
        parts,
        refused: g.refused,
    }
}

/// Rewrites the producer id and epoch of every idempotent batch of `part` to a shard's own
/// (see `record_batch::rewrite_producer`; batches already right are not copied). A partition
/// whose batches cannot be rewritten (not whole magic-2 batches, or a wrong CRC) is taken out
/// of the part and returned with CORRUPT_MESSAGE, for the merge's `refused`.
pub fn rewrite_producer_ids(
    part: &mut ProduceRequest,
    producer_id: i64,
    producer_epoch: i16,
) -> Vec<(Bytes, i32, ErrorCode)> {
    let mut refused = Vec::new();
    for t in &mut part.topics {
        t.partitions.retain_mut(|p| {
            let Some(records) = &p.records else {
                return true;
            };
            match rewrite_producer(records, producer_id, producer_epoch) {
                Ok(r) => {
                    p.records = Some(r);
                    true
                }
                Err(_) => {
                    refused.push((t.name.clone(), p.index, CORRUPT_MESSAGE));
                    false
                }
            }
        });
    }
    part.topics.retain(|t| !t.partitions.is_empty());
    refused
}

/// Merges the parts' answers into one answer to `req`: every partition of the request, in the
/// request's order, with the answer its target gave, the code `split` refused it with, or
/// `missing(topic, partition)` when its target gave none (down: `NOT_LEADER_OR_FOLLOWER`;
/// silent: `REQUEST_TIMED_OUT`). Node ids in the answers' tagged fields (current leader,
/// node endpoints: hints for a client that hit NOT_LEADER) are dropped, the client refreshes
/// Metadata instead; the throttle is the largest.
pub fn merge(
    req: &ProduceRequest,
    answers: &[ProduceResponse],
    refused: &[(Bytes, i32, ErrorCode)],
    mut missing: impl FnMut(&[u8], i32) -> ErrorCode,
) -> ProduceResponse {
    let mut got: BTreeMap<(&[u8], i32), &ProducePartitionResponse> = BTreeMap::new();
    for a in answers {
        for t in &a.topics {
            for p in &t.partitions {
                got.entry((&t.name[..], p.index)).or_insert(p);
            }
        }
    }
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for ProducePartition { index, .. } in &t.partitions {
            let answer = match got.get(&(&t.name[..], *index)) {
                Some(p) => ProducePartitionResponse {
                    tagged: Bytes::new(),
                    ..(*p).clone()
                },
                None => {
                    let code = missing_code(refused, &t.name, *index, &mut missing);
                    ProducePartitionResponse::error(*index, code)
                }
            };
            partitions.push(answer);
        }
        topics.push(ProduceTopicResponse {
            name: t.name.clone(),
            partitions,
            tagged: Bytes::new(),
        });
    }
    ProduceResponse {
        topics,
        throttle_time_ms: answers
            .iter()
            .map(|a| a.throttle_time_ms)
            .max()
            .unwrap_or(0),
        tagged: Bytes::new(),
    }
}

/// The answer to `req` with every partition failed with `code` (no target reachable at all).
pub fn error_response(req: &ProduceRequest, code: ErrorCode) -> ProduceResponse {
    merge(req, &[], &[], |_, _| code)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codes::{
        NONE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, UNKNOWN_TOPIC_OR_PARTITION,
    };
    use crate::record_batch::batches;
    use kafka_protocol::records::RecordBatchDecoder;

    /// A real idempotent batch (producer id 1, epoch 0, 2 records; librdkafka to tansu).
    const BATCH: &[u8] = b"\0\0\0\0\0\0\0\0\0\0\0G\0\0\0\0\x02\xf9q\x95:\0\0\0\0\0\x01\0\0\x01\xa2B<\x1c\x11\0\0\x01\xa2B<\x1c\x11\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0\0\x02\x14\0\0\0\x04k0\x04v0\0\x14\0\0\x02\x04k3\x04v3\0";

    fn part(index: i32, tag: u8) -> ProducePartition {
        let mut b = BATCH.to_vec();
        b.push(tag); // distinguishes partitions in assertions; stripped before batch checks
        ProducePartition {
            index,
            records: Some(Bytes::from(b)),
            tagged: Bytes::new(),
        }
    }

    fn request(acks: i16) -> ProduceRequest {
        let topic = |name: &'static str, parts: Vec<ProducePartition>| ProduceTopic {
            name: Bytes::from_static(name.as_bytes()),
            partitions: parts,
            tagged: Bytes::new(),
        };
        ProduceRequest {
            transactional_id: None,
            acks,
            timeout_ms: 30_000,
            topics: vec![
                topic("a", vec![part(0, 1), part(1, 2)]),
                topic("b", vec![part(0, 3)]),
                topic("c", vec![part(2, 4)]),
            ],
            tagged: Bytes::new(),
        }
    }

    /// Topics a and c on shard 0, b on shard 1; topic "c" partition 2 has no leader.
    fn route(topic: &[u8], partition: i32) -> Result<u16, ErrorCode> {
        match (topic, partition) {
            (b"c", 2) => Err(NOT_LEADER_OR_FOLLOWER),
            (b"b", _) => Ok(1),
            _ => Ok(0),
        }
    }

    fn answer(part: &ProduceRequest, base: i64) -> ProduceResponse {
        ProduceResponse {
            topics: part
                .topics
                .iter()
                .map(|t| ProduceTopicResponse {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| ProducePartitionResponse {
                            base_offset: base + i64::from(p.index),
                            error_code: NONE,
                            log_start_offset: 0,
                            log_append_time_ms: -1,
                            ..ProducePartitionResponse::error(p.index, NONE)
                        })
                        .collect(),
                    tagged: Bytes::new(),
                })
                .collect(),
            throttle_time_ms: base as i32,
            tagged: Bytes::from_static(&[1, 0, 1, 0]), // a node_endpoints-like tag, dropped
        }
    }

    #[test]
    fn splits_by_partition_keeping_batches_whole_and_in_order() {
        let req = request(-1);
        let s = split(&req, route);
        assert_eq!(
            s.refused,
            vec![(Bytes::from_static(b"c"), 2, NOT_LEADER_OR_FOLLOWER)]
        );
        assert_eq!(s.parts.len(), 2);
        let p0 = &s.parts[&0];
        assert_eq!(p0.topics.len(), 1);
        assert_eq!(p0.topics[0].name, "a");
        assert_eq!(p0.topics[0].partitions, vec![part(0, 1), part(1, 2)]);
        let p1 = &s.parts[&1];
        assert_eq!(p1.topics[0].name, "b");
        assert_eq!(p1.topics[0].partitions, vec![part(0, 3)]);
        for p in s.parts.values() {
            assert_eq!((p.acks, p.timeout_ms), (-1, 30_000));
        }
        // The records are the client's bytes, shared, not copied.
        assert_eq!(
            p0.topics[0].partitions[0]
                .records
                .as_ref()
                .unwrap()
                .as_ptr(),
            req.topics[0].partitions[0]
                .records
                .as_ref()
                .unwrap()
                .as_ptr()
        );
    }

    #[test]
    fn merges_every_partition_in_request_order_with_real_offsets_and_errors() {
        let req = request(1);
        let s = split(&req, route);
        // Shard 1 answered; shard 0 did not (timed out).
        let got = merge(&req, &[answer(&s.parts[&1], 100)], &s.refused, |_, _| {
            REQUEST_TIMED_OUT
        });
        let flat: Vec<(&[u8], i32, ErrorCode, i64)> = got
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (&t.name[..], p.index, p.error_code, p.base_offset))
            })
            .collect();
        assert_eq!(
            flat,
            vec![
                (&b"a"[..], 0, REQUEST_TIMED_OUT, -1),
                (b"a", 1, REQUEST_TIMED_OUT, -1),
                (b"b", 0, NONE, 100),
                (b"c", 2, NOT_LEADER_OR_FOLLOWER, -1),
            ]
        );
        assert_eq!(got.throttle_time_ms, 100);
        assert!(got.tagged.is_empty());

        let all = merge(
            &req,
            &[answer(&s.parts[&0], 7), answer(&s.parts[&1], 100)],
            &s.refused,
            |_, _| REQUEST_TIMED_OUT,
        );
        let offsets: Vec<i64> = all
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.base_offset))
            .collect();
        assert_eq!(offsets, vec![7, 8, 100, -1]);
        // The merged answer reads back with the oracle at every version.
        for v in 3..=12 {
            let body = all.encode(v);
            let kp = <kafka_protocol::messages::ProduceResponse as kafka_protocol::protocol::Decodable>::decode(&mut body.clone(), v).unwrap();
            assert_eq!(kp.responses.len(), 3);
            assert_eq!(kp.responses[1].partition_responses[0].base_offset, 100);
        }
    }

    #[test]
    fn acks_zero_expects_nothing_and_error_response_covers_everything() {
        assert!(!expects_response(&request(0)));
        assert!(expects_response(&request(1)) && expects_response(&request(-1)));
        let e = error_response(&request(1), UNKNOWN_TOPIC_OR_PARTITION);
        assert_eq!(
            e.topics.iter().map(|t| t.partitions.len()).sum::<usize>(),
            4
        );
        assert!(e
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .all(|p| p.error_code == UNKNOWN_TOPIC_OR_PARTITION));
    }

    #[test]
    fn producer_id_rewrite_recomputes_the_crc_and_touches_nothing_else() {
        let records = Bytes::from_static(BATCH);
        let mut req = ProduceRequest {
            topics: vec![ProduceTopic {
                name: Bytes::from_static(b"a"),
                partitions: vec![ProducePartition {
                    index: 0,
                    records: Some(records.clone()),
                    tagged: Bytes::new(),
                }],
                tagged: Bytes::new(),
            }],
            ..request(-1)
        };
        // Same id and epoch: shared, not copied.
        assert!(rewrite_producer_ids(&mut req, 1, 0).is_empty());
        assert_eq!(
            req.topics[0].partitions[0]
                .records
                .as_ref()
                .unwrap()
                .as_ptr(),
            records.as_ptr()
        );
        assert!(rewrite_producer_ids(&mut req, 77_000_000_001, 3).is_empty());
        let out = req.topics[0].partitions[0].records.clone().unwrap();
        let info = batches(&out).unwrap();
        assert_eq!(info.len(), 1);
        assert!(info[0].crc_ok);
        assert_eq!(
            (
                info[0].producer_id,
                info[0].producer_epoch,
                info[0].base_sequence
            ),
            (77_000_000_001, 3, 0)
        );
        // Only the id, the epoch and the CRC changed.
        let diff: Vec<usize> = (0..out.len()).filter(|&i| out[i] != BATCH[i]).collect();
        assert!(
            diff.iter()
                .all(|&i| (17..21).contains(&i) || (43..53).contains(&i)),
            "{diff:?}"
        );
        // The oracle (which checks the CRC) reads the same records.
        let set = RecordBatchDecoder::decode(&mut out.clone()).unwrap();
        assert_eq!(set.records.len(), 2);
        assert_eq!(set.records[0].producer_id, 77_000_000_001);
        assert_eq!(set.records[1].value.as_deref(), Some(&b"v3"[..]));
    }

    #[test]
    fn a_corrupted_batch_is_refused_not_laundered() {
        let mut bad = BATCH.to_vec();
        bad[70] ^= 1; // a record byte: the stored CRC no longer matches
        let mut req = ProduceRequest {
            topics: vec![ProduceTopic {
                name: Bytes::from_static(b"a"),
                partitions: vec![
                    ProducePartition {
                        index: 0,
                        records: Some(Bytes::from(bad)),
                        tagged: Bytes::new(),
                    },
                    ProducePartition {
                        index: 1,
                        records: Some(Bytes::from_static(BATCH)),
                        tagged: Bytes::new(),
                    },
                ],
                tagged: Bytes::new(),
            }],
            ..request(-1)
        };
        let refused = rewrite_producer_ids(&mut req, 5, 0);
        assert_eq!(
            refused,
            vec![(Bytes::from_static(b"a"), 0, CORRUPT_MESSAGE)]
        );
        assert_eq!(req.topics[0].partitions.len(), 1);
        assert_eq!(req.topics[0].partitions[0].index, 1);
        assert!(batches(req.topics[0].partitions[0].records.as_ref().unwrap()).unwrap()[0].crc_ok);
    }
}
