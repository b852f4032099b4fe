//! ListOffsets request and response (v1-v9).

use bytes::Bytes;

use crate::codes::ErrorCode;
use crate::error::DecodeError;
use crate::header::Request;
use crate::wire::{Reader, Writer};

const FLEXIBLE_FROM: i16 = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    pub partition_index: i32,
    pub current_leader_epoch: i32,
    pub timestamp: i64,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopic {
    pub name: Bytes,
    pub partitions: Vec<ListOffsetsPartition>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsRequest {
    pub replica_id: i32,
    pub isolation_level: i8,
    pub topics: Vec<ListOffsetsTopic>,
    pub tagged: Bytes,
}

impl ListOffsetsRequest {
    pub fn decode(req: &Request) -> Result<Self, DecodeError> {
        let v = req.version();
        let flexible = v >= FLEXIBLE_FROM;
        let mut r = req.body();
        let replica_id = r.i32("replica_id")?;
        let isolation_level = if v >= 2 { r.i8("isolation_level")? } else { 0 };
        let n = r.array_len(flexible, 2, "topics")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string(flexible, "name")?;
            let np = r.array_len(flexible, 12, "partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(ListOffsetsPartition {
                    partition_index: r.i32("partition_index")?,
                    current_leader_epoch: if v >= 4 {
                        r.i32("current_leader_epoch")?
                    } else {
                        -1
                    },
                    timestamp: r.i64("timestamp")?,
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            topics.push(ListOffsetsTopic {
                name,
                partitions,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let tagged = r.tagged_fields(flexible)?;
        Ok(ListOffsetsRequest {
            replica_id,
            isolation_level,
            topics,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(32 + 24 * self.topics.len());
        w.i32(self.replica_id);
        if v >= 2 {
            w.i8(self.isolation_level);
        }
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.name);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i32(p.partition_index);
                if v >= 4 {
                    w.i32(p.current_leader_epoch);
                }
                w.i64(p.timestamp);
                w.tagged_fields(flexible, &p.tagged);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartitionResponse {
    pub partition_index: i32,
    pub error_code: ErrorCode,
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: i32,
    pub tagged: Bytes,
}

impl ListOffsetsPartitionResponse {
    pub fn error(partition_index: i32, error_code: ErrorCode) -> Self {
        ListOffsetsPartitionResponse {
            partition_index,
            error_code,
            timestamp: -1,
            offset: -1,
            leader_epoch: -1,
            tagged: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopicResponse {
    pub name: Bytes,
    pub partitions: Vec<ListOffsetsPartitionResponse>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsResponse {
    pub throttle_time_ms: i32,
    pub topics: Vec<ListOffsetsTopicResponse>,
    pub tagged: Bytes,
}

impl ListOffsetsResponse {
    pub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let throttle_time_ms = if v >= 2 {
            r.i32("throttle_time_ms")?
        } else {
            0
        };
        let n = r.array_len(flexible, 2, "topics")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string(flexible, "name")?;
            let np = r.array_len(flexible, 22, "partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(ListOffsetsPartitionResponse {
                    partition_index: r.i32("partition_index")?,
                    error_code: r.i16("error_code")?,
                    timestamp: r.i64("timestamp")?,
                    offset: r.i64("offset")?,
                    leader_epoch: if v >= 4 { r.i32("leader_epoch")? } else { -1 },
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            topics.push(ListOffsetsTopicResponse {
                name,
                partitions,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let tagged = r.tagged_fields(flexible)?;
        Ok(ListOffsetsResponse {
            throttle_time_ms,
            topics,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(32 + 32 * self.topics.len());
        if v >= 2 {
            w.i32(self.throttle_time_ms);
        }
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.name);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i32(p.partition_index);
                w.i16(p.error_code);
                w.i64(p.timestamp);
                w.i64(p.offset);
                if v >= 4 {
                    w.i32(p.leader_epoch);
                }
                w.tagged_fields(flexible, &p.tagged);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}
