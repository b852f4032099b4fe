//! Group requests follow the coordinator the home shard's FindCoordinator names (a shard of
//! several brokers), the group's offsets on another shard follow that shard's coordinator, and
//! a commit from a fenced member is not written on other shards.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::Bytes;
use geomesh_core::{ClusterId, UpstreamFailureKind};

use super::group::{find_coordinator, heartbeat};
use super::*;
use crate::codes::{COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR};
use crate::logic::offsets::{ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID};
use crate::messages::offsets::{CommitPartition, CommitTopic, FetchOffsetsTopic};

fn commit(group: &str, generation_id: i32, member: &str, topics: &[&str]) -> Vec<u8> {
    let c = OffsetCommitRequest {
        group_id: Bytes::from(group.to_owned()),
        generation_id,
        member_id: Bytes::from(member.to_owned()),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: topics
            .iter()
            .map(|t| CommitTopic {
                name: Bytes::from(t.to_string()),
                partitions: vec![CommitPartition {
                    partition_index: 0,
                    committed_offset: 10 + i64::from(generation_id),
                    committed_leader_epoch: -1,
                    committed_metadata: None,
                    tagged: Bytes::new(),
                }],
                tagged: Bytes::new(),
            })
            .collect(),
        tagged: Bytes::new(),
    };
    request(api::OFFSET_COMMIT, 8, 2, &c.encode(8))
}

fn commit_codes(h: &mut Harness<KafkaSession, Broker>) -> Vec<(String, i16)> {
    let (_, mut r) = answer(h, api::OFFSET_COMMIT, 8);
    let resp = OffsetCommitResponse::decode(&mut r, 8).unwrap();
    resp.topics
        .iter()
        .map(|t| {
            (
                String::from_utf8_lossy(&t.name).into_owned(),
                t.partitions[0].error_code,
            )
        })
        .collect()
}

fn heartbeat_code(h: &mut Harness<KafkaSession, Broker>) -> i16 {
    let (_, mut r) = answer(h, api::HEARTBEAT, 4);
    r.i32("throttle").unwrap();
    r.i16("error").unwrap()
}

fn offset_fetch(group: &str, topics: &[&str]) -> Vec<u8> {
    let f = OffsetFetchRequest {
        group_id: Bytes::from(group.to_owned()),
        topics: Some(
            topics
                .iter()
                .map(|t| FetchOffsetsTopic {
                    name: Bytes::from(t.to_string()),
                    partition_indexes: vec![0],
                    tagged: Bytes::new(),
                })
                .collect(),
        ),
        require_stable: false,
        tagged: Bytes::new(),
    };
    request(api::OFFSET_FETCH, 7, 3, &f.encode(7))
}

fn keys(h: &Harness<KafkaSession, Broker>, c: ClusterId) -> Vec<i16> {
    h.fakes
        .get(&c)
        .map(|f| f.seen.iter().map(|r| r.spec.key).collect())
        .unwrap_or_default()
}

