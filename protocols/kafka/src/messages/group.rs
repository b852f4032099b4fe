//! Group requests routed whole to the group's home shard (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup): every version starts with `group_id`, which is all the proxy reads of them
//! (OffsetCommit and OffsetFetch start with it too; their offsets are split by topic owner,
//! `logic::offsets`).

use bytes::Bytes;

use crate::error::DecodeError;
use crate::header::Request;

/// The `group_id` a group request starts with.
pub fn group_id(req: &Request) -> Result<Bytes, DecodeError> {
    req.body().string(req.flexible(), "group_id")
}
