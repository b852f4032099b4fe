//! Produce across shards: one request split by partition into per-target requests (each
//! partition's record batches moved whole, never cut), and their answers merged back into the
//! client's order with each partition's real offset or error.
//!
//! A target is whatever the session routes to (a shard, or a shard's partition leader); it
//! only needs an order. `acks` and `timeout_ms` go to every part as the client set them; with
//! `acks = 0` no broker answers and neither does the proxy ([`expects_response`]).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::codes::{ErrorCode, NONE};
use crate::error::DecodeError;
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
    mut route: impl FnMut(&[u8], i32) -> Result<T, ErrorCode>,
) -> ProduceSplit<T> {
    let mut parts: BTreeMap<T, ProduceRequest> = BTreeMap::new();
    let mut refused = Vec::new();
    for topic in &req.topics {
        for p in &topic.partitions {
            let target = match route(&topic.name, p.index) {
                Ok(t) => t,
                Err(code) => {
                    refused.push((topic.name.clone(), p.index, code));
                    continue;
                }
            };
            let part = parts.entry(target).or_insert_with(|| ProduceRequest {
                transactional_id: req.transactional_id.clone(),
                acks: req.acks,
                timeout_ms: req.timeout_ms,
                topics: Vec::new(),
                tagged: req.tagged.clone(),
            });
            match part.topics.last_mut() {
                Some(t) if t.name == topic.name => t.partitions.push(p.clone()),
                _ => part.topics.push(ProduceTopic {
                    name: topic.name.clone(),
                    partitions: vec![p.clone()],
                    tagged: topic.tagged.clone(),
                }),
            }
        }
    }
    ProduceSplit { parts, refused }
}

/// Rewrites the producer id and epoch of every idempotent batch of `part` to a shard's own
/// (see `record_batch::rewrite_producer`; batches already right are not copied).
pub fn rewrite_producer_ids(
    part: &mut ProduceRequest,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<(), DecodeError> {
    for t in &mut part.topics {
        for p in &mut t.partitions {
            if let Some(records) = &p.records {
                p.records = Some(rewrite_producer(records, producer_id, producer_epoch)?);
            }
        }
    }
    Ok(())
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
                    let code = refused
                        .iter()
                        .find(|(n, i, _)| n == &t.name && i == index)
                        .map(|(_, _, c)| *c)
                        .unwrap_or_else(|| missing(&t.name, *index));
                    ProducePartitionResponse::error(*index, if code == NONE { crate::codes::UNKNOWN_SERVER_ERROR } else { code })
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
        throttle_time_ms: answers.iter().map(|a| a.throttle_time_ms).max().unwrap_or(0),
        tagged: Bytes::new(),
    }
}

/// The answer to `req` with every partition failed with `code` (no target reachable at all).
pub fn error_response(req: &ProduceRequest, code: ErrorCode) -> ProduceResponse {
    merge(req, &[], &[], |_, _| code)
}
