//! OffsetCommit (v2-v9) and OffsetFetch (v1-v7) requests and responses: a group's committed
//! offsets, per topic and partition.

use bytes::Bytes;

use crate::codes::ErrorCode;
use crate::error::DecodeError;
use crate::header::Request;
use crate::wire::{Reader, Writer};

const COMMIT_FLEXIBLE_FROM: i16 = 8;
const FETCH_FLEXIBLE_FROM: i16 = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPartition {
    pub partition_index: i32,
    pub committed_offset: i64,
    pub committed_leader_epoch: i32,
    pub committed_metadata: Option<Bytes>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitTopic {
    pub name: Bytes,
    pub partitions: Vec<CommitPartition>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group_id: Bytes,
    /// -1 with an empty member id: a standalone commit (a group without members).
    pub generation_id: i32,
    pub member_id: Bytes,
    pub group_instance_id: Option<Bytes>,
    pub retention_time_ms: i64,
    pub topics: Vec<CommitTopic>,
    pub tagged: Bytes,
}

impl OffsetCommitRequest {
    pub fn decode(req: &Request) -> Result<Self, DecodeError> {
        let v = req.version();
        let flexible = v >= COMMIT_FLEXIBLE_FROM;
        let mut r = req.body();
        let group_id = r.string(flexible, "group_id")?;
        let generation_id = r.i32("generation_id")?;
        let member_id = r.string(flexible, "member_id")?;
        let group_instance_id = if v >= 7 {
            r.nullable_string(flexible, "group_instance_id")?
        } else {
            None
        };
        let retention_time_ms = if v <= 4 {
            r.i64("retention_time_ms")?
        } else {
            -1
        };
        let n = r.array_len(flexible, 2, "topics")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string(flexible, "name")?;
            let np = r.array_len(flexible, 13, "partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(CommitPartition {
                    partition_index: r.i32("partition_index")?,
                    committed_offset: r.i64("committed_offset")?,
                    committed_leader_epoch: if v >= 6 {
                        r.i32("committed_leader_epoch")?
                    } else {
                        -1
                    },
                    committed_metadata: r.nullable_string(flexible, "committed_metadata")?,
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            topics.push(CommitTopic {
                name,
                partitions,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let tagged = r.tagged_fields(flexible)?;
        Ok(OffsetCommitRequest {
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            retention_time_ms,
            topics,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= COMMIT_FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(64 + 32 * self.topics.len());
        w.string(flexible, &self.group_id);
        w.i32(self.generation_id);
        w.string(flexible, &self.member_id);
        if v >= 7 {
            w.nullable_string(flexible, self.group_instance_id.as_deref());
        }
        if v <= 4 {
            w.i64(self.retention_time_ms);
        }
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.name);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i32(p.partition_index);
                w.i64(p.committed_offset);
                if v >= 6 {
                    w.i32(p.committed_leader_epoch);
                }
                w.nullable_string(flexible, p.committed_metadata.as_deref());
                w.tagged_fields(flexible, &p.tagged);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}

/// One partition's result (OffsetCommit response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    pub partition_index: i32,
    pub error_code: ErrorCode,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResults {
    pub name: Bytes,
    pub partitions: Vec<PartitionResult>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitResponse {
    pub throttle_time_ms: i32,
    pub topics: Vec<TopicResults>,
    pub tagged: Bytes,
}

impl OffsetCommitResponse {
    pub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let flexible = version >= COMMIT_FLEXIBLE_FROM;
        let throttle_time_ms = if version >= 3 {
            r.i32("throttle_time_ms")?
        } else {
            0
        };
        let n = r.array_len(flexible, 2, "topics")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string(flexible, "name")?;
            let np = r.array_len(flexible, 6, "partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(PartitionResult {
                    partition_index: r.i32("partition_index")?,
                    error_code: r.i16("error_code")?,
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            let tagged = r.tagged_fields(flexible)?;
            topics.push(TopicResults {
                name,
                partitions,
                tagged,
            });
        }
        let tagged = r.tagged_fields(flexible)?;
        Ok(OffsetCommitResponse {
            throttle_time_ms,
            topics,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let flexible = version >= COMMIT_FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(32 + 16 * self.topics.len());
        if version >= 3 {
            w.i32(self.throttle_time_ms);
        }
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.name);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i32(p.partition_index);
                w.i16(p.error_code);
                w.tagged_fields(flexible, &p.tagged);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOffsetsTopic {
    pub name: Bytes,
    pub partition_indexes: Vec<i32>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    pub group_id: Bytes,
    /// `None`: every topic the group has offsets for (v2+).
    pub topics: Option<Vec<FetchOffsetsTopic>>,
    pub require_stable: bool,
    pub tagged: Bytes,
}

impl OffsetFetchRequest {
    pub fn decode(req: &Request) -> Result<Self, DecodeError> {
        let v = req.version();
        let flexible = v >= FETCH_FLEXIBLE_FROM;
        let mut r = req.body();
        let group_id = r.string(flexible, "group_id")?;
        let topics = match r.nullable_array_len(flexible, 2, "topics")? {
            None if v < 2 => return Err(DecodeError::UnexpectedNull { field: "topics" }),
            None => None,
            Some(n) => {
                let mut topics = Vec::with_capacity(n);
                for _ in 0..n {
                    topics.push(FetchOffsetsTopic {
                        name: r.string(flexible, "name")?,
                        partition_indexes: r.i32_array(flexible, "partition_indexes")?,
                        tagged: r.tagged_fields(flexible)?,
                    });
                }
                Some(topics)
            }
        };
        let require_stable = if v >= 7 {
            r.bool("require_stable")?
        } else {
            false
        };
        let tagged = r.tagged_fields(flexible)?;
        Ok(OffsetFetchRequest {
            group_id,
            topics,
            require_stable,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FETCH_FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(32);
        w.string(flexible, &self.group_id);
        match &self.topics {
            None => w.null_array(flexible),
            Some(topics) => {
                w.array_len(flexible, topics.len());
                for t in topics {
                    w.string(flexible, &t.name);
                    w.i32_array(flexible, &t.partition_indexes);
                    w.tagged_fields(flexible, &t.tagged);
                }
            }
        }
        if v >= 7 {
            w.bool(self.require_stable);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition_index: i32,
    pub committed_offset: i64,
    pub committed_leader_epoch: i32,
    pub metadata: Option<Bytes>,
    pub error_code: ErrorCode,
    pub tagged: Bytes,
}

impl FetchedOffset {
    /// No committed offset (-1), or an error built by the proxy.
    pub fn none(partition_index: i32, error_code: ErrorCode) -> Self {
        FetchedOffset {
            partition_index,
            committed_offset: -1,
            committed_leader_epoch: -1,
            metadata: Some(Bytes::new()),
            error_code,
            tagged: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedTopic {
    pub name: Bytes,
    pub partitions: Vec<FetchedOffset>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchResponse {
    pub throttle_time_ms: i32,
    pub topics: Vec<FetchedTopic>,
    pub error_code: ErrorCode,
    pub tagged: Bytes,
}

impl OffsetFetchResponse {
    pub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let v = version;
        let flexible = v >= FETCH_FLEXIBLE_FROM;
        let throttle_time_ms = if v >= 3 {
            r.i32("throttle_time_ms")?
        } else {
            0
        };
        let n = r.array_len(flexible, 2, "topics")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string(flexible, "name")?;
            let np = r.array_len(flexible, 16, "partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(FetchedOffset {
                    partition_index: r.i32("partition_index")?,
                    committed_offset: r.i64("committed_offset")?,
                    committed_leader_epoch: if v >= 5 {
                        r.i32("committed_leader_epoch")?
                    } else {
                        -1
                    },
                    metadata: r.nullable_string(flexible, "metadata")?,
                    error_code: r.i16("error_code")?,
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            let tagged = r.tagged_fields(flexible)?;
            topics.push(FetchedTopic {
                name,
                partitions,
                tagged,
            });
        }
        let error_code = if v >= 2 { r.i16("error_code")? } else { 0 };
        let tagged = r.tagged_fields(flexible)?;
        Ok(OffsetFetchResponse {
            throttle_time_ms,
            topics,
            error_code,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FETCH_FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(32 + 32 * self.topics.len());
        if v >= 3 {
            w.i32(self.throttle_time_ms);
        }
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.name);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i32(p.partition_index);
                w.i64(p.committed_offset);
                if v >= 5 {
                    w.i32(p.committed_leader_epoch);
                }
                w.nullable_string(flexible, p.metadata.as_deref());
                w.i16(p.error_code);
                w.tagged_fields(flexible, &p.tagged);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        if v >= 2 {
            w.i16(self.error_code);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}
