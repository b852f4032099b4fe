//! Differential tests against the `kafka-protocol` crate (generated from Kafka's own message
//! schemas): for every version the proxy carries, what that crate encodes this crate decodes
//! and encodes back to the same bytes, and what this crate builds (merges, error answers) that
//! crate reads as intended.

mod common;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as kp, BrokerId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use uuid::Uuid;

use common::response_round_trip;
use geomesh_kafka::apis::lookup;
use geomesh_kafka::codes::api;
use geomesh_kafka::messages::metadata::MetadataRequest;
use geomesh_kafka::messages::produce::ProduceRequest;
use geomesh_kafka::{Request, RequestHeader};

fn encode<T: Encodable>(m: &T, v: i16) -> Bytes {
    let mut b = BytesMut::new();
    m.encode(&mut b, v).unwrap();
    b.freeze()
}

/// A request frame (no size prefix) of `api_key` at `v` with `body`.
fn request(api_key: i16, v: i16, body: &[u8]) -> Request {
    let spec = lookup(api_key).unwrap();
    let mut w = geomesh_kafka::wire::Writer::new();
    RequestHeader {
        api_key,
        api_version: v,
        correlation_id: 7,
        client_id: Some(Bytes::from_static(b"oracle")),
        tagged: Bytes::new(),
    }
    .write(&mut w, spec.request_header_version(v) >= 2);
    w.raw(body);
    Request::parse(w.buf.freeze()).unwrap()
}

/// A response frame (no size prefix) of `api_key` at `v` with `body`.
fn response(api_key: i16, v: i16, body: &[u8]) -> Bytes {
    let spec = lookup(api_key).unwrap();
    geomesh_kafka::response_frame(7, spec.response_header_version(v), body).slice(4..)
}

fn assert_response_round_trip(api_key: i16, v: i16, body: Bytes) {
    let (orig, ours) = response_round_trip(api_key, v, response(api_key, v, &body))
        .unwrap()
        .unwrap_or_else(|e| panic!("api {api_key} v{v}: {e}"));
    assert_eq!(orig, body);
    assert_eq!(ours, body, "api {api_key} v{v}");
}

fn name(s: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(s))
}

/// A real idempotent batch (librdkafka to tansu) from the captures.
fn batch() -> Bytes {
    const FRAME: &[u8] = include_bytes!("data/captures/librdkafka/00025-c4-req-k0-v10-cid4.bin");
    let frame = Bytes::from_static(FRAME).slice(4..);
    let req = Request::parse(frame).unwrap();
    let p = ProduceRequest::decode(&req).unwrap();
    p.topics[0].partitions[0].records.clone().unwrap()
}

#[test]
fn metadata_request_every_version() {
    let spec = lookup(api::METADATA).unwrap();
    for v in spec.min..=spec.max {
        for topics in [None, Some(vec![]), Some(vec!["a", "orders.eu"])] {
            if v == 0 && topics.as_ref().is_some_and(Vec::is_empty) {
                continue; // v0 cannot say "no topic"
            }
            let mut m = kp::MetadataRequest::default();
            m.topics = topics.map(|ts| {
                ts.into_iter()
                    .map(|t| {
                        kp::metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(name(t)))
                    })
                    .collect()
            });
            if v == 0 && m.topics.is_none() {
                m.topics = Some(vec![]);
            }
            m.allow_auto_topic_creation = v < 4 || v % 2 == 0;
            m.include_topic_authorized_operations = v >= 8;
            let body = encode(&m, v);
            let req = request(api::METADATA, v, &body);
            let ours = MetadataRequest::decode(&req).unwrap();
            assert_eq!(ours.encode(v), body, "v{v}");
        }
    }
}

#[test]
fn metadata_response_every_version() {
    let spec = lookup(api::METADATA).unwrap();
    for v in spec.min..=spec.max {
        let mut m = kp::MetadataResponse::default();
        m.throttle_time_ms = if v >= 3 { 5 } else { 0 };
        m.brokers = vec![kp::metadata_response::MetadataResponseBroker::default()
            .with_node_id(BrokerId(111))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(9092)
            .with_rack(if v >= 1 {
                Some(StrBytes::from_static_str("r1"))
            } else {
                None
            })];
        if v >= 2 {
            m.cluster_id = Some(StrBytes::from_static_str("tansu_cluster"));
        }
        m.controller_id = BrokerId(if v >= 1 { 111 } else { -1 });
        let mut t =
            kp::metadata_response::MetadataResponseTopic::default().with_name(Some(name("t1")));
        if v >= 10 {
            t.topic_id = Uuid::from_u128(0x01a2_423c_1a7f_7561_97fd_e28e_1bdd_432a);
        }
        t.is_internal = false;
        t.topic_authorized_operations = if v >= 8 { 7 } else { i32::MIN };
        t.partitions = (0..3)
            .map(|i| {
                kp::metadata_response::MetadataResponsePartition::default()
                    .with_partition_index(i)
                    .with_leader_id(BrokerId(111))
                    .with_leader_epoch(if v >= 7 { 4 } else { -1 })
                    .with_replica_nodes(vec![BrokerId(111)])
                    .with_isr_nodes(vec![BrokerId(111)])
                    .with_offline_replicas(if v >= 5 { vec![BrokerId(5)] } else { vec![] })
            })
            .collect();
        m.topics = vec![t];
        m.cluster_authorized_operations = if (8..=10).contains(&v) { 3 } else { i32::MIN };
        assert_response_round_trip(api::METADATA, v, encode(&m, v));
    }
}

