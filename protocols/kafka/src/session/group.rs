//! Consumer groups: one home shard per group (the routing table's cluster for its `group_id`),
//! where FindCoordinator, JoinGroup, SyncGroup, Heartbeat and LeaveGroup go; offsets live with
//! their topics (OffsetCommit and OffsetFetch split by topic owner, `logic::offsets`).
//!
//! Commits are sent to every owning shard at once: the home shard's part carries the member's
//! generation (fenced there), the other shards' parts are standalone commits, which a stale
//! member could still make (the README's "Consumer groups" says why the proxy cannot wait for
//! the home shard first: it writes to shards only while it handles client bytes).

use std::collections::BTreeMap;

use bytes::Bytes;
use geomesh_core::{ClusterId, RoutingTable};
use geomesh_kit::{Ctx, Part};

use super::answer::{Expect, KafkaAnswer};
use super::merge::{decoded, frame, missing, Merge, Split};
use super::plan::{wait_ms, Planned, Step};
use super::{shard, KafkaProtocol};
use crate::codes::{api, COORDINATOR_NOT_AVAILABLE, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use crate::error::DecodeError;
use crate::header::Request;
use crate::logic::coordinator::{merge, rewrite, unavailable};
use crate::logic::errors::group_error_body;
use crate::logic::nodes::Advertised;
use crate::logic::offsets::{merge_commit as merge_commits, merge_fetch, split_commit, split_fetch};
use crate::messages::find_coordinator::{FindCoordinatorRequest, FindCoordinatorResponse, KEY_TYPE_GROUP};
use crate::messages::group::group_id;
use crate::messages::offsets::{OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse};

/// How long a SyncGroup may wait for the group's leader beyond the configured budget (ms).
pub const SYNC_WAIT_MS: u64 = 60_000;

pub fn plan_coordinator(req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let fc = FindCoordinatorRequest::decode(req)?;
    if fc.key_type != KEY_TYPE_GROUP {
        // Transaction coordinators: transactions cannot span shards.
        let answer = FindCoordinatorResponse {
            throttle_time_ms: 0,
            coordinators: fc.keys.iter().map(|k| unavailable(k.clone(), TRANSACTIONAL_ID_AUTHORIZATION_FAILED)).collect(),
        };
        return Ok(Step::Local(frame(&reply, &answer.encode(reply.version))));
    }
    let table = cx.table().clone();
    let mut homes: Vec<ClusterId> = fc.keys.iter().map(|k| table.route(k)).collect();
    homes.sort();
    homes.dedup();
    let wire = req.wire();
    Ok(Step::Parts {
        parts: homes.into_iter().map(|c| (c, wire.clone())).collect(),
        merge: Merge::FindCoordinator { keys: fc.keys },
        extra_ms: 0,
    })
}

/// Each key's coordinator from its home shard, renamed to a virtual node at the proxy.
pub fn merge_coordinator(
    reply: &Expect,
    keys: &[Bytes],
    parts: &[Part<KafkaAnswer>],
    table: &RoutingTable,
    advertised: &Advertised,
) -> Bytes {
    let (answers, _) = decoded(parts, FindCoordinatorResponse::decode);
    let renamed: Vec<FindCoordinatorResponse> = answers
        .into_iter()
        .map(|(c, mut a)| {
            if reply.version < 4 {
                // One key, not echoed before v4.
                for co in &mut a.coordinators {
                    co.key = keys.first().cloned().unwrap_or_default();
                }
            }
            let mut r = rewrite(&a, shard(c), advertised);
            r.coordinators.retain(|co| table.route(&co.key) == c);
            r
        })
        .collect();
    frame(reply, &merge(keys, &renamed, COORDINATOR_NOT_AVAILABLE).encode(reply.version))
}

/// The waits a JoinGroup names (session and rebalance timeouts), the longer one.
fn join_wait_ms(req: &Request) -> Result<u64, DecodeError> {
    let mut r = req.body();
    r.string(req.flexible(), "group_id")?;
    let session = r.i32("session_timeout_ms")?;
    let rebalance = if req.version() >= 1 { r.i32("rebalance_timeout_ms")? } else { session };
    Ok(wait_ms(session).max(wait_ms(rebalance)))
}

/// JoinGroup, SyncGroup, Heartbeat, LeaveGroup: whole, to the group's home shard.
pub fn plan_group(req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let group = group_id(req)?;
    let home = cx.table().route(&group);
    let extra_ms = match reply.api_key {
        api::JOIN_GROUP => join_wait_ms(req)?,
        api::SYNC_GROUP => SYNC_WAIT_MS,
        _ => 0,
    };
    Ok(Step::Parts {
        parts: vec![(home, req.wire())],
        merge: Merge::Group,
        extra_ms,
    })
}

/// The home shard's answer as it came, or COORDINATOR_NOT_AVAILABLE (the client finds the
/// coordinator again and retries).
pub fn merge_group(reply: &Expect, parts: &[Part<KafkaAnswer>]) -> Bytes {
    if let Some(a) = parts.first().and_then(|p| p.answer.as_ref()) {
        return a.raw.clone();
    }
    let body = group_error_body(reply.api_key, reply.version, COORDINATOR_NOT_AVAILABLE).unwrap_or_default();
    frame(reply, &body)
}

pub fn plan_commit(req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let commit = OffsetCommitRequest::decode(req)?;
    let table = cx.table().clone();
    let home = table.route(&commit.group_id);
    let mut owners = BTreeMap::new();
    let s = split_commit(&commit, home, |topic, i| {
        let c = table.route(topic);
        owners.insert((Bytes::copy_from_slice(topic), i), c);
        Ok(c)
    });
    let mut parts = Vec::with_capacity(1 + s.foreign.len());
    if !s.home.topics.is_empty() {
        parts.push((home, req.with_body(&s.home.encode(reply.version))));
    }
    for (c, part) in &s.foreign {
        parts.push((*c, req.with_body(&part.encode(reply.version))));
    }
    Ok(Step::Parts {
        parts,
        merge: Merge::OffsetCommit(Split {
            req: commit,
            refused: s.refused,
            owners,
        }),
        extra_ms: 0,
    })
}

pub fn merge_commit(reply: &Expect, s: &Split<OffsetCommitRequest>, parts: &[Part<KafkaAnswer>]) -> Bytes {
    let (answers, failed) = decoded(parts, OffsetCommitResponse::decode);
    let answers: Vec<OffsetCommitResponse> = answers.into_iter().map(|(_, a)| a).collect();
    let failed = failed.into_keys().map(|c| (c, COORDINATOR_NOT_AVAILABLE)).collect();
    let merged = merge_commits(&s.req, &answers, &s.refused, |t, i| missing(&s.owners, &failed, t, i));
    frame(reply, &merged.encode(reply.version))
}

pub fn plan_offset_fetch(req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let f = OffsetFetchRequest::decode(req)?;
    let table = cx.table().clone();
    let mut shards: Vec<ClusterId> = table.active_clusters().to_vec();
    let home = table.route(&f.group_id);
    if !shards.contains(&home) {
        shards.push(home);
    }
    let mut split = split_fetch(&f, &shards, |t| table.route(t));
    if split.is_empty() {
        // No topic asked: the home shard answers (its top-level error, if any, is the group's).
        split.insert(home, f.clone());
    }
    let parts = split
        .iter()
        .map(|(c, part)| (*c, req.with_body(&part.encode(reply.version))))
        .collect();
    Ok(Step::Parts {
        parts,
        merge: Merge::OffsetFetch { req: f },
        extra_ms: 0,
    })
}

pub fn merge_offset_fetch(reply: &Expect, req: &OffsetFetchRequest, parts: &[Part<KafkaAnswer>], table: &RoutingTable) -> Bytes {
    let (answers, _) = decoded(parts, OffsetFetchResponse::decode);
    let merged = merge_fetch(req, &answers, |t| table.route(t), COORDINATOR_NOT_AVAILABLE);
    frame(reply, &merged.encode(reply.version))
}
