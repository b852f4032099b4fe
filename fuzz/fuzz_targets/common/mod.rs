//! Helpers shared by the fuzz targets. Not a target: each target that needs them has
//! `mod common;` and uses only part of them.
#![allow(dead_code)]

use geomesh_redis::{BytesMut, DecodeError, Limits};

/// Small RESP limits so the fuzzer reaches them.
pub fn small_limits() -> Limits {
    Limits {
        max_bulk_len: 4096,
        max_aggregate_len: 64,
        max_frame_elements: 512,
        max_depth: 16,
        max_inline_len: 256,
        max_frame_len: 16 * 1024,
    }
}

/// Feeds `input` to a streaming decoder `chunk` bytes at a time (at least 1), as a socket
/// would: every item decoded, and the error that stopped decoding, if any.
pub fn decode_in_chunks<T>(
    input: &[u8],
    chunk: usize,
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, DecodeError>,
) -> (Vec<T>, Option<DecodeError>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match decode(&mut buf) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// The fuzzer's bytes, consumed from the front as a script.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    /// The next byte, `None` at the end.
    pub fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}
