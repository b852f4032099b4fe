//! ApiVersions response (v0-v4). The request body (client software name and version, v3+) is
//! forwarded as it is.

use bytes::Bytes;

use crate::codes::{ErrorCode, UNSUPPORTED_VERSION};
use crate::error::DecodeError;
use crate::wire::{Reader, Writer};

/// One API's version range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRange {
    pub api_key: i16,
    pub min: i16,
    pub max: i16,
    /// v3+ tagged fields of the entry, raw (none are defined; kept so a re-encoding is exact).
    pub tagged: Bytes,
}

impl ApiRange {
    pub fn new(api_key: i16, min: i16, max: i16) -> Self {
        ApiRange {
            api_key,
            min,
            max,
            tagged: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersionsResponse {
    pub error_code: ErrorCode,
    pub api_keys: Vec<ApiRange>,
    pub throttle_time_ms: i32,
    /// v3+ top-level tagged fields (supported and finalized features), raw.
    pub tagged: Bytes,
}

const FLEXIBLE_FROM: i16 = 3;

impl ApiVersionsResponse {
    /// Decodes an answer to a request of `version`. A broker that does not support that version
    /// answers UNSUPPORTED_VERSION in the v0 layout (KIP-511): the version actually read is
    /// returned with the response.
    pub fn decode(r: &mut Reader, version: i16) -> Result<(Self, i16), DecodeError> {
        let mut probe = r.clone();
        let first = probe.i16("error_code")?;
        let version = if first == UNSUPPORTED_VERSION {
            0
        } else {
            version
        };
        let flexible = version >= FLEXIBLE_FROM;
        let error_code = r.i16("error_code")?;
        let n = r.array_len(flexible, 6, "api_keys")?;
        let mut api_keys = Vec::with_capacity(n);
        for _ in 0..n {
            api_keys.push(ApiRange {
                api_key: r.i16("api_key")?,
                min: r.i16("min_version")?,
                max: r.i16("max_version")?,
                tagged: r.tagged_fields(flexible)?,
            });
        }
        let throttle_time_ms = if version >= 1 {
            r.i32("throttle_time_ms")?
        } else {
            0
        };
        let tagged = r.tagged_fields(flexible)?;
        Ok((
            ApiVersionsResponse {
                error_code,
                api_keys,
                throttle_time_ms,
                tagged,
            },
            version,
        ))
    }

    pub fn encode(&self, version: i16) -> Bytes {
        let flexible = version >= FLEXIBLE_FROM;
        let mut w = Writer::with_capacity(16 + 7 * self.api_keys.len());
        w.i16(self.error_code);
        w.array_len(flexible, self.api_keys.len());
        for a in &self.api_keys {
            w.i16(a.api_key);
            w.i16(a.min);
            w.i16(a.max);
            w.tagged_fields(flexible, &a.tagged);
        }
        if version >= 1 {
            w.i32(self.throttle_time_ms);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }
}
