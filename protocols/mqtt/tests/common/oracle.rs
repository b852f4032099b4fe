//! The differential oracle: `mqttbytes-ng` (the maintained fork of `mqttbytes`, MQTT 3.1.1
//! and 5.0) against our decoder, and the documented places where they may differ. Shared by
//! the property tests (`tests/oracle.rs`) and the fuzz target `mqtt_decode_diff`
//! (`#[path]`-included: only `geomesh_mqtt` and `mqttbytes_ng` are used).
#![allow(dead_code)]

use geomesh_mqtt::*;

/// The oracle reads up to MQTT's own bound (ours stops at Limits::max_packet_size).
pub const ORACLE_MAX: usize = 268_435_455;

/// Decodes `wire` with the oracle for `version` and writes what it read back. `Err` holds the
/// oracle's error (its `Debug` form).
pub fn oracle_reencode(version: Version, wire: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut src = BytesMut::from(wire);
    let mut out = BytesMut::new();
    match version {
        Version::V311 => {
            let p = mqttbytes_ng::v4::Packet::read(&mut src, ORACLE_MAX).map_err(|e| format!("{e:?}"))?;
            p.write(&mut out, ORACLE_MAX).map_err(|e| format!("write {e:?}"))?;
        }
        Version::V5 => {
            let p = mqttbytes_ng::v5::Packet::read(&mut src, Some(ORACLE_MAX as u32)).map_err(|e| format!("{e:?}"))?;
            p.write(&mut out, Some(ORACLE_MAX as u32)).map_err(|e| format!("write {e:?}"))?;
        }
    }
    Ok((out.to_vec(), wire.len() - src.len()))
}

/// A decoder for the direction that sends `kind`, in `version` (a server's for the types that
/// go both ways: a PUBLISH from a server may carry subscription identifiers).
pub fn decoder_for(kind: PacketType, version: Version) -> Decoder {
    use PacketType::*;
    match kind {
        ConnAck | SubAck | UnsubAck | PingResp | Publish | PubAck | PubRec | PubRel | PubComp => {
            Decoder::from_server(version, Limits::default())
        }
        Disconnect | Auth if version == Version::V5 => Decoder::from_server(version, Limits::default()),
        _ => Decoder::from_client_connected(version, Limits::default()),
    }
}

/// Our decode of one packet, for the direction its type (first byte) is sent in.
pub fn ours(version: Version, wire: &[u8]) -> Result<Option<(Packet, usize)>, Error> {
    let Some(&first) = wire.first() else { return Ok(None) };
    let mut dec = match PacketType::from_byte(first) {
        Ok(PacketType::Connect) => Decoder::from_client(Limits::default()),
        Ok(kind) => decoder_for(kind, version),
        Err(e) => return Err(e),
    };
    let mut buf = BytesMut::from(wire);
    Ok(dec.decode(&mut buf)?.map(|d| (d.packet, wire.len() - buf.len())))
}

/// What the oracle's types cannot carry, brought to the form it gives back.
pub fn normalize(p: Packet) -> Packet {
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
pub fn oracle_gap(p: &Packet, v: Version) -> Option<&'static str> {
    match p {
        // MQTT 5.0 3.14.2.2.1: the property length may be left out when the remaining length
        // is below 2; the oracle reads it unconditionally.
        Packet::Disconnect(d) if v == Version::V5 && d.reason != ReasonCode::SUCCESS && d.properties.is_empty() => {
            Some("DISCONNECT with a reason code and no property length")
        }
        // The oracle's reader counts the identifier byte of each Subscription Identifier twice
        // (`cursor += 1 + id_len` after the identifier's own byte): it stops short of the
        // properties length and takes the rest for payload.
        Packet::Publish(p) if !p.properties.subscription_identifiers.is_empty() => Some("subscription identifiers in PUBLISH"),
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

/// Where the two decoders may disagree, by our error message (we refuse, the oracle reads):
/// rules of the specification the oracle does not check (README.md, "Codec choice").
pub const STRICTER: &[&str] = &[
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
pub const ORACLE_REFUSES: &[(&str, PacketType)] = &[
    ("TopicNotUtf8", PacketType::Connect),          // a 5.0 password is binary data, not a string
    ("InsufficientBytes", PacketType::Disconnect),  // 3.14.2.2.1: property length may be left out
    ("InvalidPacketType", PacketType::Auth),        // the oracle's reader has no AUTH
];

/// Decodes `bytes` (one packet, in `v`) with both decoders: `Ok` when they agree, or differ
/// only as documented; `Err` says how they differ otherwise.
pub fn compare(v: Version, bytes: &[u8]) -> Result<(), String> {
    let o = ours(v, bytes);
    // A CONNECT carries its own version: the oracle of that version reads it.
    let v = match &o {
        Ok(Some((Packet::Connect(c), _))) => c.version,
        _ => v,
    };
    let t = oracle_reencode(v, bytes);
    match (o, t) {
        (Ok(Some((p, n))), Ok((w, m))) => {
            if n != m {
                return Err(format!("consumed {n} vs {m} of {bytes:02x?}"));
            }
            if oracle_gap(&p, v).is_some() {
                return Ok(());
            }
            match ours(v, &w) {
                Ok(Some((q, _))) if normalize(q.clone()) == normalize(p.clone()) => Ok(()),
                other => Err(format!("oracle read {bytes:02x?} as {p:?} and wrote {w:02x?}, which we read as {other:?}")),
            }
        }
        (Ok(None), Err(e)) if e.starts_with("InsufficientBytes") => Ok(()),
        (Err(_), Err(_)) => Ok(()),
        (Err(e), Ok(_)) if STRICTER.contains(&e.message()) => Ok(()),
        // The oracle's Subscription Identifier miscount (see `oracle_gap`) moves its cursor past
        // a malformed identifier we refuse: a 5.0 PUBLISH carrying the property's identifier.
        (Err(e), Ok(_))
            if v == Version::V5
                && e.message() == msg::VARINT_TOO_LONG
                && bytes.first().is_some_and(|b| b >> 4 == 3)
                && bytes.contains(&0x0b) =>
        {
            Ok(())
        }
        (Err(e), Ok(_)) => Err(format!("we refuse what the oracle reads: {e} on {bytes:02x?}")),
        (Ok(Some((p, _))), Err(e)) => {
            let kind = e.split('(').next().unwrap_or_default();
            if ORACLE_REFUSES.contains(&(kind, p.packet_type())) {
                Ok(())
            } else {
                Err(format!("the oracle refuses what we read: {e} for {p:?} from {bytes:02x?}"))
            }
        }
        (o, t) => Err(format!("ours {o:?}, oracle {t:?} on {bytes:02x?}")),
    }
}
