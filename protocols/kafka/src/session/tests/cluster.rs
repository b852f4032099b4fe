//! ApiVersions and Metadata through the session.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::Bytes;

use super::*;
use crate::codes::UNSUPPORTED_VERSION;
use crate::messages::metadata::MetadataRequestTopic;

#[test]
fn api_versions_are_asked_of_every_shard_and_intersected() {
    let mut h = harness();
    h.send(&request(api::API_VERSIONS, 3, 7, &[0, 0, 0]));
    h.deliver();
    assert_eq!(h.fake("a").seen.len(), 1);
    assert_eq!(h.fake("b").seen.len(), 1);
    let (cid, mut r) = answer(&mut h, api::API_VERSIONS, 3);
    assert_eq!(cid, 7);
    let (resp, _) = ApiVersionsResponse::decode(&mut r, 3).unwrap();
    assert_eq!(resp.error_code, NONE);
    let produce = resp.api_keys.iter().find(|a| a.api_key == api::PRODUCE).unwrap();
    assert_eq!((produce.min, produce.max), (3, 11), "the shards' max (11) and the proxy's cap (12)");
    let sasl = resp.api_keys.iter().find(|a| a.api_key == api::SASL_HANDSHAKE).unwrap();
    assert_eq!((sasl.min, sasl.max), (1, 1), "SaslHandshake v1 only (v0 sends unframed tokens)");
}

#[test]
fn api_versions_above_the_proxy_get_its_ranges_and_the_connection_stays() {
    let mut h = harness();
    h.send(&request(api::API_VERSIONS, 9, 1, &[]));
    let (cid, mut r) = answer(&mut h, api::API_VERSIONS, 0);
    assert_eq!(cid, 1);
    assert_eq!(ApiVersionsResponse::decode(&mut r, 0).unwrap().0.error_code, UNSUPPORTED_VERSION);
    assert!(!h.closed);
    assert!(h.fakes.values().all(|f| f.seen.is_empty()));
}

pub fn metadata(topics: Option<&[&str]>) -> Vec<u8> {
    let md = MetadataRequest {
        topics: topics.map(|t| {
            t.iter()
                .map(|n| MetadataRequestTopic {
                    topic_id: [0; 16],
                    name: Some(Bytes::from(n.to_string())),
                    tagged: Bytes::new(),
                })
                .collect()
        }),
        allow_auto_topic_creation: false,
        include_cluster_authorized_operations: false,
        include_topic_authorized_operations: false,
        tagged: Bytes::new(),
    };
    request(api::METADATA, 12, 3, &md.encode(12))
}

#[test]
fn metadata_is_one_cluster_of_virtual_brokers_at_the_proxy() {
    let mut h = harness();
    h.send(&metadata(Some(&["b1", "a1", "zz"])));
    h.deliver();
    let (_, mut r) = answer(&mut h, api::METADATA, 12);
    let md = MetadataResponse::decode(&mut r, 12).unwrap();
    let brokers: Vec<(i32, &[u8], i32)> = md.brokers.iter().map(|b| (b.node_id, &b.host[..], b.port)).collect();
    assert_eq!(brokers, vec![(NODE, PROXY_HOST.as_bytes(), PROXY_PORT), (1_000_000 + NODE, PROXY_HOST.as_bytes(), PROXY_PORT)]);
    assert_eq!(md.cluster_id.as_deref(), Some(&b"geomesh"[..]));
    let topics: Vec<(&[u8], i16, Vec<i32>)> = md
        .topics
        .iter()
        .map(|t| (t.name.as_deref().unwrap(), t.error_code, t.partitions.iter().map(|p| p.leader_id).collect()))
        .collect();
    assert_eq!(
        topics,
        vec![
            (&b"b1"[..], NONE, vec![1_000_111; 3]),
            (&b"a1"[..], NONE, vec![111; 3]),
            (&b"zz"[..], UNKNOWN_TOPIC_OR_PARTITION, vec![]),
        ]
    );
    // Each shard was asked for its own topics only.
    let asked_b = MetadataRequest::decode(&h.fake("b").seen[0]).unwrap();
    assert_eq!(asked_b.topics.unwrap().len(), 1);
}

#[test]
fn metadata_of_every_topic_keeps_each_from_its_owner_and_a_shard_down_costs_only_its_topics() {
    let mut h = harness();
    h.fake("b").host("a-stale-copy");
    h.send(&metadata(None));
    h.deliver();
    let (_, mut r) = answer(&mut h, api::METADATA, 12);
    let md = MetadataResponse::decode(&mut r, 12).unwrap();
    let names: Vec<&[u8]> = md.topics.iter().map(|t| t.name.as_deref().unwrap()).collect();
    assert_eq!(names, vec![&b"a1"[..], b"b1", b"b2"]);

    h.fake("b").silent = true;
    h.send(&metadata(Some(&["a1", "b1"])));
    h.deliver();
    h.timeout(h.now + 1_100);
    let (_, mut r) = answer(&mut h, api::METADATA, 12);
    let md = MetadataResponse::decode(&mut r, 12).unwrap();
    let codes: Vec<i16> = md.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![NONE, crate::codes::LEADER_NOT_AVAILABLE]);
    assert_eq!(md.brokers.len(), 1);
}
