//! Metadata request and response (v0-v12).

use bytes::Bytes;

use crate::codes::ErrorCode;
use crate::error::DecodeError;
use crate::header::Request;
use crate::wire::{Reader, Uuid, Writer};

const FLEXIBLE_FROM: i16 = 9;

/// A topic asked for: by name (every version) or, from v10, by id with a null name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRequestTopic {
    pub topic_id: Uuid,
    pub name: Option<Bytes>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataRequest {
    /// `None`: every topic (a null array from v1, an empty one in v0).
    pub topics: Option<Vec<MetadataRequestTopic>>,
    pub allow_auto_topic_creation: bool,
    pub include_cluster_authorized_operations: bool,
    pub include_topic_authorized_operations: bool,
    pub tagged: Bytes,
}

impl MetadataRequest {
    pub fn decode(req: &Request) -> Result<Self, DecodeError> {
        let v = req.version();
        let flexible = v >= FLEXIBLE_FROM;
        let mut r = req.body();
        let topics = match r.nullable_array_len(flexible, 2, "topics")? {
            // Not nullable in v0 (Kafka's own parser refuses it too).
            None if v == 0 => return Err(DecodeError::UnexpectedNull { field: "topics" }),
            None => None,
            Some(0) if v == 0 => None,
            Some(n) => {
                let mut topics = Vec::with_capacity(n);
                for _ in 0..n {
                    let topic_id = if v >= 10 {
                        r.uuid("topic_id")?
                    } else {
                        [0; 16]
                    };
                    let name = if v >= 10 {
                        r.nullable_string(flexible, "name")?
                    } else {
                        Some(r.string(flexible, "name")?)
                    };
                    topics.push(MetadataRequestTopic {
                        topic_id,
                        name,
                        tagged: r.tagged_fields(flexible)?,
                    });
                }
                Some(topics)
            }
        };
        let allow_auto_topic_creation = if v >= 4 {
            r.bool("allow_auto_topic_creation")?
        } else {
            true
        };
        let include_cluster_authorized_operations = if (8..=10).contains(&v) {
            r.bool("include_cluster_authorized_operations")?
        } else {
            false
        };
        let include_topic_authorized_operations = if v >= 8 {
            r.bool("include_topic_authorized_operations")?
        } else {
            false
        };
        let tagged = r.tagged_fields(flexible)?;
        Ok(MetadataRequest {
            topics,
            allow_auto_topic_creation,
            include_cluster_authorized_operations,
            include_topic_authorized_operations,
            tagged,
        })
    }

