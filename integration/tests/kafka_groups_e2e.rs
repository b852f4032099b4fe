//! Consumer groups through a real Envoy running `geomesh_filter_kafka.wasm`, a real
//! `geomesh-bridge` and real tansu brokers: group requests follow the coordinator a shard of
//! several brokers names (confluent-kafka consumers), and a commit from a fenced member is not
//! written on the shards that are not the group's home (raw frames).

use std::time::Duration;

use anyhow::{Context, Result};
use geomesh_integration::kafka_clients::KafkaClient;
use geomesh_integration::kafka_raw::{create_topics_v0, Raw};
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::ports::free_port;
use geomesh_integration::{Tansu, TestDir};
use geomesh_kafka::codes::{api, NONE};
use geomesh_kafka::messages::find_coordinator::FindCoordinatorResponse;
use geomesh_kafka::messages::offsets::{
    FetchOffsetsTopic, OffsetFetchRequest, OffsetFetchResponse,
};
use geomesh_kafka::Bytes;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);
/// Group joins against tansu take ~23 s.
const GROUP_T: Duration = Duration::from_secs(90);

fn config(port: u16) -> String {
    format!(
        "\
workload_type: kafka
default_cluster: kafka-a
upstream_timeout_ms: 5000
routing_table:
  orders: kafka-b
kafka:
  advertised_host: 127.0.0.1
  advertised_port: {port}
"
    )
}

/// The offsets `group` has committed for `partitions` of `topic`, asked of one broker alone
/// (a client library would follow the coordinator it names): -1 where none.
fn committed_raw(port: u16, group: &str, topic: &str, partitions: &[i32]) -> Result<Vec<i64>> {
    let req = OffsetFetchRequest {
        group_id: Bytes::from(group.to_owned()),
        topics: Some(vec![FetchOffsetsTopic {
            name: Bytes::from(topic.to_owned()),
            partition_indexes: partitions.to_vec(),
            tagged: Bytes::new(),
        }]),
        require_stable: false,
        tagged: Bytes::new(),
    };
    let mut r = Raw::connect(port)?.call(api::OFFSET_FETCH, 1, &req.encode(1))?;
    let resp = OffsetFetchResponse::decode(&mut r, 1)?;
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.committed_offset))
        .collect())
}

