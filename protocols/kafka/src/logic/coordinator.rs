//! FindCoordinator: a group's coordinator is its home shard's, renamed to a virtual node at the
//! proxy's address; the client then sends the group's requests (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch) through the proxy, which routes them by
//! `group_id` to the same home shard.

use super::nodes::{to_virtual, Advertised};
use crate::codes::{ErrorCode, COORDINATOR_NOT_AVAILABLE, NONE};
use crate::messages::find_coordinator::{Coordinator, FindCoordinatorResponse};

/// `answer` (from `shard`) with every coordinator renamed: virtual node id, the proxy's
/// address. A coordinator whose id does not fit the virtual id space becomes
/// COORDINATOR_NOT_AVAILABLE.
pub fn rewrite(answer: &FindCoordinatorResponse, shard: u16, advertised: &Advertised) -> FindCoordinatorResponse {
    let coordinators = answer
        .coordinators
        .iter()
        .map(|c| {
            if c.error_code != NONE {
                return c.clone();
            }
            match to_virtual(shard, c.node_id) {
                Some(node_id) => Coordinator {
                    node_id,
                    host: advertised.host.clone(),
                    port: advertised.port,
                    ..c.clone()
                },
                None => unavailable(c.key.clone(), COORDINATOR_NOT_AVAILABLE),
            }
        })
        .collect();
    FindCoordinatorResponse {
        throttle_time_ms: answer.throttle_time_ms,
        coordinators,
    }
}

/// A coordinator entry for `key` carrying `code` (its home shard is down or silent).
pub fn unavailable(key: bytes::Bytes, code: ErrorCode) -> Coordinator {
    Coordinator {
        key,
        node_id: -1,
        host: bytes::Bytes::new(),
        port: -1,
        error_code: code,
        error_message: None,
    }
}

/// Merges the rewritten answers for a batched (v4+) request into the request's key order;
/// a key without an answer gets `missing`.
pub fn merge(keys: &[bytes::Bytes], answers: &[FindCoordinatorResponse], missing: ErrorCode) -> FindCoordinatorResponse {
    let coordinators = keys
        .iter()
        .map(|k| {
            answers
                .iter()
                .flat_map(|a| a.coordinators.iter())
                .find(|c| &c.key == k)
                .cloned()
                .unwrap_or_else(|| unavailable(k.clone(), missing))
        })
        .collect();
    FindCoordinatorResponse {
        throttle_time_ms: answers.iter().map(|a| a.throttle_time_ms).max().unwrap_or(0),
        coordinators,
    }
}
