//! Subscriptions moved by a new routing table at the client's next packet.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

/// `user1` moves from b2 to a new broker b3; `alert` payloads stay on b2.
const MOVED: &str = "\
workload_type: mqtt
default_cluster: b1
local_cluster: b1
upstream_timeout_ms: 1000
routing_table:
  user1: {type: key, cluster: b3}
  alert: {type: value, cluster: b2}
";

fn names(v: &[Bytes]) -> Vec<String> {
    v.iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

#[test]
fn a_new_table_moves_subscriptions_at_the_next_client_packet() {
    let mut h = connected(Version::V5);
    h.send(&wire(subscribe(1, &["user1/#", "sensors/+"]), Version::V5));
    h.deliver();
    received(&mut h, Version::V5);
    let (b1, b2) = (h.id("b1"), h.id("b2"));
    assert_eq!(
        h.s.protocol().subscription_brokers(b"user1/#"),
        Some(&[b2][..])
    );
    assert_eq!(h.s.protocol().subscriptions(), 2);

    h.new_table(MOVED);
    assert!(
        !h.fakes.contains_key(&h.id("b3")),
        "nothing is sent before the client's next packet"
    );
    h.send(&wire(Packet::PingReq, Version::V5));
    h.deliver();
    let got = received(&mut h, Version::V5);
    assert_eq!(
        got,
        [Packet::PingResp],
        "the proxy's own SUBACK/UNSUBACK end at the proxy"
    );
    let b3 = h.id("b3");
    let f3 = &h.fakes[&b3];
    assert_eq!(f3.connects.len(), 1, "the new broker got the CONNECT first");
    assert_eq!(f3.connects[0].client_id, Bytes::from_static(b"c1"));
    assert_eq!(names(&f3.subscribed), ["user1/#"]);
    assert_eq!(names(&h.fakes[&b2].unsubscribed), ["user1/#"]);
    assert!(
        h.fakes[&b1].unsubscribed.is_empty(),
        "sensors/+ stays where it was"
    );
    assert_eq!(names(&h.fakes[&b1].subscribed), ["sensors/+"]);
    assert_eq!(
        h.s.protocol().subscription_brokers(b"user1/#"),
        Some(&[b3][..])
    );
    assert_eq!(h.s.protocol().client_flows(), 0);

    // Messages follow: a publish goes to b3 now, and b3's messages reach the client.
    h.send(&wire(
        publish("user1/cart", QoS::AtLeastOnce, Some(7), "new"),
        Version::V5,
    ));
    h.fake("b3")
        .deliver("user1/cart", QoS::AtLeastOnce, "new", false);
    h.deliver();
    assert_eq!(topics(&h.fakes[&b3]), ["user1/cart"]);
    let got = received(&mut h, Version::V5);
    assert!(
        got.iter()
            .any(|p| matches!(p, Packet::PubAck(a) if a.packet_id == 7)),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|p| matches!(p, Packet::Publish(m) if &m.payload[..] == b"new")),
        "{got:?}"
    );

    // Unsubscribed: nothing is moved for it by a later table.
    h.send(&wire(
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 9,
            properties: Default::default(),
            filters: vec![Bytes::from_static(b"user1/#")],
        }),
        Version::V5,
    ));
    h.deliver();
    received(&mut h, Version::V5);
    assert_eq!(h.s.protocol().subscriptions(), 1);
    h.new_table(TABLE);
    h.send(&wire(Packet::PingReq, Version::V5));
    h.deliver();
    assert_eq!(received(&mut h, Version::V5), [Packet::PingResp]);
    assert_eq!(
        names(&h.fakes[&b2].subscribed),
        ["user1/#", "sensors/+"],
        "nothing new on b2"
    );
}
