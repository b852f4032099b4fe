//! Server replies: the streaming reply decoder, [`Reply`] and its [`Value`] views.
//!
//! A reply is decoded onto a flat tape of nodes in pre-order, each node holding byte offsets
//! into the reply's own bytes and the index of the node after its subtree. Nothing is copied,
//! no tree is built, and walking a reply needs no recursion: the children of an aggregate are
//! the nodes after it, and `next` skips a whole subtree.

use bytes::{Bytes, BytesMut};

use crate::lines::{find_crlf, is_big_number, parse_double, parse_i64, SHORT_LINE};
use crate::{DecodeError, Frame, Limits};

/// The RESP type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `+OK`
    SimpleString,
    /// `-ERR ...`
    SimpleError,
    /// `:42`
    Integer,
    /// `$5\r\nhello`
    BulkString,
    /// RESP2 null bulk string `$-1`.
    NullBulk,
    /// RESP2 null array `*-1`.
    NullArray,
    /// RESP3 null `_`.
    Null,
    /// `*<n>`
    Array,
    /// RESP3 `%<pairs>`
    Map,
    /// RESP3 `~<n>`
    Set,
    /// RESP3 `><n>`: out-of-band data (pub/sub messages, invalidations), not a reply to a request.
    Push,
    /// RESP3 `,1.5`
    Double,
    /// RESP3 `#t` / `#f`
    Boolean,
    /// RESP3 `(12345678901234567890`
    BigNumber,
    /// RESP3 `=<len>\r\ntxt:...`
    Verbatim,
    /// RESP3 `!<len>\r\nERR ...`
    BulkError,
    /// RESP3 `|<pairs>`: metadata attached to the value that follows it.
    Attribute,
}

impl Kind {
    /// Aggregates whose node is followed by its children on the tape.
    pub fn is_aggregate(self) -> bool {
        matches!(
            self,
            Kind::Array | Kind::Map | Kind::Set | Kind::Push | Kind::Attribute
        )
    }

    fn from_aggregate_byte(b: u8) -> Option<Kind> {
        Some(match b {
            b'*' => Kind::Array,
            b'%' => Kind::Map,
            b'~' => Kind::Set,
            b'>' => Kind::Push,
            b'|' => Kind::Attribute,
            _ => return None,
        })
    }

    /// Children on the tape per announced element.
    fn arity(self) -> u64 {
        if matches!(self, Kind::Map | Kind::Attribute) {
            2
        } else {
            1
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    kind: Kind,
    /// The type byte.
    start: u32,
    /// One past the last byte of this value (its whole subtree for an aggregate).
    end: u32,
    /// Payload of a string-like value (bulk: after the header; simple: after the type byte).
    data: u32,
    data_end: u32,
    /// Announced elements of an aggregate (pairs for map and attribute).
    len: u32,
    /// The node after this subtree. For an attribute: the value it is attached to.
    next: u32,
}

/// One complete reply: its bytes and the tape describing them.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    raw: Bytes,
    nodes: Vec<Node>,
}

impl Reply {
    /// The reply's bytes, exactly as the server sent them.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Gives up the reply for its bytes.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// The value this reply is (attributes, if any, via [`Value::attributes`]).
    pub fn root(&self) -> Value<'_> {
        Value::at(self, 0)
    }

    /// A RESP3 push (pub/sub message, invalidation, ...): it answers no request.
    pub fn is_push(&self) -> bool {
        self.root().kind() == Kind::Push
    }

    /// An error reply (simple or bulk).
    pub fn is_error(&self) -> bool {
        self.root().is_error()
    }

    /// Number of values in the reply (tape nodes, attributes included).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The reply as an owned [`Frame`] tree (built without recursion).
    pub fn to_frame(&self) -> Frame {
        to_frame(self)
    }
}

impl core::fmt::Debug for Reply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Reply({:?})", self.to_frame())
    }
}

/// A view of one value inside a [`Reply`].
#[derive(Clone, Copy)]
pub struct Value<'a> {
    reply: &'a Reply,
    idx: usize,
    /// The attribute node attached to this value, if any.
    attr: Option<usize>,
}

