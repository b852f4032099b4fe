//! FindCoordinator request and response (v0-v6). v0-v3 ask for one key; v4+ for a batch of
//! keys of one type, answered with one coordinator each.

use bytes::Bytes;

use crate::codes::ErrorCode;
use crate::error::DecodeError;
use crate::header::Request;
use crate::wire::{Reader, Writer};

const FLEXIBLE_FROM: i16 = 3;
/// `key_type` of a consumer group (1 is a transactional id).
pub const KEY_TYPE_GROUP: i8 = 0;
pub const KEY_TYPE_TRANSACTION: i8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindCoordinatorRequest {
    /// The keys asked for (one before v4).
    pub keys: Vec<Bytes>,
    pub key_type: i8,
}

impl FindCoordinatorRequest {
    pub fn decode(req: &Request) -> Result<Self, DecodeError> {
        let v = req.version();
        let flexible = v >= FLEXIBLE_FROM;
        let mut r = req.body();
        let mut keys = Vec::new();
        if v <= 3 {
            keys.push(r.string(flexible, "key")?);
        }
        let key_type = if v >= 1 {
            r.i8("key_type")?
        } else {
            KEY_TYPE_GROUP
        };
        if v >= 4 {
            let n = r.array_len(flexible, 1, "coordinator_keys")?;
            keys.reserve(n);
            for _ in 0..n {
                keys.push(r.string(flexible, "coordinator_key")?);
            }
        }
        r.tagged_fields(flexible)?;
        Ok(FindCoordinatorRequest { keys, key_type })
    }
}

/// One coordinator (the whole answer before v4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    pub key: Bytes,
    pub node_id: i32,
    pub host: Bytes,
    pub port: i32,
    pub error_code: ErrorCode,
    pub error_message: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindCoordinatorResponse {
    pub throttle_time_ms: i32,
    /// One per key asked for (exactly one before v4; its `key` is then not on the wire).
    pub coordinators: Vec<Coordinator>,
}

impl FindCoordinatorResponse {
    pub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let throttle_time_ms = if v >= 1 {
            r.i32("throttle_time_ms")?
        } else {
            0
        };
        let mut coordinators = Vec::new();
        if v <= 3 {
            let error_code = r.i16("error_code")?;
            let error_message = if v >= 1 {
                r.nullable_string(flexible, "error_message")?
            } else {
                None
            };
            coordinators.push(Coordinator {
                key: Bytes::new(),
                error_code,
                error_message,
                node_id: r.i32("node_id")?,
                host: r.string(flexible, "host")?,
                port: r.i32("port")?,
            });
        } else {
            let n = r.array_len(flexible, 14, "coordinators")?;
            coordinators.reserve(n);
            for _ in 0..n {
                coordinators.push(Coordinator {
                    key: r.string(flexible, "key")?,
                    node_id: r.i32("node_id")?,
                    host: r.string(flexible, "host")?,
                    port: r.i32("port")?,
                    error_code: r.i16("error_code")?,
                    error_message: r.nullable_string(flexible, "error_message")?,
                });
                r.tagged_fields(flexible)?;
            }
        }
        r.tagged_fields(flexible)?;
        Ok(FindCoordinatorResponse {
            throttle_time_ms,
            coordinators,
        })
    }

    /// Encodes at `version` (before v4 only the first coordinator is written).
    pub fn encode(&self, version: i16) -> Bytes {
        let v = version;
        let flexible = v >= FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(64);
        if v >= 1 {
            w.i32(self.throttle_time_ms);
        }
        if v <= 3 {
            let none = Coordinator {
                key: Bytes::new(),
                node_id: -1,
                host: Bytes::new(),
                port: -1,
                error_code: crate::codes::COORDINATOR_NOT_AVAILABLE,
                error_message: None,
            };
            let c = self.coordinators.first().unwrap_or(&none);
            w.i16(c.error_code);
            if v >= 1 {
                w.nullable_string(flexible, c.error_message.as_deref());
            }
            w.i32(c.node_id);
            w.string(flexible, &c.host);
            w.i32(c.port);
        } else {
            w.array_len(flexible, self.coordinators.len());
            for c in &self.coordinators {
                w.string(flexible, &c.key);
                w.i32(c.node_id);
                w.string(flexible, &c.host);
                w.i32(c.port);
                w.i16(c.error_code);
                w.nullable_string(flexible, c.error_message.as_deref());
                w.tagged_fields(flexible, &[]);
            }
        }
        w.tagged_fields(flexible, &[]);
        w.buf.freeze()
    }
}
