//! The protocol-specific pure functions a Kafka sharding session calls: each takes decoded
//! values (and the shard each answer came from) and returns decoded values; no IO, no state
//! beyond what is passed in.

pub mod coordinator;
pub mod errors;
pub mod fetch;
pub mod leader_epoch;
pub mod list_offsets;
pub mod metadata;
pub mod nodes;
pub mod offsets;
pub mod partitions;
pub mod produce;
pub mod producer_ids;
pub mod versions;