impl<'a> Value<'a> {
    /// The value at tape index `i`, following attribute nodes to the value they annotate.
    fn at(reply: &'a Reply, i: usize) -> Value<'a> {
        let mut idx = i;
        let mut attr = None;
        // Chained attributes: each points (`next`) at what follows it; bounded by the tape.
        for _ in 0..reply.nodes.len() {
            match reply.nodes.get(idx) {
                Some(n) if n.kind == Kind::Attribute => {
                    attr.get_or_insert(idx);
                    idx = n.next as usize;
                }
                _ => break,
            }
        }
        Value { reply, idx, attr }
    }

    fn node(&self) -> Node {
        self.reply.nodes.get(self.idx).copied().unwrap_or(Node {
            kind: Kind::Null,
            start: 0,
            end: 0,
            data: 0,
            data_end: 0,
            len: 0,
            next: 0,
        })
    }

    fn bytes(&self, from: u32, to: u32) -> &'a [u8] {
        self.reply
            .raw
            .get(from as usize..to as usize)
            .unwrap_or_default()
    }

    pub fn kind(&self) -> Kind {
        self.node().kind
    }

    /// This value's complete encoding (its attributes excluded).
    pub fn raw(&self) -> &'a [u8] {
        let n = self.node();
        self.bytes(n.start, n.end)
    }

    /// This value's complete encoding as a zero-copy slice of the reply.
    pub fn raw_bytes(&self) -> Bytes {
        let n = self.node();
        self.reply.raw.slice(n.start as usize..n.end as usize)
    }

    /// This value's encoding with its attributes in front (what to copy into a merged reply).
    pub fn raw_with_attributes(&self) -> &'a [u8] {
        let n = self.node();
        let start = match self.attr.and_then(|a| self.reply.nodes.get(a)) {
            Some(a) => a.start,
            None => n.start,
        };
        self.bytes(start, n.end)
    }

    /// The text of a string-like value: simple string, simple error, bulk string, bulk error,
    /// big number, double (its digits), verbatim string (after `txt:`).
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        let n = self.node();
        match n.kind {
            Kind::SimpleString
            | Kind::SimpleError
            | Kind::BulkString
            | Kind::BulkError
            | Kind::BigNumber
            | Kind::Double => Some(self.bytes(n.data, n.data_end)),
            Kind::Verbatim => Some(self.bytes(n.data.saturating_add(4), n.data_end)),
            _ => None,
        }
    }

    /// The format of a verbatim string (`txt`, `mkd`).
    pub fn verbatim_format(&self) -> Option<&'a [u8]> {
        let n = self.node();
        (n.kind == Kind::Verbatim).then(|| self.bytes(n.data, n.data.saturating_add(3)))
    }

    pub fn as_integer(&self) -> Option<i64> {
        let n = self.node();
        if n.kind != Kind::Integer {
            return None;
        }
        parse_i64(self.bytes(n.data, n.data_end)).ok()
    }

    pub fn as_bool(&self) -> Option<bool> {
        let n = self.node();
        if n.kind != Kind::Boolean {
            return None;
        }
        Some(self.bytes(n.data, n.data_end) == b"t")
    }

    pub fn as_double(&self) -> Option<f64> {
        let n = self.node();
        if n.kind != Kind::Double {
            return None;
        }
        parse_double(self.bytes(n.data, n.data_end)).ok()
    }

    /// `$-1`, `*-1` or `_`.
    pub fn is_null(&self) -> bool {
        matches!(self.kind(), Kind::Null | Kind::NullBulk | Kind::NullArray)
    }

    /// `-...` or `!...`.
    pub fn is_error(&self) -> bool {
        matches!(self.kind(), Kind::SimpleError | Kind::BulkError)
    }

    /// Announced elements of an aggregate (pairs for a map or attribute), 0 otherwise.
    pub fn len(&self) -> usize {
        let n = self.node();
        if n.kind.is_aggregate() {
            n.len as usize
        } else {
            0
        }
    }

    /// True for anything but a non-empty aggregate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements of an aggregate in order; a map's (or attribute's) keys and values
    /// alternate. Empty for anything else.
    pub fn elements(&self) -> Elements<'a> {
        let n = self.node();
        let remaining = if n.kind.is_aggregate() {
            (n.len as usize).saturating_mul(n.kind.arity() as usize)
        } else {
            0
        };
        Elements {
            reply: self.reply,
            next: self.idx + 1,
            remaining,
        }
    }

    /// Element `i` of an aggregate (for a map: keys at even, values at odd positions).
    pub fn get(&self, i: usize) -> Option<Value<'a>> {
        self.elements().nth(i)
    }

    /// The attributes attached to this value (a value of kind [`Kind::Attribute`]).
    pub fn attributes(&self) -> Option<Value<'a>> {
        self.attr.map(|a| Value {
            reply: self.reply,
            idx: a,
            attr: None,
        })
    }
}

