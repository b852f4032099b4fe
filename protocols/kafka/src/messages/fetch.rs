//! Fetch request and response (v4-v12; topics by name). Records stay raw bytes.

use bytes::Bytes;

use crate::codes::ErrorCode;
use crate::error::DecodeError;
use crate::header::Request;
use crate::wire::{Reader, Writer};

const FLEXIBLE_FROM: i16 = 12;
/// A fetch session id meaning "no session", and the epoch of a sessionless full fetch.
pub const NO_SESSION_ID: i32 = 0;
pub const FINAL_EPOCH: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: i32,
    pub current_leader_epoch: i32,
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
    pub partition_max_bytes: i32,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    pub topic: Bytes,
    pub partitions: Vec<FetchPartition>,
    pub tagged: Bytes,
}

/// A forgotten topic (fetch sessions, v7+): its name and partitions, raw past the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgottenTopic {
    pub topic: Bytes,
    pub partitions: Vec<i32>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub replica_id: i32,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub isolation_level: i8,
    pub session_id: i32,
    pub session_epoch: i32,
    pub topics: Vec<FetchTopic>,
    pub forgotten: Vec<ForgottenTopic>,
    pub rack_id: Bytes,
    pub tagged: Bytes,
}

impl FetchRequest {
    pub fn decode(req: &Request) -> Result<Self, DecodeError> {
        let v = req.version();
        let flexible = v >= FLEXIBLE_FROM;
        let mut r = req.body();
        let replica_id = r.i32("replica_id")?;
        let max_wait_ms = r.i32("max_wait_ms")?;
        let min_bytes = r.i32("min_bytes")?;
        let max_bytes = r.i32("max_bytes")?;
        let isolation_level = r.i8("isolation_level")?;
        let (session_id, session_epoch) = if v >= 7 {
            (r.i32("session_id")?, r.i32("session_epoch")?)
        } else {
            (NO_SESSION_ID, FINAL_EPOCH)
        };
        let n = r.array_len(flexible, 2, "topics")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = r.string(flexible, "topic")?;
            let np = r.array_len(flexible, 16, "partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(FetchPartition {
                    partition: r.i32("partition")?,
                    current_leader_epoch: if v >= 9 {
                        r.i32("current_leader_epoch")?
                    } else {
                        -1
                    },
                    fetch_offset: r.i64("fetch_offset")?,
                    last_fetched_epoch: if v >= 12 {
                        r.i32("last_fetched_epoch")?
                    } else {
                        -1
                    },
                    log_start_offset: if v >= 5 {
                        r.i64("log_start_offset")?
                    } else {
                        -1
                    },
                    partition_max_bytes: r.i32("partition_max_bytes")?,
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            topics.push(FetchTopic {
                topic,
                partitions,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let mut forgotten = Vec::new();
        if v >= 7 {
            let n = r.array_len(flexible, 2, "forgotten_topics_data")?;
            forgotten.reserve(n);
            for _ in 0..n {
                forgotten.push(ForgottenTopic {
                    topic: r.string(flexible, "topic")?,
                    partitions: r.i32_array(flexible, "partitions")?,
                    tagged: r.tagged_fields(flexible)?,
                });
            }
        }
        let rack_id = if v >= 11 {
            r.string(flexible, "rack_id")?
        } else {
            Bytes::new()
        };
        let tagged = r.tagged_fields(flexible)?;
        Ok(FetchRequest {
            replica_id,
            max_wait_ms,
            min_bytes,
            max_bytes,
            isolation_level,
            session_id,
            session_epoch,
            topics,
            forgotten,
            rack_id,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(64 + 40 * self.topics.len());
        w.i32(self.replica_id);
        w.i32(self.max_wait_ms);
        w.i32(self.min_bytes);
        w.i32(self.max_bytes);
        w.i8(self.isolation_level);
        if v >= 7 {
            w.i32(self.session_id);
            w.i32(self.session_epoch);
        }
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.topic);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i32(p.partition);
                if v >= 9 {
                    w.i32(p.current_leader_epoch);
                }
                w.i64(p.fetch_offset);
                if v >= 12 {
                    w.i32(p.last_fetched_epoch);
                }
                if v >= 5 {
                    w.i64(p.log_start_offset);
                }
                w.i32(p.partition_max_bytes);
                w.tagged_fields(flexible, &p.tagged);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        if v >= 7 {
            w.array_len(flexible, self.forgotten.len());
            for f in &self.forgotten {
                w.string(flexible, &f.topic);
                w.i32_array(flexible, &f.partitions);
                w.tagged_fields(flexible, &f.tagged);
            }
        }
        if v >= 11 {
            w.string(flexible, &self.rack_id);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResponse {
    pub partition_index: i32,
    pub error_code: ErrorCode,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// The aborted transactions array (nullable), raw.
    pub aborted_raw: Bytes,
    pub preferred_read_replica: i32,
    pub records: Option<Bytes>,
    /// v12 tagged fields: 0 diverging epoch, 1 current leader (a node id), 2 snapshot id.
    pub tagged: Vec<(u32, Bytes)>,
}

/// The tag of a Fetch partition's `current_leader` (names a node: dropped by the merge).
pub const TAG_CURRENT_LEADER: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicResponse {
    pub topic: Bytes,
    pub partitions: Vec<FetchPartitionResponse>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    pub throttle_time_ms: i32,
    pub error_code: ErrorCode,
    pub session_id: i32,
    pub topics: Vec<FetchTopicResponse>,
    pub tagged: Bytes,
}

impl FetchPartitionResponse {
    /// A partition answer built by the proxy: `error_code`, no records.
    pub fn error(partition_index: i32, error_code: ErrorCode) -> Self {
        FetchPartitionResponse {
            partition_index,
            error_code,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_raw: Bytes::new(),
            preferred_read_replica: -1,
            records: Some(Bytes::new()),
            tagged: Vec::new(),
        }
    }
}

impl FetchResponse {
    pub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let throttle_time_ms = r.i32("throttle_time_ms")?;
        let (error_code, session_id) = if v >= 7 {
            (r.i16("error_code")?, r.i32("session_id")?)
        } else {
            (0, NO_SESSION_ID)
        };
        let n = r.array_len(flexible, 2, "responses")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = r.string(flexible, "topic")?;
            let np = r.array_len(flexible, 30, "partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                let partition_index = r.i32("partition_index")?;
                let error_code = r.i16("error_code")?;
                let high_watermark = r.i64("high_watermark")?;
                let last_stable_offset = r.i64("last_stable_offset")?;
                let log_start_offset = if v >= 5 {
                    r.i64("log_start_offset")?
                } else {
                    -1
                };
                let from = r.position();
                if let Some(na) = r.nullable_array_len(flexible, 16, "aborted_transactions")? {
                    for _ in 0..na {
                        r.i64("producer_id")?;
                        r.i64("first_offset")?;
                        r.tagged_fields(flexible)?;
                    }
                }
                let aborted_raw = r.since(from);
                let preferred_read_replica = if v >= 11 {
                    r.i32("preferred_read_replica")?
                } else {
                    -1
                };
                let records = r.nullable_bytes(flexible, "records")?;
                let tagged = if flexible {
                    r.tagged_field_list()?
                } else {
                    Vec::new()
                };
                partitions.push(FetchPartitionResponse {
                    partition_index,
                    error_code,
                    high_watermark,
                    last_stable_offset,
                    log_start_offset,
                    aborted_raw,
                    preferred_read_replica,
                    records,
                    tagged,
                });
            }
            topics.push(FetchTopicResponse {
                topic,
                partitions,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let tagged = r.tagged_fields(flexible)?;
        Ok(FetchResponse {
            throttle_time_ms,
            error_code,
            session_id,
            topics,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let size: usize = self
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.records.as_ref().map_or(0, Bytes::len) + 64)
            .sum();
        let mut w = Writer::with_capacity(size + 32);
        w.i32(self.throttle_time_ms);
        if v >= 7 {
            w.i16(self.error_code);
            w.i32(self.session_id);
        }
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.string(flexible, &t.topic);
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i32(p.partition_index);
                w.i16(p.error_code);
                w.i64(p.high_watermark);
                w.i64(p.last_stable_offset);
                if v >= 5 {
                    w.i64(p.log_start_offset);
                }
                if p.aborted_raw.is_empty() {
                    w.null_array(flexible);
                } else {
                    w.raw(&p.aborted_raw);
                }
                if v >= 11 {
                    w.i32(p.preferred_read_replica);
                }
                w.nullable_bytes(flexible, p.records.as_deref());
                if flexible {
                    let fields: Vec<(u32, &[u8])> =
                        p.tagged.iter().map(|(t, b)| (*t, &b[..])).collect();
                    w.tagged_field_list(&fields);
                }
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}
