#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

#[test]
fn broker_messages_are_fanned_in_with_identifiers_that_never_collide() {
    let mut h = connected(Version::V5);
    h.send(&wire(subscribe(1, &["#"]), Version::V5));
    h.deliver();
    received(&mut h, Version::V5);
    // Both brokers use their identifier 101.
    h.fake("b1").deliver("a/b", QoS::AtLeastOnce, "one", false);
    h.fake("b2")
        .deliver("user1/x", QoS::AtLeastOnce, "two", false);
    h.fake("b2")
        .deliver("user1/y", QoS::AtMostOnce, "three", false);
    h.deliver();
    let got = received(&mut h, Version::V5);
    let ids: Vec<Option<u16>> = got
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.packet_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert_ne!(ids[0], ids[1], "distinct on the client connection");
    for id in ids.iter().take(2) {
        h.send(&wire(Packet::PubAck(Ack::new(id.unwrap())), Version::V5));
    }
    assert_eq!(h.fakes[&h.id("b1")].acks, [("PUBACK", 101)]);
    assert_eq!(h.fakes[&h.id("b2")].acks, [("PUBACK", 101)]);
    assert_eq!(h.s.protocol().server_flows(), 0);
}

#[test]
fn qos2_from_a_broker_completes_through_the_proxy() {
    let mut h = connected(Version::V311);
    h.fake("b2")
        .deliver("user1/x", QoS::ExactlyOnce, "m", false);
    h.deliver();
    let got = received(&mut h, Version::V311);
    let [Packet::Publish(p)] = got.as_slice() else {
        panic!("{got:?}")
    };
    let id = p.packet_id.unwrap();
    h.send(&wire(Packet::PubRec(Ack::new(id)), Version::V311));
    h.deliver();
    let got = received(&mut h, Version::V311);
    assert!(
        matches!(got.as_slice(), [Packet::PubRel(r)] if r.packet_id == id),
        "{got:?}"
    );
    h.send(&wire(Packet::PubComp(Ack::new(id)), Version::V311));
    assert_eq!(
        h.fakes[&h.id("b2")].acks,
        [("PUBREC", 101), ("PUBCOMP", 101)]
    );
}

#[test]
fn retained_messages_come_only_from_the_owning_broker() {
    let mut h = connected(Version::V311);
    h.fake("b1")
        .deliver("user1/x", QoS::AtMostOnce, "stale", true);
    h.fake("b2")
        .deliver("user1/x", QoS::AtMostOnce, "fresh", true);
    h.deliver();
    let got = received(&mut h, Version::V311);
    assert!(
        matches!(got.as_slice(), [Packet::Publish(p)] if &p.payload[..] == b"fresh"),
        "{got:?}"
    );
}
