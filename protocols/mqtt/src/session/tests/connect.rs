#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::packet::Will;
use crate::reason::ReasonCode;

#[test]
fn one_client_identifier_everywhere_and_the_will_on_one_broker() {
    let mut h = harness();
    let mut c = Connect::new(Version::V5, "");
    c.username = Some(Bytes::from_static(b"alice"));
    c.password = Some(Bytes::from_static(b"secret"));
    c.properties.receive_maximum = Some(20);
    c.properties.topic_alias_maximum = Some(5);
    c.will = Some(Will {
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        topic: Bytes::from_static(b"user1/status"),
        payload: Bytes::from_static(b"gone"),
    });
    h.send(&wire(Packet::Connect(Box::new(c)), Version::V5));
    assert!(h.client.is_empty(), "the CONNACK waits for every broker");
    h.deliver();
    let (b1, b2) = (&h.fakes[&h.id("b1")], &h.fakes[&h.id("b2")]);
    let (c1, c2) = (&b1.connects[0], &b2.connects[0]);
    assert_eq!(c1.client_id, c2.client_id, "one identifier on every broker");
    assert!(c1.client_id.starts_with(b"geomesh"));
    assert_eq!(
        (c1.will.is_some(), c2.will.is_some()),
        (false, true),
        "the will where user1/status lives"
    );
    for c in [c1, c2] {
        assert_eq!(c.username.as_deref(), Some(&b"alice"[..]));
        assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(
            c.properties.receive_maximum,
            Some(10),
            "a share of the client's 20"
        );
        assert_eq!(
            c.properties.topic_alias_maximum, None,
            "aliases stay with the proxy"
        );
    }
    let id = c1.client_id.clone();
    let got = received(&mut h, Version::V5);
    let [Packet::ConnAck(a)] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(a.code, 0);
    assert_eq!(a.properties.assigned_client_identifier.as_ref(), Some(&id));
    assert_eq!(
        a.properties.topic_alias_maximum,
        Some(64),
        "the proxy's own, not the brokers' 10"
    );
    assert_eq!(a.properties.receive_maximum, Some(100));
}

#[test]
fn a_v311_client_gets_one_connack() {
    let h = connected(Version::V311);
    for b in ["b1", "b2"] {
        let c = &h.fakes[&h.id(b)].connects;
        assert_eq!(c.len(), 1);
        assert_eq!(&c[0].client_id[..], b"c1");
    }
}

#[test]
fn enhanced_authentication_is_refused_by_the_proxy() {
    let mut h = harness();
    let mut c = Connect::new(Version::V5, "x");
    c.properties.authentication_method = Some(Bytes::from_static(b"SCRAM-SHA-1"));
    h.send(&wire(Packet::Connect(Box::new(c)), Version::V5));
    let got = received(&mut h, Version::V5);
    assert!(
        matches!(got.as_slice(), [Packet::ConnAck(a)] if a.code == ReasonCode::BAD_AUTHENTICATION_METHOD.0),
        "{got:?}"
    );
    assert!(h.closed);
    assert!(h.fakes.is_empty(), "no broker reached");
}

#[test]
fn garbage_and_a_huge_remaining_length_are_refused() {
    let mut h = connected(Version::V5);
    // PUBLISH announcing 256 MB: refused at the header.
    h.send(&[0x30, 0xff, 0xff, 0xff, 0x7f]);
    let got = received(&mut h, Version::V5);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::PACKET_TOO_LARGE),
        "{got:?}"
    );
    assert!(h.closed);
    let mut h = connected(Version::V311);
    h.send(b"GET / HTTP/1.1\r\n\r\n");
    assert!(
        received(&mut h, Version::V311).is_empty(),
        "3.1.1: closed without words"
    );
    assert!(h.closed);
}