    /// Encodes at `version`. In v0 "no topics" cannot be said (an empty array means all): the
    /// caller does not send a v0 part without topics.
    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let mut w = Writer::new();
        match &self.topics {
            None if v == 0 => w.array_len(false, 0),
            None => w.null_array(flexible),
            Some(topics) => {
                w.array_len(flexible, topics.len());
                for t in topics {
                    if v >= 10 {
                        w.uuid(&t.topic_id);
                        w.nullable_string(flexible, t.name.as_deref());
                    } else {
                        w.string(flexible, t.name.as_deref().unwrap_or_default());
                    }
                    w.tagged_fields(flexible, &t.tagged);
                }
            }
        }
        if v >= 4 {
            w.bool(self.allow_auto_topic_creation);
        }
        if (8..=10).contains(&v) {
            w.bool(self.include_cluster_authorized_operations);
        }
        if v >= 8 {
            w.bool(self.include_topic_authorized_operations);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataBroker {
    pub node_id: i32,
    pub host: Bytes,
    pub port: i32,
    pub rack: Option<Bytes>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataPartition {
    pub error_code: ErrorCode,
    pub partition_index: i32,
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub replica_nodes: Vec<i32>,
    pub isr_nodes: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataTopic {
    pub error_code: ErrorCode,
    pub name: Option<Bytes>,
    pub topic_id: Uuid,
    pub is_internal: bool,
    pub partitions: Vec<MetadataPartition>,
    pub topic_authorized_operations: i32,
    pub tagged: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataResponse {
    pub throttle_time_ms: i32,
    pub brokers: Vec<MetadataBroker>,
    pub cluster_id: Option<Bytes>,
    pub controller_id: i32,
    pub topics: Vec<MetadataTopic>,
    pub cluster_authorized_operations: i32,
    pub tagged: Bytes,
}

/// `topic_authorized_operations` / `cluster_authorized_operations` when not asked for.
pub const AUTHORIZED_OPERATIONS_UNKNOWN: i32 = i32::MIN;

impl MetadataResponse {
    pub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let throttle_time_ms = if v >= 3 {
            r.i32("throttle_time_ms")?
        } else {
            0
        };
        let n = r.array_len(flexible, 10, "brokers")?;
        let mut brokers = Vec::with_capacity(n);
        for _ in 0..n {
            brokers.push(MetadataBroker {
                node_id: r.i32("node_id")?,
                host: r.string(flexible, "host")?,
                port: r.i32("port")?,
                rack: if v >= 1 {
                    r.nullable_string(flexible, "rack")?
                } else {
                    None
                },
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let cluster_id = if v >= 2 {
            r.nullable_string(flexible, "cluster_id")?
        } else {
            None
        };
        let controller_id = if v >= 1 { r.i32("controller_id")? } else { -1 };
        let n = r.array_len(flexible, 4, "topics")?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let error_code = r.i16("error_code")?;
            let name = if v >= 12 {
                r.nullable_string(flexible, "name")?
            } else {
                Some(r.string(flexible, "name")?)
            };
            let topic_id = if v >= 10 {
                r.uuid("topic_id")?
            } else {
                [0; 16]
            };
            let is_internal = if v >= 1 {
                r.bool("is_internal")?
            } else {
                false
            };
            let np = r.array_len(flexible, 14, "partitions")?;
            let mut partitions = Vec::with_capacity(np);
            for _ in 0..np {
                partitions.push(MetadataPartition {
                    error_code: r.i16("error_code")?,
                    partition_index: r.i32("partition_index")?,
                    leader_id: r.i32("leader_id")?,
                    leader_epoch: if v >= 7 { r.i32("leader_epoch")? } else { -1 },
                    replica_nodes: r.i32_array(flexible, "replica_nodes")?,
                    isr_nodes: r.i32_array(flexible, "isr_nodes")?,
                    offline_replicas: if v >= 5 {
                        r.i32_array(flexible, "offline_replicas")?
                    } else {
                        Vec::new()
                    },
                    tagged: r.tagged_fields(flexible)?,
                });
            }
            let topic_authorized_operations = if v >= 8 {
                r.i32("topic_authorized_operations")?
            } else {
                AUTHORIZED_OPERATIONS_UNKNOWN
            };
            topics.push(MetadataTopic {
                error_code,
                name,
                topic_id,
                is_internal,
                partitions,
                topic_authorized_operations,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let cluster_authorized_operations = if (8..=10).contains(&v) {
            r.i32("cluster_authorized_operations")?
        } else {
            AUTHORIZED_OPERATIONS_UNKNOWN
        };
        let tagged = r.tagged_fields(flexible)?;
        Ok(MetadataResponse {
            throttle_time_ms,
            brokers,
            cluster_id,
            controller_id,
            topics,
            cluster_authorized_operations,
            tagged,
        })
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(256);
        if v >= 3 {
            w.i32(self.throttle_time_ms);
        }
        w.array_len(flexible, self.brokers.len());
        for b in &self.brokers {
            w.i32(b.node_id);
            w.string(flexible, &b.host);
            w.i32(b.port);
            if v >= 1 {
                w.nullable_string(flexible, b.rack.as_deref());
            }
            w.tagged_fields(flexible, &b.tagged);
        }
        if v >= 2 {
            w.nullable_string(flexible, self.cluster_id.as_deref());
        }
        if v >= 1 {
            w.i32(self.controller_id);
        }
        w.array_len(flexible, self.topics.len());
        for t in &self.topics {
            w.i16(t.error_code);
            if v >= 12 {
                w.nullable_string(flexible, t.name.as_deref());
            } else {
                w.string(flexible, t.name.as_deref().unwrap_or_default());
            }
            if v >= 10 {
                w.uuid(&t.topic_id);
            }
            if v >= 1 {
                w.bool(t.is_internal);
            }
            w.array_len(flexible, t.partitions.len());
            for p in &t.partitions {
                w.i16(p.error_code);
                w.i32(p.partition_index);
                w.i32(p.leader_id);
                if v >= 7 {
                    w.i32(p.leader_epoch);
                }
                w.i32_array(flexible, &p.replica_nodes);
                w.i32_array(flexible, &p.isr_nodes);
                if v >= 5 {
                    w.i32_array(flexible, &p.offline_replicas);
                }
                w.tagged_fields(flexible, &p.tagged);
            }
            if v >= 8 {
                w.i32(t.topic_authorized_operations);
            }
            w.tagged_fields(flexible, &t.tagged);
        }
        if (8..=10).contains(&v) {
            w.i32(self.cluster_authorized_operations);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}
