//! Broker answers: framed on each link and read by the request they answer (a Kafka response
//! says neither its API nor its version: the slot that waits for it does).

use bytes::{Bytes, BytesMut};
use geomesh_kit::Answer;

use crate::apis::lookup;
use crate::error::DecodeError;
use crate::header::parse_response;
use crate::wire::Reader;

/// What a slot expects: the API and version of the request it waits on, and the correlation
/// id the broker must echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            api_key: -1,
            version: -1,
            correlation_id: 0,
        }
    }
}

/// One broker answer: its bytes (size prefix included) and what it answers.
#[derive(Debug, Clone)]
pub struct KafkaAnswer {
    pub raw: Bytes,
    pub expect: Expect,
}

impl Answer for KafkaAnswer {
    fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Kafka answers carry their errors per partition or per group: the merges read them. A
    /// SASL answer's error is the answer's (a replayed authentication refused).
    fn is_error(&self) -> bool {
        super::sasl::refused(self)
    }
}

impl KafkaAnswer {
    /// The correlation id the broker wrote (`None`: shorter than a header).
    pub fn correlation_id(&self) -> Option<i32> {
        let b: [u8; 4] = self.raw.get(4..8)?.try_into().ok()?;
        Some(i32::from_be_bytes(b))
    }

    /// The body decoded by `decode` at the version of the request it answers.
    pub fn decode<T>(&self, decode: impl FnOnce(&mut Reader, i16) -> Result<T, DecodeError>) -> Result<T, DecodeError> {
        let spec = lookup(self.expect.api_key).ok_or(DecodeError::UnknownApi {
            api_key: self.expect.api_key,
        })?;
        let (_, mut r) = parse_response(self.raw.slice(4.min(self.raw.len())..), spec, self.expect.version)?;
        decode(&mut r, self.expect.version)
    }
}

/// Cuts the next answer frame off `buf` (at most `max` bytes after the size prefix).
/// `Err` = the size prefix is out of range: the link's stream cannot be followed any more.
pub fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, String> {
    let Some(prefix) = buf.get(..4).and_then(|p| <[u8; 4]>::try_from(p).ok()) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes(prefix);
    let len = usize::try_from(size)
        .ok()
        .filter(|n| *n <= max && *n >= 4)
        .ok_or_else(|| format!("answer frame size {size} outside 4..={max}"))?;
    if buf.len() - 4 < len {
        buf.reserve(len + 4 - buf.len());
        return Ok(None);
    }
    Ok(Some(buf.split_to(len + 4).freeze()))
}
