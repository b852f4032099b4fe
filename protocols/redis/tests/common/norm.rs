//! The comparable normal form of a RESP reply, for differential checks against the
//! `redis-protocol` crate (v6, an oracle only): `tests/oracle.rs` (proptest) and the fuzz target
//! `fuzz/fuzz_targets/redis_decode_reply.rs` both include this file (`#[path]`), so the two
//! compare by the same rules.
#![allow(dead_code)]

use std::collections::BTreeMap;

use geomesh_redis::Frame;
use redis_protocol::resp2::types::OwnedFrame as O2;
use redis_protocol::resp3::types::{OwnedFrame as O3, VerbatimStringFormat};

/// A comparable normal form: maps and sets sorted and de-duplicated (redis-protocol keeps them
/// in hash containers), attributes dropped, the three nulls merged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Norm {
    Str(&'static str, Vec<u8>),
    Int(i64),
    Double(u64),
    Bool(bool),
    Null,
    Seq(&'static str, Vec<Norm>),
    Map(Vec<(Norm, Norm)>),
    /// A map with a repeated key: which value a hash map keeps is not specified, so such
    /// values are not compared.
    Ambiguous,
}

impl Norm {
    pub fn ambiguous(&self) -> bool {
        match self {
            Norm::Ambiguous => true,
            Norm::Seq(_, v) => v.iter().any(Norm::ambiguous),
            Norm::Map(p) => p.iter().any(|(k, v)| k.ambiguous() || v.ambiguous()),
            _ => false,
        }
    }
}

fn set(items: Vec<Norm>) -> Norm {
    let mut v = items;
    v.sort();
    v.dedup();
    Norm::Seq("set", v)
}

fn map(pairs: Vec<(Norm, Norm)>) -> Norm {
    let n = pairs.len();
    let m: BTreeMap<Norm, Norm> = pairs.into_iter().collect();
    if m.len() != n {
        return Norm::Ambiguous;
    }
    Norm::Map(m.into_iter().collect())
}

/// 0.0 and -0.0 are one value, and every NaN is one value (`nan` carries no payload on the wire).
fn double(d: f64) -> Norm {
    Norm::Double(if d == 0.0 {
        0
    } else if d.is_nan() {
        u64::MAX
    } else {
        d.to_bits()
    })
}

pub fn ours(f: &Frame) -> Norm {
    match f {
        Frame::SimpleString(s) => Norm::Str("simple", s.to_vec()),
        Frame::SimpleError(s) => Norm::Str("error", s.to_vec()),
        Frame::BulkString(s) => Norm::Str("bulk", s.to_vec()),
        Frame::BulkError(s) => Norm::Str("bulkerror", s.to_vec()),
        Frame::BigNumber(s) => Norm::Str("big", s.to_vec()),
        Frame::Verbatim { format, text } => {
            let mut v = format.to_vec();
            v.extend_from_slice(text);
            Norm::Str("verbatim", v)
        }
        Frame::Integer(n) => Norm::Int(*n),
        Frame::Double(d) => double(*d),
        Frame::Boolean(b) => Norm::Bool(*b),
        Frame::Null | Frame::NullBulk | Frame::NullArray => Norm::Null,
        Frame::Array(v) => Norm::Seq("array", v.iter().map(ours).collect()),
        Frame::Push(v) => Norm::Seq("push", v.iter().map(ours).collect()),
        Frame::Set(v) => set(v.iter().map(ours).collect()),
        Frame::Map(p) => map(p.iter().map(|(k, v)| (ours(k), ours(v))).collect()),
        Frame::Attribute { value, .. } => ours(value),
    }
}

pub fn theirs3(f: &O3) -> Option<Norm> {
    Some(match f {
        O3::SimpleString { data, .. } => Norm::Str("simple", data.clone()),
        O3::SimpleError { data, .. } => Norm::Str("error", data.as_bytes().to_vec()),
        O3::BlobString { data, .. } => Norm::Str("bulk", data.clone()),
        O3::BlobError { data, .. } => Norm::Str("bulkerror", data.clone()),
        O3::BigNumber { data, .. } => Norm::Str("big", data.clone()),
        O3::VerbatimString { data, format, .. } => {
            let mut v = match format {
                VerbatimStringFormat::Text => b"txt".to_vec(),
                VerbatimStringFormat::Markdown => b"mkd".to_vec(),
            };
            v.extend_from_slice(data);
            Norm::Str("verbatim", v)
        }
        O3::Number { data, .. } => Norm::Int(*data),
        O3::Double { data, .. } => double(*data),
        O3::Boolean { data, .. } => Norm::Bool(*data),
        O3::Null => Norm::Null,
        O3::Array { data, .. } => {
            Norm::Seq("array", data.iter().map(theirs3).collect::<Option<_>>()?)
        }
        O3::Push { data, .. } => {
            Norm::Seq("push", data.iter().map(theirs3).collect::<Option<_>>()?)
        }
        O3::Set { data, .. } => set(data.iter().map(theirs3).collect::<Option<_>>()?),
        O3::Map { data, .. } => map(data
            .iter()
            .map(|(k, v)| Some((theirs3(k)?, theirs3(v)?)))
            .collect::<Option<_>>()?),
        // HELLO and streamed chunks: types we do not decode as replies.
        O3::Hello { .. } | O3::ChunkedString(_) => return None,
    })
}

pub fn theirs2(f: &O2) -> Norm {
    match f {
        O2::SimpleString(s) => Norm::Str("simple", s.clone()),
        O2::Error(s) => Norm::Str("error", s.as_bytes().to_vec()),
        O2::Integer(n) => Norm::Int(*n),
        O2::BulkString(s) => Norm::Str("bulk", s.clone()),
        O2::Array(v) => Norm::Seq("array", v.iter().map(theirs2).collect()),
        O2::Null => Norm::Null,
    }
}
