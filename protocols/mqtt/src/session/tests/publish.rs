#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::reason::ReasonCode;

#[test]
fn publishes_follow_topic_and_payload_routes() {
    let mut h = connected(Version::V5);
    h.send(&wire(
        publish("sensors/1", QoS::AtMostOnce, None, "20C"),
        Version::V5,
    ));
    h.send(&wire(
        publish("sensors/1", QoS::AtMostOnce, None, "alert: 90C"),
        Version::V5,
    ));
    h.send(&wire(
        publish("user1/cart", QoS::AtMostOnce, None, "x"),
        Version::V5,
    ));
    h.deliver();
    assert_eq!(topics(&h.fakes[&h.id("b1")]), ["sensors/1"]);
    assert_eq!(topics(&h.fakes[&h.id("b2")]), ["sensors/1", "user1/cart"]);
    assert!(
        received(&mut h, Version::V5).is_empty(),
        "QoS 0: nothing comes back"
    );
}

#[test]
fn qos1_and_qos2_identifiers_are_remapped_both_ways() {
    let mut h = connected(Version::V311);
    // The client uses identifier 7 on both brokers' flows at once: the brokers see their own.
    h.send(&wire(
        publish("a/b", QoS::AtLeastOnce, Some(7), "x"),
        Version::V311,
    ));
    h.send(&wire(
        publish("user1/x", QoS::ExactlyOnce, Some(8), "y"),
        Version::V311,
    ));
    h.deliver();
    let got = received(&mut h, Version::V311);
    assert!(
        matches!(got.as_slice(), [Packet::PubAck(a), Packet::PubRec(r)] if a.packet_id == 7 && r.packet_id == 8),
        "{got:?}"
    );
    let b2 = h.id("b2");
    let broker_id = h.fakes[&b2].published[0].packet_id.unwrap();
    h.send(&wire(Packet::PubRel(Ack::new(8)), Version::V311));
    h.deliver();
    assert_eq!(
        h.fakes[&b2].pubrels,
        [broker_id],
        "PUBREL to the broker owning the flow, under its identifier"
    );
    let got = received(&mut h, Version::V311);
    assert!(
        matches!(got.as_slice(), [Packet::PubComp(c)] if c.packet_id == 8),
        "{got:?}"
    );
    assert_eq!(h.s.protocol().client_flows(), 0);
}

#[test]
fn a_dup_resend_goes_where_the_first_copy_went_and_is_answered_once() {
    let mut h = connected(Version::V5);
    h.fake("b1").silent = true;
    h.send(&wire(
        publish("a/b", QoS::AtLeastOnce, Some(3), "x"),
        Version::V5,
    ));
    let Packet::Publish(mut p) = publish("a/b", QoS::AtLeastOnce, Some(3), "x") else {
        unreachable!()
    };
    p.dup = true;
    h.send(&wire(Packet::Publish(p), Version::V5));
    h.fake("b1").silent = false;
    h.deliver();
    assert!(received(&mut h, Version::V5).is_empty());
    assert_eq!(
        h.s.protocol().client_flows(),
        1,
        "still waiting for the broker"
    );
}

#[test]
fn topic_aliases_are_resolved_and_never_forwarded() {
    let mut h = connected(Version::V5);
    let Packet::Publish(mut p) = publish("user1/temp", QoS::AtLeastOnce, Some(1), "a") else {
        unreachable!()
    };
    p.properties.topic_alias = Some(3);
    h.send(&wire(Packet::Publish(p), Version::V5));
    let Packet::Publish(mut p) = publish("", QoS::AtLeastOnce, Some(2), "b") else {
        unreachable!()
    };
    p.properties.topic_alias = Some(3);
    h.send(&wire(Packet::Publish(p), Version::V5));
    h.deliver();
    let b2 = &h.fakes[&h.id("b2")];
    assert_eq!(
        topics(b2),
        ["user1/temp", "user1/temp"],
        "routed by the resolved topic"
    );
    assert!(b2
        .published
        .iter()
        .all(|p| p.properties.topic_alias.is_none()));
    let got = received(&mut h, Version::V5);
    assert_eq!(got.len(), 2);
    // An alias over the maximum ends the connection with 0x94.
    let Packet::Publish(mut p) = publish("x", QoS::AtMostOnce, None, "b") else {
        unreachable!()
    };
    p.properties.topic_alias = Some(65);
    h.send(&wire(Packet::Publish(p), Version::V5));
    let got = received(&mut h, Version::V5);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::TOPIC_ALIAS_INVALID),
        "{got:?}"
    );
    assert!(h.closed);
}

#[test]
fn a_retained_message_clears_the_other_candidates() {
    let mut h = connected(Version::V311);
    let Packet::Publish(mut p) = publish("sensors/1", QoS::AtMostOnce, None, "20C") else {
        unreachable!()
    };
    p.retain = true;
    h.send(&wire(Packet::Publish(p), Version::V311));
    h.deliver();
    let b1 = &h.fakes[&h.id("b1")].published;
    let b2 = &h.fakes[&h.id("b2")].published;
    assert_eq!((b1.len(), &b1[0].payload[..]), (1, &b"20C"[..]));
    assert!(
        b2.len() == 1 && b2[0].retain && b2[0].payload.is_empty(),
        "an alert payload could have put one on b2"
    );
}
