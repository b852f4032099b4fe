//! The client's Receive Maximum over all brokers together (`crate::flow` in the session:
//! shares in the replayed CONNECTs, the proxy's window, held PUBLISHes), and a client over the
//! Receive Maximum it was given.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::ReasonCode;

/// A 5.0 session whose client accepts `receive_maximum` unacknowledged QoS 1/2 PUBLISHes.
fn connected_with(receive_maximum: u16, table: Option<&str>) -> H {
    let t = testkit::table(table.unwrap_or(TABLE));
    let settings = Settings {
        max_held_publishes: 4,
        ..Settings::default()
    };
    let mut h = Harness::start(session(t.clone(), 1000, &settings), t);
    let mut c = Connect::new(Version::V5, "c1");
    c.keep_alive = 60;
    c.properties.receive_maximum = Some(receive_maximum);
    h.send(&wire(Packet::Connect(Box::new(c)), Version::V5));
    h.deliver();
    let got = received(&mut h, Version::V5);
    assert!(
        matches!(got.as_slice(), [Packet::ConnAck(a)] if a.code == 0),
        "{got:?}"
    );
    h
}

fn publish_ids(got: &[Packet]) -> Vec<u16> {
    got.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => p.packet_id,
            _ => None,
        })
        .collect()
}

#[test]
fn each_broker_gets_a_share_and_the_proxy_holds_what_overshoots_them() {
    let mut h = connected_with(4, None);
    for b in ["b1", "b2"] {
        assert_eq!(
            h.fakes[&h.id(b)].connects[0].properties.receive_maximum,
            Some(2),
            "{b}"
        );
    }
    for _ in 0..2 {
        h.fake("b1").deliver("a/x", QoS::AtLeastOnce, "m", false);
        h.fake("b2")
            .deliver("user1/x", QoS::ExactlyOnce, "m", false);
    }
    h.deliver();
    let ids = publish_ids(&received(&mut h, Version::V5));
    assert_eq!(ids.len(), 4);
    assert_eq!(h.s.protocol().window(), (4, 0));
    // b1 overshoots its share (mosquitto does, by a few): held by the proxy, in order.
    for i in 0..4 {
        h.fake("b1")
            .deliver("a/held", QoS::AtLeastOnce, &format!("held {i}"), false);
    }
    h.deliver();
    assert!(
        received(&mut h, Version::V5).is_empty(),
        "the client's 4 are in flight"
    );
    assert_eq!(h.s.protocol().window(), (4, 4));
    h.send(&wire(Packet::PubAck(Ack::new(ids[0])), Version::V5));
    h.deliver();
    let got = received(&mut h, Version::V5);
    let [Packet::Publish(p)] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(&p.payload[..], b"held 0", "one out for one acknowledged");
    assert_eq!(h.s.protocol().window(), (4, 3));
    // Past `max_held_publishes` (4 here) the broker is not honouring its share: disconnected.
    for _ in 0..2 {
        h.fake("b2")
            .deliver("user1/y", QoS::AtLeastOnce, "over", false);
    }
    h.deliver();
    let got = received(&mut h, Version::V5);
    let [Packet::Disconnect(d)] = got.as_slice() else {
        panic!("{got:?}")
    };
    let text = String::from_utf8_lossy(d.properties.reason_string.as_deref().unwrap_or_default())
        .into_owned();
    assert!(
        text.contains("b2") && text.contains(crate::flow::BROKER_OVER_SHARE),
        "{text}"
    );
    assert!(h.closed);
}