impl core::fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}@{}", self.kind(), self.idx)
    }
}

/// Iterator over the elements of an aggregate [`Value`].
#[derive(Clone)]
pub struct Elements<'a> {
    reply: &'a Reply,
    next: usize,
    remaining: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let v = Value::at(self.reply, self.next);
        self.next = v.node().next as usize;
        self.remaining -= 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Elements<'_> {}

#[derive(Debug, Clone, Copy)]
struct Open {
    /// The aggregate's node (for `target`: the attribute's node).
    node: usize,
    /// Children still expected.
    remaining: u64,
    /// An attribute whose pairs are complete, waiting for the value it annotates.
    target: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a type byte and its line at `pos`.
    Header,
    /// A bulk-like header read; waiting for `len` bytes and CRLF at `data`.
    Payload {
        node: usize,
        data: usize,
        len: usize,
    },
}

/// Streaming decoder of server replies (every RESP2 and RESP3 type), one per upstream
/// connection. Replies come out in the order the server sent them.
#[derive(Debug, Clone)]
pub struct ReplyDecoder {
    limits: Limits,
    state: State,
    /// Bytes of `src` that belong to the reply being decoded.
    pos: usize,
    scan: usize,
    nodes: Vec<Node>,
    stack: Vec<Open>,
}

impl Default for ReplyDecoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

fn offset(v: usize) -> Result<u32, DecodeError> {
    u32::try_from(v).map_err(|_| DecodeError::FrameTooLarge)
}

