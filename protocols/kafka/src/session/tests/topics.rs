//! CreateTopics and DeleteTopics: each topic to the shard the table routes it to, the answers
//! merged in the request's order, a failed shard's topics answered with a retriable error.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use geomesh_core::UpstreamFailureKind;

use super::*;
use crate::codes::NOT_CONTROLLER;
use crate::messages::topics_admin::{Admin, Topics};

/// A CreateTopics (v7) or DeleteTopics (v6) request body for `names`.
fn body(api: Admin, names: &[&str]) -> Vec<u8> {
    let mut w = Writer::new();
    w.array_len(true, names.len());
    for n in names {
        match api {
            Admin::Create => {
                w.string(true, n.as_bytes());
                w.i32(2);
                w.i16(1);
                w.array_len(true, 0);
                w.array_len(true, 0);
            }
            Admin::Delete => {
                w.nullable_string(true, Some(n.as_bytes()));
                w.uuid(&[0; 16]);
            }
        }
        w.tagged_fields(true, &[]);
    }
    w.i32(1000);
    if api == Admin::Create {
        w.bool(false);
    }
    w.tagged_fields(true, &[]);
    w.buf.to_vec()
}

fn results(
    h: &mut Harness<KafkaSession, Broker>,
    api: Admin,
    key: i16,
    v: i16,
) -> Vec<(String, i16)> {
    let (_, mut r) = answer(h, key, v);
    let t = Topics::decode_response(api, &mut r, v).unwrap();
    t.entries
        .iter()
        .map(|e| {
            let mut r = Reader::new(e.raw.clone());
            let name = r.nullable_string(true, "name").unwrap().unwrap_or_default();
            r.uuid("id").unwrap();
            (
                String::from_utf8_lossy(&name).into_owned(),
                r.i16("code").unwrap(),
            )
        })
        .collect()
}

#[test]
fn topics_are_created_and_deleted_on_the_shard_the_table_names_answers_in_request_order() {
    let mut h = harness();
    h.send(&request(
        api::CREATE_TOPICS,
        7,
        3,
        &body(Admin::Create, &["a-new", "b-new", "a-two", "b1"]),
    ));
    h.deliver();
    let got = results(&mut h, Admin::Create, api::CREATE_TOPICS, 7);
    assert_eq!(
        got,
        vec![
            ("a-new".into(), NONE),
            ("b-new".into(), NONE),
            ("a-two".into(), NONE),
            ("b1".into(), 36)
        ]
    );
    assert!(
        h.fake("a").topics.contains_key(&b"a-two"[..])
            && !h.fake("a").topics.contains_key(&b"b-new"[..])
    );
    assert!(
        h.fake("b").topics.contains_key(&b"b-new"[..])
            && !h.fake("b").topics.contains_key(&b"a-new"[..])
    );

    // Shard b gone: its topic gets NOT_CONTROLLER (retriable), a's is deleted.
    h.close_upstream("b", UpstreamFailureKind::Refused, "down");
    h.send(&request(
        api::DELETE_TOPICS,
        6,
        4,
        &body(Admin::Delete, &["b-new", "a-new"]),
    ));
    h.close_upstream("b", UpstreamFailureKind::Refused, "down");
    h.deliver();
    let got = results(&mut h, Admin::Delete, api::DELETE_TOPICS, 6);
    assert_eq!(
        got,
        vec![("b-new".into(), NOT_CONTROLLER), ("a-new".into(), NONE)]
    );
    assert!(!h.fake("a").topics.contains_key(&b"a-new"[..]));
}
