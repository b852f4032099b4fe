//! Consumer groups: one home shard per group (the routing table's cluster for its `group_id`),
//! where FindCoordinator, JoinGroup, SyncGroup, Heartbeat and LeaveGroup go; offsets live with
//! their topics (OffsetCommit and OffsetFetch split by topic owner, `logic::offsets`).
//!
//! In a home shard of several brokers the group's requests go to the broker its
//! FindCoordinator named, through an endpoint link (`groups.rs` keeps it for every
//! connection); FindCoordinator itself goes to the shard's table cluster. With
//! `follow_leaders`, a group's FindCoordinator is also asked of every other shard (its answer
//! is not the client's): a shard holding some of the group's offsets coordinates the group on
//! one of its brokers too, and the group's commits and offset fetches there go to that broker
//! (any other answers NOT_COORDINATOR). The client's answer waits for every shard's.
//!
//! Commits are sent to every owning shard at once: the home shard's part carries the member's
//! generation (fenced there), the other shards' parts are standalone commits. Those are sent
//! only for a member of the latest generation the proxy saw JoinGroup answer (`groups.rs`):
//! the proxy cannot wait for the home shard's verdict first (it writes to shards only while it
//! handles client bytes).

use std::collections::BTreeMap;

use bytes::Bytes;
use geomesh_core::{ClusterId, RoutingTable};
use geomesh_kit::{Ctx, Part};

