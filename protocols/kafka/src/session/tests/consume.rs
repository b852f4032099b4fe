//! Fetch and ListOffsets per partition.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::Bytes;

use super::produce::produce;
use super::*;
use crate::codes::NOT_LEADER_OR_FOLLOWER;
use crate::messages::fetch::{FetchPartition, FetchTopic};
use geomesh_core::UpstreamFailureKind;

pub fn fetch(parts: &[(&str, i32)], session_id: i32) -> FetchRequest {
    FetchRequest {
        replica_id: -1,
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        isolation_level: 0,
        session_id,
        session_epoch: if session_id == 0 { -1 } else { 3 },
        topics: parts
            .iter()
            .map(|(t, p)| FetchTopic {
                topic: Bytes::from(t.to_string()),
                partitions: vec![FetchPartition {
                    partition: *p,
                    current_leader_epoch: -1,
                    fetch_offset: 0,
                    last_fetched_epoch: -1,
                    log_start_offset: -1,
                    partition_max_bytes: 1 << 20,
                    tagged: Bytes::new(),
                }],
                tagged: Bytes::new(),
            })
            .collect(),
        forgotten: vec![],
        rack_id: Bytes::new(),
        tagged: Bytes::new(),
    }
}

fn seed(h: &mut Harness<KafkaSession, Broker>) {
    let req = produce(1, &[("a1", 0, batch(&["from-a"], -1, -1, -1)), ("b1", 0, batch(&["from-b"], -1, -1, -1))]);
    h.send(&request(api::PRODUCE, 9, 1, &req.encode(9)));
    h.deliver();
    h.client.clear();
}

#[test]
fn a_fetch_over_two_shards_is_split_and_merged_in_order_sessionless() {
    for version in [4, 7, 12] {
        let mut h = harness();
        seed(&mut h);
        h.send(&request(api::FETCH, version, 9, &fetch(&[("b1", 0), ("a1", 0)], 77).encode(version)));
        let sent = FetchRequest::decode(h.fake("b").seen.last().unwrap()).unwrap();
        assert_eq!((sent.session_id, sent.session_epoch, sent.topics.len()), (0, -1, 1));
        h.deliver();
        let (cid, mut r) = answer(&mut h, api::FETCH, version);
        assert_eq!(cid, 9);
        let resp = FetchResponse::decode(&mut r, version).unwrap();
        assert_eq!(resp.session_id, 0);
        let got: Vec<(&[u8], i64, Bytes)> = resp
            .topics
            .iter()
            .map(|t| (&t.topic[..], t.partitions[0].high_watermark, t.partitions[0].records.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![(&b"b1"[..], 1, batch(&["from-b"], -1, -1, -1)), (&b"a1"[..], 1, batch(&["from-a"], -1, -1, -1))]
        );
    }
}

#[test]
fn a_fetch_for_one_shard_has_its_answer_forwarded_and_a_dead_shard_costs_its_partitions() {
    let mut h = harness();
    seed(&mut h);
    h.send(&request(api::FETCH, 12, 3, &fetch(&[("b1", 0)], 0).encode(12)));
    h.deliver();
    let (_, mut r) = answer(&mut h, api::FETCH, 12);
    assert_eq!(FetchResponse::decode(&mut r, 12).unwrap().topics[0].partitions[0].high_watermark, 1);

    h.send(&request(api::FETCH, 12, 4, &fetch(&[("a1", 0), ("b1", 0)], 0).encode(12)));
    h.close_upstream("a", UpstreamFailureKind::Eof, "reset");
    h.deliver();
    let (_, mut r) = answer(&mut h, api::FETCH, 12);
    let resp = FetchResponse::decode(&mut r, 12).unwrap();
    let codes: Vec<i16> = resp.topics.iter().map(|t| t.partitions[0].error_code).collect();
    assert_eq!(codes, vec![NOT_LEADER_OR_FOLLOWER, NONE]);
}
