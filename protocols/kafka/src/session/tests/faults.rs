//! What the session does with bytes it cannot carry.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::codes::{INVALID_REQUEST, UNSUPPORTED_VERSION};

#[test]
fn an_unknown_api_gets_an_error_for_its_correlation_id_then_the_close() {
    let mut h = harness();
    let mut frame = vec![0, 0, 0, 10, 0, 71, 0, 0, 0, 0, 0, 9, 0xff, 0xff];
    h.send(&frame);
    assert!(h.closed);
    let (cid, mut r) = answer(&mut h, api::HEARTBEAT, 0);
    assert_eq!((cid, r.i16("error").unwrap()), (9, UNSUPPORTED_VERSION));

    // A known API at a version the proxy does not carry (Fetch v13: topic ids).
    let mut h = harness();
    frame[5] = 1;
    frame[7] = 13;
    h.send(&frame);
    assert!(h.closed);
    assert!(h.fakes.values().all(|f| f.seen.is_empty()));
}

#[test]
fn a_body_that_does_not_decode_is_answered_invalid_request_and_closed_after_earlier_answers() {
    let mut h = harness();
    h.send(&request(api::API_VERSIONS, 3, 1, &[0, 0, 0]));
    h.send(&request(api::PRODUCE, 9, 2, &[0xff, 0xff, 0xff]));
    assert!(!h.closed, "the earlier answer first");
    h.deliver();
    assert!(h.closed);
    let (cid, _) = answer(&mut h, api::API_VERSIONS, 3);
    assert_eq!(cid, 1);
    let (cid, mut r) = answer(&mut h, api::HEARTBEAT, 0);
    assert_eq!((cid, r.i16("error").unwrap()), (2, INVALID_REQUEST));
}

#[test]
fn an_oversized_or_negative_frame_closes_without_buffering() {
    for prefix in [i32::MAX, -5, (16 << 20) + 1] {
        let mut h = harness();
        h.send(&prefix.to_be_bytes());
        assert!(h.closed, "{prefix}");
        assert!(h.client.is_empty());
    }
}

#[test]
fn a_broker_answering_out_of_step_fails_what_waits_on_it() {
    let mut h = harness();
    h.send(&request(api::API_VERSIONS, 3, 1, &[0, 0, 0]));
    // b echoes another correlation id.
    let mut bogus = crate::header::response_frame(99, 0, &[0, 0, 0, 0, 0, 0, 0]).to_vec();
    h.fake("b").take_output();
    let mut out = Vec::new();
    let b = h.id("b");
    geomesh_core::Session::on_upstream(&mut h.s, b, &bogus, h.now, &mut out);
    h.apply(out);
    assert!(h.closed_upstreams.contains(&b));
    h.deliver();
    let (cid, mut r) = answer(&mut h, api::API_VERSIONS, 3);
    assert_eq!(cid, 1);
    assert_eq!(ApiVersionsResponse::decode(&mut r, 3).unwrap().0.error_code, NONE, "a's ranges");
    bogus.clear();
}
