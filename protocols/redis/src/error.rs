//! The decoders' error type.

use core::fmt;

/// Why bytes could not be decoded. After an error the stream is out of sync: the caller closes
/// the connection (after sending [`DecodeError::reply_message`] to a client, as Redis does).
/// [`crate::RequestDecoder::reset`] / [`crate::ReplyDecoder::reset`] make a decoder reusable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A bulk string (or bulk error, verbatim string) announced more bytes than allowed, or a
    /// negative length other than the RESP2 null `-1`.
    InvalidBulkLength,
    /// An aggregate (or a request) announced more elements than allowed, or a negative count
    /// other than the RESP2 null array `*-1`.
    InvalidAggregateLength,
    /// Nesting deeper than [`crate::Limits::max_depth`].
    TooDeep,
    /// More values in one frame than [`crate::Limits::max_frame_elements`].
    TooManyElements,
    /// One frame longer than [`crate::Limits::max_frame_len`] bytes.
    FrameTooLarge,
    /// A header or simple line without CRLF within its bound.
    LineTooLong,
    /// An inline command line longer than [`crate::Limits::max_inline_len`].
    InlineTooLong,
    /// An inline command with an unterminated quote (or a closing quote not followed by space).
    UnbalancedQuotes,
    /// An inline command holding a NUL byte (Redis looks for the newline with `strchr` and
    /// never finds it: the connection hangs until its buffer overflows).
    NulInInline,
    /// A request element that is not a bulk string.
    ExpectedBulk { got: u8 },
    /// A byte that starts no RESP type.
    UnknownType { got: u8 },
    /// A CR not followed by LF, a bare LF inside a line, or a payload not followed by CRLF.
    ExpectedCrlf,
    /// A length or integer that is not a canonical decimal `i64`.
    InvalidInteger,
    /// A double that does not parse.
    InvalidDouble,
    /// A boolean other than `#t` / `#f`.
    InvalidBoolean,
    /// A big number with something else than an optional sign and digits.
    InvalidBigNumber,
    /// A verbatim string shorter than 4 bytes or without `:` after its 3-byte format.
    InvalidVerbatim,
    /// A RESP3 null (`_`) with something before its CRLF.
    InvalidNull,
    /// RESP3 streamed strings/aggregates (`$?`, `*?`, `;`, `.`): no Redis server sends them.
    StreamedUnsupported,
}

impl DecodeError {
    /// The text of the `-ERR ...` a proxy sends the client before closing, worded as Redis
    /// words its own protocol errors.
    pub fn reply_message(&self) -> String {
        format!("ERR Protocol error: {self}")
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBulkLength => f.write_str("invalid bulk length"),
            Self::InvalidAggregateLength => f.write_str("invalid multibulk length"),
            Self::TooDeep => f.write_str("nesting too deep"),
            Self::TooManyElements => f.write_str("too many elements in one frame"),
            Self::FrameTooLarge => f.write_str("frame too large"),
            Self::LineTooLong => f.write_str("too big count string"),
            Self::InlineTooLong => f.write_str("too big inline request"),
            Self::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            Self::NulInInline => f.write_str("NUL byte in inline request"),
            Self::ExpectedBulk { got } => write!(f, "expected '$', got '{}'", char::from(*got)),
            Self::UnknownType { got } => write!(f, "unknown type byte '{}'", char::from(*got)),
            Self::ExpectedCrlf => f.write_str("expected CRLF"),
            Self::InvalidInteger => f.write_str("invalid integer"),
            Self::InvalidDouble => f.write_str("invalid double"),
            Self::InvalidBoolean => f.write_str("invalid boolean"),
            Self::InvalidBigNumber => f.write_str("invalid big number"),
            Self::InvalidVerbatim => f.write_str("invalid verbatim string"),
            Self::InvalidNull => f.write_str("invalid null"),
            Self::StreamedUnsupported => f.write_str("streamed RESP3 types are not supported"),
        }
    }
}

impl std::error::Error for DecodeError {}
