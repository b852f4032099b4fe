//! MQTT packets from either side of a connection: the decoder must never panic, must give the
//! same packets (and the same error) however the bytes are cut, every packet must be the exact
//! bytes it arrived in, re-encode to bytes that decode to the same packet, take a new packet
//! identifier without re-encoding, and every error must have an answer that encodes.
//!
//! Input: byte 0 picks the direction and version (bits 0-1: client before CONNECT, client
//! 3.1.1, client 5.0, server) and the chunk size (bits 2-7); the rest is the byte stream.
#![no_main]

use geomesh_mqtt::{BytesMut, Decoded, Decoder, Error, Limits, Packet, Version};
use libfuzzer_sys::fuzz_target;

/// Small limits so the fuzzer reaches them.
fn limits() -> Limits {
    Limits { max_packet_size: 4096, max_topic_len: 64, max_properties_len: 512, max_user_properties: 4, max_topic_filters: 4 }
}

fn decoder(mode: u8) -> Decoder {
    match mode & 3 {
        0 => Decoder::from_client(limits()),
        1 => Decoder::from_client_connected(Version::V311, limits()),
        2 => Decoder::from_client_connected(Version::V5, limits()),
        _ => Decoder::from_server(if mode & 4 == 0 { Version::V311 } else { Version::V5 }, limits()),
    }
}

fn decode(mode: u8, input: &[u8], chunk: usize) -> (Vec<Decoded>, Option<Error>, Option<Version>) {
    let mut dec = decoder(mode);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(d)) => out.push(d),
                Ok(None) => break,
                Err(e) => return (out, Some(e), dec.version()),
            }
        }
    }
    (out, None, dec.version())
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let (whole, err, version) = decode(ctl, input, input.len());
    let (cut, cut_err, _) = decode(ctl, input, usize::from(ctl >> 2) + 1);
    assert_eq!(whole, cut, "packets differ when cut in chunks of {}", (ctl >> 2) + 1);
    assert_eq!(err, cut_err);

    let mut offset = 0;
    for d in &whole {
        assert_eq!(&input[offset..offset + d.raw().len()], &d.raw()[..], "raw bytes are the input's");
        offset += d.raw().len();
        let v = match &d.packet {
            Packet::Connect(c) => c.version,
            _ => version.unwrap_or(Version::V5),
        };
        // Re-encoded, it decodes to the same packet.
        let bytes = d.packet.to_bytes(v).expect("a decoded packet encodes");
        assert_eq!(d.packet.encoded_len(v).ok(), Some(bytes.len()));
        let mut again = decoder_like(ctl, v, &d.packet);
        let back = again.decode(&mut BytesMut::from(&bytes[..])).expect("re-encoded packet decodes").expect("whole");
        assert_eq!(back.packet, d.packet);
        // A new packet identifier, patched in place.
        let mut patched = BytesMut::new();
        if d.write_with_packet_id(0xA55A, &mut patched) {
            let mut again = decoder_like(ctl, v, &d.packet);
            let p = again.decode(&mut patched).expect("patched packet decodes").expect("whole");
            assert_eq!(p.packet.packet_id(), Some(0xA55A));
        }
    }
    if let Some(e) = err {
        for (v, connected) in [(None, false), (Some(Version::V311), true), (Some(Version::V5), false), (Some(Version::V5), true)] {
            if let Some(reply) = e.reply(v, connected) {
                reply.to_bytes(v.unwrap_or(Version::V311)).expect("an error's answer encodes");
            }
        }
    }
});

/// A decoder in the state where `p` (in `v`) is the next packet.
fn decoder_like(mode: u8, v: Version, p: &Packet) -> Decoder {
    match (mode & 3, p) {
        (0 | 1 | 2, Packet::Connect(_)) => Decoder::from_client(limits()),
        (0 | 1 | 2, _) => Decoder::from_client_connected(v, limits()),
        _ => Decoder::from_server(v, limits()),
    }
}
