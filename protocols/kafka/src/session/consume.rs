//! Fetch and ListOffsets: each partition asked of the shard that owns its topic, the answers
//! merged into the client's order.
//!
//! A Fetch reaches the proxy on the connection of one virtual broker, and every partition a
//! virtual broker leads belongs to one shard, so a client's Fetch normally names one shard's
//! partitions and goes there whole (a long poll there holds back no other shard's data). A
//! Fetch naming several shards' partitions waits for all of them, each up to `max_wait_ms`.

use std::collections::BTreeMap;

use bytes::Bytes;
use geomesh_kit::{Ctx, Part};

use super::answer::{Expect, KafkaAnswer};
use super::merge::{decoded, frame, missing, Merge, Split};
use super::plan::{wait_ms, Planned, Step};
use super::{KafkaProtocol, LeaderCache};
use crate::codes::NONE;
use crate::header::Request;
use crate::logic::{fetch, list_offsets};
use crate::messages::fetch::{FetchRequest, FetchResponse, NO_SESSION_ID};
use crate::messages::list_offsets::{ListOffsetsRequest, ListOffsetsResponse};

pub fn plan_fetch(p: &mut KafkaProtocol, req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let f = FetchRequest::decode(req)?;
    let table = cx.table().clone();
    let mut owners = BTreeMap::new();
    let mut cache = LeaderCache::new();
    let s = fetch::split(&f, |topic, i| {
        let c = p.partition_target(cx, &mut cache, table.route(topic), topic, i);
        owners.insert((Bytes::copy_from_slice(topic), i), c);
        Ok(c)
    });
    let parts = s
        .parts
        .iter()
        .map(|(c, part)| (*c, req.with_body(&part.encode(reply.version))))
        .collect();
    let extra_ms = wait_ms(f.max_wait_ms);
    Ok(Step::Parts {
        parts,
        merge: Merge::Fetch(Split {
            req: f,
            refused: s.refused,
            owners,
        }),
        extra_ms,
    })
}

pub fn merge_fetch(reply: &Expect, s: &Split<FetchRequest>, parts: &[Part<KafkaAnswer>]) -> Bytes {
    if let ([only], true) = (parts, s.refused.is_empty()) {
        if let Some(a) = &only.answer {
            // One shard answered for everything: forwarded as it came (records not copied)
            // unless it names a node or a session.
            if let Ok(r) = a.decode(FetchResponse::decode) {
                let clean = r.error_code == NONE
                    && r.session_id == NO_SESSION_ID
                    && r.topics.iter().all(|t| {
                        t.partitions.iter().all(|p| p.tagged.is_empty() && p.preferred_read_replica < 0)
                    });
                if clean {
                    return a.raw.clone();
                }
            }
        }
    }
    let (answers, failed) = decoded(parts, FetchResponse::decode);
    let answers: Vec<FetchResponse> = answers.into_iter().map(|(_, a)| a).collect();
    let merged = fetch::merge(&s.req, &answers, &s.refused, |t, i| missing(&s.owners, &failed, t, i));
    frame(reply, &merged.encode(reply.version))
}

pub fn plan_list_offsets(p: &mut KafkaProtocol, req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let l = ListOffsetsRequest::decode(req)?;
    let table = cx.table().clone();
    let mut owners = BTreeMap::new();
    let mut cache = LeaderCache::new();
    let s = list_offsets::split(&l, |topic, i| {
        let c = p.partition_target(cx, &mut cache, table.route(topic), topic, i);
        owners.insert((Bytes::copy_from_slice(topic), i), c);
        Ok(c)
    });
    let parts = s
        .parts
        .iter()
        .map(|(c, part)| (*c, req.with_body(&part.encode(reply.version))))
        .collect();
    Ok(Step::Parts {
        parts,
        merge: Merge::ListOffsets(Split {
            req: l,
            refused: s.refused,
            owners,
        }),
        extra_ms: 0,
    })
}

pub fn merge_list_offsets(reply: &Expect, s: &Split<ListOffsetsRequest>, parts: &[Part<KafkaAnswer>]) -> Bytes {
    let (answers, failed) = decoded(parts, ListOffsetsResponse::decode);
    let answers: Vec<ListOffsetsResponse> = answers.into_iter().map(|(_, a)| a).collect();
    let merged = list_offsets::merge(&s.req, &answers, &s.refused, |t, i| missing(&s.owners, &failed, t, i));
    frame(reply, &merged.encode(reply.version))
}
