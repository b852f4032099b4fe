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
            .map(|a| ApiRange::new(a.key, a.min, a.max))
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

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codes::COORDINATOR_NOT_AVAILABLE;
    use crate::Request;
    use kafka_protocol::messages as kp;
    use kafka_protocol::protocol::Decodable;

    fn frame(key: i16, version: i16) -> Bytes {
        let mut f = Vec::new();
        f.extend_from_slice(&key.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&42i32.to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes());
        Bytes::from(f)
    }

    #[test]
    fn api_versions_too_new_gets_unsupported_version_in_v0() {
        let err = Request::parse(frame(api::API_VERSIONS, 9)).unwrap_err();
        let Refusal::Answer(out) = refuse(&err) else {
            panic!("{err:?}")
        };
        let mut body = out.slice(8..);
        assert_eq!(&out[4..8], &42i32.to_be_bytes());
        let kp = kp::ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(kp.error_code, UNSUPPORTED_VERSION);
        assert_eq!(kp.api_keys.len(), APIS.len());
    }

    #[test]
    fn unknown_keys_and_versions_close_with_a_named_reason() {
        assert_eq!(
            refuse(&Request::parse(frame(999, 0)).unwrap_err()),
            Refusal::Close(CLOSE_UNKNOWN_API)
        );
        assert_eq!(
            refuse(&Request::parse(frame(api::PRODUCE, 13)).unwrap_err()),
            Refusal::Close(CLOSE_UNSUPPORTED_VERSION)
        );
        assert_eq!(
            refuse(&Request::parse(Bytes::from_static(&[0, 1])).unwrap_err()),
            Refusal::Close(CLOSE_MALFORMED)
        );
    }

    #[test]
    fn group_errors_read_back_with_the_oracle_at_every_version() {
        for v in 0..=9 {
            let b = group_error_body(api::JOIN_GROUP, v, COORDINATOR_NOT_AVAILABLE).unwrap();
            assert_eq!(
                kp::JoinGroupResponse::decode(&mut b.clone(), v)
                    .unwrap()
                    .error_code,
                COORDINATOR_NOT_AVAILABLE,
                "v{v}"
            );
        }
        for v in 0..=5 {
            let b = group_error_body(api::SYNC_GROUP, v, COORDINATOR_NOT_AVAILABLE).unwrap();
            assert_eq!(
                kp::SyncGroupResponse::decode(&mut b.clone(), v)
                    .unwrap()
                    .error_code,
                COORDINATOR_NOT_AVAILABLE
            );
            let b = group_error_body(api::LEAVE_GROUP, v, COORDINATOR_NOT_AVAILABLE).unwrap();
            assert_eq!(
                kp::LeaveGroupResponse::decode(&mut b.clone(), v)
                    .unwrap()
                    .error_code,
                COORDINATOR_NOT_AVAILABLE
            );
        }
        for v in 0..=4 {
            let b = group_error_body(api::HEARTBEAT, v, COORDINATOR_NOT_AVAILABLE).unwrap();
            assert_eq!(
                kp::HeartbeatResponse::decode(&mut b.clone(), v)
                    .unwrap()
                    .error_code,
                COORDINATOR_NOT_AVAILABLE
            );
        }
        for v in 2..=7 {
            let b = group_error_body(api::OFFSET_FETCH, v, COORDINATOR_NOT_AVAILABLE).unwrap();
            assert_eq!(
                kp::OffsetFetchResponse::decode(&mut b.clone(), v)
                    .unwrap()
                    .error_code,
                COORDINATOR_NOT_AVAILABLE
            );
        }
        assert_eq!(
            group_error_body(api::OFFSET_FETCH, 1, COORDINATOR_NOT_AVAILABLE),
            None
        );
        assert_eq!(
            group_error_body(api::PRODUCE, 9, COORDINATOR_NOT_AVAILABLE),
            None
        );
    }
}
