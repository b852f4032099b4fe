//! The native shell (`native/`, geomesh's Redis filter as an Envoy dynamic module with the
//! bridge in-process) where it differs from the Wasm filter: real Envoy, real redis-servers.
//! (The Redis suites `redis_e2e`, `redis_faults` and `redis_pool` also run every test through
//! it: their `native_shell::` tests.)
//!
//! * two Envoy workers: every worker's connections route by the same table and share the one
//!   in-process bridge (its pooled connections: a few per shard, not one per client);
//! * a configuration the filter refuses keeps Envoy from starting, with the reason in its log;
//! * two listeners naming the same bridge configuration share one bridge;
//! * the session's metrics are Envoy stats, named as the Wasm filter's under the dynamic-module
//!   scope (`dynamicmodulescustom.redis.<stat_prefix>.…`).

use std::time::Duration;

use geomesh_integration::envoy::{static_cluster, tcp_listener};
use geomesh_integration::redis_mesh::connect;
use geomesh_integration::resp_client::RespClient;
use geomesh_redis::Frame;
use geomesh_integration::{free_port, native, Envoy, EnvoyConfig, EnvoyOptions, Redis, TestDir};

const TABLE: &str = "\
workload_type: redis
default_cluster: shard_a
upstream_timeout_ms: 5000
routing_table:
  '*': { type: hash, clusters: [shard_a, shard_b] }
";

/// Connections a redis-server has, the asking one excluded.
fn connections(port: u16) -> usize {
    let mut d = connect(&format!("redis://127.0.0.1:{port}")).unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut d).unwrap();
    list.lines().count() - 1
}

struct Setup {
    _dir: TestDir,
    a: Redis,
    b: Redis,
    envoy: Envoy,
    ports: Vec<u16>,
}

/// Two shards, an Envoy with `workers` workers and `listeners` listeners of the native shell
/// over one bridge configuration.
fn setup(name: &str, workers: u32, listeners: usize, table: &str) -> anyhow::Result<Setup> {
    let dir = TestDir::new(name)?;
    let a = Redis::start(&dir, "shard_a")?;
    let b = Redis::start(&dir, "shard_b")?;
    let bridge = native::bridge_config(&dir, "native-bridge", &[("shard_a", a.port), ("shard_b", b.port)])?;
    let mut cfg = EnvoyConfig::new()?
        .cluster(static_cluster("shard_a", &[a.port]))
        .cluster(static_cluster("shard_b", &[b.port]));
    let mut ports = Vec::new();
    for i in 0..listeners {
        let port = free_port()?;
        cfg = cfg.listener(tcp_listener(&format!("native_{i}"), port, vec![native::network_filter(&bridge, table)]));
        ports.push(port);
    }
    let opts = native::with_module(EnvoyOptions { concurrency: workers, ..EnvoyOptions::default() })?;
    let envoy = Envoy::start_with(&dir, "envoy", &cfg, &opts)?;
    for p in &ports {
        geomesh_integration::wait_tcp(*p, Duration::from_secs(20))?;
    }
    Ok(Setup { _dir: dir, a, b, envoy, ports })
}