/// Shard kafka-a is reached at broker X, whose Metadata and FindCoordinator name broker Y
/// (another real tansu, X's advertised listener): what a client of a Kafka cluster of several
/// brokers sees when Y coordinates the group. Shard kafka-b is the same with XB naming YB. A
/// confluent-kafka group homed on kafka-a consumes topics of both shards and commits: its
/// membership and its commits of clicks are on Y (asked directly), none on X; orders' offsets
/// on YB, the coordinator kafka-b names for the group, none on XB. tansu coordinates any group
/// it is asked about, so with group requests and commits sent to the table clusters (X, XB)
/// they would land there.
#[test]
fn group_requests_follow_the_coordinator_a_shard_of_several_brokers_names() -> Result<()> {
    let dir = TestDir::new("kafka-groups-coordinator")?;
    let y = Tansu::start(&dir, "tansu-y")?;
    let x = Tansu::start_advertised(&dir, "tansu-x", Some(y.port))?;
    let yb = Tansu::start(&dir, "tansu-yb")?;
    let b = Tansu::start_advertised(&dir, "tansu-xb", Some(yb.port))?;
    let cf = KafkaClient::Confluent;
    cf.run(
        &dir,
        &y.bootstrap(),
        json!({"op": "create", "topics": {"clicks": 2}}),
        T,
    )?;
    cf.run(
        &dir,
        &yb.bootstrap(),
        json!({"op": "create", "topics": {"orders": 2}}),
        T,
    )?;
    for (port, topic) in [(x.port, "clicks"), (b.port, "orders")] {
        let mut r = Raw::connect(port)?.call_plain(
            api::CREATE_TOPICS,
            0,
            &create_topics_v0(&[(topic, 2)], 10_000),
        )?;
        let (_, _, code) = (
            r.i32("topics")?,
            r.string(false, "name")?,
            r.i16("error_code")?,
        );
        assert_eq!(code, NONE, "{topic} created on its bootstrap broker too");
    }

    // X names Y as the coordinator (its advertised listener).
    let mut w = geomesh_kafka::wire::Writer::new();
    w.string(false, b"g-coord");
    let mut r = Raw::connect(x.port)?.call(api::FIND_COORDINATOR, 0, &w.buf)?;
    let found = FindCoordinatorResponse::decode(&mut r, 0)?;
    assert_eq!(
        found.coordinators.first().map(|c| c.port),
        Some(i32::from(y.port)),
        "{found:?}"
    );

    let port = free_port()?;
    let mut opts = FilterMeshOptions::new("geomesh_filter_kafka", "geomesh_kafka", &config(port));
    opts.port = Some(port);
    opts.envoy.concurrency = 2;
    opts.endpoints = vec![
        ("kafka-a".into(), format!("127.0.0.1:{}", y.port)),
        ("kafka-b".into(), format!("127.0.0.1:{}", yb.port)),
    ];
    let mesh = FilterMesh::start(&dir, &opts, &[("kafka-a", x.port), ("kafka-b", b.port)])?;
    let proxy = format!("127.0.0.1:{}", mesh.port);

    let recs: Vec<Value> = (0..10)
        .map(|i| {
            json!([
                format!("k{i}"),
                format!("v{i}"),
                if i % 2 == 0 { "orders" } else { "clicks" }
            ])
        })
        .collect();
    let out = cf.run(
        &dir,
        &proxy,
        json!({"op": "produce", "topic": "clicks", "records": recs, "acks": "all"}),
        T,
    )?;
    assert_eq!(out["acked"].as_array().map(Vec::len), Some(10), "{out}");
    let got = cf.run(
        &dir,
        &proxy,
        json!({"op": "consume", "topics": ["clicks", "orders"], "count": 10, "group": "g-coord", "commit": true, "timeout_s": 60}),
        GROUP_T,
    )?;
    assert_eq!(got["records"].as_array().map(Vec::len), Some(10), "{got}");

    let on_y = committed_raw(y.port, "g-coord", "clicks", &[0, 1])?;
    let on_x = committed_raw(x.port, "g-coord", "clicks", &[0, 1])?;
    let on_yb = committed_raw(yb.port, "g-coord", "orders", &[0, 1])?;
    let on_xb = committed_raw(b.port, "g-coord", "orders", &[0, 1])?;
    let sum = |v: &[i64]| v.iter().filter(|o| **o > 0).sum::<i64>();
    assert_eq!(
        (sum(&on_y), sum(&on_yb)),
        (5, 5),
        "clicks' offsets on Y {on_y:?}, orders' on YB {on_yb:?}"
    );
    assert_eq!(
        (on_x, on_xb),
        (vec![-1, -1], vec![-1, -1]),
        "nothing committed on the bootstrap brokers X and XB"
    );
    // Through the proxy the group sees both.
    let via = cf.run(
        &dir,
        &proxy,
        json!({"op": "committed", "group": "g-coord", "partitions": [["clicks", 0], ["clicks", 1], ["orders", 0], ["orders", 1]]}),
        T,
    )?;
    let total: i64 = via["committed"]
        .as_array()
        .context("committed")?
        .iter()
        .map(|c| c[2].as_i64().unwrap_or(0).max(0))
        .sum();
    assert_eq!(total, 10, "{via}");
    assert!(
        mesh.envoy.wasm_failure().is_none(),
        "{:?}",
        mesh.envoy.wasm_failure()
    );
    Ok(())
}

/// A JoinGroup v5 request body: `member` ("" the first time), one "range" protocol subscribing
/// to `topic`.
fn join_body(group: &str, member: &str, topic: &str) -> Vec<u8> {
    let mut sub = geomesh_kafka::wire::Writer::new();
    sub.i16(0);
    sub.array_len(false, 1);
    sub.string(false, topic.as_bytes());
    sub.nullable_bytes(false, None);
    let mut w = geomesh_kafka::wire::Writer::new();
    w.string(false, group.as_bytes());
    w.i32(30_000);
    w.i32(30_000);
    w.string(false, member.as_bytes());
    w.nullable_string(false, None);
    w.string(false, b"consumer");
    w.array_len(false, 1);
    w.string(false, b"range");
    w.nullable_bytes(false, Some(&sub.buf));
    w.buf.to_vec()
}

