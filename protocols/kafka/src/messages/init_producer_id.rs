//! InitProducerId (v0-v5): the request's transactional id (null for an idempotent producer)
//! and the response's producer id and epoch.

use bytes::Bytes;

use crate::codes::ErrorCode;
use crate::error::DecodeError;
use crate::header::Request;
use crate::wire::{Reader, Writer};

const FLEXIBLE_FROM: i16 = 2;

/// The `transactional_id` of an InitProducerId request (null: idempotent, no transactions).
pub fn transactional_id(req: &Request) -> Result<Option<Bytes>, DecodeError> {
    req.body()
        .nullable_string(req.flexible(), "transactional_id")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerIdResponse {
    pub throttle_time_ms: i32,
    pub error_code: ErrorCode,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub tagged: Bytes,
}

impl InitProducerIdResponse {
    pub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let out = InitProducerIdResponse {
            throttle_time_ms: r.i32("throttle_time_ms")?,
            error_code: r.i16("error_code")?,
            producer_id: r.i64("producer_id")?,
            producer_epoch: r.i16("producer_epoch")?,
            tagged: r.tagged_fields(version >= FLEXIBLE_FROM)?,
        };
        Ok(out)
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let mut w = Writer::with_capacity(20);
        w.i32(self.throttle_time_ms);
        w.i16(self.error_code);
        w.i64(self.producer_id);
        w.i16(self.producer_epoch);
        w.tagged_fields(version >= FLEXIBLE_FROM, &self.tagged);
        w.buf.freeze()
    }
}