#[test]
fn group_requests_go_to_the_coordinator_find_coordinator_named_until_it_moves() {
    // Shard a's bootstrap broker names node 8 at 10.0.0.8:9094 as the coordinator of g-a;
    // shard b (not g-a's home, holding b1's offsets) names its node 7 at 10.0.0.7:9097.
    let mut m = harness();
    m.fake("a").coordinator = Some((8, "10.0.0.8", 9094));
    m.fake("b").coordinator = Some((7, "10.0.0.7", 9097));
    let found = find_coordinator(&mut m, 2, &["g-a"]);
    let c = &found.coordinators[0];
    assert_eq!(
        (c.node_id, &c.host[..], c.port),
        (8, PROXY_HOST.as_bytes(), PROXY_PORT)
    );

    assert_eq!(
        keys(&m, m.id("b")),
        vec![api::FIND_COORDINATOR],
        "b asked for its own coordinator of g-a"
    );

    // Another connection (the client's connection to that virtual node): every group request
    // of g-a goes to 10.0.0.8:9094 through an endpoint link, its offsets on b to 10.0.0.7:9097;
    // nothing to the bootstrap brokers.
    let mut h = another_connection();
    let a = h.id("a");
    let b = h.id("b");
    let l0 = ClusterId::endpoint(0);
    let l1 = ClusterId::endpoint(1);
    h.fakes.entry(l0).or_default().host("a1");
    h.fakes.entry(l1).or_default().host("b1");
    h.send(&heartbeat("g-a"));
    assert_eq!(h.binds, vec![(l0, a, "10.0.0.8:9094".to_owned())]);
    h.deliver();
    assert_eq!(heartbeat_code(&mut h), NONE);
    h.send(&commit("g-a", 5, "m-1", &["a1", "b1"]));
    h.deliver();
    assert_eq!(
        commit_codes(&mut h),
        vec![("a1".into(), NONE), ("b1".into(), NONE)]
    );
    assert_eq!(
        h.fakes[&l0].commits[&(b"g-a".to_vec(), b"a1".to_vec(), 0)],
        (15, 5),
        "the member's commit at the coordinator"
    );
    assert_eq!(h.binds.last(), Some(&(l1, b, "10.0.0.7:9097".to_owned())));
    assert_eq!(
        h.fakes[&l1].commits[&(b"g-a".to_vec(), b"b1".to_vec(), 0)],
        (15, -1),
        "standalone on b's coordinator"
    );
    h.send(&offset_fetch("g-a", &["a1", "b1"]));
    h.deliver();
    let (_, mut r) = answer(&mut h, api::OFFSET_FETCH, 7);
    let resp = OffsetFetchResponse::decode(&mut r, 7).unwrap();
    let got: Vec<i64> = resp
        .topics
        .iter()
        .map(|t| t.partitions[0].committed_offset)
        .collect();
    assert_eq!(got, vec![15, 15]);
    assert_eq!(
        keys(&h, l0),
        vec![api::HEARTBEAT, api::OFFSET_COMMIT, api::OFFSET_FETCH]
    );
    assert_eq!(keys(&h, l1), vec![api::OFFSET_COMMIT, api::OFFSET_FETCH]);
    assert!(keys(&h, a).is_empty(), "nothing to a's bootstrap broker");
    assert!(keys(&h, b).is_empty(), "nothing to b's bootstrap broker");
    assert_eq!(h.binds.len(), 2, "one link per shard, bound once");

    // b's coordinator moved: its NOT_COORDINATOR reaches the client for b1, and b1's next
    // commit goes to b's table cluster until FindCoordinator names the new one.
    h.fakes.get_mut(&l1).unwrap().group_error = NOT_COORDINATOR;
    h.send(&commit("g-a", 5, "m-1", &["b1"]));
    h.deliver();
    assert_eq!(commit_codes(&mut h), vec![("b1".into(), NOT_COORDINATOR)]);
    h.send(&commit("g-a", 5, "m-1", &["b1"]));
    h.deliver();
    assert_eq!(commit_codes(&mut h), vec![("b1".into(), NONE)]);
    assert_eq!(keys(&h, b), vec![api::OFFSET_COMMIT]);

    // The coordinator moved: its NOT_COORDINATOR reaches the client, and the group's next
    // requests go to the table cluster until FindCoordinator names the new one.
    h.fakes.get_mut(&l0).unwrap().group_error = NOT_COORDINATOR;
    h.send(&heartbeat("g-a"));
    h.deliver();
    assert_eq!(heartbeat_code(&mut h), NOT_COORDINATOR);
    h.send(&heartbeat("g-a"));
    h.deliver();
    assert_eq!(heartbeat_code(&mut h), NONE);
    assert_eq!(keys(&h, a), vec![api::HEARTBEAT]);
    h.fake("a").coordinator = Some((9, "10.0.0.9", 9095));
    find_coordinator(&mut h, 2, &["g-a"]);
    h.send(&heartbeat("g-a"));
    assert_eq!(
        h.binds.last(),
        Some(&(ClusterId::endpoint(2), a, "10.0.0.9:9095".to_owned()))
    );

    // A coordinator's link that fails: COORDINATOR_NOT_AVAILABLE, the coordinator forgotten.
    h.close_upstream_id(ClusterId::endpoint(2), UpstreamFailureKind::Refused, "down");
    assert_eq!(heartbeat_code(&mut h), COORDINATOR_NOT_AVAILABLE);
    h.send(&heartbeat("g-a"));
    h.deliver();
    assert_eq!(heartbeat_code(&mut h), NONE);
    assert_eq!(
        keys(&h, a),
        vec![api::HEARTBEAT, api::FIND_COORDINATOR, api::HEARTBEAT]
    );
}