#[test]
fn produce_request_every_version() {
    let spec = lookup(api::PRODUCE).unwrap();
    let records = batch();
    for v in spec.min..=spec.max {
        let mut m = kp::ProduceRequest::default();
        m.acks = -1;
        m.timeout_ms = 30_000;
        m.transactional_id = None;
        m.topic_data = ["t1", "t2"]
            .into_iter()
            .map(|t| {
                kp::produce_request::TopicProduceData::default()
                    .with_name(name(t))
                    .with_partition_data(
                        (0..2)
                            .map(|i| {
                                kp::produce_request::PartitionProduceData::default()
                                    .with_index(i)
                                    .with_records(Some(records.clone()))
                            })
                            .collect(),
                    )
            })
            .collect();
        let body = encode(&m, v);
        let req = request(api::PRODUCE, v, &body);
        let ours = ProduceRequest::decode(&req).unwrap();
        assert_eq!(
            ours.topics[1].partitions[1].records.as_ref(),
            Some(&records)
        );
        assert_eq!(ours.encode(v), body, "v{v}");
    }
}

#[test]
fn produce_response_every_version() {
    let spec = lookup(api::PRODUCE).unwrap();
    for v in spec.min..=spec.max {
        let mut p = kp::produce_response::PartitionProduceResponse::default()
            .with_index(2)
            .with_error_code(0)
            .with_base_offset(42)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(if v >= 5 { 0 } else { -1 });
        if v >= 8 {
            p.record_errors = vec![kp::produce_response::BatchIndexAndErrorMessage::default()
                .with_batch_index(1)
                .with_batch_index_error_message(Some(StrBytes::from_static_str("bad")))];
            p.error_message = Some(StrBytes::from_static_str("partly"));
        }
        let mut m = kp::ProduceResponse::default();
        m.responses = vec![kp::produce_response::TopicProduceResponse::default()
            .with_name(name("t1"))
            .with_partition_responses(vec![p])];
        m.throttle_time_ms = 3;
        assert_response_round_trip(api::PRODUCE, v, encode(&m, v));
    }
}

#[test]
fn find_coordinator_and_init_producer_id_and_api_versions_responses() {
    for v in 0..=6 {
        let mut m = kp::FindCoordinatorResponse::default();
        if v <= 3 {
            m.node_id = BrokerId(111);
            m.host = StrBytes::from_static_str("127.0.0.1");
            m.port = 9092;
            if v >= 1 {
                m.error_message = Some(StrBytes::from_static_str("NONE"));
            }
        } else {
            m.coordinators = vec![kp::find_coordinator_response::Coordinator::default()
                .with_key(StrBytes::from_static_str("g1"))
                .with_node_id(BrokerId(111))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9092)];
        }
        assert_response_round_trip(api::FIND_COORDINATOR, v, encode(&m, v));
    }
    for v in 0..=5 {
        let m = kp::InitProducerIdResponse::default()
            .with_producer_id(kp::ProducerId(3))
            .with_producer_epoch(0);
        assert_response_round_trip(api::INIT_PRODUCER_ID, v, encode(&m, v));
    }
    for v in 0..=4 {
        let mut m = kp::ApiVersionsResponse::default();
        m.api_keys = vec![
            kp::api_versions_response::ApiVersion::default()
                .with_api_key(0)
                .with_max_version(11),
            kp::api_versions_response::ApiVersion::default()
                .with_api_key(3)
                .with_max_version(12),
        ];
        assert_response_round_trip(api::API_VERSIONS, v, encode(&m, v));
    }
}

