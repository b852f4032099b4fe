//! The one error type of the codec: where a frame stopped making sense.

use std::fmt;

/// Why bytes could not be decoded. A decoder that returns one has consumed nothing it cannot
/// account for: the caller answers the client with a Kafka error or closes the connection
/// (framing errors leave no way to find the next frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The 4-byte size prefix is negative or above the configured limit.
    FrameSize { size: i64, max: usize },
    /// A field ran past the end of its frame.
    Truncated { field: &'static str },
    /// A length or count field is negative (and not the null marker) or larger than what is left.
    BadLength { field: &'static str, len: i64 },
    /// A varint longer than its type allows.
    BadVarint { field: &'static str },
    /// Bytes left over after the last field of a message.
    TrailingBytes { left: usize },
    /// An API key this codec has no schema for.
    UnknownApi { api_key: i16 },
    /// A version of a known API outside the range this codec decodes.
    UnsupportedVersion { api_key: i16, version: i16 },
    /// A record batch header that is not a magic-2 batch or whose length is wrong.
    BadRecordBatch { reason: &'static str },
    /// A null where the schema allows none.
    UnexpectedNull { field: &'static str },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::FrameSize { size, max } => {
                write!(f, "frame size {size} outside 0..={max}")
            }
            DecodeError::Truncated { field } => write!(f, "truncated at {field}"),
            DecodeError::BadLength { field, len } => write!(f, "bad length {len} for {field}"),
            DecodeError::BadVarint { field } => write!(f, "bad varint for {field}"),
            DecodeError::TrailingBytes { left } => write!(f, "{left} trailing bytes"),
            DecodeError::UnknownApi { api_key } => write!(f, "unknown API key {api_key}"),
            DecodeError::UnsupportedVersion { api_key, version } => {
                write!(f, "API key {api_key} version {version} not supported")
            }
            DecodeError::BadRecordBatch { reason } => write!(f, "bad record batch: {reason}"),
            DecodeError::UnexpectedNull { field } => write!(f, "null {field}"),
        }
    }
}

impl std::error::Error for DecodeError {}
