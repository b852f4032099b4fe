//! Differential tests against `mqttbytes-ng` (the maintained fork of `mqttbytes`, MQTT 3.1.1
//! and 5.0): what we encode, the oracle reads and writes back, and we read that to the same
//! packet; on arbitrary and mutated bytes, where both decoders accept, they read the same
//! packet, and where they disagree it is one of the documented differences (README.md,
//! "Codec choice").

mod common;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use common::*;
use geomesh_mqtt::*;
use proptest::prelude::*;

/// What the oracle's types cannot carry, brought to the form it gives back.
fn normalize(p: Packet) -> Packet {
    match p {
        Packet::Connect(mut c) => {
            // The oracle's Login drops an empty user name or password (and their flags).
            c.username = c.username.filter(|u| !u.is_empty());
            c.password = c.password.filter(|p| !p.is_empty());
            Packet::Connect(c)
        }
        other => other,
    }
}

/// Packets the oracle cannot read back, with the reason (README.md, "Codec choice").
fn oracle_gap(p: &Packet, v: Version) -> Option<&'static str> {
    match p {
        // MQTT 5.0 3.14.2.2.1: the property length may be left out when the remaining length
        // is below 2; the oracle reads it unconditionally.
        Packet::Disconnect(d) if v == Version::V5 && d.reason != ReasonCode::SUCCESS && d.properties.is_empty() => {
            Some("DISCONNECT with a reason code and no property length")
        }
        // The oracle's Login holds strings: a 5.0 password is binary data.
        Packet::Connect(c) if c.password.as_ref().is_some_and(|p| std::str::from_utf8(p).is_err()) => {
            Some("binary password")
        }
        // 3.1.1: the oracle drops an empty user name but keeps the password, which 3.1.1
        // forbids (3.1.2-22): we refuse what it writes.
        Packet::Connect(c)
            if v == Version::V311
                && c.username.as_ref().is_some_and(|u| u.is_empty())
                && c.password.as_ref().is_some_and(|p| !p.is_empty()) =>
        {
            Some("3.1.1 empty user name with a password")
        }
        _ => None,
    }
}

fn round_trip(v: Version, p: &Packet) -> Result<(), TestCaseError> {
    let wire = p.to_bytes(v).unwrap();
    if oracle_gap(p, v).is_some() {
        return Ok(());
    }
    let (back, used) = oracle_reencode(v, &wire).map_err(|e| TestCaseError::fail(format!("oracle refused {p:?}: {e}")))?;
    prop_assert_eq!(used, wire.len());
    let (got, n) = ours(v, &back).unwrap().unwrap();
    prop_assert_eq!(n, back.len());
    prop_assert_eq!(normalize(got), normalize(p.clone()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn connect_through_the_oracle(p3 in connect(Version::V311), p5 in connect(Version::V5)) {
        round_trip(Version::V311, &p3)?;
        round_trip(Version::V5, &p5)?;
    }

    #[test]
    fn v311_packets_through_the_oracle(p in prop_oneof![client_packet(Version::V311), server_packet(Version::V311)]) {
        round_trip(Version::V311, &p)?;
    }

    #[test]
    fn v5_packets_through_the_oracle(p in prop_oneof![client_packet(Version::V5), server_packet(Version::V5)]) {
        round_trip(Version::V5, &p)?;
    }
}

/// A valid packet's bytes with a few bytes overwritten, dropped or inserted.
fn mutated(v: Version) -> impl Strategy<Value = Vec<u8>> {
    let packet = prop_oneof![client_packet(v), server_packet(v), connect(v)];
    (packet, prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..4u8), 0..4)).prop_map(move |(p, edits)| {
        let mut w = p.to_bytes(v).unwrap().to_vec();
        for (at, byte, op) in edits {
            if w.is_empty() {
                break;
            }
            let i = at.index(w.len());
            match op {
                0 | 1 => w[i] = byte,
                2 => {
                    w.remove(i);
                }
                _ => w.insert(i, byte),
            }
        }
        w
    })
}

