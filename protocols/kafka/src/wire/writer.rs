//! [`Writer`]: appends Kafka primitives to a buffer.

use bytes::{BufMut, BytesMut};

use super::Uuid;

/// Encodes Kafka primitives. Lengths that do not fit their field are clamped by the caller's
/// limits long before they reach here (frames are bounded well below `i32::MAX`).
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: BytesMut,
}

/// A length as Kafka's `i32`/`i16`, saturating (never reached: frames are bounded).
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: BytesMut::with_capacity(n),
        }
    }

    pub fn i8(&mut self, v: i8) {
        self.buf.put_i8(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.put_i8(i8::from(v));
    }

    pub fn i16(&mut self, v: i16) {
        self.buf.put_i16(v);
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    pub fn uuid(&mut self, v: &Uuid) {
        self.buf.put_slice(v);
    }

    pub fn raw(&mut self, b: &[u8]) {
        self.buf.put_slice(b);
    }

    pub fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }

    fn len(&mut self, flexible: bool, wide: bool, n: Option<usize>) {
        match (flexible, n) {
            (true, None) => self.uvarint(0),
            (true, Some(n)) => self.uvarint(u32::try_from(n).unwrap_or(u32::MAX - 1) + 1),
            (false, None) if wide => self.i32(-1),
            (false, None) => self.i16(-1),
            (false, Some(n)) if wide => self.i32(len_i32(n)),
            (false, Some(n)) => self.i16(i16::try_from(n).unwrap_or(i16::MAX)),
        }
    }

    pub fn nullable_string(&mut self, flexible: bool, s: Option<&[u8]>) {
        self.len(flexible, false, s.map(<[u8]>::len));
        if let Some(s) = s {
            self.raw(s);
        }
    }

    pub fn string(&mut self, flexible: bool, s: &[u8]) {
        self.nullable_string(flexible, Some(s));
    }

    pub fn nullable_bytes(&mut self, flexible: bool, b: Option<&[u8]>) {
        self.len(flexible, true, b.map(<[u8]>::len));
        if let Some(b) = b {
            self.raw(b);
        }
    }

    pub fn array_len(&mut self, flexible: bool, n: usize) {
        self.len(flexible, true, Some(n));
    }

    pub fn null_array(&mut self, flexible: bool) {
        self.len(flexible, true, None);
    }

    pub fn i32_array(&mut self, flexible: bool, v: &[i32]) {
        self.array_len(flexible, v.len());
        for x in v {
            self.i32(*x);
        }
    }

    /// Writes a raw tagged-field section as read by `Reader::tagged_fields`, or an empty one
    /// (a single 0) when `raw` is empty. Nothing when not `flexible`.
    pub fn tagged_fields(&mut self, flexible: bool, raw: &[u8]) {
        if !flexible {
            return;
        }
        if raw.is_empty() {
            self.uvarint(0);
        } else {
            self.raw(raw);
        }
    }

    /// Writes (tag, value) pairs, tags in increasing order as the protocol requires.
    pub fn tagged_field_list(&mut self, fields: &[(u32, &[u8])]) {
        self.uvarint(u32::try_from(fields.len()).unwrap_or(0));
        for (tag, v) in fields {
            self.uvarint(*tag);
            self.uvarint(u32::try_from(v.len()).unwrap_or(0));
            self.raw(v);
        }
    }
}
