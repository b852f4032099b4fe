//! OffsetForLeaderEpoch per partition: to the owning shard (its leader), merged in the
//! client's order; never to a shard that did not offer it.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::Bytes;
use geomesh_core::{ClusterId, UpstreamFailureKind};

use super::cluster::metadata;
use super::produce::produce;
use super::*;
use crate::codes::{NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, UNSUPPORTED_VERSION};
use crate::messages::leader_epoch::{
    EpochEndOffset, EpochPartition, EpochTopic, EpochTopicResult, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

/// The scripted broker's answer: each partition's end offset is its log's length.
pub fn answer(b: &mut Broker, req: &Request) -> Bytes {
    let e = OffsetForLeaderEpochRequest::decode(req).unwrap();
    OffsetForLeaderEpochResponse {
        throttle_time_ms: 0,
        topics: e
            .topics
            .iter()
            .map(|t| EpochTopicResult {
                topic: t.topic.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| match b.topics.contains_key(&t.topic[..]) {
                        true => EpochEndOffset {
                            error_code: NONE,
                            partition: p.partition,
                            leader_epoch: p.leader_epoch,
                            end_offset: b
                                .logs
                                .get(&(t.topic.to_vec(), p.partition))
                                .map_or(0, |l| l.len() as i64),
                            tagged: Bytes::new(),
                        },
                        false => EpochEndOffset::error(p.partition, UNKNOWN_TOPIC_OR_PARTITION),
                    })
                    .collect(),
                tagged: Bytes::new(),
            })
            .collect(),
        tagged: Bytes::new(),
    }
    .encode(req.version())
}

fn epochs_request(parts: &[(&str, i32)]) -> OffsetForLeaderEpochRequest {
    let mut topics: Vec<EpochTopic> = Vec::new();
    for (t, p) in parts {
        let part = EpochPartition {
            partition: *p,
            current_leader_epoch: 0,
            leader_epoch: 0,
            tagged: Bytes::new(),
        };
        match topics.iter_mut().find(|x| &x.topic[..] == t.as_bytes()) {
            Some(x) => x.partitions.push(part),
            None => topics.push(EpochTopic {
                topic: Bytes::from(t.to_string()),
                partitions: vec![part],
                tagged: Bytes::new(),
            }),
        }
    }
    OffsetForLeaderEpochRequest {
        replica_id: -1,
        topics,
        tagged: Bytes::new(),
    }
}

/// (topic, partition, error, end offset) of every partition of the client's answer.
fn results(h: &mut Harness<KafkaSession, Broker>, version: i16) -> Vec<(String, i32, i16, i64)> {
    let (_, mut r) = super::answer(h, api::OFFSET_FOR_LEADER_EPOCH, version);
    let resp = OffsetForLeaderEpochResponse::decode(&mut r, version).unwrap();
    resp.topics
        .iter()
        .flat_map(|t| {
            let name = String::from_utf8_lossy(&t.topic).into_owned();
            t.partitions
                .iter()
                .map(move |p| (name.clone(), p.partition, p.error_code, p.end_offset))
        })
        .collect()
}

fn api_versions(h: &mut Harness<KafkaSession, Broker>) -> ApiVersionsResponse {
    h.send(&request(api::API_VERSIONS, 3, 1, &[0, 0, 0]));
    h.deliver();
    let (_, mut r) = super::answer(h, api::API_VERSIONS, 3);
    ApiVersionsResponse::decode(&mut r, 3).unwrap().0
}

fn seed(h: &mut Harness<KafkaSession, Broker>) {
    let b = |v: &str| batch(&[v], -1, -1, -1);
    let req = produce(
        1,
        &[("a1", 0, b("x")), ("a1", 0, b("y")), ("b1", 1, b("z"))],
    );
    h.send(&request(api::PRODUCE, 9, 2, &req.encode(9)));
    h.deliver();
    h.client.clear();
}

fn offered(v: &ApiVersionsResponse) -> Option<(i16, i16)> {
    v.api_keys
        .iter()
        .find(|a| a.api_key == api::OFFSET_FOR_LEADER_EPOCH)
        .map(|a| (a.min, a.max))
}

#[test]
fn split_by_shard_and_merged_in_the_clients_order_at_every_version() {
    for version in [2, 3, 4] {
        let mut h = harness();
        assert_eq!(offered(&api_versions(&mut h)), Some((2, 4)));
        seed(&mut h);
        let req = epochs_request(&[("b1", 1), ("a1", 0), ("b2", 0), ("zz", 2)]);
        h.send(&request(
            api::OFFSET_FOR_LEADER_EPOCH,
            version,
            9,
            &req.encode(version),
        ));
        // One part per shard, each with its own partitions only.
        let sent_b = OffsetForLeaderEpochRequest::decode(h.fake("b").seen.last().unwrap()).unwrap();
        assert_eq!(
            sent_b.encode(version),
            epochs_request(&[("b1", 1), ("b2", 0)]).encode(version)
        );
        let sent_a = OffsetForLeaderEpochRequest::decode(h.fake("a").seen.last().unwrap()).unwrap();
        assert_eq!(
            sent_a.encode(version),
            epochs_request(&[("a1", 0), ("zz", 2)]).encode(version)
        );
        h.deliver();
        assert_eq!(
            results(&mut h, version),
            vec![
                ("b1".into(), 1, NONE, 1),
                ("a1".into(), 0, NONE, 2),
                ("b2".into(), 0, NONE, 0),
                ("zz".into(), 2, UNKNOWN_TOPIC_OR_PARTITION, -1),
            ],
            "v{version}"
        );
        assert!(!h.closed);
    }
}