impl ReplyDecoder {
    pub fn new(limits: Limits) -> Self {
        ReplyDecoder {
            limits,
            state: State::Header,
            pos: 0,
            scan: 0,
            nodes: Vec::new(),
            stack: Vec::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// True when no reply is partially decoded.
    pub fn is_idle(&self) -> bool {
        self.state == State::Header && self.pos == 0 && self.nodes.is_empty()
    }

    /// Forgets a partial reply (after an error, or on a new connection).
    pub fn reset(&mut self) {
        self.state = State::Header;
        self.pos = 0;
        self.scan = 0;
        self.nodes.clear();
        self.stack.clear();
    }

    /// Decodes the next reply from the front of `src`, removing its bytes from `src`.
    ///
    /// `Ok(None)`: no complete reply yet; call again with the same buffer once more bytes were
    /// appended (the decoder resumes where it stopped).
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, DecodeError> {
        loop {
            let done = match self.state {
                State::Header => match self.header(src)? {
                    Some(done) => done,
                    None => return Ok(None),
                },
                State::Payload { node, data, len } => {
                    let end = data + len;
                    let Some(crlf) = src.get(end..end + 2) else {
                        return Ok(None);
                    };
                    if crlf != b"\r\n" {
                        return Err(DecodeError::ExpectedCrlf);
                    }
                    if let Some(n) = self.nodes.get(node) {
                        if n.kind == Kind::Verbatim && src.get(data + 3) != Some(&b':') {
                            return Err(DecodeError::InvalidVerbatim);
                        }
                    }
                    let (data32, end32) = (offset(data)?, offset(end)?);
                    if let Some(n) = self.nodes.get_mut(node) {
                        n.data = data32;
                        n.data_end = end32;
                    }
                    self.pos = end + 2;
                    self.scan = self.pos;
                    self.state = State::Header;
                    Some(node)
                }
            };
            if let Some(node) = done {
                if self.complete(node)? {
                    let raw = src.split_to(self.pos).freeze();
                    let nodes = core::mem::take(&mut self.nodes);
                    self.reset();
                    return Ok(Some(Reply { raw, nodes }));
                }
            }
        }
    }

    fn push_node(&mut self, node: Node) -> Result<usize, DecodeError> {
        if self.nodes.len() >= self.limits.max_frame_elements {
            return Err(DecodeError::TooManyElements);
        }
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// Reads the header at `pos`. `Ok(None)`: need more bytes. `Ok(Some(Some(node)))`: `node`
    /// is a complete value. `Ok(Some(None))`: progress made, nothing completed yet.
    fn header(&mut self, src: &BytesMut) -> Result<Option<Option<usize>>, DecodeError> {
        let start = self.pos;
        let Some(&t) = src.get(start) else {
            return Ok(None);
        };
        let line_max = match t {
            b'+' | b'-' | b'(' => self.limits.max_bulk_len,
            b'$' | b'*' | b':' | b'%' | b'~' | b'>' | b',' | b'#' | b'_' | b'=' | b'!' | b'|' => {
                SHORT_LINE
            }
            b';' | b'.' => return Err(DecodeError::StreamedUnsupported),
            got => return Err(DecodeError::UnknownType { got }),
        };
        let Some(cr) = find_crlf(src, start + 1, &mut self.scan, line_max)? else {
            return Ok(None);
        };
        let line = src.get(start + 1..cr).unwrap_or_default();
        let after = cr + 2;
        if after > self.limits.frame_len() {
            return Err(DecodeError::FrameTooLarge);
        }
        let mut node = Node {
            kind: Kind::Null,
            start: offset(start)?,
            end: offset(after)?,
            data: offset(start + 1)?,
            data_end: offset(cr)?,
            len: 0,
            next: 0,
        };
        let leaf = |kind: Kind| -> Option<Kind> { Some(kind) };
        let simple = match t {
            b'+' => leaf(Kind::SimpleString),
            b'-' => leaf(Kind::SimpleError),
            b':' => {
                parse_i64(line)?;
                leaf(Kind::Integer)
            }
            b'(' => {
                if !is_big_number(line) {
                    return Err(DecodeError::InvalidBigNumber);
                }
                leaf(Kind::BigNumber)
            }
            b',' => {
                parse_double(line)?;
                leaf(Kind::Double)
            }
            b'#' => {
                if line != b"t" && line != b"f" {
                    return Err(DecodeError::InvalidBoolean);
                }
                leaf(Kind::Boolean)
            }
            b'_' => {
                if !line.is_empty() {
                    return Err(DecodeError::InvalidNull);
                }
                leaf(Kind::Null)
            }
            _ => None,
        };
        self.pos = after;
        self.scan = after;
        if let Some(kind) = simple {
            node.kind = kind;
            return Ok(Some(Some(self.push_node(node)?)));
        }
        if line == b"?" {
            return Err(DecodeError::StreamedUnsupported);
        }
        if let Some(kind) = Kind::from_aggregate_byte(t) {
            let n = parse_i64(line).map_err(|_| DecodeError::InvalidAggregateLength)?;
            if n == -1 && kind == Kind::Array {
                node.kind = Kind::NullArray;
                return Ok(Some(Some(self.push_node(node)?)));
            }
            if n < 0 || n as u64 > self.limits.max_aggregate_len as u64 {
                return Err(DecodeError::InvalidAggregateLength);
            }
            if self.stack.len() >= self.limits.depth() {
                return Err(DecodeError::TooDeep);
            }
            node.kind = kind;
            node.len = u32::try_from(n).map_err(|_| DecodeError::InvalidAggregateLength)?;
            node.data = offset(after)?;
            node.data_end = offset(after)?;
            let children = (n as u64).saturating_mul(kind.arity());
            let idx = self.push_node(node)?;
            if children == 0 {
                if kind == Kind::Attribute {
                    self.close(idx);
                    self.stack.push(Open {
                        node: idx,
                        remaining: 1,
                        target: true,
                    });
                    return Ok(Some(None));
                }
                return Ok(Some(Some(idx)));
            }
            self.stack.push(Open {
                node: idx,
                remaining: children,
                target: false,
            });
            return Ok(Some(None));
        }
        // `$`, `!`, `=`: a length, then the payload.
        let kind = match t {
            b'$' => Kind::BulkString,
            b'!' => Kind::BulkError,
            _ => Kind::Verbatim,
        };
        let n = parse_i64(line).map_err(|_| DecodeError::InvalidBulkLength)?;
        if n == -1 && kind == Kind::BulkString {
            node.kind = Kind::NullBulk;
            return Ok(Some(Some(self.push_node(node)?)));
        }
        if n < 0 || n as u64 > self.limits.max_bulk_len as u64 {
            return Err(DecodeError::InvalidBulkLength);
        }
        let len = n as usize;
        if kind == Kind::Verbatim && len < 4 {
            return Err(DecodeError::InvalidVerbatim);
        }
        if after.saturating_add(len).saturating_add(2) > self.limits.frame_len() {
            return Err(DecodeError::FrameTooLarge);
        }
        node.kind = kind;
        let idx = self.push_node(node)?;
        self.state = State::Payload {
            node: idx,
            data: after,
            len,
        };
        Ok(Some(None))
    }

    /// Marks `idx`'s subtree as ending at `pos`.
    fn close(&mut self, idx: usize) {
        let next = self.nodes.len() as u32;
        let end = self.pos as u32;
        if let Some(n) = self.nodes.get_mut(idx) {
            n.end = end;
            n.next = next;
        }
    }

    /// Value `idx` is complete: hand it to the aggregates above. True when the frame is.
    fn complete(&mut self, idx: usize) -> Result<bool, DecodeError> {
        self.close(idx);
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(true);
            };
            top.remaining = top.remaining.saturating_sub(1);
            if top.remaining > 0 {
                return Ok(false);
            }
            let open = *top;
            self.stack.pop();
            if open.target {
                // The attributed value is complete; the pair (attribute, value) is one element.
                continue;
            }
            self.close(open.node);
            let is_attr = self
                .nodes
                .get(open.node)
                .is_some_and(|n| n.kind == Kind::Attribute);
            if is_attr {
                self.stack.push(Open {
                    node: open.node,
                    remaining: 1,
                    target: true,
                });
                return Ok(false);
            }
        }
    }
}

/// Builds the owned tree of a reply with an explicit stack.
fn to_frame(reply: &Reply) -> Frame {
    enum Building {
        Aggregate {
            kind: Kind,
            remaining: usize,
            items: Vec<Frame>,
        },
        Target {
            attributes: Vec<(Frame, Frame)>,
        },
    }
    fn pairs(items: Vec<Frame>) -> Vec<(Frame, Frame)> {
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        out
    }
    fn finish(kind: Kind, items: Vec<Frame>) -> Frame {
        match kind {
            Kind::Map => Frame::Map(pairs(items)),
            Kind::Set => Frame::Set(items),
            Kind::Push => Frame::Push(items),
            _ => Frame::Array(items),
        }
    }

    let mut stack: Vec<Building> = Vec::new();
    for (i, n) in reply.nodes.iter().enumerate() {
        let v = Value {
            reply,
            idx: i,
            attr: None,
        };
        let slice = |a: u32, b: u32| reply.raw.slice(a as usize..b as usize);
        let mut frame = match n.kind {
            Kind::SimpleString => Frame::SimpleString(slice(n.data, n.data_end)),
            Kind::SimpleError => Frame::SimpleError(slice(n.data, n.data_end)),
            Kind::BulkString => Frame::BulkString(slice(n.data, n.data_end)),
            Kind::BulkError => Frame::BulkError(slice(n.data, n.data_end)),
            Kind::BigNumber => Frame::BigNumber(slice(n.data, n.data_end)),
            Kind::Integer => Frame::Integer(v.as_integer().unwrap_or_default()),
            Kind::Double => Frame::Double(v.as_double().unwrap_or_default()),
            Kind::Boolean => Frame::Boolean(v.as_bool().unwrap_or_default()),
            Kind::Null => Frame::Null,
            Kind::NullBulk => Frame::NullBulk,
            Kind::NullArray => Frame::NullArray,
            Kind::Verbatim => {
                let mut format = [0u8; 3];
                if let Some(f) = v.verbatim_format() {
                    format.copy_from_slice(f.get(..3).unwrap_or(b"txt"));
                }
                Frame::Verbatim {
                    format,
                    text: slice(n.data.saturating_add(4), n.data_end),
                }
            }
            kind => {
                let remaining = (n.len as usize).saturating_mul(kind.arity() as usize);
                if remaining > 0 {
                    stack.push(Building::Aggregate {
                        kind,
                        remaining,
                        items: Vec::with_capacity(remaining.min(1024)),
                    });
                    continue;
                }
                if kind == Kind::Attribute {
                    stack.push(Building::Target {
                        attributes: Vec::new(),
                    });
                    continue;
                }
                finish(kind, Vec::new())
            }
        };
        // Deliver `frame` upwards.
        loop {
            match stack.last_mut() {
                None => return frame,
                Some(Building::Target { attributes }) => {
                    let attributes = core::mem::take(attributes);
                    stack.pop();
                    frame = Frame::Attribute {
                        attributes,
                        value: Box::new(frame),
                    };
                }
                Some(Building::Aggregate {
                    kind,
                    remaining,
                    items,
                }) => {
                    items.push(frame);
                    *remaining -= 1;
                    if *remaining > 0 {
                        break;
                    }
                    let kind = *kind;
                    let items = core::mem::take(items);
                    stack.pop();
                    if kind == Kind::Attribute {
                        stack.push(Building::Target {
                            attributes: pairs(items),
                        });
                        break;
                    }
                    frame = finish(kind, items);
                }
            }
        }
    }
    // Unreachable for a decoded reply (its tape is complete).
    Frame::Null
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn decode_one(wire: &[u8]) -> Result<Option<Reply>, DecodeError> {
        let mut buf = BytesMut::from(wire);
        ReplyDecoder::default().decode(&mut buf)
    }

    fn frame(wire: &[u8]) -> Frame {
        let r = decode_one(wire).unwrap().unwrap();
        assert_eq!(r.raw().as_ref(), wire);
        r.to_frame()
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn nodes_stay_small() {
        assert!(core::mem::size_of::<Node>() <= 28);
    }

    #[test]
    fn every_resp2_and_resp3_type() {
        assert_eq!(frame(b"+OK\r\n"), Frame::SimpleString(b("OK")));
        assert_eq!(frame(b"-ERR bad\r\n"), Frame::SimpleError(b("ERR bad")));
        assert_eq!(frame(b":-42\r\n"), Frame::Integer(-42));
        assert_eq!(frame(b"$5\r\nhe\r\no\r\n"), Frame::BulkString(b("he\r\no")));
        assert_eq!(frame(b"$0\r\n\r\n"), Frame::BulkString(b("")));
        assert_eq!(frame(b"$-1\r\n"), Frame::NullBulk);
        assert_eq!(frame(b"*-1\r\n"), Frame::NullArray);
        assert_eq!(frame(b"_\r\n"), Frame::Null);
        assert_eq!(frame(b"*0\r\n"), Frame::Array(vec![]));
        assert_eq!(
            frame(b"*2\r\n:1\r\n*1\r\n+x\r\n"),
            Frame::Array(vec![
                Frame::Integer(1),
                Frame::Array(vec![Frame::SimpleString(b("x"))])
            ])
        );
        assert_eq!(
            frame(b"%2\r\n+a\r\n:1\r\n+a\r\n:2\r\n"),
            Frame::Map(vec![
                (Frame::SimpleString(b("a")), Frame::Integer(1)),
                (Frame::SimpleString(b("a")), Frame::Integer(2)),
            ])
        );
        assert_eq!(
            frame(b"~2\r\n+a\r\n+a\r\n"),
            Frame::Set(vec![
                Frame::SimpleString(b("a")),
                Frame::SimpleString(b("a"))
            ])
        );
        assert_eq!(
            frame(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"),
            Frame::Push(vec![
                Frame::BulkString(b("message")),
                Frame::BulkString(b("ch")),
                Frame::BulkString(b("x"))
            ])
        );
        assert_eq!(frame(b",1.5\r\n"), Frame::Double(1.5));
        assert_eq!(frame(b",-inf\r\n"), Frame::Double(f64::NEG_INFINITY));
        assert_eq!(frame(b",1e300\r\n"), Frame::Double(1e300));
        assert_eq!(frame(b"#t\r\n"), Frame::Boolean(true));
        assert_eq!(frame(b"#f\r\n"), Frame::Boolean(false));
        assert_eq!(
            frame(b"(-3492890328409238509324850943850943825024385\r\n"),
            Frame::BigNumber(b("-3492890328409238509324850943850943825024385"))
        );
        assert_eq!(
            frame(b"=15\r\ntxt:Some string\r\n"),
            Frame::Verbatim {
                format: *b"txt",
                text: b("Some string")
            }
        );
        assert_eq!(
            frame(b"=4\r\nmkd:\r\n"),
            Frame::Verbatim {
                format: *b"mkd",
                text: b("")
            }
        );
        assert_eq!(
            frame(b"!21\r\nSYNTAX invalid syntax\r\n"),
            Frame::BulkError(b("SYNTAX invalid syntax"))
        );
        assert_eq!(
            frame(b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n"),
            Frame::Attribute {
                attributes: vec![(
                    Frame::SimpleString(b("key-popularity")),
                    Frame::Map(vec![(Frame::BulkString(b("a")), Frame::Double(0.1923))])
                )],
                value: Box::new(Frame::Array(vec![Frame::Integer(2039123), Frame::Integer(9543892)]))
            }
        );
    }

    #[test]
    fn attributes_inside_aggregates_are_not_elements() {
        let wire = b"*3\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n|0\r\n|0\r\n#t\r\n";
        let r = decode_one(wire).unwrap().unwrap();
        let root = r.root();
        assert_eq!(root.kind(), Kind::Array);
        let els: Vec<_> = root.elements().collect();
        assert_eq!(els.len(), 3);
        assert_eq!(els[0].as_integer(), Some(1));
        assert_eq!(els[1].as_bytes(), Some(&b"v"[..]));
        assert_eq!(els[1].raw(), b"$1\r\nv\r\n");
        assert_eq!(
            els[1].raw_with_attributes(),
            b"|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n"
        );
        let attrs = els[1].attributes().unwrap();
        assert_eq!(attrs.kind(), Kind::Attribute);
        assert_eq!(attrs.get(1).unwrap().as_integer(), Some(3600));
        assert_eq!(els[2].as_bool(), Some(true));
        assert_eq!(els[2].raw_with_attributes(), b"|0\r\n|0\r\n#t\r\n");
        // Round trip through the owned frame.
        let mut out = BytesMut::new();
        r.to_frame().encode(&mut out);
        assert_eq!(&out[..], &wire[..]);
    }

    #[test]
    fn value_views() {
        let wire = b"*4\r\n$3\r\nfoo\r\n$-1\r\n*2\r\n:7\r\n-ERR x\r\n%1\r\n+k\r\n,2.5\r\n";
        let r = decode_one(wire).unwrap().unwrap();
        let root = r.root();
        assert_eq!(root.len(), 4);
        assert_eq!(r.node_count(), 9);
        let v: Vec<_> = root.elements().collect();
        assert_eq!(v[0].as_bytes(), Some(&b"foo"[..]));
        assert_eq!(v[0].raw(), b"$3\r\nfoo\r\n");
        assert_eq!(v[0].raw_bytes().as_ref(), b"$3\r\nfoo\r\n");
        assert!(v[1].is_null());
        assert_eq!(v[2].raw(), b"*2\r\n:7\r\n-ERR x\r\n");
        assert_eq!(v[2].get(0).unwrap().as_integer(), Some(7));
        assert!(v[2].get(1).unwrap().is_error());
        assert!(v[2].get(2).is_none());
        assert_eq!(v[3].len(), 1);
        assert_eq!(v[3].get(1).unwrap().as_double(), Some(2.5));
        assert!(!r.is_error() && !r.is_push());
    }

    #[test]
    fn every_split_point_and_pipelines() {
        let wire: &[u8] = b"+OK\r\n*3\r\n$3\r\nfoo\r\n$-1\r\n%1\r\n+k\r\n~1\r\n,1.5\r\n:12\r\n=8\r\ntxt:a\r\nb\r\n|1\r\n+a\r\n+b\r\n>2\r\n+m\r\n_\r\n!3\r\nERR\r\n(123\r\n#f\r\n";
        let mut whole = BytesMut::from(wire);
        let mut dec = ReplyDecoder::default();
        let mut expected = Vec::new();
        while let Some(r) = dec.decode(&mut whole).unwrap() {
            expected.push(r.to_frame());
        }
        assert_eq!(expected.len(), 8);
        for a in 0..=wire.len() {
            for c in a..=wire.len() {
                let mut dec = ReplyDecoder::default();
                let mut buf = BytesMut::new();
                let mut got = Vec::new();
                for chunk in [&wire[..a], &wire[a..c], &wire[c..]] {
                    buf.extend_from_slice(chunk);
                    while let Some(r) = dec.decode(&mut buf).unwrap() {
                        got.push(r.to_frame());
                    }
                }
                assert_eq!(got, expected, "split at {a}/{c}");
                assert!(buf.is_empty() && dec.is_idle());
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_is_linear() {
        // 200 000 elements fed one byte at a time; quadratic rescanning would take minutes.
        let mut wire = BytesMut::new();
        crate::write_array_header(&mut wire, 200_000);
        for i in 0..200_000 {
            crate::write_integer(&mut wire, i);
        }
        let mut dec = ReplyDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = None;
        for &byte in wire.iter() {
            buf.extend_from_slice(&[byte]);
            if let Some(r) = dec.decode(&mut buf).unwrap() {
                got = Some(r);
            }
        }
        let r = got.unwrap();
        assert_eq!(r.root().len(), 200_000);
        assert_eq!(r.root().get(199_999).unwrap().as_integer(), Some(199_999));
    }

    #[test]
    fn limits() {
        assert_eq!(
            decode_one(b"$536870912\r\n"),
            Err(DecodeError::InvalidBulkLength)
        );
        assert_eq!(
            decode_one(b"*2147483648\r\n"),
            Err(DecodeError::InvalidAggregateLength)
        );
        assert_eq!(
            decode_one(b"%1048577\r\n"),
            Err(DecodeError::InvalidAggregateLength)
        );
        // 10 000-deep nesting: refused at depth 65, without recursion.
        let deep = b"*1\r\n".repeat(10_000);
        assert_eq!(decode_one(&deep), Err(DecodeError::TooDeep));
        // Exactly max_depth levels are fine.
        let mut ok = b"*1\r\n".repeat(64);
        ok.extend_from_slice(b":1\r\n");
        assert!(decode_one(&ok).unwrap().is_some());
        let mut too_deep = b"*1\r\n".repeat(65);
        too_deep.extend_from_slice(b":1\r\n");
        assert_eq!(decode_one(&too_deep), Err(DecodeError::TooDeep));
        // Attributes count towards depth.
        let attrs = b"|1\r\n+a\r\n".repeat(100);
        assert_eq!(decode_one(&attrs), Err(DecodeError::TooDeep));
        let small = Limits {
            max_frame_elements: 3,
            max_bulk_len: 3,
            max_frame_len: 20,
            ..Limits::default()
        };
        let mut buf = BytesMut::from(&b"*3\r\n:1\r\n:2\r\n:3\r\n"[..]);
        assert_eq!(
            ReplyDecoder::new(small).decode(&mut buf),
            Err(DecodeError::TooManyElements)
        );
        let mut buf = BytesMut::from(&b"+abcd"[..]);
        assert_eq!(
            ReplyDecoder::new(small).decode(&mut buf),
            Err(DecodeError::LineTooLong)
        );
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nabc\r\n$3\r\n"[..]);
        assert_eq!(
            ReplyDecoder::new(small).decode(&mut buf),
            Err(DecodeError::FrameTooLarge)
        );
    }

    #[test]
    fn malformed_replies() {
        let cases: &[(&[u8], DecodeError)] = &[
            (b"x\r\n", DecodeError::UnknownType { got: b'x' }),
            (b"\r\n", DecodeError::UnknownType { got: b'\r' }),
            (b":1.5\r\n", DecodeError::InvalidInteger),
            (b":\r\n", DecodeError::InvalidInteger),
            (b"$-2\r\n", DecodeError::InvalidBulkLength),
            (b"$3\r\nabcd\r\n", DecodeError::ExpectedCrlf),
            (b"*-2\r\n", DecodeError::InvalidAggregateLength),
            (b"%-1\r\n", DecodeError::InvalidAggregateLength),
            (b"#x\r\n", DecodeError::InvalidBoolean),
            (b",abc\r\n", DecodeError::InvalidDouble),
            (b"(12a\r\n", DecodeError::InvalidBigNumber),
            (b"=3\r\ntxt\r\n", DecodeError::InvalidVerbatim),
            (b"=5\r\ntxt;a\r\n", DecodeError::InvalidVerbatim),
            (b"_x\r\n", DecodeError::InvalidNull),
            (b"$?\r\n", DecodeError::StreamedUnsupported),
            (b"*?\r\n", DecodeError::StreamedUnsupported),
            (b";4\r\n", DecodeError::StreamedUnsupported),
            (b"+a\rb\r\n", DecodeError::ExpectedCrlf),
            (b"+a\nb\r\n", DecodeError::ExpectedCrlf),
            (b"*1\r\n\r\n", DecodeError::UnknownType { got: b'\r' }),
        ];
        for (wire, err) in cases {
            assert_eq!(
                decode_one(wire).as_ref(),
                Err(err),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let wire = b"*2\r\n$3\r\nfoo\r\n%1\r\n+a\r\n";
        for i in 0..wire.len() {
            assert_eq!(decode_one(&wire[..i]), Ok(None), "prefix {i}");
        }
    }
}
