#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

const A: ClusterId = ClusterId(0);
const B: ClusterId = ClusterId(1);
const OK: ReasonCode = ReasonCode::SUCCESS;

#[test]
fn allocator_skips_ids_in_use_and_wraps() {
    let mut a = IdAllocator::default();
    assert_eq!(a.allocate(), Some(1));
    assert_eq!(a.allocate(), Some(2));
    a.release(1);
    a.last = u16::MAX - 1;
    assert_eq!(a.allocate(), Some(u16::MAX));
    assert_eq!(a.allocate(), Some(1), "wraps past 65535, never 0");
    assert_eq!(a.allocate(), Some(3), "2 is in use");
    let mut full = IdAllocator::default();
    for _ in 0..u16::MAX {
        assert!(full.allocate().is_some());
    }
    assert_eq!(full.allocate(), None);
    full.release(77);
    assert_eq!(full.allocate(), Some(77));
}

#[test]
fn client_qos1_and_qos2_flows() {
    let mut f = ClientFlows::default();
    // The proxy already uses id 1 on A for a packet of its own (a re-subscription).
    assert_eq!(f.start(500, FlowKind::Subscribe, &[A]).unwrap(), [(A, 1)]);
    let q1 = f.start(7, FlowKind::Publish(QoS::AtLeastOnce), &[A]).unwrap();
    assert_eq!(q1, [(A, 2)]);
    assert_eq!(f.start(7, FlowKind::Publish(QoS::AtLeastOnce), &[A]).unwrap(), q1, "DUP resend: same id");
    assert_eq!(f.start(7, FlowKind::Subscribe, &[A]), Err(FlowError::InUse));
    assert_eq!(f.broker_ack(A, 2, BrokerAck::PubRec { reason: OK }), None, "wrong ack type");
    assert_eq!(f.broker_ack(A, 2, BrokerAck::PubAck), Some(ClientAck { client_id: 7, complete: true }));
    assert_eq!(f.broker_ack(A, 2, BrokerAck::PubAck), None, "duplicate");
    // QoS 2 on B: PUBREC, the client's PUBREL to B, PUBCOMP.
    let q2 = f.start(7, FlowKind::Publish(QoS::ExactlyOnce), &[B]).unwrap();
    assert_eq!(q2, [(B, 1)], "B numbers its own");
    assert_eq!(f.client_pubrel(7), None, "no PUBREC yet");
    assert_eq!(f.broker_ack(B, 1, BrokerAck::PubComp), None, "PUBCOMP before PUBREC");
    assert_eq!(f.broker_ack(B, 1, BrokerAck::PubRec { reason: OK }), Some(ClientAck { client_id: 7, complete: false }));
    assert_eq!(f.client_pubrel(7), Some((B, 1)));
    assert_eq!(f.start(7, FlowKind::Publish(QoS::ExactlyOnce), &[B]), Err(FlowError::InUse), "released: a new PUBLISH may not reuse it");
    assert_eq!(f.broker_ack(B, 1, BrokerAck::PubComp), Some(ClientAck { client_id: 7, complete: true }));
    assert_eq!(f.client_pubrel(7), None);
    // A refusing PUBREC ends the flow.
    assert_eq!(f.start(9, FlowKind::Publish(QoS::ExactlyOnce), &[B]).unwrap(), [(B, 2)], "round robin");
    let refused = BrokerAck::PubRec { reason: ReasonCode::NOT_AUTHORIZED };
    assert_eq!(f.broker_ack(B, 2, refused), Some(ClientAck { client_id: 9, complete: true }));
    assert_eq!(f.len(), 1, "only the proxy's own subscribe is left");
}

#[test]
fn a_subscribe_on_two_brokers_completes_with_both_answers() {
    let mut f = ClientFlows::default();
    let legs = f.start(3, FlowKind::Subscribe, &[A, B]).unwrap();
    assert_eq!(legs, [(A, 1), (B, 1)]);
    assert_eq!(f.broker_ack(B, 1, BrokerAck::SubAck), Some(ClientAck { client_id: 3, complete: false }));
    assert_eq!(f.broker_ack(B, 1, BrokerAck::SubAck), None, "answered already");
    assert_eq!(f.broker_ack(A, 1, BrokerAck::SubAck), Some(ClientAck { client_id: 3, complete: true }));
    assert!(f.is_empty());
}

#[test]
fn a_lost_broker_ends_its_legs() {
    let mut f = ClientFlows::default();
    f.start(1, FlowKind::Publish(QoS::AtLeastOnce), &[A]).unwrap();
    f.start(2, FlowKind::Unsubscribe, &[A, B]).unwrap();
    f.start(3, FlowKind::Publish(QoS::AtLeastOnce), &[B]).unwrap();
    let hit = f.broker_lost(A);
    assert_eq!(hit, [(1, FlowKind::Publish(QoS::AtLeastOnce)), (2, FlowKind::Unsubscribe)]);
    assert_eq!(f.len(), 2, "2 waits for B, 3 is untouched");
    assert_eq!(f.broker_ack(B, 1, BrokerAck::UnsubAck), Some(ClientAck { client_id: 2, complete: true }));
    assert_eq!(f.broker_ack(A, 1, BrokerAck::PubAck), None);
    // A reconnected broker numbers from scratch.
    assert_eq!(f.start(4, FlowKind::Publish(QoS::AtLeastOnce), &[A]).unwrap(), [(A, 1)]);
}

#[test]
fn broker_publishes_get_client_ids_unique_across_brokers() {
    let mut s = ServerFlows::default();
    let a = s.publish(A, 10, QoS::AtLeastOnce).unwrap();
    let b = s.publish(B, 10, QoS::ExactlyOnce).unwrap();
    assert_ne!(a, b, "both brokers used 10");
    assert_eq!(s.publish(A, 10, QoS::AtLeastOnce), Some(a), "broker retransmission");
    assert_eq!(s.client_ack(b, ClientAckKind::PubAck), None, "QoS 2 wants PUBREC");
    assert_eq!(s.client_ack(a, ClientAckKind::PubAck), Some((A, 10)));
    assert_eq!(s.client_ack(a, ClientAckKind::PubAck), None, "freed");
    assert_eq!(s.broker_pubrel(B, 10), None, "before the client's PUBREC");
    assert_eq!(s.client_ack(b, ClientAckKind::PubRec { reason: OK }), Some((B, 10)));
    assert_eq!(s.broker_pubrel(B, 10), Some(b));
    assert_eq!(s.client_ack(b, ClientAckKind::PubComp), Some((B, 10)));
    assert_eq!(s.in_flight(), 0);
    // A broker lost mid-flight: the client's acknowledgement is dropped, the id freed.
    let c = s.publish(A, 11, QoS::AtLeastOnce).unwrap();
    s.broker_lost(A);
    assert_eq!(s.in_flight(), 1, "still numbered on the client connection");
    assert_eq!(s.client_ack(c, ClientAckKind::PubAck), None);
    assert_eq!(s.in_flight(), 0);
}
