//! Client requests: framing (the size prefix bounded before anything is buffered), the header
//! read, refusals, and which API goes where.

use bytes::{Bytes, BytesMut};
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, PartSend, Plan};

use super::answer::Expect;
use super::merge::{KafkaMerge, Merge};
use super::{cluster, consume, epochs, group, produce, sasl, topics, KafkaProtocol};
use crate::messages::topics_admin::Admin;
use crate::codes::{api, ErrorCode, INVALID_REQUEST, UNSUPPORTED_VERSION};
use crate::error::DecodeError;
use crate::header::{response_frame, Request, RequestError};
use crate::logic::errors::{refuse, Refusal};

/// One client request: its header read, or why it could not be.
#[derive(Debug)]
pub struct ClientRequest(pub Result<Request, RequestError>);

/// Cuts the next request off the client's bytes. A size prefix above `max` (or negative)
/// leaves no way to find the next frame: the connection is closed (Kafka brokers do the same).
pub fn decode_request(max: usize, buf: &mut BytesMut) -> Result<Option<ClientRequest>, Bytes> {
    // The same bounds as the answers' (a size prefix checked before anything is buffered),
    // the prefix kept so that a request forwarded whole is not copied.
    match super::answer::next_frame(buf, max) {
        Ok(Some(raw)) => Ok(Some(ClientRequest(Request::parse_wire(raw)))),
        Ok(None) => Ok(None),
        Err(_) => Err(Bytes::new()),
    }
}

/// The request type's name for metrics.
pub fn family(r: &ClientRequest) -> &'static str {
    let Ok(req) = &r.0 else { return "invalid" };
    match req.spec.key {
        api::PRODUCE => "produce",
        api::FETCH => "fetch",
        api::LIST_OFFSETS => "list_offsets",
        api::OFFSET_FOR_LEADER_EPOCH => "offset_for_leader_epoch",
        api::METADATA => "metadata",
        api::OFFSET_COMMIT => "offset_commit",
        api::OFFSET_FETCH => "offset_fetch",
        api::FIND_COORDINATOR => "find_coordinator",
        api::JOIN_GROUP => "join_group",
        api::HEARTBEAT => "heartbeat",
        api::LEAVE_GROUP => "leave_group",
        api::SYNC_GROUP => "sync_group",
        api::API_VERSIONS => "api_versions",
        api::INIT_PRODUCER_ID => "init_producer_id",
        api::SASL_HANDSHAKE => "sasl_handshake",
        api::SASL_AUTHENTICATE => "sasl_authenticate",
        api::CREATE_TOPICS => "create_topics",
        api::DELETE_TOPICS => "delete_topics",
        _ => "unknown",
    }
}

/// A frame that answers `correlation_id` with nothing but an error code: what the proxy writes
/// before closing a connection whose request it cannot carry (the client logs an error for
/// that request instead of a bare disconnect).
pub fn error_frame(correlation_id: i32, code: ErrorCode) -> Bytes {
    response_frame(correlation_id, 0, &code.to_be_bytes())
}

/// The planner.
pub fn plan(p: &mut KafkaProtocol, request: ClientRequest, cx: &mut Ctx<'_, KafkaProtocol>) -> Plan<KafkaProtocol> {
    let req = match request.0 {
        Ok(r) => r,
        Err(e) => {
            return match (refuse(&e), &e) {
                (Refusal::Answer(bytes), _) => Plan::Refuse(bytes),
                (
                    Refusal::Close(_),
                    RequestError::UnknownApi { correlation_id, .. } | RequestError::UnsupportedVersion { correlation_id, .. },
                ) => Plan::Close(error_frame(*correlation_id, UNSUPPORTED_VERSION)),
                (Refusal::Close(_), RequestError::Malformed(_)) => Plan::Close(Bytes::new()),
            }
        }
    };
    let reply = Expect {
        api_key: req.spec.key,
        version: req.version(),
        correlation_id: req.header.correlation_id,
    };
    let planned = match req.spec.key {
        api::API_VERSIONS => cluster::plan_api_versions(&req, reply, cx),
        api::METADATA => cluster::plan_metadata(p, &req, reply, cx),
        api::PRODUCE => produce::plan(p, &req, reply, cx),
        api::INIT_PRODUCER_ID => produce::plan_init(p, &req, reply, cx),
        api::FETCH => consume::plan_fetch(p, &req, reply, cx),
        api::LIST_OFFSETS => consume::plan_list_offsets(p, &req, reply, cx),
        api::OFFSET_FOR_LEADER_EPOCH => epochs::plan(p, &req, reply, cx),
        api::FIND_COORDINATOR => group::plan_coordinator(p, &req, reply, cx),
        api::JOIN_GROUP | api::SYNC_GROUP | api::HEARTBEAT | api::LEAVE_GROUP => group::plan_group(p, &req, reply, cx),
        api::OFFSET_COMMIT => group::plan_commit(p, &req, reply, cx),
        api::OFFSET_FETCH => group::plan_offset_fetch(p, &req, reply, cx),
        api::CREATE_TOPICS => topics::plan(p, Admin::Create, &req, reply, cx),
        api::DELETE_TOPICS => topics::plan(p, Admin::Delete, &req, reply, cx),
        api::SASL_HANDSHAKE | api::SASL_AUTHENTICATE => sasl::plan(&req, reply, cx),
        _ => return Plan::Close(error_frame(reply.correlation_id, UNSUPPORTED_VERSION)),
    };
    match planned {
        Ok(Step::Sent) => Plan::Done,
        Ok(Step::Local(bytes)) => Plan::Local(bytes),
        Ok(Step::Parts { parts, merge, .. }) if parts.is_empty() => {
            let table = cx.table().clone();
            let mut m = KafkaMerge { reply, merge };
            Plan::Local(p.merge_parts(&mut m, &[], &table))
        }
        Ok(Step::Parts { parts, merge, extra_ms }) => {
            dispatch(cx, reply, parts, merge, extra_ms);
            Plan::Done
        }
        Err(_) => Plan::Close(error_frame(reply.correlation_id, INVALID_REQUEST)),
    }
}

/// What a planner decided (short-lived: one per request, never stored).
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// Sent through the context already (no answer owed: `acks=0`).
    Sent,
    /// Answered by the proxy.
    Local(Bytes),
    /// One part per cluster, joined by `merge`; the deadline is the configured budget plus
    /// `extra_ms` (a long poll, a produce timeout, a group rebalance).
    Parts {
        parts: Vec<(ClusterId, Bytes)>,
        merge: Merge,
        extra_ms: u64,
    },
}

/// Sends `parts` (one per cluster) as one request whose answers `merge` joins.
pub fn dispatch(
    cx: &mut Ctx<'_, KafkaProtocol>,
    reply: Expect,
    parts: Vec<(ClusterId, Bytes)>,
    merge: Merge,
    extra_ms: u64,
) {
    let sends = parts
        .into_iter()
        .map(|(cluster, bytes)| PartSend {
            cluster,
            bytes: bytes.to_vec(),
            expect: reply,
            answers: 1,
            many: false,
            key: None,
        })
        .collect();
    let budget = cx.budget().map(|b| b.saturating_add(extra_ms));
    cx.dispatch(sends, KafkaMerge { reply, merge }, budget);
}

/// A request body that could not be read: the error every planner returns.
pub type Planned = Result<Step, DecodeError>;

/// A non-negative wait a client asked for, in ms.
pub fn wait_ms(v: i32) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
