//! Produce split by partition, acks, idempotent producers.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::Bytes;

use super::*;
use crate::codes::{NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use crate::messages::produce::{ProducePartition, ProduceTopic};
use geomesh_core::UpstreamFailureKind;

pub fn produce(acks: i16, parts: &[(&str, i32, Bytes)]) -> ProduceRequest {
    let mut topics: Vec<ProduceTopic> = Vec::new();
    for (t, p, recs) in parts {
        let part = ProducePartition {
            index: *p,
            records: Some(recs.clone()),
            tagged: Bytes::new(),
        };
        match topics.iter_mut().find(|x| &x.name[..] == t.as_bytes()) {
            Some(x) => x.partitions.push(part),
            None => topics.push(ProduceTopic {
                name: Bytes::from(t.to_string()),
                partitions: vec![part],
                tagged: Bytes::new(),
            }),
        }
    }
    ProduceRequest {
        transactional_id: None,
        acks,
        timeout_ms: 500,
        topics,
        tagged: Bytes::new(),
    }
}

fn results(h: &mut Harness<KafkaSession, Broker>, version: i16) -> Vec<(String, i32, i16, i64)> {
    let (_, mut r) = answer(h, api::PRODUCE, version);
    let resp = ProduceResponse::decode(&mut r, version).unwrap();
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (String::from_utf8_lossy(&t.name).into_owned(), p.index, p.error_code, p.base_offset))
        })
        .collect()
}

#[test]
fn one_produce_over_two_shards_is_split_by_partition_and_merged_in_order() {
    for version in [3, 9, 12] {
        let mut h = harness();
        let b = |v: &str| batch(&[v], -1, -1, -1);
        let req = produce(1, &[("b1", 0, b("x")), ("a1", 2, b("y")), ("b2", 1, b("z")), ("b1", 1, b("w"))]);
        h.send(&request(api::PRODUCE, version, 5, &req.encode(version)));
        h.deliver();
        // Each broker got one Produce with its own partitions, batches byte for byte.
        let on_a = ProduceRequest::decode(&h.fake("a").seen[0]).unwrap();
        let on_b = ProduceRequest::decode(&h.fake("b").seen[0]).unwrap();
        assert_eq!(on_a.topics.len(), 1);
        assert_eq!(on_b.topics.iter().map(|t| &t.name[..]).collect::<Vec<_>>(), vec![&b"b1"[..], b"b2"]);
        assert_eq!(on_a.acks, 1);
        assert_eq!(h.fake("b").logs[&(b"b1".to_vec(), 1)][0], b("w"));
        // Merged in the request's order with each partition's own offset.
        h.fake("a").logs.clear();
        assert_eq!(
            results(&mut h, version),
            vec![("b1".into(), 0, NONE, 0), ("b1".into(), 1, NONE, 0), ("a1".into(), 2, NONE, 0), ("b2".into(), 1, NONE, 0)]
        );
    }
}

#[test]
fn a_produce_for_one_shard_goes_as_it_came_and_its_answer_too() {
    let mut h = harness();
    let req = request(api::PRODUCE, 9, 8, &produce(-1, &[("b1", 0, batch(&["v"], -1, -1, -1))]).encode(9));
    h.send(&req);
    assert!(h.fake("a").seen.is_empty());
    let sent = h.fake("b").seen[0].wire();
    assert_eq!(&sent[..], &req[..]);
    h.deliver();
    assert_eq!(results(&mut h, 9), vec![("b1".into(), 0, NONE, 0)]);
}

#[test]
fn acks_zero_gets_no_answer_and_reaches_every_shard() {
    let mut h = harness();
    let req = produce(0, &[("a1", 0, batch(&["1"], -1, -1, -1)), ("b1", 0, batch(&["2"], -1, -1, -1))]);
    h.send(&request(api::PRODUCE, 9, 1, &req.encode(9)));
    h.deliver();
    assert_eq!(h.fake("a").logs.len(), 1);
    assert_eq!(h.fake("b").logs.len(), 1);
    assert!(h.client.is_empty());
    // The next request is answered normally (no slot was left behind).
    h.send(&request(api::PRODUCE, 9, 2, &produce(1, &[("a1", 0, batch(&["3"], -1, -1, -1))]).encode(9)));
    h.deliver();
    assert_eq!(results(&mut h, 9), vec![("a1".into(), 0, NONE, 1)]);
}

