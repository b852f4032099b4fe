//! [`Reader`]: cursor over one frame (a [`Bytes`], so sub-slices are shared, not copied).

use bytes::Bytes;

use super::Uuid;
use crate::error::DecodeError;

/// Reads Kafka primitives off one frame. Never panics: every read checks what is left.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    #[cfg(test)]
    fn of(bytes: &'static [u8]) -> Self {
        Reader::new(Bytes::from_static(bytes))
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Offset of the next byte in the frame.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The frame bytes between `from` (an earlier [`Reader::position`]) and here.
    pub fn since(&self, from: usize) -> Bytes {
        if from <= self.pos && self.pos <= self.buf.len() {
            self.buf.slice(from..self.pos)
        } else {
            Bytes::new()
        }
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(DecodeError::TrailingBytes { left }),
        }
    }

    /// The next `n` bytes, shared with the frame.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated { field });
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        let src = self
            .buf
            .get(self.pos..self.pos.saturating_add(N))
            .ok_or(DecodeError::Truncated { field })?;
        out.copy_from_slice(src);
        self.pos += N;
        Ok(out)
    }

    pub fn i8(&mut self, field: &'static str) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.array(field)?))
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        Ok(self.i8(field)? != 0)
    }

    pub fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    pub fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    pub fn uuid(&mut self, field: &'static str) -> Result<Uuid, DecodeError> {
        self.array(field)
    }

    /// An unsigned varint of at most 5 bytes (a u32), in its shortest form: a longer one
    /// (`80 00` for 0) is refused. Kafka's parser accepts those, no client writes them, and
    /// refusing them keeps every value's encoding unique (re-encoding gives the same bytes).
    pub fn uvarint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..5u32 {
            let [b] = self.array::<1>(field)?;
            let bits = u32::from(b & 0x7f);
            if i == 4 && bits > 0x0f {
                return Err(DecodeError::BadVarint { field });
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(DecodeError::BadVarint { field });
                }
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint { field })
    }

    /// A zig-zag signed varint of at most 5 bytes (an i32), as in record headers.
    pub fn varint(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let u = self.uvarint(field)?;
        Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
    }

    /// A length that must fit in what is left (`min_each` bytes per unit).
    fn bounded(
        &self,
        len: i64,
        min_each: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        let n = usize::try_from(len).map_err(|_| DecodeError::BadLength { field, len })?;
        if n.saturating_mul(min_each) > self.remaining() {
            return Err(DecodeError::BadLength { field, len });
        }
        Ok(n)
    }

    /// A nullable length: `i16`/`i32` with -1 = null (classic), or uvarint N+1 with 0 = null
    /// (compact, `flexible`).
    fn nullable_len(
        &mut self,
        flexible: bool,
        wide: bool,
        field: &'static str,
    ) -> Result<Option<i64>, DecodeError> {
        let len = if flexible {
            i64::from(self.uvarint(field)?) - 1
        } else if wide {
            i64::from(self.i32(field)?)
        } else {
            i64::from(self.i16(field)?)
        };
        match len {
            -1 => Ok(None),
            l if l < 0 => Err(DecodeError::BadLength { field, len: l }),
            l => Ok(Some(l)),
        }
    }

    /// A nullable string (`STRING`/`COMPACT_STRING`), raw bytes (UTF-8 is not checked: the
    /// proxy compares and forwards names, it does not display them).
    pub fn nullable_string(
        &mut self,
        flexible: bool,
        field: &'static str,
    ) -> Result<Option<Bytes>, DecodeError> {
        match self.nullable_len(flexible, false, field)? {
            None => Ok(None),
            Some(l) => {
                let n = self.bounded(l, 1, field)?;
                self.take(n, field).map(Some)
            }
        }
    }

    /// A string that must not be null.
    pub fn string(&mut self, flexible: bool, field: &'static str) -> Result<Bytes, DecodeError> {
        self.nullable_string(flexible, field)?
            .ok_or(DecodeError::UnexpectedNull { field })
    }

    /// Nullable bytes (`BYTES`/`COMPACT_BYTES`/`RECORDS`: i32 length when not flexible).
    pub fn nullable_bytes(
        &mut self,
        flexible: bool,
        field: &'static str,
    ) -> Result<Option<Bytes>, DecodeError> {
        match self.nullable_len(flexible, true, field)? {
            None => Ok(None),
            Some(l) => {
                let n = self.bounded(l, 1, field)?;
                self.take(n, field).map(Some)
            }
        }
    }

    /// Bytes that must not be null.
    pub fn bytes(&mut self, flexible: bool, field: &'static str) -> Result<Bytes, DecodeError> {
        self.nullable_bytes(flexible, field)?
            .ok_or(DecodeError::UnexpectedNull { field })
    }

    /// A nullable array's element count, bounded by the bytes left (each element is at least
    /// `min_each` >= 1 bytes long).
    pub fn nullable_array_len(
        &mut self,
        flexible: bool,
        min_each: usize,
        field: &'static str,
    ) -> Result<Option<usize>, DecodeError> {
        match self.nullable_len(flexible, true, field)? {
            None => Ok(None),
            Some(l) => self.bounded(l, min_each.max(1), field).map(Some),
        }
    }

    /// An array's element count; null is read as empty (how Kafka treats a null
    /// non-nullable array).
    pub fn array_len(
        &mut self,
        flexible: bool,
        min_each: usize,
        field: &'static str,
    ) -> Result<usize, DecodeError> {
        Ok(self
            .nullable_array_len(flexible, min_each, field)?
            .unwrap_or(0))
    }

    /// Reads an array of `i32`s.
    pub fn i32_array(
        &mut self,
        flexible: bool,
        field: &'static str,
    ) -> Result<Vec<i32>, DecodeError> {
        let n = self.array_len(flexible, 4, field)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.i32(field)?);
        }
        Ok(out)
    }

    /// The tagged-field section of a flexible struct, kept raw (count included) so it can be
    /// written back as it came. Empty (no bytes) when `flexible` is false.
    pub fn tagged_fields(&mut self, flexible: bool) -> Result<Bytes, DecodeError> {
        if !flexible {
            return Ok(Bytes::new());
        }
        let start = self.pos;
        let count = self.uvarint("tagged fields")?;
        // Each tagged field is at least two bytes (tag, size).
        self.bounded(i64::from(count), 2, "tagged fields")?;
        for _ in 0..count {
            self.uvarint("tag")?;
            let size = self.uvarint("tag size")?;
            let n = self.bounded(i64::from(size), 1, "tag size")?;
            self.take(n, "tagged field")?;
        }
        Ok(self.since(start))
    }

    /// Like [`Reader::tagged_fields`], returning each field as (tag, value).
    pub fn tagged_field_list(&mut self) -> Result<Vec<(u32, Bytes)>, DecodeError> {
        let count = self.uvarint("tagged fields")?;
        let n = self.bounded(i64::from(count), 2, "tagged fields")?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = self.uvarint("tag")?;
            let size = self.uvarint("tag size")?;
            let len = self.bounded(i64::from(size), 1, "tag size")?;
            out.push((tag, self.take(len, "tagged field")?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn varints_shortest_form_only() {
        assert_eq!(Reader::of(&[0]).uvarint("x"), Ok(0));
        assert_eq!(Reader::of(&[0x96, 0x01]).uvarint("x"), Ok(150));
        assert_eq!(
            Reader::of(&[0xff, 0xff, 0xff, 0xff, 0x0f]).uvarint("x"),
            Ok(u32::MAX)
        );
        assert!(Reader::of(&[0x80, 0x00]).uvarint("x").is_err());
        assert!(Reader::of(&[0xff, 0xff, 0xff, 0xff, 0x1f])
            .uvarint("x")
            .is_err());
        assert!(Reader::of(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
            .uvarint("x")
            .is_err());
        assert!(Reader::of(&[0x80]).uvarint("x").is_err());
        assert_eq!(Reader::of(&[0x03]).varint("x"), Ok(-2));
    }

    #[test]
    fn counts_and_lengths_are_bounded_by_what_is_left() {
        // 2^31 - 1 elements announced, 4 bytes present: refused before any allocation.
        assert!(Reader::of(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])
            .array_len(false, 4, "a")
            .is_err());
        assert!(Reader::of(&[0x7f, 0xff, 0xff, 0xff])
            .nullable_bytes(false, "b")
            .is_err());
        assert_eq!(
            Reader::of(&[0xff, 0xff]).nullable_string(false, "s"),
            Ok(None)
        );
        assert!(Reader::of(&[0xff, 0xfe])
            .nullable_string(false, "s")
            .is_err());
        assert_eq!(
            Reader::of(&[0x00]).nullable_array_len(true, 1, "c"),
            Ok(None)
        );
        assert!(Reader::of(&[0x05, 1, 2]).string(true, "s").is_err());
        // A tagged-field section claiming more fields than bytes.
        assert!(Reader::of(&[0x7f]).tagged_fields(true).is_err());
        assert_eq!(
            Reader::of(&[0x01, 0x00, 0x01, 0xaa])
                .tagged_fields(true)
                .map(|b| b.len()),
            Ok(4)
        );
    }
}
