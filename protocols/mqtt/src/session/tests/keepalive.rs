#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

#[test]
fn pingreq_is_answered_by_the_proxy_and_each_broker_kept_alive() {
    let mut h = connected(Version::V5);
    h.send(&wire(Packet::PingReq, Version::V5));
    assert!(matches!(
        received(&mut h, Version::V5).as_slice(),
        [Packet::PingResp]
    ));
    assert_eq!(
        (h.fakes[&h.id("b1")].pings, h.fakes[&h.id("b2")].pings),
        (1, 1)
    );
    h.deliver();
    assert!(
        received(&mut h, Version::V5).is_empty(),
        "the brokers' PINGRESPs are the proxy's"
    );
    // 40 s of publishing to b1 only: b2 gets a PINGREQ at half the keep-alive (30 s).
    for s in 1..=4 {
        h.now += 10_000;
        h.send(&wire(publish("a", QoS::AtMostOnce, None, "x"), Version::V5));
        let _ = s;
    }
    assert_eq!(h.fakes[&h.id("b2")].pings, 2);
    assert_eq!(h.fakes[&h.id("b1")].pings, 1);
}

#[test]
fn disconnect_goes_to_every_broker() {
    let mut h = connected(Version::V5);
    h.send(&wire(
        Packet::Disconnect(crate::packet::Disconnect::normal()),
        Version::V5,
    ));
    assert_eq!(
        (
            h.fakes[&h.id("b1")].disconnects,
            h.fakes[&h.id("b2")].disconnects
        ),
        (1, 1)
    );
    // The brokers close after reading it: the client is closed, without words.
    h.close_upstream("b1", geomesh_core::UpstreamFailureKind::Eof, "closed");
    assert!(h.closed);
    assert!(received(&mut h, Version::V5).is_empty());
}
