#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::ReasonCode;

#[test]
fn filters_go_to_exactly_the_brokers_that_can_carry_a_match() {
    let mut h = connected(Version::V5);
    h.send(&wire(
        subscribe(
            5,
            &[
                "user1/#",
                "sensors/+",
                "$SYS/#",
                "a/#/b",
                "$share/g/user1/x",
            ],
        ),
        Version::V5,
    ));
    h.deliver();
    let subs = |h: &H, b: &str| -> Vec<String> {
        h.fakes[&h.id(b)]
            .subscribed
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    };
    assert_eq!(subs(&h, "b1"), ["sensors/+", "$SYS/#"]);
    assert_eq!(subs(&h, "b2"), ["user1/#", "sensors/+", "$share/g/user1/x"]);
    let got = received(&mut h, Version::V5);
    let [Packet::SubAck(a)] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(a.packet_id, 5);
    assert_eq!(
        a.reasons,
        [2, 2, 2, 0x8f, 2],
        "merged per filter; the invalid one refused by the proxy"
    );
}

#[test]
fn unsubscribe_is_merged_too() {
    let mut h = connected(Version::V311);
    h.send(&wire(subscribe(1, &["#"]), Version::V311));
    h.send(&wire(
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            properties: Default::default(),
            filters: vec![Bytes::from_static(b"#")],
        }),
        Version::V311,
    ));
    h.deliver();
    let got = received(&mut h, Version::V311);
    assert!(
        matches!(got.as_slice(), [Packet::SubAck(s), Packet::UnsubAck(u)] if s.reasons == [2] && u.packet_id == 2),
        "{got:?}"
    );
    for b in ["b1", "b2"] {
        assert_eq!(h.fakes[&h.id(b)].unsubscribed, [Bytes::from_static(b"#")]);
    }
}

#[test]
fn a_subscribe_reusing_an_identifier_in_flight_is_a_protocol_error() {
    let mut h = connected(Version::V5);
    h.send(&wire(subscribe(7, &["sensors/+"]), Version::V5));
    // Identifier 7 is still in flight (no broker answered yet).
    h.send(&wire(subscribe(7, &["user1/#"]), Version::V5));
    h.deliver();
    let got = received(&mut h, Version::V5);
    let Some(Packet::Disconnect(d)) = got.last() else {
        panic!("{got:?}")
    };
    assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR, "0x91 is no DISCONNECT reason code");
    assert!(h.closed);
}
