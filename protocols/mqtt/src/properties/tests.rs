#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

const CONTEXTS: [Context; 11] = [
    Context::Connect,
    Context::ConnAck,
    Context::Publish,
    Context::Will,
    Context::Ack,
    Context::Subscribe,
    Context::SubAck,
    Context::Unsubscribe,
    Context::UnsubAck,
    Context::Disconnect,
    Context::Auth,
];

/// A valid value of each property, on the wire.
fn value(ident: u8) -> Vec<u8> {
    use id::*;
    match ident {
        PAYLOAD_FORMAT_INDICATOR | REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION | MAXIMUM_QOS
        | RETAIN_AVAILABLE | WILDCARD_SUBSCRIPTION_AVAILABLE | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => vec![1],
        MESSAGE_EXPIRY_INTERVAL | SESSION_EXPIRY_INTERVAL | WILL_DELAY_INTERVAL | MAXIMUM_PACKET_SIZE => vec![0, 0, 1, 0],
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => vec![0, 7],
        SUBSCRIPTION_IDENTIFIER => vec![0x80, 0x01],
        USER_PROPERTY => vec![0, 1, b'k', 0, 1, b'v'],
        _ => vec![0, 3, b'a', b'b', b'c'],
    }
}

const ALL: [u8; 27] = [
    0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C, 0x1F, 0x21,
    0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
];

fn section(props: &[(u8, Vec<u8>)]) -> Bytes {
    let mut body = Vec::new();
    for (ident, v) in props {
        body.push(*ident);
        body.extend_from_slice(v);
    }
    let mut out = BytesMut::new();
    put_varint(&mut out, body.len() as u32);
    out.extend_from_slice(&body);
    out.freeze()
}

fn decode(ctx: Context, wire: Bytes) -> Result<Properties, Error> {
    let mut r = Reader::new(wire);
    let p = Properties::decode(&mut r, ctx, &Limits::default())?;
    assert!(r.is_empty());
    Ok(p)
}

#[test]
fn every_property_is_allowed_exactly_where_the_table_says_and_round_trips() {
    // (property, contexts) from table 2-4 of MQTT 5.0.
    let mut allowed_somewhere = 0;
    for ident in ALL {
        for ctx in CONTEXTS {
            let got = decode(ctx, section(&[(ident, value(ident))]));
            let allowed = ctx.allowed() & (1 << ident) != 0;
            match got {
                Ok(p) => {
                    assert!(allowed, "0x{ident:02X} accepted in {ctx:?}");
                    allowed_somewhere += 1;
                    let mut out = BytesMut::new();
                    p.encode(&mut out).unwrap();
                    assert_eq!(out.len(), p.wire_len());
                    assert_eq!(&out[..], &section(&[(ident, value(ident))])[..], "0x{ident:02X} re-encodes the same");
                }
                Err(e) => {
                    assert!(!allowed, "0x{ident:02X} refused in {ctx:?}: {e}");
                    assert_eq!(e.message(), msg::UNKNOWN_PROPERTY);
                }
            }
        }
    }
    // Table 2-4 counted by hand, the four acknowledgements as one context: 58 (property,
    // context) pairs, 11 of them the user property.
    assert_eq!(allowed_somewhere, 58);
    assert_eq!(decode(Context::Publish, section(&[(0x00, vec![])])).unwrap_err().message(), msg::UNKNOWN_PROPERTY);
    assert_eq!(decode(Context::Publish, section(&[(0x80, vec![0x01])])).unwrap_err().message(), msg::UNKNOWN_PROPERTY);
}

#[test]
fn repeats_values_and_lengths() {
    let pub_ctx = Context::Publish;
    // Repeatable: user properties (order kept) and, in PUBLISH, subscription identifiers.
    let p = decode(
        pub_ctx,
        section(&[(0x26, vec![0, 1, b'b', 0, 0]), (0x26, vec![0, 1, b'a', 0, 0]), (0x0B, vec![5]), (0x0B, vec![6])]),
    )
    .unwrap();
    assert_eq!(p.user_properties.iter().map(|(k, _)| &k[..]).collect::<Vec<_>>(), [b"b", b"a"]);
    assert_eq!(p.subscription_identifiers, [5, 6]);
    let e = decode(Context::Subscribe, section(&[(0x0B, vec![5]), (0x0B, vec![6])])).unwrap_err();
    assert_eq!((e.reason(), e.message()), (ReasonCode::PROTOCOL_ERROR, msg::DUPLICATE_PROPERTY));
    assert_eq!(decode(pub_ctx, section(&[(0x0B, vec![0])])).unwrap_err().message(), msg::PROPERTY_VALUE);
    assert_eq!(decode(pub_ctx, section(&[(0x02, vec![0; 4]), (0x02, vec![0; 4])])).unwrap_err().message(), msg::DUPLICATE_PROPERTY);
    for (ident, bad) in [(0x21u8, vec![0, 0]), (0x27, vec![0, 0, 0, 0]), (0x24, vec![2]), (0x25, vec![2]), (0x17, vec![2])] {
        let ctx = if ident == 0x17 { Context::Connect } else { Context::ConnAck };
        let e = decode(ctx, section(&[(ident, bad)])).unwrap_err();
        assert_eq!((e.reason(), e.message()), (ReasonCode::PROTOCOL_ERROR, msg::PROPERTY_VALUE), "0x{ident:02X}");
    }
    // A property running past the section, a section running past the packet.
    assert_eq!(decode(pub_ctx, section(&[(0x02, vec![0, 0])])).unwrap_err().message(), msg::TRUNCATED);
    assert_eq!(decode(pub_ctx, Bytes::from_static(&[5, 0x01])).unwrap_err().message(), msg::TRUNCATED);
    assert_eq!(decode(pub_ctx, Bytes::from_static(&[0x80, 0x80, 0x80, 0x80])).unwrap_err().message(), msg::VARINT_TOO_LONG);
    let e = decode(pub_ctx, Bytes::from_static(&[0xff, 0xff, 0xff, 0x7f])).unwrap_err();
    assert_eq!((e.reason(), e.message()), (ReasonCode::PACKET_TOO_LARGE, msg::PROPERTIES_TOO_LONG));
    assert_eq!(decode(pub_ctx, section(&[(0x03, vec![0, 1, 0])])).unwrap_err().message(), msg::INVALID_UTF8);
    assert!(decode(pub_ctx, section(&[(0x09, vec![0, 1, 0])])).is_ok(), "binary data may hold anything");
    assert!(decode(pub_ctx, Bytes::from_static(&[0])).unwrap().is_empty());
}
