//! Group requests routed whole to the group's home shard (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup): every version starts with `group_id`, which is all the proxy reads of them
//! (OffsetCommit and OffsetFetch start with it too; their offsets are split by topic owner,
//! `logic::offsets`).

use bytes::Bytes;

use crate::codes::{api, ErrorCode};
use crate::error::DecodeError;
use crate::header::Request;
use crate::wire::Reader;

/// The `group_id` a group request starts with.
pub fn group_id(req: &Request) -> Result<Bytes, DecodeError> {
    req.body().string(req.flexible(), "group_id")
}

/// The top-level error code of a JoinGroup, SyncGroup, Heartbeat or LeaveGroup answer body
/// (after the throttle time where the version has one).
pub fn answer_error(api_key: i16, version: i16, r: &mut Reader) -> Result<ErrorCode, DecodeError> {
    let throttled = match api_key {
        api::JOIN_GROUP => version >= 2,
        _ => version >= 1,
    };
    if throttled {
        r.i32("throttle_time_ms")?;
    }
    r.i16("error_code")
}

/// What the proxy reads of a JoinGroup answer: the generation it starts, the member it names,
/// and (the leader's answer only) every member of that generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupAnswer {
    pub error_code: ErrorCode,
    pub generation_id: i32,
    pub member_id: Bytes,
    pub members: Vec<Bytes>,
}

/// JoinGroup v6 and later are flexible.
const JOIN_FLEXIBLE_FROM: i16 = 6;

impl JoinGroupAnswer {
    pub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let v = version;
        let flexible = v >= JOIN_FLEXIBLE_FROM;
        let error_code = answer_error(api::JOIN_GROUP, v, r)?;
        let generation_id = r.i32("generation_id")?;
        if v >= 7 {
            r.nullable_string(flexible, "protocol_type")?;
            r.nullable_string(flexible, "protocol_name")?;
        } else {
            r.string(flexible, "protocol_name")?;
        }
        r.string(flexible, "leader")?;
        if v >= 9 {
            r.bool("skip_assignment")?;
        }
        let member_id = r.string(flexible, "member_id")?;
        let n = r.array_len(flexible, 3, "members")?;
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            members.push(r.string(flexible, "member_id")?);
            if v >= 5 {
                r.nullable_string(flexible, "group_instance_id")?;
            }
            r.bytes(flexible, "metadata")?;
            r.tagged_fields(flexible)?;
        }
        Ok(JoinGroupAnswer {
            error_code,
            generation_id,
            member_id,
            members,
        })
    }
}
