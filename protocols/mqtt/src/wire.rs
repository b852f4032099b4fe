//! MQTT's data representations (1.5): integers, variable byte integers, UTF-8 strings and
//! binary data, read from a packet body without copying and written into a buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{msg, Error};

/// A cursor over one packet's body. Every read checks the length first; slices share the
/// packet's buffer (`Bytes::split_to`, no copy).
#[derive(Debug)]
pub(crate) struct Reader {
    rest: Bytes,
}

impl Reader {
    pub(crate) fn new(body: Bytes) -> Self {
        Self { rest: body }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        if self.rest.is_empty() {
            return Err(Error::malformed(msg::TRUNCATED));
        }
        Ok(self.rest.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        if self.rest.len() < 2 {
            return Err(Error::malformed(msg::TRUNCATED));
        }
        Ok(self.rest.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        if self.rest.len() < 4 {
            return Err(Error::malformed(msg::TRUNCATED));
        }
        Ok(self.rest.get_u32())
    }

    /// A variable byte integer (1.5.5): at most 4 bytes.
    pub(crate) fn varint(&mut self) -> Result<u32, Error> {
        match read_varint(&self.rest)? {
            Some((value, len)) => {
                self.rest.advance(len);
                Ok(value)
            }
            None => Err(Error::malformed(msg::TRUNCATED)),
        }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, Error> {
        if n > self.rest.len() {
            return Err(Error::malformed(msg::TRUNCATED));
        }
        Ok(self.rest.split_to(n))
    }

    /// Binary data (1.5.6): a two-byte length, then the bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, Error> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A UTF-8 encoded string (1.5.4), checked: valid UTF-8 and no U+0000 (a Malformed Packet
    /// otherwise). Other control characters and non-characters are passed on: the broker
    /// decides (MQTT lets it).
    pub(crate) fn string(&mut self) -> Result<Bytes, Error> {
        let s = self.binary()?;
        check_utf8(&s)?;
        Ok(s)
    }

    /// Everything left.
    pub(crate) fn rest(self) -> Bytes {
        self.rest
    }
}

/// Checks a UTF-8 encoded string's bytes.
pub(crate) fn check_utf8(s: &[u8]) -> Result<(), Error> {
    if s.contains(&0) || core::str::from_utf8(s).is_err() {
        return Err(Error::malformed(msg::INVALID_UTF8));
    }
    Ok(())
}

/// Decodes a variable byte integer at the start of `buf`: `Ok(None)` when `buf` ends inside
/// it, else the value and its length in bytes. A fifth byte is a Malformed Packet. Non-minimal
/// encodings (0x80 0x00 for 0) are accepted, as Mosquitto accepts them.
pub(crate) fn read_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, Error> {
    let mut value: u32 = 0;
    for (i, &b) in buf.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(Error::malformed(msg::VARINT_TOO_LONG));
    }
    Ok(None)
}

/// Bytes a variable byte integer takes.
pub(crate) fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a variable byte integer (values above 268 435 455 are the caller's error: checked
/// where packets are framed).
pub(crate) fn put_varint(out: &mut BytesMut, mut value: u32) {
    loop {
        let mut b = (value & 0x7f) as u8;
        value >>= 7;
        if value > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if value == 0 {
            return;
        }
    }
}

/// Writes binary data or a string: two-byte length, bytes.
pub(crate) fn put_binary(out: &mut BytesMut, b: &[u8]) -> Result<(), Error> {
    let n = u16::try_from(b.len()).map_err(|_| Error::malformed(msg::STRING_TOO_LONG))?;
    out.put_u16(n);
    out.extend_from_slice(b);
    Ok(())
}

/// Length of a string or binary field on the wire.
pub(crate) fn binary_len(b: &[u8]) -> usize {
    2 + b.len()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn varints_round_trip_at_every_boundary() {
        for v in [0u32, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(read_varint(&out).unwrap(), Some((v, out.len())), "{v}");
            for cut in 0..out.len() {
                assert_eq!(read_varint(&out[..cut]).unwrap(), None, "{v} cut at {cut}");
            }
        }
        assert!(read_varint(&[0xff, 0xff, 0xff, 0x80]).is_err());
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert_eq!(read_varint(&[0x80, 0x00]).unwrap(), Some((0, 2)), "non-minimal accepted");
    }

    #[test]
    fn reads_are_bounded() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a', b'b']));
        assert_eq!(r.string().unwrap_err().message(), msg::TRUNCATED);
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x02, b'a', 0x00]));
        assert_eq!(r.string().unwrap_err().message(), msg::INVALID_UTF8);
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x02, 0xc3, 0x28]));
        assert_eq!(r.string().unwrap_err().message(), msg::INVALID_UTF8);
        let mut r = Reader::new(Bytes::from_static(&[0x01]));
        assert!(r.u16().is_err());
        assert!(r.u32().is_err());
        assert_eq!(r.u8().unwrap(), 1);
        assert!(r.u8().is_err());
        assert!(r.take(1).is_err());
        let mut out = BytesMut::new();
        assert!(put_binary(&mut out, &vec![0u8; 65_536]).is_err());
        assert!(put_binary(&mut out, &vec![0u8; 65_535]).is_ok());
    }
}
