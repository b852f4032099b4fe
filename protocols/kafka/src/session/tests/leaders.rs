//! Shards of several brokers: each partition to the leader its shard's Metadata names, through
//! an endpoint link bound on first use; the table cluster while no leader is known.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::Bytes;
use geomesh_core::{ClusterId, UpstreamFailureKind};

use super::cluster::metadata;
use super::consume::fetch;
use super::produce::produce;
use super::*;
use crate::codes::NOT_LEADER_OR_FOLLOWER;
use crate::session::leaders::{self, from_metadata, leader_of, LeaderRegistry, Links, VmLeaders};

/// Shard a lists a second broker, node 7 at 10.0.0.7:9093, leading partition 1 of `a1`.
fn two_broker_shard(h: &mut Harness<KafkaSession, Broker>) {
    let a = h.fake("a");
    a.extra_brokers.push(MetadataBroker {
        node_id: 7,
        host: Bytes::from_static(b"10.0.0.7"),
        port: 9093,
        rack: None,
        tagged: Bytes::new(),
    });
    a.leader_by_partition.insert(1, 7);
}

fn produce_codes(h: &mut Harness<KafkaSession, Broker>) -> Vec<(i32, i16)> {
    let (_, mut r) = answer(h, api::PRODUCE, 9);
    let resp = ProduceResponse::decode(&mut r, 9).unwrap();
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.index, p.error_code)))
        .collect()
}

#[test]
fn each_partition_goes_to_its_leader_learnt_from_metadata_on_another_connection() {
    // Connection 1 asks Metadata: the shard's leaders are kept VM-wide.
    let mut m = harness();
    two_broker_shard(&mut m);
    m.send(&metadata(Some(&["a1"])));
    m.deliver();
    let _ = answer(&mut m, api::METADATA, 12);

    // Connection 2 produces: partition 1 to node 7's endpoint, 0 and 2 to node 111's.
    let mut h = another_connection();
    let l0 = ClusterId::endpoint(0);
    let l1 = ClusterId::endpoint(1);
    let b = |v: &str| batch(&[v], -1, -1, -1);
    let req = produce(
        1,
        &[("a1", 0, b("x")), ("a1", 1, b("y")), ("a1", 2, b("z"))],
    );
    h.fakes.entry(l0).or_default().host("a1");
    h.fakes.entry(l1).or_default().host("a1");
    h.send(&request(api::PRODUCE, 9, 5, &req.encode(9)));
    let a = h.id("a");
    assert_eq!(
        h.binds,
        vec![
            (l0, a, "127.0.0.1:9092".to_owned()),
            (l1, a, "10.0.0.7:9093".to_owned())
        ]
    );
    h.deliver();
    assert_eq!(produce_codes(&mut h), vec![(0, NONE), (1, NONE), (2, NONE)]);
    assert!(
        h.fake("a").seen.is_empty(),
        "nothing to the bootstrap address once leaders are known"
    );
    let logs = |h: &mut Harness<KafkaSession, Broker>, l| {
        h.fakes[&l].logs.keys().map(|(_, p)| *p).collect::<Vec<_>>()
    };
    assert_eq!(logs(&mut h, l0), vec![0, 2]);
    assert_eq!(logs(&mut h, l1), vec![1]);

    // Fetch follows the same leaders; links are bound once per connection.
    h.send(&request(
        api::FETCH,
        12,
        6,
        &fetch(&[("a1", 1), ("a1", 2)], 0).encode(12),
    ));
    assert_eq!(h.binds.len(), 2);
    assert_eq!(
        h.fakes[&l1].seen.last().map(|r| r.spec.key),
        Some(api::FETCH)
    );
    assert_eq!(
        h.fakes[&l0].seen.last().map(|r| r.spec.key),
        Some(api::FETCH)
    );

    // The leader's broker goes away: its partition gets NOT_LEADER_OR_FOLLOWER (the client
    // refreshes Metadata), the others are served.
    h.deliver();
    let _ = answer(&mut h, api::FETCH, 12);
    h.close_upstream_id(l1, UpstreamFailureKind::Refused, "down");
    h.send(&request(api::PRODUCE, 9, 7, &req.encode(9)));
    h.close_upstream_id(l1, UpstreamFailureKind::Refused, "down");
    h.deliver();
    assert_eq!(
        produce_codes(&mut h),
        vec![(0, NONE), (1, NOT_LEADER_OR_FOLLOWER), (2, NONE)]
    );
}

