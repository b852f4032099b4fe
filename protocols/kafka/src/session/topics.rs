//! CreateTopics and DeleteTopics routed by the table: each topic to the shard that owns its
//! name (a topic named by id only, DeleteTopics v6, to the shard whose Metadata reported that
//! id), one request per shard with that shard's topics, the answers merged in the request's
//! order. Every broker accepts these from any client (tansu, and Kafka's brokers forward to
//! their controller), so they go to the table cluster, not to a partition leader.

use bytes::Bytes;
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Failure, Part};

use super::answer::{Expect, KafkaAnswer};
use super::merge::{frame, Merge};
use super::plan::{wait_ms, Planned, Step};
use super::KafkaProtocol;
use crate::codes::{
    ErrorCode, NOT_CONTROLLER, REQUEST_TIMED_OUT, UNKNOWN_SERVER_ERROR, UNKNOWN_TOPIC_ID,
};
use crate::header::Request;
use crate::messages::topics_admin::{empty_tail, error_entry, throttle_head, Admin, Entry, Topics};
use crate::wire::Reader;

/// Where each topic of the request went: its cluster, or the code the proxy answers.
pub type Routes = Vec<Result<ClusterId, ErrorCode>>;

/// The request's `timeout_ms` (the first 4 bytes of its tail): the part's extra budget.
fn timeout_ms(tail: &Bytes) -> u64 {
    tail.get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| wait_ms(i32::from_be_bytes(b)))
}

pub fn plan(
    p: &mut KafkaProtocol,
    api: Admin,
    req: &Request,
    reply: Expect,
    cx: &mut Ctx<'_, KafkaProtocol>,
) -> Planned {
    let topics = Topics::decode_request(api, &mut req.body(), reply.version)?;
    let table = cx.table().clone();
    let routes: Routes = topics
        .entries
        .iter()
        .map(|e| match &e.name {
            Some(n) => Ok(table.route(n)),
            None => p
                .topic_ids
                .iter()
                .find(|k| k.topic_id == e.topic_id)
                .map(|k| ClusterId(k.shard))
                .filter(|c| table.active_clusters().contains(c))
                .ok_or(UNKNOWN_TOPIC_ID),
        })
        .collect();
    let mut clusters: Vec<ClusterId> = routes.iter().filter_map(|r| r.ok()).collect();
    clusters.sort();
    clusters.dedup();
    let parts = clusters
        .into_iter()
        .map(|c| {
            let mine: Vec<&Entry> = topics
                .entries
                .iter()
                .zip(&routes)
                .filter(|(_, r)| **r == Ok(c))
                .map(|(e, _)| e)
                .collect();
            (
                c,
                req.with_body(&topics.encode_with(api, reply.version, &mine)),
            )
        })
        .collect();
    let extra_ms = timeout_ms(&topics.tail);
    Ok(Step::Parts {
        parts,
        merge: Merge::Topics {
            api,
            req: topics,
            routes,
        },
        extra_ms,
    })
}

/// The code a topic of a shard that gave no answer gets.
fn failure_code(f: Option<&Failure>) -> ErrorCode {
    match f {
        Some(Failure::Timeout { .. }) => REQUEST_TIMED_OUT,
        Some(_) => NOT_CONTROLLER,
        None => UNKNOWN_SERVER_ERROR,
    }
}

/// Every topic of the request, in its order: its shard's result as that shard wrote it, or
/// the proxy's error (shard failed, answer unreadable, topic missing from the answer).
pub fn merge(
    reply: &Expect,
    api: Admin,
    req: &Topics,
    routes: &Routes,
    parts: &[Part<KafkaAnswer>],
) -> Bytes {
    let version = reply.version;
    let mut answers: Vec<(ClusterId, Result<Topics, ErrorCode>)> = Vec::with_capacity(parts.len());
    for part in parts {
        let got = match &part.answer {
            Some(a) => a
                .decode(|r: &mut Reader, v| Topics::decode_response(api, r, v))
                .map_err(|_| UNKNOWN_SERVER_ERROR),
            None => Err(failure_code(part.failure.as_ref())),
        };
        answers.push((part.cluster, got));
    }
    let throttle = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok())
        .map(Topics::throttle)
        .max()
        .unwrap_or(0);
    let mut entries: Vec<Entry> = Vec::with_capacity(req.entries.len());
    for (e, route) in req.entries.iter().zip(routes) {
        let code = match route {
            Err(code) => *code,
            Ok(c) => match answers.iter().find(|(ac, _)| ac == c).map(|(_, a)| a) {
                Some(Ok(t)) => {
                    let found = t.entries.iter().find(|r| match &e.name {
                        Some(n) => r.name.as_ref() == Some(n),
                        None => r.topic_id == e.topic_id,
                    });
                    if let Some(r) = found {
                        entries.push(r.clone());
                        continue;
                    }
                    UNKNOWN_SERVER_ERROR
                }
                Some(Err(code)) => *code,
                None => UNKNOWN_SERVER_ERROR,
            },
        };
        entries.push(error_entry(
            api,
            version,
            e.name.as_deref(),
            &e.topic_id,
            code,
        ));
    }
    let merged = Topics {
        head: throttle_head(api, version, throttle),
        entries: Vec::new(),
        tail: empty_tail(api, version),
    };
    let refs: Vec<&Entry> = entries.iter().collect();
    frame(reply, &merged.encode_with(api, version, &refs))
}
