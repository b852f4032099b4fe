//! Framing: every Kafka request and response is a 4-byte big-endian size, then that many bytes.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::DecodeError;

/// Cuts frames off a byte stream. `Ok(None)` means "need more bytes"; an error means the
/// stream cannot be framed any more (the size is negative or above `max`): close it.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames above `max` bytes (size prefix excluded).
    pub fn new(max: usize) -> Self {
        FrameDecoder { max }
    }

    /// The next whole frame (without its size prefix), taken off `src`.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let Some(prefix) = src.get(..4) else {
            return Ok(None);
        };
        let mut size_bytes = [0u8; 4];
        size_bytes.copy_from_slice(prefix);
        let size = i32::from_be_bytes(size_bytes);
        let len = usize::try_from(size)
            .ok()
            .filter(|n| *n <= self.max)
            .ok_or(DecodeError::FrameSize {
                size: i64::from(size),
                max: self.max,
            })?;
        if src.len() - 4 < len {
            // Room for the rest of this frame, at most what the size says (bounded above).
            src.reserve(len + 4 - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len).freeze()))
    }
}

/// `body` with its 4-byte size prefix.
pub fn with_size_prefix(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.extend_from_slice(&i32::try_from(body.len()).unwrap_or(i32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn frames_cut_however_the_bytes_arrive() {
        let mut stream = Vec::new();
        for body in [&b"abc"[..], b"", b"0123456789"] {
            stream.extend_from_slice(&with_size_prefix(body));
        }
        for chunk in 1..stream.len() {
            let mut dec = FrameDecoder::new(16);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(f) = dec.decode(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(
                got,
                vec![
                    Bytes::from_static(b"abc"),
                    Bytes::new(),
                    Bytes::from_static(b"0123456789")
                ]
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn sizes_above_the_limit_or_negative_are_refused_at_the_prefix() {
        let mut dec = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&17i32.to_be_bytes()[..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(DecodeError::FrameSize { size: 17, max: 16 })
        );
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert!(dec.decode(&mut buf).is_err());
        // 2 GiB announced, nothing buffered beyond the limit.
        let mut big = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
        assert!(big.decode(&mut buf).is_err());
        assert!(buf.capacity() < 1 << 20);
        // Partial prefix: wait.
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }
}