#[test]
fn a_broker_reached_later_gets_a_share_and_the_proxy_holds_what_exceeds() {
    const WITH_B3: &str = "workload_type: mqtt\ndefault_cluster: b1\nlocal_cluster: b1\nupstream_timeout_ms: 1000\nrouting_table:\n  user1: {type: key, cluster: b2}\n  late: {type: key, cluster: b3}\n";
    let t = "workload_type: mqtt\ndefault_cluster: b1\nlocal_cluster: b1\nupstream_timeout_ms: 1000\nrouting_table:\n  user1: {type: key, cluster: b2}\n";
    let mut h = connected_with(2, Some(t));
    h.new_table(WITH_B3);
    h.send(&wire(subscribe(1, &["late/#"]), Version::V5));
    h.deliver();
    received(&mut h, Version::V5);
    let b3 = &h.fakes[&h.id("b3")];
    assert_eq!(
        b3.connects[0].properties.receive_maximum,
        Some(1),
        "the smallest share"
    );
    assert_eq!(b3.subscribed, [Bytes::from_static(b"late/#")]);
    // Three brokers with a share of 1 each, a client taking 2: the third PUBLISH waits.
    h.fake("b1").deliver("a/x", QoS::AtLeastOnce, "one", false);
    h.deliver();
    h.fake("b3")
        .deliver("late/x", QoS::ExactlyOnce, "two", false);
    h.deliver();
    h.fake("b2")
        .deliver("user1/x", QoS::AtLeastOnce, "three", false);
    h.deliver();
    let ids = publish_ids(&received(&mut h, Version::V5));
    assert_eq!(ids.len(), 2, "never more than the client's Receive Maximum");
    assert_eq!(h.s.protocol().window(), (2, 1));
    // QoS 2: PUBREC keeps the slot; PUBCOMP frees it and the held one goes out.
    h.send(&wire(Packet::PubRec(Ack::new(ids[1])), Version::V5));
    h.deliver();
    assert!(matches!(
        received(&mut h, Version::V5).as_slice(),
        [Packet::PubRel(_)]
    ));
    assert_eq!(h.s.protocol().window(), (2, 1));
    h.send(&wire(Packet::PubComp(Ack::new(ids[1])), Version::V5));
    h.deliver();
    let got = received(&mut h, Version::V5);
    let [Packet::Publish(p)] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(&p.payload[..], b"three");
    assert_eq!(h.s.protocol().window(), (2, 0));
    assert_eq!(
        h.fakes[&h.id("b3")].acks,
        [("PUBREC", 101), ("PUBCOMP", 101)]
    );
    let third = p.packet_id.unwrap();
    for id in [ids[0], third] {
        h.send(&wire(Packet::PubAck(Ack::new(id)), Version::V5));
    }
    assert_eq!(h.s.protocol().window(), (0, 0));
    assert_eq!(h.fakes[&h.id("b2")].acks, [("PUBACK", 101)]);
    assert_eq!(h.s.protocol().server_flows(), 0);
}

#[test]
fn a_client_over_the_receive_maximum_it_was_given_is_disconnected() {
    // The scripted brokers answer Receive Maximum 100: the merged CONNACK says 100.
    let mut h = connected_with(10, None);
    let mut bytes = Vec::new();
    for id in 1..=101u16 {
        bytes.extend(wire(
            publish("a/x", QoS::AtLeastOnce, Some(id), "m"),
            Version::V5,
        ));
    }
    h.send(&bytes);
    h.deliver();
    let got = received(&mut h, Version::V5);
    assert_eq!(got.len(), 101, "100 PUBACKs, then the DISCONNECT");
    assert!(got[..100].iter().all(|p| matches!(p, Packet::PubAck(_))));
    let Packet::Disconnect(d) = &got[100] else {
        panic!("{:?}", got[100])
    };
    assert_eq!(d.reason, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    assert_eq!(
        h.fakes[&h.id("b1")].published.len(),
        100,
        "the 101st never reached a broker"
    );
    assert!(h.closed);
}

#[test]
fn a_client_within_the_receive_maximum_goes_on_for_ever() {
    let mut h = connected_with(10, None);
    for round in 0..5u16 {
        let mut bytes = Vec::new();
        for i in 1..=100u16 {
            bytes.extend(wire(
                publish("a/x", QoS::AtLeastOnce, Some(round * 100 + i), "m"),
                Version::V5,
            ));
        }
        h.send(&bytes);
        h.deliver();
        assert_eq!(received(&mut h, Version::V5).len(), 100);
    }
    assert!(!h.closed);
    assert_eq!(h.s.protocol().client_flows(), 0);
}