#[test]
fn a_shard_down_or_silent_fails_only_its_partitions() {
    let mut h = harness();
    let req = produce(-1, &[("a1", 0, batch(&["1"], -1, -1, -1)), ("b1", 0, batch(&["2"], -1, -1, -1))]);
    h.send(&request(api::PRODUCE, 9, 1, &req.encode(9)));
    h.close_upstream("b", UpstreamFailureKind::Refused, "connection refused");
    h.deliver();
    assert_eq!(results(&mut h, 9), vec![("a1".into(), 0, NONE, 0), ("b1".into(), 0, NOT_LEADER_OR_FOLLOWER, -1)]);

    h.fake("b").silent = true;
    h.send(&request(api::PRODUCE, 9, 2, &req.encode(9)));
    h.deliver();
    assert!(h.client.is_empty(), "waits for b");
    // The deadline: configured budget plus the request's own timeout.
    h.timeout(h.now + 1_000 + 500 + 100);
    assert_eq!(results(&mut h, 9), vec![("a1".into(), 0, NONE, 1), ("b1".into(), 0, REQUEST_TIMED_OUT, -1)]);
}

fn init_producer_id(h: &mut Harness<KafkaSession, Broker>, cid: i32) -> InitProducerIdResponse {
    let mut w = Writer::new();
    w.nullable_string(true, None);
    w.i32(60_000);
    w.i64(-1);
    w.i16(-1);
    w.tagged_fields(true, &[]);
    h.send(&request(api::INIT_PRODUCER_ID, 4, cid, &w.buf));
    h.deliver();
    let (_, mut r) = answer(h, api::INIT_PRODUCER_ID, 4);
    InitProducerIdResponse::decode(&mut r, 4).unwrap()
}

#[test]
fn idempotent_batches_carry_each_shards_own_producer_id_on_every_connection() {
    let mut h = harness();
    h.fake("b").next_producer_id = 40; // b has seen other producers
    let got = init_producer_id(&mut h, 1);
    assert_eq!((got.error_code, got.producer_id, got.producer_epoch), (NONE, 1, 0), "the lowest shard's id");

    // The Produce comes on another connection (another virtual broker), as clients do.
    let mut h2 = another_connection();
    let (ba, bb) = (batch(&["x"], 1, 0, 0), batch(&["y"], 1, 0, 0));
    h2.send(&request(api::PRODUCE, 9, 2, &produce(-1, &[("a1", 0, ba.clone()), ("b1", 0, bb)]).encode(9)));
    h2.deliver();
    let on_a = &h2.fake("a").logs[&(b"a1".to_vec(), 0)][0];
    assert_eq!(on_a, &ba, "a issued the client's id: untouched");
    let on_b = batches(&h2.fake("b").logs[&(b"b1".to_vec(), 0)][0]).unwrap();
    assert_eq!((on_b[0].producer_id, on_b[0].producer_epoch, on_b[0].base_sequence, on_b[0].crc_ok), (41, 0, 0, true));
    assert_eq!(results(&mut h2, 9), vec![("a1".into(), 0, NONE, 0), ("b1".into(), 0, NONE, 0)]);
}

#[test]
fn a_transactional_producer_is_refused() {
    let mut h = harness();
    let mut w = Writer::new();
    w.nullable_string(true, Some(b"tx"));
    w.i32(60_000);
    w.i64(-1);
    w.i16(-1);
    w.tagged_fields(true, &[]);
    h.send(&request(api::INIT_PRODUCER_ID, 4, 1, &w.buf));
    let (_, mut r) = answer(&mut h, api::INIT_PRODUCER_ID, 4);
    assert_eq!(InitProducerIdResponse::decode(&mut r, 4).unwrap().error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    assert!(h.fakes.values().all(|f| f.seen.is_empty()));
}
