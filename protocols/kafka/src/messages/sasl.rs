//! SaslHandshake (v1) and SaslAuthenticate (v0-v2), as far as the proxy reads them: the
//! mechanism a client asks for, and the error code of a broker's answer (a replayed
//! authentication a broker refuses resets that broker's link).

use bytes::Bytes;

use crate::codes::ErrorCode;
use crate::error::DecodeError;
use crate::wire::{Reader, Writer};

/// The mechanism of a SaslHandshake request.
pub fn handshake_mechanism(r: &mut Reader) -> Result<Bytes, DecodeError> {
    r.string(false, "mechanism")
}

/// A SaslHandshake answer: `code` and the mechanisms offered.
pub fn handshake_response(code: ErrorCode, mechanisms: &[&[u8]]) -> Bytes {
    let mut w = Writer::with_capacity(16);
    w.i16(code);
    w.array_len(false, mechanisms.len());
    for m in mechanisms {
        w.string(false, m);
    }
    w.buf.freeze()
}

/// A SaslAuthenticate answer the proxy writes itself: `code` and `message`.
pub fn authenticate_response(version: i16, code: ErrorCode, message: &str) -> Bytes {
    let flexible = version >= 2;
    let mut w = Writer::with_capacity(32 + message.len());
    w.i16(code);
    w.nullable_string(flexible, Some(message.as_bytes()));
    w.nullable_bytes(flexible, Some(&[]));
    if version >= 1 {
        w.i64(0);
    }
    w.tagged_fields(flexible, &[]);
    w.buf.freeze()
}

/// The error code both answers start with.
pub fn error_code(r: &mut Reader) -> Result<ErrorCode, DecodeError> {
    r.i16("error_code")
}
