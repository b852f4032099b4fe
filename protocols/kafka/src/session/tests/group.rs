//! Consumer groups on their home shard, offsets with their topics.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::Bytes;

use super::*;
use crate::codes::COORDINATOR_NOT_AVAILABLE;
use crate::messages::find_coordinator::FindCoordinatorRequest;
use crate::messages::offsets::{CommitPartition, CommitTopic, FetchOffsetsTopic};
use geomesh_core::UpstreamFailureKind;

pub fn find_coordinator(h: &mut Harness<KafkaSession, Broker>, version: i16, keys: &[&str]) -> FindCoordinatorResponse {
    let mut w = Writer::new();
    let flexible = version >= 3;
    if version <= 3 {
        w.string(flexible, keys[0].as_bytes());
    }
    w.i8(0);
    if version >= 4 {
        w.array_len(flexible, keys.len());
        for k in keys {
            w.string(flexible, k.as_bytes());
        }
    }
    w.tagged_fields(flexible, &[]);
    h.send(&request(api::FIND_COORDINATOR, version, 1, &w.buf));
    h.deliver();
    let (_, mut r) = answer(h, api::FIND_COORDINATOR, version);
    FindCoordinatorResponse::decode(&mut r, version).unwrap()
}

#[test]
fn a_groups_coordinator_is_its_home_shards_renamed_at_the_proxy() {
    let mut h = harness();
    let one = find_coordinator(&mut h, 2, &["gb-orders"]);
    let c = &one.coordinators[0];
    assert_eq!((c.node_id, &c.host[..], c.port), (1_000_111, PROXY_HOST.as_bytes(), PROXY_PORT));
    // Shard a, not its home, was asked for its own coordinator of the group (for the offsets
    // a holds); its answer is not the client's.
    assert_eq!(h.fake("a").seen.len(), 1);
    let many = find_coordinator(&mut h, 4, &["gb-x", "g-a"]);
    let got: Vec<(&[u8], i32)> = many.coordinators.iter().map(|c| (&c.key[..], c.node_id)).collect();
    assert_eq!(got, vec![(&b"gb-x"[..], 1_000_111), (&b"g-a"[..], 111)]);
    let asked = FindCoordinatorRequest::decode(h.fake("a").seen.last().unwrap()).unwrap();
    assert_eq!(asked.keys.len(), 2);
}

pub fn heartbeat(group: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(true, group.as_bytes());
    w.i32(3);
    w.string(true, b"member-1");
    w.nullable_string(true, None);
    w.tagged_fields(true, &[]);
    request(api::HEARTBEAT, 4, 11, &w.buf)
}

#[test]
fn group_requests_go_whole_to_the_home_shard_and_a_dead_home_reads_coordinator_not_available() {
    let mut h = harness();
    let hb = heartbeat("gb-1");
    h.send(&hb);
    assert_eq!(&h.fake("b").seen[0].wire()[..], &hb[..]);
    h.deliver();
    let (cid, mut r) = answer(&mut h, api::HEARTBEAT, 4);
    assert_eq!((cid, r.i32("throttle").unwrap(), r.i16("error").unwrap()), (11, 0, NONE));

    h.send(&hb);
    h.close_upstream("b", UpstreamFailureKind::Refused, "refused");
    let (cid, mut r) = answer(&mut h, api::HEARTBEAT, 4);
    assert_eq!((cid, r.i32("throttle").unwrap(), r.i16("error").unwrap()), (11, 0, COORDINATOR_NOT_AVAILABLE));
}

#[test]
fn offsets_are_committed_and_fetched_on_the_shards_owning_their_topics() {
    let mut h = harness();
    let commit = OffsetCommitRequest {
        group_id: Bytes::from_static(b"g-a"),
        generation_id: 5,
        member_id: Bytes::from_static(b"m1"),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: ["b1", "a1"]
            .iter()
            .map(|t| CommitTopic {
                name: Bytes::from(t.to_string()),
                partitions: vec![CommitPartition {
                    partition_index: 1,
                    committed_offset: 42,
                    committed_leader_epoch: -1,
                    committed_metadata: None,
                    tagged: Bytes::new(),
                }],
                tagged: Bytes::new(),
            })
            .collect(),
        tagged: Bytes::new(),
    };
    h.send(&request(api::OFFSET_COMMIT, 8, 2, &commit.encode(8)));
    h.deliver();
    let (_, mut r) = answer(&mut h, api::OFFSET_COMMIT, 8);
    let resp = OffsetCommitResponse::decode(&mut r, 8).unwrap();
    let codes: Vec<(&[u8], i16)> = resp.topics.iter().map(|t| (&t.name[..], t.partitions[0].error_code)).collect();
    assert_eq!(codes, vec![(&b"b1"[..], NONE), (&b"a1"[..], NONE)]);
    // Home (a) fenced with the member's generation; b got a standalone commit.
    assert_eq!(h.fake("a").commits[&(b"g-a".to_vec(), b"a1".to_vec(), 1)], (42, 5));
    assert_eq!(h.fake("b").commits[&(b"g-a".to_vec(), b"b1".to_vec(), 1)], (42, -1));

    let fetch = OffsetFetchRequest {
        group_id: Bytes::from_static(b"g-a"),
        topics: Some(
            ["a1", "b1"]
                .iter()
                .map(|t| FetchOffsetsTopic {
                    name: Bytes::from(t.to_string()),
                    partition_indexes: vec![1, 0],
                    tagged: Bytes::new(),
                })
                .collect(),
        ),
        require_stable: false,
        tagged: Bytes::new(),
    };
    h.send(&request(api::OFFSET_FETCH, 7, 3, &fetch.encode(7)));
    h.deliver();
    let (_, mut r) = answer(&mut h, api::OFFSET_FETCH, 7);
    let resp = OffsetFetchResponse::decode(&mut r, 7).unwrap();
    let got: Vec<(&[u8], Vec<i64>)> =
        resp.topics.iter().map(|t| (&t.name[..], t.partitions.iter().map(|p| p.committed_offset).collect())).collect();
    assert_eq!(got, vec![(&b"a1"[..], vec![42, -1]), (&b"b1"[..], vec![42, -1])]);
}
