//! The codec on wasm32-unknown-unknown, where `usize` is 32 bits: the target the filter runs on
//! inside Envoy's V8 (scripts/test-wasm.sh). The crate's other tests run there too; these are
//! the lengths where 32 bits could make a difference.
#![cfg(target_arch = "wasm32")]

use geomesh_mqtt::*;
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn usize_is_32_bits_here() {
    assert_eq!(usize::BITS, 32);
}

#[test]
fn the_largest_remaining_lengths_are_awaited_or_refused_never_wrapped() {
    let unbounded = Limits { max_packet_size: u32::MAX, ..Limits::default() };
    // 268 435 455, MQTT's largest: awaited without a limit, refused by the default one.
    let largest = [0x30, 0xff, 0xff, 0xff, 0x7f];
    let mut d = Decoder::from_server(Version::V5, unbounded);
    assert_eq!(d.decode(&mut BytesMut::from(&largest[..])), Ok(None));
    let mut d = Decoder::from_server(Version::V5, Limits::default());
    let e = d.decode(&mut BytesMut::from(&largest[..])).unwrap_err();
    assert_eq!(e.reason(), ReasonCode::PACKET_TOO_LARGE);
    // 2 097 152, within the default: awaited.
    let mut d = Decoder::from_server(Version::V5, Limits::default());
    assert_eq!(d.decode(&mut BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..])), Ok(None));
    let mut d = Decoder::from_server(Version::V5, unbounded);
    let e = d.decode(&mut BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f][..])).unwrap_err();
    assert_eq!(e.message(), msg::VARINT_TOO_LONG);
}

#[test]
fn a_properties_length_past_the_packet_is_refused() {
    let limits = Limits { max_properties_len: u32::MAX, ..Limits::default() };
    let mut d = Decoder::from_server(Version::V5, limits);
    // PUBLISH "a", properties length 268 435 455 in a 9-byte body.
    let wire = [0x30, 0x08, 0x00, 0x01, b'a', 0xff, 0xff, 0xff, 0x7f, 0x00];
    let e = d.decode(&mut BytesMut::from(&wire[..])).unwrap_err();
    assert_eq!(e.message(), msg::TRUNCATED);
}

#[test]
fn a_packet_cut_at_every_byte_decodes_the_same() {
    let mut p = Publish::new("sensors/1/temp", QoS::ExactlyOnce, vec![7u8; 300]);
    p.packet_id = Some(65535);
    p.properties.user_properties = vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))];
    p.properties.message_expiry_interval = Some(u32::MAX);
    let wire = Packet::Publish(p.clone()).to_bytes(Version::V5).unwrap();
    for cut in 0..=wire.len() {
        let mut d = Decoder::from_server(Version::V5, Limits::default());
        let mut buf = BytesMut::from(&wire[..cut]);
        if cut < wire.len() {
            assert_eq!(d.decode(&mut buf).unwrap(), None);
            buf.extend_from_slice(&wire[cut..]);
        }
        let got = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(got.packet, Packet::Publish(p.clone()), "cut at {cut}");
    }
}
