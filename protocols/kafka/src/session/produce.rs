//! Produce split by topic and partition (record batches moved whole, never cut or decoded),
//! `acks` kept end to end, and idempotent producers: InitProducerId on every shard, each
//! shard's producer id written into the batches going there (CRC-32C recomputed).

use std::collections::BTreeMap;

use bytes::Bytes;
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Part};

use super::answer::{Expect, KafkaAnswer};
use super::merge::{decoded, frame, missing, Merge, Split};
use super::plan::{wait_ms, Planned, Step};
use super::producers::{InitProducerIdRequest, ProducerRegistry};
use super::{shard, KafkaProtocol, LeaderCache};
use crate::codes::{COORDINATOR_NOT_AVAILABLE, NONE, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use crate::header::Request;
use crate::logic::produce::{expects_response, rewrite_producer_ids, split};
use crate::logic::producer_ids;
use crate::messages::init_producer_id::InitProducerIdResponse;
use crate::messages::produce::{ProduceRequest, ProduceResponse};
use crate::record_batch::{batches, NO_PRODUCER_ID};

/// The producer id of the first idempotent batch of a part, if any.
fn client_producer_id(part: &ProduceRequest) -> Option<i64> {
    part.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.as_ref())
        .find_map(|r| batches(r).ok()?.into_iter().map(|b| b.producer_id).find(|id| *id != NO_PRODUCER_ID))
}

pub fn plan(p: &mut KafkaProtocol, req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let produce = ProduceRequest::decode(req)?;
    let table = cx.table().clone();
    let mut owners = BTreeMap::new();
    let mut cache = LeaderCache::new();
    let mut s = split(&produce, |topic, i| {
        let c = p.partition_target(cx, &mut cache, table.route(topic), topic, i);
        owners.insert((Bytes::copy_from_slice(topic), i), c);
        Ok(c)
    });
    let whole = s.parts.len() == 1 && s.refused.is_empty();
    let mut parts = Vec::with_capacity(s.parts.len());
    for (c, mut part) in std::mem::take(&mut s.parts) {
        let mut rewritten = false;
        if let Some(ids) = client_producer_id(&part).and_then(|id| p.producers.get(id)) {
            if let Some(own) = ids.for_shard(shard(p.cluster_of(c))).filter(|o| o != &ids.client) {
                s.refused.extend(rewrite_producer_ids(&mut part, own.id, own.epoch));
                rewritten = true;
            }
        }
        if part.topics.is_empty() {
            continue;
        }
        // One shard and nothing to rewrite: the client's frame as it came.
        let bytes = if whole && !rewritten {
            req.wire()
        } else {
            req.with_body(&part.encode(reply.version))
        };
        parts.push((c, bytes));
    }
    if !expects_response(&produce) {
        // acks=0: no broker answers and the client waits for nothing.
        for (c, bytes) in parts {
            cx.send_only(c, &bytes);
        }
        return Ok(Step::Sent);
    }
    let extra_ms = wait_ms(produce.timeout_ms);
    Ok(Step::Parts {
        parts,
        merge: Merge::Produce(Split {
            req: produce,
            refused: s.refused,
            owners,
        }),
        extra_ms,
    })
}

/// Every partition of the request in its order, with its broker's answer (real offset and
/// error) or the code of its shard's failure.
pub fn merge(reply: &Expect, s: &Split<ProduceRequest>, parts: &[Part<KafkaAnswer>]) -> Bytes {
    if let ([only], true) = (parts, s.refused.is_empty()) {
        if let Some(a) = &only.answer {
            // One shard answered for everything: forwarded unless it holds node hints.
            if let Ok(r) = a.decode(ProduceResponse::decode) {
                let clean = r.tagged.is_empty()
                    && r.topics.iter().all(|t| t.partitions.iter().all(|p| p.tagged.is_empty()));
                if clean {
                    return a.raw.clone();
                }
            }
        }
    }
    let (answers, failed) = decoded(parts, ProduceResponse::decode);
    let answers: Vec<ProduceResponse> = answers.into_iter().map(|(_, a)| a).collect();
    let merged = crate::logic::produce::merge(&s.req, &answers, &s.refused, |t, i| missing(&s.owners, &failed, t, i));
    frame(reply, &merged.encode(reply.version))
}

/// InitProducerId: a transactional producer is refused (one transaction cannot commit
/// atomically on several clusters); an idempotent one gets an id from every shard.
pub fn plan_init(p: &mut KafkaProtocol, req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let init = InitProducerIdRequest::decode(req)?;
    if init.transactional_id.is_some() {
        let refused = InitProducerIdResponse {
            throttle_time_ms: 0,
            error_code: TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            producer_id: -1,
            producer_epoch: -1,
            tagged: Bytes::new(),
        };
        return Ok(Step::Local(frame(&reply, &refused.encode(reply.version))));
    }
    let known = if init.producer_id >= 0 {
        p.producers.get(init.producer_id)
    } else {
        None
    };
    let parts = cx
        .table()
        .active_clusters()
        .iter()
        .map(|c| {
            let body = init.for_shard(shard(*c), known.as_ref()).encode(reply.version, req.flexible());
            (*c, req.with_body(&body))
        })
        .collect();
    Ok(Step::Parts {
        parts,
        merge: Merge::InitProducerId,
        extra_ms: 0,
    })
}

/// The lowest shard's id for the client, every shard's kept in the registry; a shard that
/// failed makes the client retry (COORDINATOR_NOT_AVAILABLE).
pub fn merge_init(reply: &Expect, parts: &[Part<KafkaAnswer>], registry: &dyn ProducerRegistry) -> Bytes {
    let (answers, failed) = decoded(parts, InitProducerIdResponse::decode);
    let answers: Vec<(u16, InitProducerIdResponse)> = answers.into_iter().map(|(c, a): (ClusterId, _)| (shard(c), a)).collect();
    let (mut answer, ids) = producer_ids::merge(&answers);
    if !failed.is_empty() && answer.error_code == NONE {
        answer.error_code = COORDINATOR_NOT_AVAILABLE;
        answer.producer_id = -1;
        answer.producer_epoch = -1;
    } else if let Some(ids) = ids {
        registry.put(&ids);
    }
    frame(reply, &answer.encode(reply.version))
}
