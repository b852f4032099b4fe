//! SASL PLAIN replayed per shard: sent to every shard at once, replayed at the head of a link
//! opened later, refused mechanisms answered by the proxy, a broker's refusal the client's.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use geomesh_core::UpstreamFailureKind;

use super::*;
use crate::codes::{SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM};
use crate::messages::sasl::error_code;

fn handshake(mechanism: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(false, mechanism.as_bytes());
    request(api::SASL_HANDSHAKE, 1, 1, &w.buf)
}

fn authenticate(token: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.nullable_bytes(true, Some(token));
    w.tagged_fields(true, &[]);
    request(api::SASL_AUTHENTICATE, 2, 2, &w.buf)
}

fn keys(h: &mut Harness<KafkaSession, Broker>, c: &str) -> Vec<i16> {
    h.fake(c).seen.iter().map(|r| r.spec.key).collect()
}

#[test]
fn plain_goes_to_every_shard_and_is_replayed_first_on_a_link_opened_later() {
    let mut h = harness();
    h.send(&handshake("PLAIN"));
    h.deliver();
    let (_, mut r) = answer(&mut h, api::SASL_HANDSHAKE, 1);
    assert_eq!(error_code(&mut r).unwrap(), NONE);
    h.send(&authenticate(b"\0alice\0secret"));
    h.deliver();
    let (_, mut r) = answer(&mut h, api::SASL_AUTHENTICATE, 2);
    assert_eq!(error_code(&mut r).unwrap(), NONE);
    for c in ["a", "b"] {
        assert_eq!(
            keys(&mut h, c),
            vec![api::SASL_HANDSHAKE, api::SASL_AUTHENTICATE],
            "{c}"
        );
    }

    // Shard b's connection goes away; the next Produce for b reopens it behind the replay.
    h.close_upstream("b", UpstreamFailureKind::Refused, "gone");
    h.fake("b").seen.clear();
    let req = super::produce::produce(1, &[("b1", 0, batch(&["x"], -1, -1, -1))]);
    h.send(&request(api::PRODUCE, 9, 3, &req.encode(9)));
    h.deliver();
    assert_eq!(
        keys(&mut h, "b"),
        vec![api::SASL_HANDSHAKE, api::SASL_AUTHENTICATE, api::PRODUCE]
    );
    let (cid, _) = answer(&mut h, api::PRODUCE, 9);
    assert_eq!(cid, 3, "the replayed answers are not the client's");
    assert!(!h.closed);
}

#[test]
fn a_mechanism_that_cannot_be_replayed_is_refused_by_the_proxy_and_a_brokers_refusal_reaches_the_client(
) {
    let mut h = harness();
    h.send(&handshake("SCRAM-SHA-256"));
    let (_, mut r) = answer(&mut h, api::SASL_HANDSHAKE, 1);
    assert_eq!(error_code(&mut r).unwrap(), UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(r.array_len(false, 1, "mechanisms").unwrap(), 1);
    assert_eq!(&r.string(false, "m").unwrap()[..], b"PLAIN");
    assert!(h.fakes.values().all(|f| f.seen.is_empty()), "nothing sent");

    h.send(&handshake("PLAIN"));
    h.deliver();
    let _ = answer(&mut h, api::SASL_HANDSHAKE, 1);
    h.send(&authenticate(b"\0alice\0wrong"));
    h.deliver();
    let (_, mut r) = answer(&mut h, api::SASL_AUTHENTICATE, 2);
    assert_eq!(error_code(&mut r).unwrap(), SASL_AUTHENTICATION_FAILED);
    assert_eq!(
        r.nullable_string(true, "message").unwrap().as_deref(),
        Some(&b"bad password"[..])
    );
}
