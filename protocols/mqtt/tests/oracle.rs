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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn mutated_packets_decode_alike_or_differ_as_documented(
        v311 in mutated(Version::V311),
        v5 in mutated(Version::V5),
        raw in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        for (v, bytes) in [(Version::V311, &v311), (Version::V5, &v5), (Version::V311, &raw), (Version::V5, &raw)] {
            compare(v, bytes).map_err(TestCaseError::fail)?;
        }
    }
}
