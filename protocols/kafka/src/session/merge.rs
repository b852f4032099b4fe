//! How the parts of one client request become its answer: what each merge keeps of the
//! request, and the helpers every merge shares (decoded answers per shard, the error code a
//! failed shard's partitions get, the client's frame).

use std::collections::BTreeMap;

use bytes::Bytes;
use geomesh_core::ClusterId;
use geomesh_kit::{Failure, Part};

use super::answer::{Expect, KafkaAnswer};
use crate::codes::{ErrorCode, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, UNKNOWN_SERVER_ERROR};
use crate::error::DecodeError;
use crate::header::response_frame;
use crate::messages::fetch::FetchRequest;
use crate::messages::list_offsets::ListOffsetsRequest;
use crate::messages::metadata::MetadataRequest;
use crate::messages::offsets::{OffsetCommitRequest, OffsetFetchRequest};
use crate::messages::produce::ProduceRequest;
use crate::wire::{Reader, Uuid};
use crate::apis::lookup;

/// (topic, partition, code) the proxy answers itself.
pub type Refused = Vec<(Bytes, i32, ErrorCode)>;

/// A split request's merge: the client's request (its order decides the answer's), the
/// partitions refused at the split, and where each topic went.
#[derive(Debug)]
pub struct Split<R> {
    pub req: R,
    pub refused: Refused,
    /// Where each (topic, partition) went (a table cluster or a leader's endpoint link).
    pub owners: BTreeMap<(Bytes, i32), ClusterId>,
}

/// What a request's merge needs.
#[derive(Debug)]
pub enum Merge {
    ApiVersions,
    Metadata { req: MetadataRequest, unknown_ids: Vec<Uuid> },
    Produce(Split<ProduceRequest>),
    Fetch(Split<FetchRequest>),
    ListOffsets(Split<ListOffsetsRequest>),
    LeaderEpoch(Split<crate::messages::leader_epoch::OffsetForLeaderEpochRequest>),
    FindCoordinator { keys: Vec<Bytes> },
    /// JoinGroup, SyncGroup, Heartbeat, LeaveGroup: the coordinator's answer as it came.
    /// `home`: where the group's requests went (its home shard, or its coordinator's link).
    Group { group: Bytes, home: ClusterId },
    OffsetCommit { split: Split<OffsetCommitRequest> },
    OffsetFetch { req: OffsetFetchRequest },
    InitProducerId,
    /// SaslHandshake, SaslAuthenticate: stored, sent to every shard, replayed on new links.
    Sasl,
    /// CreateTopics, DeleteTopics: each topic's result from its shard.
    Topics {
        api: crate::messages::topics_admin::Admin,
        req: crate::messages::topics_admin::Topics,
        routes: super::topics::Routes,
    },
}

/// A merge with what the client's answer must say (API, version, correlation id).
#[derive(Debug)]
pub struct KafkaMerge {
    pub reply: Expect,
    pub merge: Merge,
}

/// The code a failed shard's partitions get: silent, REQUEST_TIMED_OUT; gone or broken,
/// NOT_LEADER_OR_FOLLOWER (both make the client refresh Metadata and retry).
pub fn failure_code(f: &Failure) -> ErrorCode {
    match f {
        Failure::Timeout { .. } => REQUEST_TIMED_OUT,
        Failure::Closed { .. } | Failure::Broken(_) | Failure::Reset(_) => NOT_LEADER_OR_FOLLOWER,
    }
}

/// The parts' answers decoded by `decode`, with their clusters; the parts that failed (or
/// whose answer did not decode) with the code their partitions get.
pub fn decoded<T>(
    parts: &[Part<KafkaAnswer>],
    decode: impl Fn(&mut Reader, i16) -> Result<T, DecodeError>,
) -> (Vec<(ClusterId, T)>, BTreeMap<ClusterId, ErrorCode>) {
    let mut ok = Vec::with_capacity(parts.len());
    let mut failed = BTreeMap::new();
    for p in parts {
        match (&p.answer, &p.failure) {
            (Some(a), _) => match a.decode(&decode) {
                Ok(v) => ok.push((p.cluster, v)),
                Err(_) => {
                    failed.insert(p.cluster, UNKNOWN_SERVER_ERROR);
                }
            },
            (None, Some(f)) => {
                failed.insert(p.cluster, failure_code(f));
            }
            (None, None) => {
                failed.insert(p.cluster, UNKNOWN_SERVER_ERROR);
            }
        }
    }
    (ok, failed)
}

/// The client's answer frame for `reply` with `body`.
pub fn frame(reply: &Expect, body: &[u8]) -> Bytes {
    let header = lookup(reply.api_key).map_or(0, |s| s.response_header_version(reply.version));
    response_frame(reply.correlation_id, header, body)
}

/// The code for partition `partition` of `topic` that no answer covered.
pub fn missing(
    owners: &BTreeMap<(Bytes, i32), ClusterId>,
    failed: &BTreeMap<ClusterId, ErrorCode>,
    topic: &[u8],
    partition: i32,
) -> ErrorCode {
    owners
        .get(&(Bytes::copy_from_slice(topic), partition))
        .and_then(|c| failed.get(c))
        .copied()
        .unwrap_or(crate::codes::UNKNOWN_TOPIC_OR_PARTITION)
}
