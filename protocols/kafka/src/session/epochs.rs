//! OffsetForLeaderEpoch: each partition to its owning shard (to the partition's leader in a
//! shard of several brokers, as Fetch and ListOffsets), the answers merged in the client's
//! order.
//!
//! A broker that does not offer the API may close the connection on it (tansu 0.6 does): the
//! proxy sends a partition only to a shard whose ApiVersions answer on this connection offered
//! the request's version. The merged ApiVersions omits the API unless every shard offers it,
//! so a client sends it only when all do; a client sending it anyway gets every partition of a
//! shard that does not (or was not seen to) answered UNSUPPORTED_VERSION, the connection kept.

use std::collections::BTreeMap;

use bytes::Bytes;
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Part};

use super::answer::{Expect, KafkaAnswer};
use super::merge::{decoded, frame, missing, Merge, Split};
use super::plan::{Planned, Step};
use super::{KafkaProtocol, LeaderCache};
use crate::codes::{api, UNSUPPORTED_VERSION};
use crate::header::Request;
use crate::logic::leader_epoch;
use crate::messages::api_versions::ApiVersionsResponse;
use crate::messages::leader_epoch::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

/// The OffsetForLeaderEpoch versions each shard offered in its last ApiVersions answer on this
/// connection (`None`: it answered without the API).
pub type ShardEpochVersions = BTreeMap<ClusterId, Option<(i16, i16)>>;

/// Remembers what `shard`'s ApiVersions answer offered for OffsetForLeaderEpoch.
pub fn learn(known: &mut ShardEpochVersions, shard: ClusterId, answer: &ApiVersionsResponse) {
    let range = answer
        .api_keys
        .iter()
        .find(|a| a.api_key == api::OFFSET_FOR_LEADER_EPOCH)
        .map(|a| (a.min, a.max));
    known.insert(shard, range);
}

fn offers(known: &ShardEpochVersions, shard: ClusterId, version: i16) -> bool {
    matches!(known.get(&shard), Some(Some((lo, hi))) if (*lo..=*hi).contains(&version))
}

pub fn plan(
    p: &mut KafkaProtocol,
    req: &Request,
    reply: Expect,
    cx: &mut Ctx<'_, KafkaProtocol>,
) -> Planned {
    let e = OffsetForLeaderEpochRequest::decode(req)?;
    let table = cx.table().clone();
    let mut owners = BTreeMap::new();
    let mut cache = LeaderCache::new();
    let s = leader_epoch::split(&e, |topic, i| {
        let owner = table.route(topic);
        if !offers(&p.epoch_versions, owner, reply.version) {
            return Err(UNSUPPORTED_VERSION);
        }
        let c = p.partition_target(cx, &mut cache, owner, topic, i);
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
        merge: Merge::LeaderEpoch(Split {
            req: e,
            refused: s.refused,
            owners,
        }),
        extra_ms: 0,
    })
}

pub fn merge(
    reply: &Expect,
    s: &Split<OffsetForLeaderEpochRequest>,
    parts: &[Part<KafkaAnswer>],
) -> Bytes {
    let (answers, failed) = decoded(parts, OffsetForLeaderEpochResponse::decode);
    let answers: Vec<OffsetForLeaderEpochResponse> = answers.into_iter().map(|(_, a)| a).collect();
    let merged = leader_epoch::merge(&s.req, &answers, &s.refused, |t, i| {
        missing(&s.owners, &failed, t, i)
    });
    frame(reply, &merged.encode(reply.version))
}
