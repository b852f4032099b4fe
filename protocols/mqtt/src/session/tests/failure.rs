#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use geomesh_core::UpstreamFailureKind;

use super::*;
use crate::reason::ReasonCode;

#[test]
fn a_lost_broker_gets_a_v5_client_a_disconnect_naming_it() {
    let mut h = connected(Version::V5);
    h.send(&wire(subscribe(1, &["#"]), Version::V5));
    h.deliver();
    received(&mut h, Version::V5);
    h.close_upstream("b2", UpstreamFailureKind::Eof, "connection reset");
    let got = received(&mut h, Version::V5);
    let [Packet::Disconnect(d)] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(d.reason, ReasonCode::UNSPECIFIED_ERROR);
    let text = String::from_utf8_lossy(d.properties.reason_string.as_deref().unwrap()).into_owned();
    assert!(
        text.contains("b2") && text.contains("connection reset"),
        "{text}"
    );
    assert!(h.closed);
}

#[test]
fn a_silent_broker_ends_a_pending_publish_within_the_timeout() {
    let mut h = connected(Version::V5);
    h.fake("b2").silent = true;
    h.send(&wire(
        publish("user1/a", QoS::AtLeastOnce, Some(9), "x"),
        Version::V5,
    ));
    h.deliver();
    assert!(received(&mut h, Version::V5).is_empty());
    let at = h.now + 1000 + 100;
    h.timeout(at);
    let got = received(&mut h, Version::V5);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::SERVER_BUSY),
        "{got:?}"
    );
    assert!(h.closed, "never a PUBACK the broker did not give");
}

#[test]
fn a_v311_client_is_closed_and_answers_ready_before_still_go_out() {
    let mut h = connected(Version::V311);
    h.send(&wire(
        publish("a/b", QoS::AtLeastOnce, Some(1), "x"),
        Version::V311,
    ));
    h.deliver();
    h.close_upstream("b1", UpstreamFailureKind::Eof, "gone");
    let got = received(&mut h, Version::V311);
    assert!(
        matches!(got.as_slice(), [Packet::PubAck(a)] if a.packet_id == 1),
        "{got:?}"
    );
    assert!(h.closed);
}

#[test]
fn a_broker_disconnect_is_passed_on_with_its_reason() {
    let mut h = connected(Version::V5);
    h.fake("b1").disconnect(ReasonCode::SESSION_TAKEN_OVER);
    h.deliver();
    let got = received(&mut h, Version::V5);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::SESSION_TAKEN_OVER),
        "{got:?}"
    );
    assert!(h.closed);
}
