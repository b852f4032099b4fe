//! proptest strategies shared by the integration tests.
#![allow(dead_code)]

use geomesh_redis::{Bytes, Frame};
use proptest::prelude::*;

pub fn line_text() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..24,
    )
    .prop_map(Bytes::from)
}

pub fn blob() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        // Bytes that look like RESP inside a payload.
        Just(b"\r\n*1\r\n$-1\r\n".to_vec()),
    ]
    .prop_map(Bytes::from)
}

pub fn big_number() -> impl Strategy<Value = Bytes> {
    "[+-]?[0-9]{1,45}".prop_map(Bytes::from)
}

pub fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("NaN never equals itself", |d| !d.is_nan()),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        (-1000i32..1000).prop_map(|i| f64::from(i) / 8.0),
    ]
}

/// Leaves of every kind.
pub fn leaf(resp3: bool) -> BoxedStrategy<Frame> {
    let resp2 = prop_oneof![
        line_text().prop_map(Frame::SimpleString),
        line_text().prop_map(Frame::SimpleError),
        any::<i64>().prop_map(Frame::Integer),
        blob().prop_map(Frame::BulkString),
        Just(Frame::NullBulk),
        Just(Frame::NullArray),
    ];
    if !resp3 {
        return resp2.boxed();
    }
    prop_oneof![
        4 => resp2,
        1 => Just(Frame::Null),
        1 => double().prop_map(Frame::Double),
        1 => any::<bool>().prop_map(Frame::Boolean),
        1 => big_number().prop_map(Frame::BigNumber),
        1 => (prop_oneof![Just(*b"txt"), Just(*b"mkd"), any::<[u8; 3]>()], blob())
            .prop_map(|(format, text)| Frame::Verbatim { format, text }),
        1 => blob().prop_map(Frame::BulkError),
    ]
    .boxed()
}

/// Any frame, nested up to `depth` levels. `resp3 = false`: RESP2 types only.
/// `attributes = false`: no RESP3 attributes.
pub fn frame(resp3: bool, attributes: bool, depth: u32) -> BoxedStrategy<Frame> {
    leaf(resp3)
        .prop_recursive(depth, 64, 6, move |inner| {
            let vec = proptest::collection::vec(inner.clone(), 0..6);
            let pairs = proptest::collection::vec((inner.clone(), inner.clone()), 0..4);
            if !resp3 {
                return vec.prop_map(Frame::Array).boxed();
            }
            let mut options = vec![
                vec.clone().prop_map(Frame::Array).boxed(),
                vec.clone().prop_map(Frame::Set).boxed(),
                vec.prop_map(Frame::Push).boxed(),
                pairs.clone().prop_map(Frame::Map).boxed(),
            ];
            if attributes {
                options.push(
                    (pairs, inner)
                        .prop_map(|(attributes, value)| Frame::Attribute {
                            attributes,
                            value: Box::new(value),
                        })
                        .boxed(),
                );
            }
            proptest::strategy::Union::new(options).boxed()
        })
        .boxed()
}

/// Arguments of a command: a name and up to 12 binary arguments.
pub fn command_args() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (
        "[A-Za-z]{1,12}",
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..12),
    )
        .prop_map(|(name, rest)| {
            let mut v = vec![name.into_bytes()];
            v.extend(rest);
            v
        })
}

/// Cut points (sorted, within `len`) for feeding a buffer in pieces.
pub fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut c: Vec<usize> = raw.iter().map(|r| r % (len + 1)).collect();
    c.sort_unstable();
    c.push(len);
    c
}