use super::answer::{Expect, KafkaAnswer};
use super::merge::{decoded, frame, missing, Merge, Split};
use super::plan::{wait_ms, Planned, Step};
use super::groups::{coordinator_moved, GroupState};
use super::leaders::{endpoint, LeaderRegistry};
use super::{shard, KafkaProtocol};
use crate::codes::{api, ErrorCode, COORDINATOR_NOT_AVAILABLE, NONE, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use crate::error::DecodeError;
use crate::header::Request;
use crate::logic::coordinator::{merge, rewrite, unavailable};
use crate::logic::errors::group_error_body;
use crate::logic::nodes::Advertised;
use crate::logic::offsets::{
    merge_commit as merge_commits, merge_fetch, split_commit, split_fetch, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
};
use crate::messages::find_coordinator::{FindCoordinatorRequest, FindCoordinatorResponse, KEY_TYPE_GROUP};
use crate::messages::group::{answer_error, group_id, JoinGroupAnswer};
use crate::messages::offsets::{OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse};

/// How long a SyncGroup may wait for the group's leader beyond the configured budget (ms).
pub const SYNC_WAIT_MS: u64 = 60_000;

pub fn plan_coordinator(p: &KafkaProtocol, req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
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
    let mut shards: Vec<ClusterId> = fc.keys.iter().map(|k| table.route(k)).collect();
    if p.follow_leaders {
        // Each shard's coordinator of the group, for the offsets it holds.
        shards.extend_from_slice(table.active_clusters());
    }
    shards.sort();
    shards.dedup();
    let wire = req.wire();
    Ok(Step::Parts {
        parts: shards.into_iter().map(|c| (c, wire.clone())).collect(),
        merge: Merge::FindCoordinator { keys: fc.keys },
        extra_ms: 0,
    })
}

/// Each key's coordinator from its home shard, renamed to a virtual node at the proxy; every
/// shard's coordinator of each key is kept (the other shards' answers are not the client's).
pub fn merge_coordinator(
    reply: &Expect,
    keys: &[Bytes],
    parts: &[Part<KafkaAnswer>],
    table: &RoutingTable,
    advertised: &Advertised,
    groups: &dyn LeaderRegistry,
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
            for co in a.coordinators.iter().filter(|co| co.error_code == NONE) {
                update(groups, c, &co.key, |g| g.coordinator = endpoint(&co.host, co.port));
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
pub fn plan_group(p: &mut KafkaProtocol, req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let group = group_id(req)?;
    let home = coordinator(p, cx, &group);
    let extra_ms = match reply.api_key {
        api::JOIN_GROUP => join_wait_ms(req)?,
        api::SYNC_GROUP => SYNC_WAIT_MS,
        _ => 0,
    };
    Ok(Step::Parts {
        parts: vec![(home, req.wire())],
        merge: Merge::Group { group, home },
        extra_ms,
    })
}

/// Where the requests of `group` go: its home shard's coordinator as FindCoordinator named it
/// (through an endpoint link), else the home shard's table cluster.
fn coordinator(p: &mut KafkaProtocol, cx: &mut Ctx<'_, KafkaProtocol>, group: &[u8]) -> ClusterId {
    let home = cx.table().route(group);
    coordinator_in(p, cx, home, group)
}

/// Where `group`'s requests to table cluster `shard_cluster` go: the broker that shard's
/// FindCoordinator named (through an endpoint link), else the table cluster.
fn coordinator_in(p: &mut KafkaProtocol, cx: &mut Ctx<'_, KafkaProtocol>, shard_cluster: ClusterId, group: &[u8]) -> ClusterId {
    if !p.follow_leaders {
        return shard_cluster;
    }
    match p.leaders.get_group(shard(shard_cluster), group).and_then(|g| g.coordinator) {
        Some(e) => p.endpoint_link(cx, shard_cluster, &e),
        None => shard_cluster,
    }
}

/// The target of `group`'s requests to each of `shards` (table clusters).
fn coordinators(
    p: &mut KafkaProtocol,
    cx: &mut Ctx<'_, KafkaProtocol>,
    shards: impl IntoIterator<Item = ClusterId>,
    group: &[u8],
) -> BTreeMap<ClusterId, ClusterId> {
    shards.into_iter().map(|c| (c, coordinator_in(p, cx, c, group))).collect()
}

/// Changes what is kept of `group` in the shard of table cluster (or link) `home`.
fn update(groups: &dyn LeaderRegistry, home: ClusterId, group: &[u8], f: impl FnOnce(&mut GroupState)) {
    let mut g = groups.get_group(shard(home), group).unwrap_or_default();
    let before = g.clone();
    f(&mut g);
    if g != before {
        groups.put_group(shard(home), group, &g);
    }
}

/// A group answer saying the coordinator moved (or a coordinator's link that failed): the
/// coordinator is found again by the client's next FindCoordinator.
fn forget_if(groups: &dyn LeaderRegistry, links: &super::leaders::Links, home: ClusterId, group: &[u8], code: ErrorCode) {
    if coordinator_moved(code) {
        update(groups, links.cluster_of(home), group, |g| g.coordinator = None);
    }
}

/// The coordinator's answer as it came, or COORDINATOR_NOT_AVAILABLE (the client finds the
/// coordinator again and retries). A JoinGroup answer's generation and members are kept.
pub fn merge_group(
    reply: &Expect,
    parts: &[Part<KafkaAnswer>],
    (home, group): (ClusterId, &Bytes),
    p: (&dyn LeaderRegistry, &super::leaders::Links),
) -> Bytes {
    let (groups, links) = p;
    if let Some(a) = parts.first().and_then(|p| p.answer.as_ref()) {
        if let Ok(code) = a.decode(|r, v| answer_error(reply.api_key, v, r)) {
            forget_if(groups, links, home, group, code);
        }
        if reply.api_key == api::JOIN_GROUP {
            if let Ok(j) = a.decode(JoinGroupAnswer::decode) {
                if j.error_code == NONE {
                    update(groups, links.cluster_of(home), group, |g| g.joined(j.generation_id, &j.member_id, &j.members));
                }
            }
        }
        return a.raw.clone();
    }
    forget_if(groups, links, home, group, COORDINATOR_NOT_AVAILABLE);
    let body = group_error_body(reply.api_key, reply.version, COORDINATOR_NOT_AVAILABLE).unwrap_or_default();
    frame(reply, &body)
}

/// The code the other shards' partitions of a commit get when the member is fenced: `None`
/// when the commit may be written there.
fn fenced(state: Option<&GroupState>, commit: &OffsetCommitRequest) -> Option<ErrorCode> {
    let g = state?;
    if g.may_commit(commit.generation_id, &commit.member_id) {
        return None;
    }
    Some(if commit.generation_id < g.generation { ILLEGAL_GENERATION } else { UNKNOWN_MEMBER_ID })
}

pub fn plan_commit(p: &mut KafkaProtocol, req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let commit = OffsetCommitRequest::decode(req)?;
    let table = cx.table().clone();
    let home = table.route(&commit.group_id);
    let state = p.leaders.get_group(shard(home), &commit.group_id);
    let fence = fenced(state.as_ref(), &commit);
    let involved = commit.topics.iter().map(|t| table.route(&t.name)).chain([home]).collect::<Vec<_>>();
    let targets = coordinators(p, cx, involved, &commit.group_id);
    let to = |c: ClusterId| targets.get(&c).copied().unwrap_or(c);
    let target = to(home);
    let mut owners = BTreeMap::new();
    let s = split_commit(&commit, home, |topic, i| {
        let c = table.route(topic);
        if let (Some(code), true) = (fence, c != home) {
            return Err(code);
        }
        owners.insert((Bytes::copy_from_slice(topic), i), to(c));
        Ok(c)
    });
    let mut parts = Vec::with_capacity(1 + s.foreign.len());
    if !s.home.topics.is_empty() {
        parts.push((target, req.with_body(&s.home.encode(reply.version))));
    }
    for (c, part) in &s.foreign {
        parts.push((to(*c), req.with_body(&part.encode(reply.version))));
    }
    Ok(Step::Parts {
        parts,
        merge: Merge::OffsetCommit {
            split: Split {
                req: commit,
                refused: s.refused,
                owners,
            },
        },
        extra_ms: 0,
    })
}

pub fn merge_commit(
    reply: &Expect,
    s: &Split<OffsetCommitRequest>,
    parts: &[Part<KafkaAnswer>],
    p: (&dyn LeaderRegistry, &super::leaders::Links),
) -> Bytes {
    let (answers, failed) = decoded(parts, OffsetCommitResponse::decode);
    let group = &s.req.group_id;
    // Every shard's coordinator (the home's and the others'): forgotten when it moved.
    for (c, a) in &answers {
        let moved = a.topics.iter().flat_map(|t| &t.partitions).map(|x| x.error_code).find(|c| coordinator_moved(*c));
        forget_if(p.0, p.1, *c, group, moved.unwrap_or(NONE));
    }
    for c in failed.keys() {
        forget_if(p.0, p.1, *c, group, COORDINATOR_NOT_AVAILABLE);
    }
    let answers: Vec<OffsetCommitResponse> = answers.into_iter().map(|(_, a)| a).collect();
    let failed = failed.into_keys().map(|c| (c, COORDINATOR_NOT_AVAILABLE)).collect();
    let merged = merge_commits(&s.req, &answers, &s.refused, |t, i| missing(&s.owners, &failed, t, i));
    frame(reply, &merged.encode(reply.version))
}

pub fn plan_offset_fetch(p: &mut KafkaProtocol, req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let f = OffsetFetchRequest::decode(req)?;
    let table = cx.table().clone();
    let home = table.route(&f.group_id);
    let mut shards: Vec<ClusterId> = table.active_clusters().to_vec();
    if !shards.contains(&home) {
        shards.push(home);
    }
    let mut split = split_fetch(&f, &shards, |t| table.route(t));
    if split.is_empty() {
        // No topic asked: the home shard answers (its top-level error, if any, is the group's).
        split.insert(home, f.clone());
    }
    let targets = coordinators(p, cx, split.keys().copied().collect::<Vec<_>>(), &f.group_id);
    let parts = split
        .iter()
        .map(|(c, part)| (targets.get(c).copied().unwrap_or(*c), req.with_body(&part.encode(reply.version))))
        .collect();
    Ok(Step::Parts {
        parts,
        merge: Merge::OffsetFetch { req: f },
        extra_ms: 0,
    })
}

pub fn merge_offset_fetch(
    reply: &Expect,
    req: &OffsetFetchRequest,
    parts: &[Part<KafkaAnswer>],
    table: &RoutingTable,
    p: (&dyn LeaderRegistry, &super::leaders::Links),
) -> Bytes {
    let (answers, failed) = decoded(parts, OffsetFetchResponse::decode);
    for (c, a) in &answers {
        forget_if(p.0, p.1, *c, &req.group_id, a.error_code);
    }
    for c in failed.keys() {
        forget_if(p.0, p.1, *c, &req.group_id, COORDINATOR_NOT_AVAILABLE);
    }
    // Answers by table cluster (each came from its shard's coordinator's link, if any).
    let answers: Vec<(ClusterId, OffsetFetchResponse)> = answers.into_iter().map(|(c, a)| (p.1.cluster_of(c), a)).collect();
    let merged = merge_fetch(req, &answers, |t| table.route(t), COORDINATOR_NOT_AVAILABLE);
    frame(reply, &merged.encode(reply.version))
}
