//! Virtual node ids: every shard's brokers in one id space, and the one address they are all
//! reached at (Envoy's listener).
//!
//! Two clusters number their brokers independently (two tansu brokers both call themselves
//! node 111), so the merged Metadata renames them: `virtual = shard * STRIDE + real`, with the
//! shard the cluster's index in the routing table (stable across reconfigurations, see
//! `geomesh_core::ClusterId`). The mapping is a formula, not a table: every connection of every
//! client, in every Envoy worker, computes the same ids without sharing state, and an id read
//! back from a client (a broker config resource, a log line) names its shard and real broker
//! without a lookup. `STRIDE` is 1,000,000 so that the id stays readable (`1000111` is shard 1's
//! node 111); real ids from 0 to 999,999 fit for shards 0 to 2146 (an `i32`), and an id that
//! does not fit is reported, never wrapped.

/// Real node ids per shard in the virtual id space.
pub const STRIDE: i32 = 1_000_000;
/// The node id meaning "none" (no leader, no controller), passed through as is.
pub const NO_NODE: i32 = -1;

/// A broker of one shard, as that shard numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RealNode {
    pub shard: u16,
    pub node_id: i32,
}

/// The virtual id of `node` of shard `shard`; `None` when it does not fit (a negative or
/// too large real id, or a shard index above 2146): the caller reports that broker as
/// unavailable (`LEADER_NOT_AVAILABLE` for what it leads).
pub fn to_virtual(shard: u16, node_id: i32) -> Option<i32> {
    if !(0..STRIDE).contains(&node_id) {
        return None;
    }
    i32::from(shard)
        .checked_mul(STRIDE)
        .and_then(|base| base.checked_add(node_id))
}

/// Like [`to_virtual`], with -1 (no node) kept as -1 and an id that does not fit mapped to -1.
pub fn to_virtual_or_none(shard: u16, node_id: i32) -> i32 {
    if node_id == NO_NODE {
        return NO_NODE;
    }
    to_virtual(shard, node_id).unwrap_or(NO_NODE)
}

/// The shard and real id a virtual id stands for (`None` for negative ids).
pub fn to_real(virtual_id: i32) -> Option<RealNode> {
    if virtual_id < 0 {
        return None;
    }
    let shard = u16::try_from(virtual_id / STRIDE).ok()?;
    Some(RealNode {
        shard,
        node_id: virtual_id % STRIDE,
    })
}

/// Where a client reaches every virtual broker: the proxy's listener, one host and port
/// standing for all of them (README "Addresses").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub host: bytes::Bytes,
    pub port: i32,
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn two_brokers_called_111_get_two_ids() {
        assert_eq!(to_virtual(0, 111), Some(111));
        assert_eq!(to_virtual(1, 111), Some(1_000_111));
        assert_eq!(
            to_real(1_000_111),
            Some(RealNode {
                shard: 1,
                node_id: 111
            })
        );
        assert_eq!(
            to_real(111),
            Some(RealNode {
                shard: 0,
                node_id: 111
            })
        );
    }

    #[test]
    fn ids_that_do_not_fit_are_refused() {
        assert_eq!(to_virtual(0, -1), None);
        assert_eq!(to_virtual(0, STRIDE), None);
        assert_eq!(to_virtual(2146, 999_999), Some(2_146_999_999));
        assert_eq!(to_virtual(2147, 483_647), Some(i32::MAX));
        assert_eq!(to_virtual(2147, 483_648), None);
        assert_eq!(to_virtual(2148, 0), None);
        assert_eq!(to_virtual_or_none(3, NO_NODE), NO_NODE);
        assert_eq!(to_virtual_or_none(3, STRIDE + 5), NO_NODE);
        assert_eq!(to_real(-1), None);
    }

    #[test]
    fn round_trip_over_the_whole_range() {
        for shard in [0u16, 1, 7, 2146] {
            for node in [0, 1, 111, 1001, STRIDE - 1] {
                let v = to_virtual(shard, node).unwrap();
                assert_eq!(
                    to_real(v),
                    Some(RealNode {
                        shard,
                        node_id: node
                    })
                );
            }
        }
    }
}