#[test]
fn two_workers_route_alike_and_share_the_in_process_bridge() {
    let s = setup("native-workers", 2, 1, TABLE).unwrap();
    let port = s.ports[0];
    // Enough connections that both workers get some (Envoy balances accepted connections).
    // Raw RESP clients: a client library's handshake (CLIENT SETINFO) would make each
    // connection stateful, and dedicated.
    let mut clients: Vec<RespClient> = (0..40).map(|_| RespClient::connect(port)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let keys: Vec<String> = (0..10).map(|k| format!("c{i}:k{k}")).collect();
        let vals: Vec<String> = keys.iter().map(|k| format!("{k}-v")).collect();
        let mut mset = vec!["MSET"];
        for (k, v) in keys.iter().zip(&vals) {
            mset.push(k);
            mset.push(v);
        }
        let mut mget = vec!["MGET"];
        mget.extend(keys.iter().map(String::as_str));
        c.send(&[&mset, &mget]);
        let r = c.read(2);
        assert_eq!(r[0], Frame::ok(), "client {i}");
        assert_eq!(r[1], Frame::Array(vals.iter().map(|v| Frame::bulk(v.clone())).collect()), "client {i}");
    }
    let mut da = connect(&format!("redis://127.0.0.1:{}", s.a.port)).unwrap();
    let mut db = connect(&format!("redis://127.0.0.1:{}", s.b.port)).unwrap();
    let (na, nb): (usize, usize) = (
        redis::cmd("DBSIZE").query(&mut da).unwrap(),
        redis::cmd("DBSIZE").query(&mut db).unwrap(),
    );
    assert_eq!(na + nb, 400, "every key stored once");
    assert!(na > 100 && nb > 100, "the hash route spreads the keys: {na} / {nb}");
    // Every key where the table puts it, whichever worker served the client: read back
    // through a new connection (any worker) and straight from the owning shard.
    let mut c = RespClient::connect(port);
    assert_eq!(c.call(&["GET", "c7:k3"]), Frame::bulk("c7:k3-v".to_owned()));
    let (ca, cb) = (connections(s.a.port), connections(s.b.port));
    assert!(ca <= 4 && cb <= 4, "40 stateless clients on a few pooled connections: {ca} / {cb}");
    for w in ["worker_0", "worker_1"] {
        let n = s.envoy.stat(&format!("listener.127.0.0.1_{port}.{w}.downstream_cx_total")).unwrap();
        assert!(n.unwrap_or(0) > 0, "{w} served connections: {n:?}");
    }
}

#[test]
fn a_refused_configuration_keeps_envoy_from_starting() {
    let bad = "workload_type: redis\ndefault_cluster: nowhere\nrouting_table:\n  '*': { type: hash, clusters: [] }\n";
    let err = match setup("native-refused", 1, 1, bad) {
        Ok(_) => panic!("Envoy started with a configuration the filter refuses"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("geomesh-native: configuration refused: filter:"), "{err}");
}

#[test]
fn two_listeners_share_one_bridge() {
    let s = setup("native-two-listeners", 1, 2, TABLE).unwrap();
    let mut c0 = connect(&format!("redis://127.0.0.1:{}", s.ports[0])).unwrap();
    let mut c1 = connect(&format!("redis://127.0.0.1:{}", s.ports[1])).unwrap();
    let () = redis::cmd("SET").arg("shared").arg("1").query(&mut c0).unwrap();
    let v: String = redis::cmd("GET").arg("shared").query(&mut c1).unwrap();
    assert_eq!(v, "1");
    let (ca, cb) = (connections(s.a.port), connections(s.b.port));
    assert!(ca + cb <= 4, "one bridge's pool, not one per listener: {ca} + {cb}");
}

#[test]
fn the_session_metrics_are_envoy_stats() {
    let table = format!("{TABLE}stat_prefix: shop\n");
    let s = setup("native-metrics", 1, 1, &table).unwrap();
    let mut c = RespClient::connect(s.ports[0]);
    c.send(&[&["SET", "k1", "v"], &["GET", "k1"], &["MGET", "a", "b", "c", "d", "e", "f"], &["NOSUCHCOMMAND"]]);
    let r = c.read(4);
    assert_eq!(r[0], Frame::ok());
    let stat = |name: &str| s.envoy.stat(&format!("dynamicmodulescustom.redis.shop.{name}")).unwrap();
    assert_eq!(stat("command.set.total"), Some(1));
    assert_eq!(stat("command.get.success"), Some(1));
    assert_eq!(stat("command.mget.total"), Some(1));
    assert_eq!(stat("splitter.split"), Some(1), "the MGET over both shards was split");
    assert_eq!(stat("command.unknown.total"), Some(1));
    let a = stat("upstream.shard_a.rq_total").unwrap_or(0);
    let b = stat("upstream.shard_b.rq_total").unwrap_or(0);
    assert!(a >= 1 && b >= 1 && a + b >= 4, "requests per shard: {a} / {b}");
}
