//! ApiVersions and Metadata: every shard is asked, the client sees one cluster.

use bytes::Bytes;
use geomesh_core::{ClusterId, RoutingTable};
use geomesh_kit::{Ctx, Part};

use super::answer::{Expect, KafkaAnswer};
use super::merge::{decoded, frame, Merge};
use super::plan::{Planned, Step};
use super::epochs::{learn, ShardEpochVersions};
use super::leaders::{from_metadata, LeaderRegistry};
use super::{shard, KafkaProtocol};
use crate::codes::NONE;
use crate::header::Request;
use crate::logic::errors::proxy_api_versions;
use crate::logic::metadata::{merge, split_request, KnownTopicId, MergeContext};
use crate::logic::nodes::Advertised;
use crate::logic::versions;
use crate::messages::api_versions::ApiVersionsResponse;
use crate::messages::metadata::{MetadataRequest, MetadataResponse};


/// ApiVersions goes to every shard as the client sent it.
pub fn plan_api_versions(req: &Request, _reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let wire = req.wire();
    let parts = cx.table().active_clusters().iter().map(|c| (*c, wire.clone())).collect();
    Ok(Step::Parts {
        parts,
        merge: Merge::ApiVersions,
        extra_ms: 0,
    })
}

/// The intersection of the shards that answered and the proxy's own ranges; with no shard
/// answering, the proxy's own (the client's next requests get per-partition errors).
/// What each shard offered for OffsetForLeaderEpoch is kept in `epochs`.
pub fn merge_api_versions(reply: &Expect, parts: &[Part<KafkaAnswer>], epochs: &mut ShardEpochVersions) -> Bytes {
    let (answers, _) = decoded(parts, |r, v| ApiVersionsResponse::decode(r, v).map(|(a, _)| a));
    for (c, a) in answers.iter().filter(|(_, a)| a.error_code == NONE) {
        learn(epochs, *c, a);
    }
    let shards: Vec<ApiVersionsResponse> = answers.into_iter().map(|(_, a)| a).collect();
    let merged = if shards.is_empty() {
        proxy_api_versions(NONE)
    } else {
        versions::merge(&shards)
    };
    // An error answer is read in the v0 layout whatever was asked (KIP-511).
    let version = if merged.error_code == NONE { reply.version } else { 0 };
    frame(reply, &merged.encode(version))
}

/// Metadata: every shard asked, each for the topics it owns.
pub fn plan_metadata(p: &mut KafkaProtocol, req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let md = MetadataRequest::decode(req)?;
    let table = cx.table().clone();
    let shards: Vec<u16> = table.active_clusters().iter().map(|c| shard(*c)).collect();
    let split = split_request(&md, reply.version, &shards, |t| shard(table.route(t)), &p.topic_ids);
    let parts = split
        .parts
        .iter()
        .map(|(s, part)| (ClusterId(*s), req.with_body(&part.encode(reply.version))))
        .collect();
    Ok(Step::Parts {
        parts,
        merge: Merge::Metadata {
            req: md,
            unknown_ids: split.unknown_ids,
        },
        extra_ms: 0,
    })
}

/// One Metadata answer from every shard's, and the topic ids it named; each shard's
/// partition leaders go to `learn` when given.
#[allow(clippy::too_many_arguments)]
pub fn merge_metadata(
    reply: &Expect,
    req: &MetadataRequest,
    unknown_ids: &[crate::wire::Uuid],
    parts: &[Part<KafkaAnswer>],
    table: &RoutingTable,
    advertised: &Advertised,
    cluster_id: &Bytes,
    learn: Option<&dyn LeaderRegistry>,
) -> (Bytes, Vec<KnownTopicId>) {
    let (answers, failed) = decoded(parts, MetadataResponse::decode);
    if let Some(registry) = learn {
        for (c, a) in &answers {
            for (topic, leaders) in from_metadata(a) {
                registry.put(shard(*c), &topic, &leaders);
            }
        }
    }
    let answers: Vec<(u16, MetadataResponse)> = answers.into_iter().map(|(c, a)| (shard(c), a)).collect();
    let failed: Vec<u16> = failed.keys().map(|c| shard(*c)).collect();
    let ctx = MergeContext {
        request: req,
        advertised,
        cluster_id: Some(cluster_id.clone()),
        failed: &failed,
    };
    let merged = merge(&ctx, &answers, |t| shard(table.route(t)), unknown_ids);
    (frame(reply, &merged.response.encode(reply.version)), merged.topic_ids)
}