#[test]
fn without_following_leaders_group_requests_stay_on_the_table_cluster() {
    let yaml = TABLE.replace(
        "  advertised_port: 19092\n",
        "  advertised_port: 19092\n  follow_leaders: false\n",
    );
    let mut h = harness_with(&yaml);
    h.fake("a").coordinator = Some((8, "10.0.0.8", 9094));
    find_coordinator(&mut h, 2, &["g-a"]);
    h.send(&heartbeat("g-a"));
    h.deliver();
    assert_eq!(heartbeat_code(&mut h), NONE);
    assert!(h.binds.is_empty());
}

/// A JoinGroup v5 request of `group` by `member`.
fn join(group: &str, member: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(false, group.as_bytes());
    w.i32(10_000);
    w.i32(10_000);
    w.string(false, member.as_bytes());
    w.nullable_string(false, None);
    w.string(false, b"consumer");
    w.array_len(false, 1);
    w.string(false, b"range");
    w.nullable_bytes(false, Some(b""));
    request(api::JOIN_GROUP, 5, 4, &w.buf)
}

/// A JoinGroup v5 answer: `generation`, `member`, and the leader's list of `members`.
fn join_answer(generation: i32, member: &str, members: &[&str]) -> Bytes {
    let mut w = Writer::new();
    w.i32(0);
    w.i16(NONE);
    w.i32(generation);
    w.string(false, b"range");
    w.string(false, members.first().unwrap_or(&member).as_bytes());
    w.string(false, member.as_bytes());
    w.array_len(false, members.len());
    for m in members {
        w.string(false, m.as_bytes());
        w.nullable_string(false, None);
        w.nullable_bytes(false, Some(b""));
    }
    w.buf.freeze()
}

#[test]
fn a_fenced_members_commit_is_not_written_on_the_other_shards() {
    // g-a is homed on a; the leader m-new joins generation 6, alone.
    let mut h = harness();
    h.fake("a").join_answer = Some(join_answer(6, "m-new", &["m-new"]));
    h.send(&join("g-a", "m-new"));
    h.deliver();
    let _ = answer(&mut h, api::JOIN_GROUP, 5);

    // On another connection (the same VM): m-old of generation 5 commits a1 (home) and b1.
    let mut o = another_connection();
    o.send(&commit("g-a", 5, "m-old", &["a1", "b1"]));
    o.deliver();
    assert_eq!(
        commit_codes(&mut o),
        vec![("a1".into(), NONE), ("b1".into(), ILLEGAL_GENERATION)],
        "the home shard judges its own part (this scripted one does not fence)"
    );
    assert!(o.fake("b").seen.is_empty(), "nothing written on b");
    // A member unknown to generation 6.
    o.send(&commit("g-a", 6, "m-x", &["b1"]));
    o.deliver();
    assert_eq!(commit_codes(&mut o), vec![("b1".into(), UNKNOWN_MEMBER_ID)]);
    assert!(o.fake("b").seen.is_empty());

    // The live member commits everywhere.
    o.send(&commit("g-a", 6, "m-new", &["a1", "b1"]));
    o.deliver();
    assert_eq!(
        commit_codes(&mut o),
        vec![("a1".into(), NONE), ("b1".into(), NONE)]
    );
    assert_eq!(
        o.fake("b").commits[&(b"g-a".to_vec(), b"b1".to_vec(), 0)],
        (16, -1)
    );

    // A generation newer than the proxy saw (joined through another proxy) passes.
    o.send(&commit("g-a", 7, "m-other", &["b1"]));
    o.deliver();
    assert_eq!(commit_codes(&mut o), vec![("b1".into(), NONE)]);
}