#[test]
fn without_known_leaders_or_when_told_not_to_follow_partitions_go_to_the_table_cluster() {
    let mut h = harness();
    let b = |v: &str| batch(&[v], -1, -1, -1);
    h.send(&request(
        api::PRODUCE,
        9,
        5,
        &produce(1, &[("a1", 1, b("y"))]).encode(9),
    ));
    h.deliver();
    assert!(h.binds.is_empty());
    assert_eq!(produce_codes(&mut h), vec![(1, NONE)]);

    let yaml = format!("{TABLE}  follow_leaders: false\n");
    let mut h = harness_with(&yaml);
    two_broker_shard(&mut h);
    h.send(&metadata(Some(&["a1"])));
    h.deliver();
    let _ = answer(&mut h, api::METADATA, 12);
    h.send(&request(
        api::PRODUCE,
        9,
        5,
        &produce(1, &[("a1", 1, b("y"))]).encode(9),
    ));
    h.deliver();
    assert!(h.binds.is_empty());
    assert_eq!(produce_codes(&mut h), vec![(1, NONE)]);
}

#[test]
fn leaders_come_from_a_metadata_answer_and_survive_their_stored_form() {
    let md = MetadataResponse {
        throttle_time_ms: 0,
        brokers: vec![
            MetadataBroker {
                node_id: 1,
                host: Bytes::from_static(b"k1"),
                port: 9092,
                rack: None,
                tagged: Bytes::new(),
            },
            MetadataBroker {
                node_id: 2,
                host: Bytes::from_static(b"bad@host"),
                port: 9092,
                rack: None,
                tagged: Bytes::new(),
            },
            MetadataBroker {
                node_id: 3,
                host: Bytes::from_static(b"k3"),
                port: 0,
                rack: None,
                tagged: Bytes::new(),
            },
        ],
        cluster_id: None,
        controller_id: 1,
        topics: vec![MetadataTopic {
            error_code: NONE,
            name: Some(Bytes::from_static(b"t")),
            topic_id: [0; 16],
            is_internal: false,
            partitions: [(2, 1), (0, 1), (1, 2), (3, 3), (4, 9)]
                .iter()
                .map(|(i, leader)| MetadataPartition {
                    error_code: NONE,
                    partition_index: *i,
                    leader_id: *leader,
                    leader_epoch: 0,
                    replica_nodes: vec![],
                    isr_nodes: vec![],
                    offline_replicas: vec![],
                    tagged: Bytes::new(),
                })
                .collect(),
            topic_authorized_operations: AUTHORIZED_OPERATIONS_UNKNOWN,
            tagged: Bytes::new(),
        }],
        cluster_authorized_operations: AUTHORIZED_OPERATIONS_UNKNOWN,
        tagged: Bytes::new(),
    };
    let got = from_metadata(&md);
    assert_eq!(got.len(), 1);
    let (name, l) = &got[0];
    assert_eq!(&name[..], b"t");
    // A leader at an unusable address (an `@`, port 0) or not listed is not kept.
    assert_eq!(
        l,
        &vec![(0, "k1:9092".to_owned()), (2, "k1:9092".to_owned())]
    );
    assert_eq!(leader_of(l, 2), Some("k1:9092"));
    assert_eq!(leader_of(l, 1), None);
    assert_eq!(leaders::decode(&leaders::encode(l)).as_ref(), Some(l));
    for cut in 0..leaders::encode(l).len() {
        assert_eq!(leaders::decode(&leaders::encode(l)[..cut]), None, "{cut}");
    }
    assert_eq!(leaders::decode(&[0x7f, 0xff, 0xff, 0xff]), None);
    VmLeaders.put(3, b"t", l);
    assert_eq!(VmLeaders.get(3, b"t").as_ref(), Some(l));
    assert_eq!(VmLeaders.get(2, b"t"), None);

    let mut links = Links::default();
    let a = ClusterId(0);
    assert_eq!(
        links.link(a, "k1:9092"),
        Some((ClusterId::endpoint(0), true))
    );
    assert_eq!(
        links.link(a, "k1:9092"),
        Some((ClusterId::endpoint(0), false))
    );
    assert_eq!(
        links.link(ClusterId(1), "k1:9092"),
        Some((ClusterId::endpoint(1), true))
    );
    assert_eq!(links.cluster_of(ClusterId::endpoint(1)), ClusterId(1));
    assert_eq!(links.cluster_of(a), a);
}
