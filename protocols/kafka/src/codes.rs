//! Named Kafka constants: error codes the proxy reads or answers, and API keys.
//!
//! Values from the Kafka protocol (`org.apache.kafka.common.protocol.Errors` and `ApiKeys`).

/// A Kafka error code (`INT16`).
pub type ErrorCode = i16;

pub const NONE: ErrorCode = 0;
pub const UNKNOWN_SERVER_ERROR: ErrorCode = -1;
pub const CORRUPT_MESSAGE: ErrorCode = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: ErrorCode = 3;
pub const LEADER_NOT_AVAILABLE: ErrorCode = 5;
/// The partition's leader is not reachable here: the client refreshes Metadata and retries.
pub const NOT_LEADER_OR_FOLLOWER: ErrorCode = 6;
/// The request reached no answer in time (a shard down or silent): retriable.
pub const REQUEST_TIMED_OUT: ErrorCode = 7;
pub const MESSAGE_TOO_LARGE: ErrorCode = 10;
pub const NETWORK_EXCEPTION: ErrorCode = 13;
pub const COORDINATOR_NOT_AVAILABLE: ErrorCode = 15;
pub const NOT_COORDINATOR: ErrorCode = 16;
pub const INVALID_TOPIC_EXCEPTION: ErrorCode = 17;
pub const INVALID_REQUIRED_ACKS: ErrorCode = 21;
pub const UNSUPPORTED_SASL_MECHANISM: ErrorCode = 33;
pub const UNSUPPORTED_VERSION: ErrorCode = 35;
pub const NOT_CONTROLLER: ErrorCode = 41;
pub const INVALID_REQUEST: ErrorCode = 42;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: ErrorCode = 45;
pub const DUPLICATE_SEQUENCE_NUMBER: ErrorCode = 46;
pub const INVALID_PRODUCER_EPOCH: ErrorCode = 47;
/// Answered to InitProducerId with a transactional id: transactions cannot span shards.
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: ErrorCode = 53;
pub const SASL_AUTHENTICATION_FAILED: ErrorCode = 58;
pub const UNKNOWN_PRODUCER_ID: ErrorCode = 59;
pub const UNKNOWN_TOPIC_ID: ErrorCode = 100;
pub const PRODUCER_FENCED: ErrorCode = 90;

/// True for the errors a Kafka client retries by itself after refreshing Metadata.
pub fn is_retriable(code: ErrorCode) -> bool {
    matches!(
        code,
        CORRUPT_MESSAGE
            | UNKNOWN_TOPIC_OR_PARTITION
            | LEADER_NOT_AVAILABLE
            | NOT_LEADER_OR_FOLLOWER
            | REQUEST_TIMED_OUT
            | NETWORK_EXCEPTION
            | COORDINATOR_NOT_AVAILABLE
            | NOT_COORDINATOR
    )
}

/// Kafka API keys (`ApiKeys`).
pub mod api {
    pub const PRODUCE: i16 = 0;
    pub const FETCH: i16 = 1;
    pub const LIST_OFFSETS: i16 = 2;
    pub const METADATA: i16 = 3;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const OFFSET_FETCH: i16 = 9;
    pub const FIND_COORDINATOR: i16 = 10;
    pub const JOIN_GROUP: i16 = 11;
    pub const HEARTBEAT: i16 = 12;
    pub const LEAVE_GROUP: i16 = 13;
    pub const SYNC_GROUP: i16 = 14;
    pub const SASL_HANDSHAKE: i16 = 17;
    pub const API_VERSIONS: i16 = 18;
    pub const CREATE_TOPICS: i16 = 19;
    pub const DELETE_TOPICS: i16 = 20;
    pub const INIT_PRODUCER_ID: i16 = 22;
    pub const OFFSET_FOR_LEADER_EPOCH: i16 = 23;
    pub const DESCRIBE_CONFIGS: i16 = 32;
    pub const SASL_AUTHENTICATE: i16 = 36;
}
