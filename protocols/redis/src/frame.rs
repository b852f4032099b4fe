//! An owned RESP value, for the replies a proxy builds (merged arrays, sums, errors).

use bytes::{BufMut, Bytes};

use crate::encode::{format_double, write_len_line};

/// Any RESP2 or RESP3 value. [`Frame::encode`] writes it exactly as the variant says (no
/// conversion between protocol versions: build RESP2 variants for a RESP2 client).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    SimpleString(Bytes),
    SimpleError(Bytes),
    Integer(i64),
    BulkString(Bytes),
    /// RESP2 `$-1`
    NullBulk,
    /// RESP2 `*-1`
    NullArray,
    /// RESP3 `_`
    Null,
    Array(Vec<Frame>),
    /// Pairs in wire order (duplicates kept).
    Map(Vec<(Frame, Frame)>),
    /// Elements in wire order (duplicates kept).
    Set(Vec<Frame>),
    Push(Vec<Frame>),
    Double(f64),
    Boolean(bool),
    /// `[+-]?[0-9]+`
    BigNumber(Bytes),
    Verbatim {
        format: [u8; 3],
        text: Bytes,
    },
    BulkError(Bytes),
    /// A value with RESP3 attributes in front of it.
    Attribute {
        attributes: Vec<(Frame, Frame)>,
        value: Box<Frame>,
    },
}

impl Frame {
    /// `+OK`
    pub fn ok() -> Frame {
        Frame::SimpleString(Bytes::from_static(b"OK"))
    }

    /// `-<message>`; the message starts with its code (`ERR ...`).
    pub fn error(message: impl Into<Bytes>) -> Frame {
        Frame::SimpleError(message.into())
    }

    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::BulkString(data.into())
    }

    /// Writes the frame's RESP encoding (without recursion). Simple strings and errors have
    /// CR/LF replaced by spaces; a big number that is not `[+-]?[0-9]+` is written as `0`.
    pub fn encode<B: BufMut>(&self, out: &mut B) {
        let mut todo: Vec<&Frame> = vec![self];
        while let Some(f) = todo.pop() {
            match f {
                Frame::SimpleString(s) => crate::write_simple(out, s),
                Frame::SimpleError(s) => crate::write_error(out, s),
                Frame::Integer(n) => crate::write_integer(out, *n),
                Frame::BulkString(s) => crate::write_bulk(out, s),
                Frame::NullBulk => out.put_slice(b"$-1\r\n"),
                Frame::NullArray => out.put_slice(b"*-1\r\n"),
                Frame::Null => out.put_slice(b"_\r\n"),
                Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
                    let prefix = match f {
                        Frame::Set(_) => b'~',
                        Frame::Push(_) => b'>',
                        _ => b'*',
                    };
                    write_len_line(out, prefix, items.len() as i64);
                    todo.extend(items.iter().rev());
                }
                Frame::Map(pairs) => {
                    write_len_line(out, b'%', pairs.len() as i64);
                    for (k, v) in pairs.iter().rev() {
                        todo.push(v);
                        todo.push(k);
                    }
                }
                Frame::Attribute { attributes, value } => {
                    write_len_line(out, b'|', attributes.len() as i64);
                    todo.push(value);
                    for (k, v) in attributes.iter().rev() {
                        todo.push(v);
                        todo.push(k);
                    }
                }
                Frame::Double(d) => {
                    out.put_u8(b',');
                    out.put_slice(format_double(*d).as_bytes());
                    out.put_slice(b"\r\n");
                }
                Frame::Boolean(v) => out.put_slice(if *v { b"#t\r\n" } else { b"#f\r\n" }),
                Frame::BigNumber(n) => {
                    out.put_u8(b'(');
                    if crate::lines::is_big_number(n) {
                        out.put_slice(n);
                    } else {
                        out.put_u8(b'0');
                    }
                    out.put_slice(b"\r\n");
                }
                Frame::Verbatim { format, text } => {
                    write_len_line(out, b'=', text.len() as i64 + 4);
                    out.put_slice(format);
                    out.put_u8(b':');
                    out.put_slice(text);
                    out.put_slice(b"\r\n");
                }
                Frame::BulkError(s) => {
                    write_len_line(out, b'!', s.len() as i64);
                    out.put_slice(s);
                    out.put_slice(b"\r\n");
                }
            }
        }
    }

    /// The encoding as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn encodes_nested_frames_in_order() {
        let f = Frame::Array(vec![
            Frame::ok(),
            Frame::Map(vec![(
                Frame::bulk("k"),
                Frame::Set(vec![Frame::Integer(1)]),
            )]),
            Frame::Push(vec![]),
            Frame::Null,
            Frame::error("ERR x"),
        ]);
        assert_eq!(
            f.to_vec(),
            b"*5\r\n+OK\r\n%1\r\n$1\r\nk\r\n~1\r\n:1\r\n>0\r\n_\r\n-ERR x\r\n".to_vec()
        );
    }

    #[test]
    fn deep_frames_encode_without_recursion() {
        let mut f = Frame::Integer(1);
        for _ in 0..100_000 {
            f = Frame::Array(vec![f]);
        }
        let out = f.to_vec();
        assert_eq!(out.len(), 100_000 * 4 + 4);
        // Dismantle iteratively: the derived drop of a 100 000-deep tree would recurse.
        let mut cur = f;
        while let Frame::Array(mut v) = cur {
            cur = v.pop().unwrap_or(Frame::Null);
        }
    }
}