#[test]
fn fetch_every_version() {
    let spec = lookup(api::FETCH).unwrap();
    let records = batch();
    for v in spec.min..=spec.max {
        let mut m = kp::FetchRequest::default();
        m.replica_id = BrokerId(-1);
        m.max_wait_ms = 500;
        m.min_bytes = 1;
        m.max_bytes = 52_428_800;
        m.isolation_level = 1;
        if v >= 7 {
            m.session_id = 0;
            m.session_epoch = -1;
            m.forgotten_topics_data = vec![kp::fetch_request::ForgottenTopic::default()
                .with_topic(name("old"))
                .with_partitions(vec![4])];
        }
        m.topics = vec![kp::fetch_request::FetchTopic::default()
            .with_topic(name("t1"))
            .with_partitions(
                (0..2)
                    .map(|i| {
                        kp::fetch_request::FetchPartition::default()
                            .with_partition(i)
                            .with_current_leader_epoch(if v >= 9 { 3 } else { -1 })
                            .with_fetch_offset(10 + i64::from(i))
                            .with_last_fetched_epoch(if v >= 12 { 2 } else { -1 })
                            .with_log_start_offset(if v >= 5 { 0 } else { -1 })
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )];
        if v >= 11 {
            m.rack_id = StrBytes::from_static_str("rack-a");
        }
        let body = encode(&m, v);
        let req = request(api::FETCH, v, &body);
        let ours = geomesh_kafka::messages::fetch::FetchRequest::decode(&req).unwrap();
        assert_eq!(ours.encode(v), body, "request v{v}");

        let mut p = kp::fetch_response::PartitionData::default()
            .with_partition_index(1)
            .with_high_watermark(12)
            .with_last_stable_offset(12)
            .with_log_start_offset(if v >= 5 { 0 } else { -1 })
            .with_aborted_transactions(Some(vec![kp::fetch_response::AbortedTransaction::default(
            )
            .with_producer_id(kp::ProducerId(4))
            .with_first_offset(2)]))
            .with_preferred_read_replica(BrokerId(-1))
            .with_records(Some(records.clone()));
        if v >= 12 {
            p.current_leader = kp::fetch_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(111))
                .with_leader_epoch(3);
        }
        let mut r = kp::FetchResponse::default();
        r.throttle_time_ms = 1;
        r.responses = vec![kp::fetch_response::FetchableTopicResponse::default()
            .with_topic(name("t1"))
            .with_partitions(vec![p])];
        assert_response_round_trip(api::FETCH, v, encode(&r, v));
    }
}

#[test]
fn list_offsets_every_version() {
    let spec = lookup(api::LIST_OFFSETS).unwrap();
    for v in spec.min..=spec.max {
        let mut m = kp::ListOffsetsRequest::default();
        m.replica_id = BrokerId(-1);
        m.isolation_level = if v >= 2 { 1 } else { 0 };
        m.topics = vec![kp::list_offsets_request::ListOffsetsTopic::default()
            .with_name(name("t1"))
            .with_partitions(vec![
                kp::list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(2)
                    .with_current_leader_epoch(if v >= 4 { 0 } else { -1 })
                    .with_timestamp(-2),
            ])];
        let body = encode(&m, v);
        let req = request(api::LIST_OFFSETS, v, &body);
        let ours = geomesh_kafka::messages::list_offsets::ListOffsetsRequest::decode(&req).unwrap();
        assert_eq!(ours.encode(v), body, "request v{v}");
        let mut r = kp::ListOffsetsResponse::default();
        r.throttle_time_ms = if v >= 2 { 2 } else { 0 };
        r.topics = vec![
            kp::list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(name("t1"))
                .with_partitions(vec![
                    kp::list_offsets_response::ListOffsetsPartitionResponse::default()
                        .with_partition_index(2)
                        .with_timestamp(-1)
                        .with_offset(40)
                        .with_leader_epoch(if v >= 4 { 0 } else { -1 }),
                ]),
        ];
        assert_response_round_trip(api::LIST_OFFSETS, v, encode(&r, v));
    }
}

#[test]
fn offset_for_leader_epoch_every_version() {
    use kp::offset_for_leader_epoch_request as rq;
    use kp::offset_for_leader_epoch_response as rs;
    let spec = lookup(api::OFFSET_FOR_LEADER_EPOCH).unwrap();
    assert_eq!((spec.min, spec.max), (2, 4));
    for v in spec.min..=spec.max {
        let mut m = kp::OffsetForLeaderEpochRequest::default();
        m.replica_id = BrokerId(if v >= 3 { -1 } else { -2 });
        m.topics = vec![rq::OffsetForLeaderTopic::default().with_topic(name("t1")).with_partitions(vec![
            rq::OffsetForLeaderPartition::default().with_partition(2).with_current_leader_epoch(5).with_leader_epoch(4),
            rq::OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(-1).with_leader_epoch(0),
        ])];
        let body = encode(&m, v);
        let req = request(api::OFFSET_FOR_LEADER_EPOCH, v, &body);
        let ours = geomesh_kafka::messages::leader_epoch::OffsetForLeaderEpochRequest::decode(&req).unwrap();
        assert_eq!(ours.encode(v), body, "request v{v}");
        assert_eq!(ours.topics[0].partitions[0].current_leader_epoch, 5);
        let mut r = kp::OffsetForLeaderEpochResponse::default();
        r.throttle_time_ms = 3;
        r.topics = vec![rs::OffsetForLeaderTopicResult::default().with_topic(name("t1")).with_partitions(vec![
            rs::EpochEndOffset::default().with_partition(2).with_leader_epoch(4).with_end_offset(40),
            rs::EpochEndOffset::default().with_error_code(6).with_partition(0),
        ])];
        assert_response_round_trip(api::OFFSET_FOR_LEADER_EPOCH, v, encode(&r, v));
    }
}

#[test]
fn offset_commit_and_fetch_every_version() {
    use geomesh_kafka::messages::offsets::{OffsetCommitRequest, OffsetFetchRequest};
    for v in 2..=9 {
        let mut m = kp::OffsetCommitRequest::default();
        m.group_id = kp::GroupId(StrBytes::from_static_str("g1"));
        m.generation_id_or_member_epoch = 3;
        m.member_id = StrBytes::from_static_str("rdkafka-1");
        if v >= 7 {
            m.group_instance_id = Some(StrBytes::from_static_str("i1"));
        }
        m.retention_time_ms = -1;
        m.topics = vec![
            kp::offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t1"))
                .with_partitions(vec![
                    kp::offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(40)
                        .with_committed_leader_epoch(if v >= 6 { 2 } else { -1 })
                        .with_committed_metadata(Some(StrBytes::from_static_str(""))),
                ]),
        ];
        let body = encode(&m, v);
        let ours = OffsetCommitRequest::decode(&request(api::OFFSET_COMMIT, v, &body)).unwrap();
        assert_eq!(ours.encode(v), body, "commit request v{v}");
        let mut r = kp::OffsetCommitResponse::default();
        r.throttle_time_ms = if v >= 3 { 1 } else { 0 };
        r.topics = vec![
            kp::offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(name("t1"))
                .with_partitions(vec![
                    kp::offset_commit_response::OffsetCommitResponsePartition::default()
                        .with_partition_index(1)
                        .with_error_code(22),
                ]),
        ];
        assert_response_round_trip(api::OFFSET_COMMIT, v, encode(&r, v));
    }
    for v in 1..=7 {
        for topics in [Some(vec!["t1", "t2"]), None] {
            if v < 2 && topics.is_none() {
                continue;
            }
            let mut m = kp::OffsetFetchRequest::default();
            m.group_id = kp::GroupId(StrBytes::from_static_str("g1"));
            m.topics = topics.map(|ts| {
                ts.into_iter()
                    .map(|t| {
                        kp::offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(name(t))
                            .with_partition_indexes(vec![0, 2])
                    })
                    .collect()
            });
            m.require_stable = v >= 7;
            let body = encode(&m, v);
            let ours = OffsetFetchRequest::decode(&request(api::OFFSET_FETCH, v, &body)).unwrap();
            assert_eq!(ours.encode(v), body, "fetch request v{v}");
        }
        let mut r = kp::OffsetFetchResponse::default();
        r.throttle_time_ms = if v >= 3 { 2 } else { 0 };
        r.topics = vec![
            kp::offset_fetch_response::OffsetFetchResponseTopic::default()
                .with_name(name("t1"))
                .with_partitions(vec![
                    kp::offset_fetch_response::OffsetFetchResponsePartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(12)
                        .with_committed_leader_epoch(if v >= 5 { 1 } else { -1 })
                        .with_metadata(Some(StrBytes::from_static_str("m"))),
                ]),
        ];
        assert_response_round_trip(api::OFFSET_FETCH, v, encode(&r, v));
    }
}

/// What the proxy builds must read back with the oracle (its merges and error answers).
pub fn decode_with_oracle<T: Decodable>(body: &Bytes, v: i16) -> T {
    T::decode(&mut body.clone(), v).unwrap()
}

#[test]
fn metadata_v0_null_topics_is_refused_as_kafka_does() {
    // Found by fuzzing: v0's topic array is not nullable (Kafka's parser throws); reading it
    // as "all topics" and re-encoding it as an empty array would change the request's bytes.
    let req = request(api::METADATA, 0, &(-1i32).to_be_bytes());
    assert!(MetadataRequest::decode(&req).is_err());
    let req = request(api::METADATA, 1, &(-1i32).to_be_bytes());
    assert_eq!(MetadataRequest::decode(&req).unwrap().topics, None);
}
