//! Answers the proxy builds itself: a request it cannot carry, a group whose home shard is down.

use bytes::Bytes;

use crate::apis::{lookup, APIS};
use crate::codes::{api, ErrorCode, UNSUPPORTED_VERSION};
use crate::header::{response_frame, RequestError};
use crate::messages::api_versions::{ApiRange, ApiVersionsResponse};
use crate::wire::Writer;

/// What to do with a request [`crate::Request::parse`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Answer with this frame (size prefix included) and carry on.
    Answer(Bytes),
    /// Close the connection: there is no answer the client could read. Kafka brokers do the
    /// same for an unknown API key or a version they do not support (except ApiVersions);
    /// clients never send one when they honour ApiVersions. The session counts and logs it.
    Close(&'static str),
}

/// Reason given with [`Refusal::Close`] for an unknown API key.
pub const CLOSE_UNKNOWN_API: &str = "unknown API key";
/// Reason given with [`Refusal::Close`] for a version the proxy does not decode.
pub const CLOSE_UNSUPPORTED_VERSION: &str = "API version not supported by the proxy";
/// Reason given with [`Refusal::Close`] for a header that cannot be read.
pub const CLOSE_MALFORMED: &str = "malformed request header";

/// The proxy's own ApiVersions ranges (what it decodes), in the v0 layout a client reads
/// whatever version it asked for.
pub fn proxy_api_versions(error_code: ErrorCode) -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code,
        api_keys: APIS
            .iter()
            .map(|a| ApiRange {
                api_key: a.key,
                min: a.min,
                max: a.max,
            })
            .collect(),
        throttle_time_ms: 0,
        tagged: Bytes::new(),
    }
}

/// How to answer a refused request. ApiVersions at a version above the proxy's gets
/// UNSUPPORTED_VERSION with the proxy's ranges in the v0 layout (KIP-511): the client retries
/// with a version listed there.
pub fn refuse(err: &RequestError) -> Refusal {
    match err {
        RequestError::Malformed(_) => Refusal::Close(CLOSE_MALFORMED),
        RequestError::UnknownApi { .. } => Refusal::Close(CLOSE_UNKNOWN_API),
        RequestError::UnsupportedVersion {
            spec,
            correlation_id,
            ..
        } if spec.key == api::API_VERSIONS => {
            let body = proxy_api_versions(UNSUPPORTED_VERSION).encode(0);
            Refusal::Answer(response_frame(*correlation_id, 0, &body))
        }
        RequestError::UnsupportedVersion { .. } => Refusal::Close(CLOSE_UNSUPPORTED_VERSION),
    }
}

/// The body of a group request's answer carrying only `code` (its home shard is down:
/// COORDINATOR_NOT_AVAILABLE, or NOT_COORDINATOR), for JoinGroup, SyncGroup, Heartbeat,
/// LeaveGroup and OffsetFetch (v2+: a top-level error). `None` for other APIs and versions.
pub fn group_error_body(api_key: i16, version: i16, code: ErrorCode) -> Option<Bytes> {
    let spec = lookup(api_key)?;
    if !spec.supports(version) {
        return None;
    }
    let flexible = spec.is_flexible(version);
    let mut w = Writer::new();
    match api_key {
        api::JOIN_GROUP => {
            if version >= 2 {
                w.i32(0);
            }
            w.i16(code);
            w.i32(-1); // generation_id
            if version >= 7 {
                w.nullable_string(flexible, None); // protocol_type
                w.nullable_string(flexible, None); // protocol_name
            } else {
                w.string(flexible, b"");
            }
            w.string(flexible, b""); // leader
            if version >= 9 {
                w.bool(false); // skip_assignment
            }
            w.string(flexible, b""); // member_id
            w.array_len(flexible, 0); // members
        }
        api::SYNC_GROUP => {
            if version >= 1 {
                w.i32(0);
            }
            w.i16(code);
            if version >= 5 {
                w.nullable_string(flexible, None);
                w.nullable_string(flexible, None);
            }
            w.nullable_bytes(flexible, Some(b""));
        }
        api::HEARTBEAT => {
            if version >= 1 {
                w.i32(0);
            }
            w.i16(code);
        }
        api::LEAVE_GROUP => {
            if version >= 1 {
                w.i32(0);
            }
            w.i16(code);
            if version >= 3 {
                w.array_len(flexible, 0);
            }
        }
        api::OFFSET_FETCH if version >= 2 => {
            if version >= 3 {
                w.i32(0);
            }
            w.array_len(flexible, 0); // topics
            w.i16(code);
        }
        _ => return None,
    }
    w.tagged_fields(flexible, &[]);
    Some(w.buf.freeze())
}