#[test]
fn a_shard_down_or_silent_fails_its_partitions_only() {
    let mut h = harness();
    api_versions(&mut h);
    seed(&mut h);
    let req = epochs_request(&[("a1", 0), ("b1", 1)]);
    h.send(&request(api::OFFSET_FOR_LEADER_EPOCH, 2, 3, &req.encode(2)));
    h.close_upstream("b", UpstreamFailureKind::Refused, "down");
    h.deliver();
    assert_eq!(
        results(&mut h, 2),
        vec![
            ("a1".into(), 0, NONE, 2),
            ("b1".into(), 1, NOT_LEADER_OR_FOLLOWER, -1)
        ]
    );

    h.fake("a").silent = true;
    h.send(&request(api::OFFSET_FOR_LEADER_EPOCH, 2, 4, &req.encode(2)));
    h.deliver();
    let at = h.now + 1_001;
    h.timeout(at);
    assert_eq!(
        results(&mut h, 2),
        vec![
            ("a1".into(), 0, REQUEST_TIMED_OUT, -1),
            ("b1".into(), 1, NONE, 1)
        ]
    );
}

#[test]
fn a_shard_without_the_api_is_never_sent_it_and_the_client_gets_unsupported_version() {
    // Shard b is like tansu 0.6: no OffsetForLeaderEpoch in its ApiVersions.
    let mut h = harness();
    h.fake("b").lacks.push(api::OFFSET_FOR_LEADER_EPOCH);
    assert_eq!(
        offered(&api_versions(&mut h)),
        None,
        "the intersection leaves it out"
    );
    let req = epochs_request(&[("a1", 0), ("b1", 1)]);
    h.send(&request(api::OFFSET_FOR_LEADER_EPOCH, 2, 5, &req.encode(2)));
    h.deliver();
    assert_eq!(
        results(&mut h, 2),
        vec![
            ("a1".into(), 0, NONE, 0),
            ("b1".into(), 1, UNSUPPORTED_VERSION, -1)
        ]
    );
    assert!(h
        .fake("b")
        .seen
        .iter()
        .all(|r| r.spec.key != api::OFFSET_FOR_LEADER_EPOCH));
    assert!(!h.closed, "an answer, the connection kept");

    // A connection that asked no ApiVersions knows no shard offers it: answered by the proxy.
    let mut h = harness();
    h.send(&request(api::OFFSET_FOR_LEADER_EPOCH, 4, 6, &req.encode(4)));
    assert_eq!(
        results(&mut h, 4),
        vec![
            ("a1".into(), 0, UNSUPPORTED_VERSION, -1),
            ("b1".into(), 1, UNSUPPORTED_VERSION, -1)
        ]
    );
    assert!(h.fakes.values().all(|f| f.seen.is_empty()));
    assert!(!h.closed);

    // Versions outside the proxy's (v0, v1, v5): the error for the correlation id, then the close.
    let mut h = harness();
    h.send(
        &request(api::OFFSET_FOR_LEADER_EPOCH, 2, 7, &req.encode(2))[..]
            .iter()
            .enumerate()
            .map(|(i, b)| if i == 7 { 1 } else { *b })
            .collect::<Vec<u8>>(),
    );
    assert!(h.closed);
    let (cid, mut r) = super::answer(&mut h, api::HEARTBEAT, 0);
    assert_eq!((cid, r.i16("error").unwrap()), (7, UNSUPPORTED_VERSION));
}

#[test]
fn each_partition_goes_to_its_leader_in_a_shard_of_several_brokers() {
    let mut m = harness();
    let a = m.fake("a");
    a.extra_brokers.push(MetadataBroker {
        node_id: 7,
        host: Bytes::from_static(b"10.0.0.7"),
        port: 9093,
        rack: None,
        tagged: Bytes::new(),
    });
    a.leader_by_partition.insert(1, 7);
    m.send(&metadata(Some(&["a1"])));
    m.deliver();

    let mut h = another_connection();
    api_versions(&mut h);
    let (l0, l1) = (ClusterId::endpoint(0), ClusterId::endpoint(1));
    h.fakes.entry(l0).or_default().host("a1");
    h.fakes.entry(l1).or_default().host("a1");
    let req = epochs_request(&[("a1", 0), ("a1", 1)]);
    h.send(&request(api::OFFSET_FOR_LEADER_EPOCH, 2, 8, &req.encode(2)));
    let a = h.id("a");
    assert_eq!(
        h.binds,
        vec![
            (l0, a, "127.0.0.1:9092".to_owned()),
            (l1, a, "10.0.0.7:9093".to_owned())
        ]
    );
    let sent = |h: &mut Harness<KafkaSession, Broker>, l| {
        OffsetForLeaderEpochRequest::decode(h.fakes[&l].seen.last().unwrap()).unwrap()
    };
    assert_eq!(sent(&mut h, l0), epochs_request(&[("a1", 0)]));
    assert_eq!(sent(&mut h, l1), epochs_request(&[("a1", 1)]));
    h.close_upstream_id(l1, UpstreamFailureKind::Refused, "down");
    h.deliver();
    assert_eq!(
        results(&mut h, 2),
        vec![
            ("a1".into(), 0, NONE, 0),
            ("a1".into(), 1, NOT_LEADER_OR_FOLLOWER, -1)
        ]
    );
}
