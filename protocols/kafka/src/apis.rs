//! The APIs the proxy understands: for each, the versions it decodes and where the protocol's
//! flexible versions (compact encodings, tagged fields) begin. Everything else is refused.

use crate::codes::api;

/// One API the proxy carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSpec {
    pub key: i16,
    pub name: &'static str,
    /// Versions this codec decodes and the proxy offers in ApiVersions (intersected with every
    /// shard's own range).
    pub min: i16,
    pub max: i16,
    /// First flexible version (`i16::MAX`: never flexible).
    pub flexible_from: i16,
}

impl ApiSpec {
    pub fn supports(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }

    pub fn is_flexible(&self, version: i16) -> bool {
        version >= self.flexible_from
    }

    /// Request header version: 2 when flexible, else 1.
    pub fn request_header_version(&self, version: i16) -> i16 {
        if self.is_flexible(version) {
            2
        } else {
            1
        }
    }

    /// Response header version: 1 when flexible, else 0; ApiVersions always answers with
    /// header v0 (so that a client can read the answer to a version it guessed too high).
    pub fn response_header_version(&self, version: i16) -> i16 {
        if self.key != api::API_VERSIONS && self.is_flexible(version) {
            1
        } else {
            0
        }
    }
}

const NEVER: i16 = i16::MAX;

const fn spec(key: i16, name: &'static str, min: i16, max: i16, flexible_from: i16) -> ApiSpec {
    ApiSpec {
        key,
        name,
        min,
        max,
        flexible_from,
    }
}

/// Every API the proxy carries, by key. Caps and why (README "APIs"):
/// Produce and Fetch stop at v12 (v13 names topics by cluster-local ids), Metadata at v12,
/// OffsetFetch at v7 (v8 batches several groups), InitProducerId at v5 (v6 is two-phase
/// commit), and Produce/Fetch start at v3/v4 (older versions carry pre-0.11 message sets
/// instead of record batches), OffsetCommit at v2, OffsetFetch at v1, CreateTopics at v2 and DeleteTopics at v1
/// (Kafka 4 dropped the older ones), OffsetForLeaderEpoch at v2 (the same; librdkafka 2.16 sends v2).
/// DescribeConfigs is not carried yet (no codec): ApiVersions does not offer it.
pub const APIS: &[ApiSpec] = &[
    spec(api::PRODUCE, "Produce", 3, 12, 9),
    spec(api::FETCH, "Fetch", 4, 12, 12),
    spec(api::LIST_OFFSETS, "ListOffsets", 1, 9, 6),
    spec(api::METADATA, "Metadata", 0, 12, 9),
    spec(api::OFFSET_COMMIT, "OffsetCommit", 2, 9, 8),
    spec(api::OFFSET_FETCH, "OffsetFetch", 1, 7, 6),
    spec(api::FIND_COORDINATOR, "FindCoordinator", 0, 6, 3),
    spec(api::JOIN_GROUP, "JoinGroup", 0, 9, 6),
    spec(api::HEARTBEAT, "Heartbeat", 0, 4, 4),
    spec(api::LEAVE_GROUP, "LeaveGroup", 0, 5, 4),
    spec(api::SYNC_GROUP, "SyncGroup", 0, 5, 4),
    spec(api::SASL_HANDSHAKE, "SaslHandshake", 1, 1, NEVER),
    spec(api::API_VERSIONS, "ApiVersions", 0, 4, 3),
    spec(api::INIT_PRODUCER_ID, "InitProducerId", 0, 5, 2),
    spec(api::OFFSET_FOR_LEADER_EPOCH, "OffsetForLeaderEpoch", 2, 4, 4),
    spec(api::SASL_AUTHENTICATE, "SaslAuthenticate", 0, 2, 2),
    spec(api::CREATE_TOPICS, "CreateTopics", 2, 7, 5),
    spec(api::DELETE_TOPICS, "DeleteTopics", 1, 6, 4),
];

/// The spec of `key`, if the proxy carries it.
pub fn lookup(key: i16) -> Option<&'static ApiSpec> {
    APIS.iter().find(|a| a.key == key)
}