/// Where the two decoders may disagree, by our error message (we refuse, the oracle reads):
/// rules of the specification the oracle does not check (README.md, "Codec choice").
const STRICTER: &[&str] = &[
    msg::BAD_FIXED_HEADER_FLAGS,     // 2.1.3: reserved flags of every type but PUBLISH
    msg::CONNACK_RESERVED_FLAGS,     // 3.2.2.1
    msg::CONNECT_RESERVED_FLAG,      // 3.1.2.3
    msg::SUBSCRIBE_RESERVED_BITS,    // 3.8.3.1
    msg::INVALID_UTF8,               // 1.5.4: topics and strings the oracle keeps as bytes; U+0000
    msg::PROPERTY_VALUE,             // 0/1 flags, Receive Maximum 0, Maximum Packet Size 0...
    msg::DUPLICATE_PROPERTY,         // 2.2.2.2
    msg::UNKNOWN_PROPERTY,           // table 2-4: a property in a packet that does not take it
    msg::TRAILING_BYTES,             // bytes after the last field
    msg::NOT_EMPTY,                  // PINGREQ, PINGRESP, 3.1.1 DISCONNECT have no body
    msg::TRUNCATED,                  // 5.0 packets without their (mandatory) property length
    msg::WILDCARD_IN_TOPIC,          // 3.3.2.1
    msg::DUP_ON_QOS0,                // 3.3.1.1
    msg::PACKET_ID_ZERO,             // 2.2.1
    msg::PASSWORD_WITHOUT_USERNAME,  // 3.1.2-22 (3.1.1)
    msg::NO_FILTERS,                 // 3.8.3-2, 3.10.3-2: at least one topic filter
    msg::NO_LOCAL_ON_SHARED,         // 3.8.3.1: No Local on a shared subscription
    msg::RETAIN_HANDLING_3,          // 3.8.3.1
    msg::TOPIC_ALIAS_ZERO,           // 3.3.2.3.4
    msg::EMPTY_TOPIC,                // 3.3.2.1 (5.0: only with a Topic Alias)
    msg::BAD_WILL_FLAGS,             // 3.1.2-11, -13 (will QoS and retain without a will)
];

/// Where the two decoders may disagree, by the oracle's error (we read, it refuses), and the
/// packet type: what the oracle does not support.
const ORACLE_REFUSES: &[(&str, PacketType)] = &[
    ("TopicNotUtf8", PacketType::Connect),          // a 5.0 password is binary data, not a string
    ("InsufficientBytes", PacketType::Disconnect),  // 3.14.2.2.1: property length may be left out
    ("InvalidPacketType", PacketType::Auth),        // the oracle's reader has no AUTH
];

fn compare(v: Version, bytes: &[u8]) -> Result<(), TestCaseError> {
    let o = ours(v, bytes);
    let t = oracle_reencode(v, bytes);
    match (o, t) {
        (Ok(Some((p, n))), Ok((w, m))) => {
            prop_assert_eq!(n, m, "consumed");
            if oracle_gap(&p, v).is_some() {
                return Ok(());
            }
            let back = ours(v, &w);
            match back {
                Ok(Some((q, _))) => prop_assert_eq!(normalize(q), normalize(p)),
                other => prop_assert!(false, "oracle wrote {w:02x?} for {p:?}, we read {other:?}"),
            }
        }
        (Ok(None), Err(e)) if e.starts_with("InsufficientBytes") => {}
        (Err(_), Err(_)) => {}
        (Err(e), Ok(_)) => prop_assert!(STRICTER.contains(&e.message()), "DIFF stricter: {e} on {bytes:02x?}"),
        (Ok(Some((p, _))), Err(e)) => {
            let kind = e.split('(').next().unwrap_or_default();
            prop_assert!(ORACLE_REFUSES.contains(&(kind, p.packet_type())), "DIFF oracle refuses: {e} for {p:?}");
        }
        (o, t) => prop_assert!(false, "DIFF other: ours {o:?}, oracle {t:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn mutated_packets_decode_alike_or_differ_as_documented(
        v311 in mutated(Version::V311),
        v5 in mutated(Version::V5),
        raw in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        compare(Version::V311, &v311)?;
        compare(Version::V5, &v5)?;
        compare(Version::V311, &raw)?;
        compare(Version::V5, &raw)?;
    }
}
