//! CreateTopics and DeleteTopics against the `kafka-protocol` crate: at every version the proxy
//! carries, what that crate encodes this crate splits into topic entries and writes back to the
//! same bytes, and the error results the proxy writes itself read back as intended.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as kp, BrokerId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use uuid::Uuid;

use geomesh_kafka::codes::NOT_CONTROLLER;
use geomesh_kafka::messages::topics_admin::{
    empty_tail, error_entry, throttle_head, Admin, Topics,
};
use geomesh_kafka::wire::Reader;

fn encode<T: Encodable>(m: &T, v: i16) -> Bytes {
    let mut b = BytesMut::new();
    m.encode(&mut b, v).unwrap();
    b.freeze()
}

fn name(s: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(s))
}

fn round_trip(api: Admin, v: i16, bytes: &Bytes, request: bool) -> Topics {
    let mut r = Reader::new(bytes.clone());
    let t = if request {
        Topics::decode_request(api, &mut r, v)
    } else {
        Topics::decode_response(api, &mut r, v)
    }
    .unwrap_or_else(|e| panic!("{api:?} v{v}: {e:?}"));
    let all: Vec<_> = t.entries.iter().collect();
    assert_eq!(&t.encode_with(api, v, &all), bytes, "{api:?} v{v}");
    t
}

#[test]
fn create_topics_every_version() {
    for v in 2..=7i16 {
        let mut t1 = kp::create_topics_request::CreatableTopic::default();
        t1.name = name("orders");
        t1.num_partitions = 3;
        t1.replication_factor = 1;
        let mut t2 = kp::create_topics_request::CreatableTopic::default();
        t2.name = name("b-audit");
        t2.num_partitions = -1;
        t2.replication_factor = -1;
        let mut asg = kp::create_topics_request::CreatableReplicaAssignment::default();
        asg.partition_index = 0;
        asg.broker_ids = vec![BrokerId(1), BrokerId(2)];
        t2.assignments = vec![asg];
        let mut cfg = kp::create_topics_request::CreatableTopicConfig::default();
        cfg.name = StrBytes::from_static_str("retention.ms");
        cfg.value = Some(StrBytes::from_static_str("1000"));
        t2.configs = vec![cfg];
        let mut req = kp::CreateTopicsRequest::default();
        req.topics = vec![t1, t2];
        req.timeout_ms = 5000;
        req.validate_only = v >= 1;
        let bytes = encode(&req, v);
        let t = round_trip(Admin::Create, v, &bytes, true);
        let names: Vec<_> = t.entries.iter().map(|e| e.name.clone().unwrap()).collect();
        assert_eq!(
            names,
            vec![
                Bytes::from_static(b"orders"),
                Bytes::from_static(b"b-audit")
            ]
        );
        // One topic alone is a request that crate reads as that topic alone.
        let one = t.encode_with(Admin::Create, v, &[&t.entries[1]]);
        let back = kp::CreateTopicsRequest::decode(&mut one.clone(), v).unwrap();
        assert_eq!(back.topics.len(), 1);
        assert_eq!(back.topics[0].name, name("b-audit"));
        assert_eq!(back.timeout_ms, 5000);

        let mut r1 = kp::create_topics_response::CreatableTopicResult::default();
        r1.name = name("orders");
        r1.topic_id = Uuid::from_u128(7);
        r1.num_partitions = 3;
        r1.replication_factor = 1;
        r1.configs = Some(vec![
            kp::create_topics_response::CreatableTopicConfigs::default(),
        ]);
        let mut resp = kp::CreateTopicsResponse::default();
        resp.throttle_time_ms = if v >= 2 { 9 } else { 0 };
        resp.topics = vec![r1];
        let bytes = encode(&resp, v);
        let t = round_trip(Admin::Create, v, &bytes, false);
        assert_eq!(t.throttle(), if v >= 2 { 9 } else { 0 });
        // The proxy's own error result, merged after the shard's.
        let err = error_entry(Admin::Create, v, Some(b"b-audit"), &[0; 16], NOT_CONTROLLER);
        let merged = Topics {
            head: throttle_head(Admin::Create, v, 9),
            entries: vec![],
            tail: empty_tail(Admin::Create, v),
        };
        let out = merged.encode_with(Admin::Create, v, &[&t.entries[0], &err]);
        let back = kp::CreateTopicsResponse::decode(&mut out.clone(), v).unwrap();
        assert_eq!(back.topics.len(), 2, "v{v}");
        assert_eq!(back.topics[0].name, name("orders"));
        assert_eq!(
            (back.topics[1].name.clone(), back.topics[1].error_code),
            (name("b-audit"), NOT_CONTROLLER)
        );
    }
}

#[test]
fn delete_topics_every_version() {
    for v in 1..=6i16 {
        let mut req = kp::DeleteTopicsRequest::default();
        req.timeout_ms = 3000;
        if v >= 6 {
            let mut a = kp::delete_topics_request::DeleteTopicState::default();
            a.name = Some(name("orders"));
            let mut b = kp::delete_topics_request::DeleteTopicState::default();
            b.topic_id = Uuid::from_u128(42);
            req.topics = vec![a, b];
        } else {
            req.topic_names = vec![name("orders"), name("clicks")];
        }
        let bytes = encode(&req, v);
        let t = round_trip(Admin::Delete, v, &bytes, true);
        assert_eq!(t.entries[0].name.as_deref(), Some(&b"orders"[..]));
        if v >= 6 {
            assert_eq!(
                (t.entries[1].name.clone(), t.entries[1].topic_id),
                (None, *Uuid::from_u128(42).as_bytes())
            );
        }
        let mut r1 = kp::delete_topics_response::DeletableTopicResult::default();
        r1.name = Some(name("orders"));
        let mut resp = kp::DeleteTopicsResponse::default();
        resp.throttle_time_ms = if v >= 1 { 4 } else { 0 };
        resp.responses = vec![r1];
        let bytes = encode(&resp, v);
        let t = round_trip(Admin::Delete, v, &bytes, false);
        let err = error_entry(Admin::Delete, v, Some(b"clicks"), &[0; 16], NOT_CONTROLLER);
        let merged = Topics {
            head: throttle_head(Admin::Delete, v, 4),
            entries: vec![],
            tail: empty_tail(Admin::Delete, v),
        };
        let out = merged.encode_with(Admin::Delete, v, &[&t.entries[0], &err]);
        let back = kp::DeleteTopicsResponse::decode(&mut out.clone(), v).unwrap();
        assert_eq!(back.responses.len(), 2);
        assert_eq!(back.responses[1].error_code, NOT_CONTROLLER);
        assert_eq!(back.responses[1].name, Some(name("clicks")));
    }
}

#[test]
fn counts_beyond_the_bytes_present_are_refused_before_allocating() {
    for api in [Admin::Create, Admin::Delete] {
        for v in [2i16, 6] {
            let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]));
            assert!(Topics::decode_request(api, &mut r, v).is_err());
            let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]));
            assert!(Topics::decode_response(api, &mut r, v).is_err());
        }
    }
}