/// An OffsetCommit v2 of offset `offset` for partition 0 of `topic`; the partition's code.
fn commit_raw(
    raw: &mut Raw,
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    offset: i64,
) -> Result<i16> {
    use geomesh_kafka::messages::offsets::{
        CommitPartition, CommitTopic, OffsetCommitRequest, OffsetCommitResponse,
    };
    let req = OffsetCommitRequest {
        group_id: Bytes::from(group.to_owned()),
        generation_id: generation,
        member_id: Bytes::from(member.to_owned()),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: vec![CommitTopic {
            name: Bytes::from(topic.to_owned()),
            partitions: vec![CommitPartition {
                partition_index: 0,
                committed_offset: offset,
                committed_leader_epoch: -1,
                committed_metadata: None,
                tagged: Bytes::new(),
            }],
            tagged: Bytes::new(),
        }],
        tagged: Bytes::new(),
    };
    let mut r = raw.call(api::OFFSET_COMMIT, 2, &req.encode(2))?;
    let resp = OffsetCommitResponse::decode(&mut r, 2)?;
    resp.topics
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| p.error_code)
        .context("no partition")
}

/// A member joins group g-fence (home kafka-a) through the proxy; a commit of orders (on
/// kafka-b, not the home) by an older generation or an unknown member is refused by the proxy
/// (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID) and nothing is stored on kafka-b, asked directly;
/// the live member's commit is stored there.
#[test]
fn a_fenced_members_commit_is_not_stored_on_a_shard_other_than_the_groups_home() -> Result<()> {
    use geomesh_kafka::logic::offsets::{ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID};
    use geomesh_kafka::messages::group::JoinGroupAnswer;
    let dir = TestDir::new("kafka-groups-fence")?;
    let a = Tansu::start(&dir, "tansu-a")?;
    let b = Tansu::start(&dir, "tansu-b")?;
    KafkaClient::Confluent.run(
        &dir,
        &b.bootstrap(),
        json!({"op": "create", "topics": {"orders": 1}}),
        T,
    )?;
    let port = free_port()?;
    let mut opts = FilterMeshOptions::new("geomesh_filter_kafka", "geomesh_kafka", &config(port));
    opts.port = Some(port);
    let mesh = FilterMesh::start(&dir, &opts, &[("kafka-a", a.port), ("kafka-b", b.port)])?;

    let mut raw = Raw::connect(mesh.port)?;
    raw.s.set_read_timeout(Some(GROUP_T))?;
    let mut member = String::new();
    let mut joined = None;
    for _ in 0..3 {
        let mut r = raw.call(api::JOIN_GROUP, 5, &join_body("g-fence", &member, "orders"))?;
        let j = JoinGroupAnswer::decode(&mut r, 5)?;
        member = String::from_utf8_lossy(&j.member_id).into_owned();
        if j.error_code == NONE {
            joined = Some(j);
            break;
        }
    }
    let j = joined.context("joined g-fence")?;
    assert!(j.generation_id >= 0, "{j:?}");
    let live = j.generation_id;

    let mut other = Raw::connect(mesh.port)?;
    assert_eq!(
        commit_raw(&mut other, "g-fence", live - 1, &member, "orders", 7)?,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        commit_raw(&mut other, "g-fence", live, "someone-else", "orders", 8)?,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        committed_raw(b.port, "g-fence", "orders", &[0])?,
        vec![-1],
        "nothing stored on kafka-b"
    );
    assert_eq!(
        commit_raw(&mut raw, "g-fence", live, &member, "orders", 9)?,
        NONE
    );
    assert_eq!(
        committed_raw(b.port, "g-fence", "orders", &[0])?,
        vec![9],
        "the live member's commit"
    );
    assert!(
        mesh.envoy.wasm_failure().is_none(),
        "{:?}",
        mesh.envoy.wasm_failure()
    );
    Ok(())
}
