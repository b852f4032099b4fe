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
pub fn rewrite(
    answer: &FindCoordinatorResponse,
    shard: u16,
    advertised: &Advertised,
) -> FindCoordinatorResponse {
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
pub fn merge(
    keys: &[bytes::Bytes],
    answers: &[FindCoordinatorResponse],
    missing: ErrorCode,
) -> FindCoordinatorResponse {
    let coordinators = keys
        .iter()
        .map(|k| {
            answers
                .iter()
                .flat_map(|a| a.coordinators.iter())
                .find(|c| c.key == k)
                .cloned()
                .unwrap_or_else(|| unavailable(k.clone(), missing))
        })
        .collect();
    FindCoordinatorResponse {
        throttle_time_ms: answers
            .iter()
            .map(|a| a.throttle_time_ms)
            .max()
            .unwrap_or(0),
        coordinators,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use bytes::Bytes;

    fn tansu(key: &'static str) -> FindCoordinatorResponse {
        FindCoordinatorResponse {
            throttle_time_ms: 0,
            coordinators: vec![Coordinator {
                key: Bytes::from_static(key.as_bytes()),
                node_id: 111,
                host: Bytes::from_static(b"127.0.0.1"),
                port: 9001,
                error_code: NONE,
                error_message: Some(Bytes::from_static(b"NONE")),
            }],
        }
    }

    #[test]
    fn the_home_shards_coordinator_as_a_virtual_node_at_the_proxy() {
        let adv = Advertised {
            host: Bytes::from_static(b"envoy"),
            port: 9092,
        };
        let r = rewrite(&tansu("g1"), 1, &adv);
        let c = &r.coordinators[0];
        assert_eq!(
            (c.node_id, &c.host[..], c.port),
            (1_000_111, &b"envoy"[..], 9092)
        );
        for v in 0..=6 {
            let body = r.encode(v);
            let kp = <kafka_protocol::messages::FindCoordinatorResponse as kafka_protocol::protocol::Decodable>::decode(&mut body.clone(), v).unwrap();
            if v <= 3 {
                assert_eq!((kp.node_id.0, kp.port), (1_000_111, 9092));
            } else {
                assert_eq!(kp.coordinators[0].node_id.0, 1_000_111);
            }
        }
    }

    #[test]
    fn batched_keys_merge_in_request_order_and_missing_homes_get_an_error() {
        let adv = Advertised {
            host: Bytes::from_static(b"envoy"),
            port: 9092,
        };
        let keys = [Bytes::from_static(b"g2"), Bytes::from_static(b"g1")];
        let m = merge(
            &keys,
            &[rewrite(&tansu("g1"), 0, &adv)],
            COORDINATOR_NOT_AVAILABLE,
        );
        assert_eq!(m.coordinators[0].error_code, COORDINATOR_NOT_AVAILABLE);
        assert_eq!(m.coordinators[0].key, "g2");
        assert_eq!(
            (m.coordinators[1].node_id, m.coordinators[1].error_code),
            (111, NONE)
        );
    }
}
