//! OffsetForLeaderEpoch request and response (v2-v4; Kafka 4 dropped v0-v1, librdkafka 2.16
//! sends v2 only). v3 adds the request's `replica_id`, v4 is flexible.

use bytes::Bytes;

use crate::codes::ErrorCode;
use crate::error::DecodeError;
use crate::header::Request;
use crate::wire::{Reader, Writer};

const FLEXIBLE_FROM: i16 = 4;
/// The consumer's `replica_id` (the field exists from v3).
pub const CONSUMER_REPLICA_ID: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochPartition {
    pub partition: i32,
    pub current_leader_epoch: i32,
    pub leader_epoch: i32,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochTopic {
    pub topic: Bytes,
    pub partitions: Vec<EpochPartition>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetForLeaderEpochRequest {
    pub replica_id: i32,
    pub topics: Vec<EpochTopic>,
    pub tagged: Bytes,
}

impl OffsetForLeaderEpochRequest {
    pub fn decode(req: &Request) -> Result<Self, DecodeError> {
        let v = req.version();
        let flexible = v >= FLEXIBLE_FROM;
        let mut r = req.body();
        let replica_id = if v >= 3 {
            r.i32("replica_id")?
        } else {
            CONSUMER_REPLICA_ID
        };
        let n = r.array_len(flexible, 2, "topics")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = r.string(flexible, "topic")?;
            let np = r.array_len(flexible, 12, "partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(EpochPartition {
                    partition: r.i32("partition")?,
                    current_leader_epoch: r.i32("current_leader_epoch")?,
                    leader_epoch: r.i32("leader_epoch")?,
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            topics.push(EpochTopic {
                topic,
                partitions,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let tagged = r.tagged_fields(flexible)?;
        Ok(OffsetForLeaderEpochRequest {
            replica_id,
            topics,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(16 + 24 * self.topics.len());
        if v >= 3 {
            w.i32(self.replica_id);
        }
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.topic);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i32(p.partition);
                w.i32(p.current_leader_epoch);
                w.i32(p.leader_epoch);
                w.tagged_fields(flexible, &p.tagged);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub error_code: ErrorCode,
    pub partition: i32,
    pub leader_epoch: i32,
    pub end_offset: i64,
    pub tagged: Bytes,
}

impl EpochEndOffset {
    /// A partition the proxy answers with `error_code` (unknown epoch and offset).
    pub fn error(partition: i32, error_code: ErrorCode) -> Self {
        EpochEndOffset {
            error_code,
            partition,
            leader_epoch: -1,
            end_offset: -1,
            tagged: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochTopicResult {
    pub topic: Bytes,
    pub partitions: Vec<EpochEndOffset>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetForLeaderEpochResponse {
    pub throttle_time_ms: i32,
    pub topics: Vec<EpochTopicResult>,
    pub tagged: Bytes,
}

impl OffsetForLeaderEpochResponse {
    pub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let flexible = version >= FLEXIBLE_FROM;
        let throttle_time_ms = r.i32("throttle_time_ms")?;
        let n = r.array_len(flexible, 2, "topics")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = r.string(flexible, "topic")?;
            let np = r.array_len(flexible, 18, "partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(EpochEndOffset {
                    error_code: r.i16("error_code")?,
                    partition: r.i32("partition")?,
                    leader_epoch: r.i32("leader_epoch")?,
                    end_offset: r.i64("end_offset")?,
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            topics.push(EpochTopicResult {
                topic,
                partitions,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let tagged = r.tagged_fields(flexible)?;
        Ok(OffsetForLeaderEpochResponse {
            throttle_time_ms,
            topics,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let flexible = version >= FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(16 + 32 * self.topics.len());
        w.i32(self.throttle_time_ms);
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.topic);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i16(p.error_code);
                w.i32(p.partition);
                w.i32(p.leader_epoch);
                w.i64(p.end_offset);
                w.tagged_fields(flexible, &p.tagged);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}
