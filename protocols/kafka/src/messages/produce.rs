//! Produce request and response (v3-v12). Record batches stay raw bytes shared with the frame.

use bytes::Bytes;

use crate::codes::ErrorCode;
use crate::error::DecodeError;
use crate::header::Request;
use crate::wire::{Reader, Writer};

const FLEXIBLE_FROM: i16 = 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    pub index: i32,
    /// The partition's record batches, undecoded (null is legal on the wire, never useful).
    pub records: Option<Bytes>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopic {
    pub name: Bytes,
    pub partitions: Vec<ProducePartition>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    pub transactional_id: Option<Bytes>,
    /// 0: no response at all; 1: the leader's; -1: all in-sync replicas'.
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<ProduceTopic>,
    pub tagged: Bytes,
}

impl ProduceRequest {
    pub fn decode(req: &Request) -> Result<Self, DecodeError> {
        let flexible = req.version() >= FLEXIBLE_FROM;
        let mut r = req.body();
        let transactional_id = r.nullable_string(flexible, "transactional_id")?;
        let acks = r.i16("acks")?;
        let timeout_ms = r.i32("timeout_ms")?;
        let n = r.array_len(flexible, 2, "topic_data")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string(flexible, "name")?;
            let np = r.array_len(flexible, 5, "partition_data")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(ProducePartition {
                    index: r.i32("index")?,
                    records: r.nullable_bytes(flexible, "records")?,
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            topics.push(ProduceTopic {
                name,
                partitions,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let tagged = r.tagged_fields(flexible)?;
        Ok(ProduceRequest {
            transactional_id,
            acks,
            timeout_ms,
            topics,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let flexible = version >= FLEXIBLE_FROM;
        let size: usize = self
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.records.as_ref().map_or(0, Bytes::len) + 16)
            .sum();
        let mut w = Writer::with_capacity(size + 64);
        w.nullable_string(flexible, self.transactional_id.as_deref());
        w.i16(self.acks);
        w.i32(self.timeout_ms);
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.name);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i32(p.index);
                w.nullable_bytes(flexible, p.records.as_deref());
                w.tagged_fields(flexible, &p.tagged);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionResponse {
    pub index: i32,
    pub error_code: ErrorCode,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// v8+ `record_errors` and `error_message`, raw (empty array and null when built here).
    pub errors_raw: Bytes,
    /// v9+ tagged fields (v10+: tag 0 is the current leader, a node id).
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopicResponse {
    pub name: Bytes,
    pub partitions: Vec<ProducePartitionResponse>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceResponse {
    pub topics: Vec<ProduceTopicResponse>,
    pub throttle_time_ms: i32,
    /// v9+ tagged fields (v10+: tag 0 lists node endpoints, node ids and addresses).
    pub tagged: Bytes,
}

impl ProducePartitionResponse {
    /// A partition answer built by the proxy (no offset assigned).
    pub fn error(index: i32, error_code: ErrorCode) -> Self {
        ProducePartitionResponse {
            index,
            error_code,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            errors_raw: Bytes::new(),
            tagged: Bytes::new(),
        }
    }
}

impl ProduceResponse {
    pub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let n = r.array_len(flexible, 2, "responses")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string(flexible, "name")?;
            let np = r.array_len(flexible, 22, "partition_responses")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                let index = r.i32("index")?;
                let error_code = r.i16("error_code")?;
                let base_offset = r.i64("base_offset")?;
                let log_append_time_ms = r.i64("log_append_time_ms")?;
                let log_start_offset = if v >= 5 {
                    r.i64("log_start_offset")?
                } else {
                    -1
                };
                let errors_raw = if v >= 8 {
                    let from = r.position();
                    let ne = r.array_len(flexible, 5, "record_errors")?;
                    for _ in 0..ne {
                        r.i32("batch_index")?;
                        r.nullable_string(flexible, "batch_index_error_message")?;
                        r.tagged_fields(flexible)?;
                    }
                    r.nullable_string(flexible, "error_message")?;
                    r.since(from)
                } else {
                    Bytes::new()
                };
                partitions.push(ProducePartitionResponse {
                    index,
                    error_code,
                    base_offset,
                    log_append_time_ms,
                    log_start_offset,
                    errors_raw,
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            topics.push(ProduceTopicResponse {
                name,
                partitions,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let throttle_time_ms = r.i32("throttle_time_ms")?;
        let tagged = r.tagged_fields(flexible)?;
        Ok(ProduceResponse {
            topics,
            throttle_time_ms,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(64 + 40 * self.topics.len());
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.name);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i32(p.index);
                w.i16(p.error_code);
                w.i64(p.base_offset);
                w.i64(p.log_append_time_ms);
                if v >= 5 {
                    w.i64(p.log_start_offset);
                }
                if v >= 8 {
                    if p.errors_raw.is_empty() {
                        w.array_len(flexible, 0);
                        w.nullable_string(flexible, None);
                    } else {
                        w.raw(&p.errors_raw);
                    }
                }
                w.tagged_fields(flexible, &p.tagged);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        w.i32(self.throttle_time_ms);
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}
