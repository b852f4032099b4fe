//! The Redis filter's metrics in a real Envoy's stats, read from `/stats/prometheus` after known
//! traffic from real clients (redis-cli), exact values: real Envoy 1.40 (the filter in V8),
//! real geomesh-bridge, real redis-servers.
//!
//! Needs `scripts/build-wasm.sh` and `geomesh-bridge` built with the profile and target dir of
//! the tests (`make build`).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use geomesh_core::{Config, RoutingTable};
use geomesh_integration::envoy::{geomesh_stats_tags, static_cluster, tcp_listener};
use geomesh_integration::redis_mesh::{redis_cli, MeshOptions, RedisMesh};
use geomesh_integration::{Envoy, EnvoyOptions};
use serde_json::json;

/// Two shards, keys hashed over both, a short shard timeout.
const CONFIG: &str = "\
workload_type: redis
default_cluster: redis1
stat_prefix: shop
upstream_timeout_ms: 1000
routing_table:
  '*': { type: hash, clusters: [redis1, redis2] }
";

/// Waits until counter `name{labels}` reads `want` in `/stats/prometheus`, then checks that it
/// stays there for a moment (nothing counted twice, late).
fn wait_counter(envoy: &Envoy, name: &str, labels: &[(&str, &str)], want: u64) -> Result<()> {
    let t0 = Instant::now();
    let mut last = None;
    while t0.elapsed() < Duration::from_secs(20) {
        last = envoy.prometheus()?.get(name, labels);
        if last == Some(want as f64) {
            std::thread::sleep(Duration::from_millis(300));
            let again = envoy.prometheus()?.counter(name, labels)?;
            if again != want {
                bail!("{name}{labels:?} went on from {want} to {again}");
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{name}{labels:?} is {last:?} after 20 s, expected {want}")
}

fn cli_ok(mesh: &RedisMesh, args: &[&str]) -> String {
    let (out, err, ok) = mesh.cli(args).unwrap();
    assert!(ok, "redis-cli {args:?}: {err}");
    out
}

#[test]
fn configuration_reloads_and_rejections_are_counted() {
    let config = CONFIG.replace("upstream_timeout_ms: 1000\n", "");
    let mut opts = MeshOptions::new(&["redis1", "redis2"], &config);
    opts.ecds = true;
    let mut mesh = RedisMesh::start_with("redis-metrics-config", opts).unwrap();
    mesh.envoy.tolerate_wasm_log("Failed to configure base Wasm plugin");
    let e = &mesh.envoy;

    // Loaded once: counted once, although Envoy configures it in three VMs (--concurrency 1);
    // the rejection counter is there from the start, at 0.
    let s = e.prometheus().unwrap();
    assert_eq!(s.counter("redis_shop_config_reload", &[]).unwrap(), 1);
    assert_eq!(s.counter("redis_shop_config_rejected", &[]).unwrap(), 0);
    assert_eq!(cli_ok(&mesh, &["SET", "k", "v"]).trim(), "OK");

    // Rejected (no default_cluster): counted under the stat_prefix it names.
    mesh.set_filter_config("workload_type: redis\nstat_prefix: shop\n").unwrap();
    wait_counter(e, "redis_shop_config_rejected", &[], 1).unwrap();
    // Rejected for its stat_prefix itself: counted under the prefix in use.
    mesh.set_filter_config(&config.replace("stat_prefix: shop", "stat_prefix: shop.v2")).unwrap();
    wait_counter(e, "redis_shop_config_rejected", &[], 2).unwrap();
    assert_eq!(e.prometheus().unwrap().counter("redis_shop_config_reload", &[]).unwrap(), 1);

    // Accepted with another prefix: its own counters; a rollback counts again.
    mesh.set_filter_config(&config.replace("stat_prefix: shop", "stat_prefix: shop2")).unwrap();
    wait_counter(e, "redis_shop2_config_reload", &[], 1).unwrap();
    mesh.set_filter_config(&config).unwrap();
    wait_counter(e, "redis_shop_config_reload", &[], 2).unwrap();
    let s = e.prometheus().unwrap();
    assert_eq!(s.counter("redis_shop2_config_reload", &[]).unwrap(), 1);
    assert_eq!(s.counter("redis_shop2_config_rejected", &[]).unwrap(), 0);
    assert_eq!(s.counter("redis_shop_config_rejected", &[]).unwrap(), 2);
    // Envoy's own ECDS counters agree: 3 updates applied, 2 refused.
    assert_eq!(
        s.counter("envoy_extension_config_discovery_network_filter_geomesh_redis_update_rejected", &[]).unwrap(),
        2
    );
    assert_eq!(cli_ok(&mesh, &["GET", "k"]).trim(), "v");
}

/// Native `redis_proxy` and geomesh in one Envoy with [`geomesh_stats_tags`]: the same metric
/// names and the same `envoy_redis_prefix` label.
#[test]
fn with_the_stats_tags_names_line_up_with_native_redis_proxy() {
    let mut opts = MeshOptions::new(&["redis1", "redis2"], CONFIG);
    opts.stats_config = Some(geomesh_stats_tags());
    let mesh = RedisMesh::start_with("redis-metrics-tags", opts).unwrap();
    let native = start_native(&mesh).unwrap();
    // The same traffic through both.
    for port in [native.1, mesh.port] {
        for _ in 0..2 {
            let (out, err, ok) = redis_cli(port, &["MGET", "a", "b"]).unwrap();
            assert!(ok, "{out}{err}");
        }
    }
    let s = native.0.prometheus().unwrap();
    assert_eq!(s.counter("envoy_redis_command_mget_total", &[("envoy_redis_prefix", "native")]).unwrap(), 2);
    assert_eq!(s.counter("envoy_redis_command_mget_success", &[("envoy_redis_prefix", "native")]).unwrap(), 2);
    let s = mesh.envoy.prometheus().unwrap();
    let ours = [("envoy_redis_prefix", "shop"), ("stat_namespace", "wasmcustom")];
    assert_eq!(s.counter("envoy_redis_command_mget_total", &ours).unwrap(), 2);
    assert_eq!(s.counter("envoy_redis_command_mget_success", &ours).unwrap(), 2);
    assert_eq!(s.counter("envoy_redis_config_reload", &ours).unwrap(), 1);
    // Without the tags, the same counter is `redis_shop_config_reload` (the other tests).
    assert_eq!(s.get("redis_shop_config_reload", &[]), None);
}

/// An Envoy with native `redis_proxy` (`stat_prefix: native`, command stats on) over the mesh's
/// shards, and the same stats tags: (Envoy, its Redis port).
fn start_native(mesh: &RedisMesh) -> Result<(Envoy, u16)> {
    let port = geomesh_integration::free_port()?;
    let filter = json!({
        "name": "envoy.filters.network.redis_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy",
            "stat_prefix": "native",
            "settings": { "op_timeout": "5s", "enable_command_stats": true },
            "prefix_routes": { "catch_all_route": { "cluster": "ring" } },
        },
    });
    let shards: Vec<u16> = mesh.shards.iter().map(|(_, r)| r.port).collect();
    let mut ring = static_cluster("ring", &shards);
    ring["lb_policy"] = json!("RING_HASH");
    let cfg = geomesh_integration::EnvoyConfig::new()?
        .listener(tcp_listener("native_in", port, vec![filter]))
        .cluster(ring)
        .stats_config(geomesh_stats_tags());
    let envoy = Envoy::start_with(&mesh.dir, "envoy-native", &cfg, &EnvoyOptions::default())?;
    geomesh_integration::wait_tcp(port, Duration::from_secs(20))?;
    Ok((envoy, port))
}

/// What the Redis session (on the shared pipeline, `protocols/kit`) counts, from redis-cli
/// traffic: `command.mget.total`, one split per MGET over two shards, a shard's timeout.
#[test]
fn commands_splits_and_a_shard_timeout_are_counted() {
    let mesh = RedisMesh::start("redis-metrics-commands", &["redis1", "redis2"], CONFIG).unwrap();
    let table = RoutingTable::new(&Config::parse(CONFIG.as_bytes()).unwrap()).unwrap();
    let on = |shard: &str| {
        (0..1000)
            .map(|i| format!("key{i}"))
            .find(|k| table.cluster_name(table.route(k.as_bytes())) == shard)
            .unwrap()
    };
    let (k1, k2) = (on("redis1"), on("redis2"));
    assert_eq!(cli_ok(&mesh, &["MSET", &k1, "1", &k2, "2"]).trim(), "OK");
    for _ in 0..3 {
        assert_eq!(cli_ok(&mesh, &["MGET", &k1, &k2]), "1\n2\n");
    }
    // redis2 frozen: a GET of its key gets an error after upstream_timeout_ms.
    mesh.shard("redis2").proc.signal(libc::SIGSTOP).unwrap();
    let (out, _, _) = mesh.cli(&["GET", &k2]).unwrap();
    mesh.shard("redis2").proc.signal(libc::SIGCONT).unwrap();
    assert!(out.starts_with("ERR geomesh: cluster redis2"), "{out}");

    let e = &mesh.envoy;
    wait_counter(e, "redis_shop_upstream_redis2_rq_timeout", &[], 1).unwrap();
    let s = e.prometheus().unwrap();
    assert_eq!(s.counter("redis_shop_command_mget_total", &[]).unwrap(), 3);
    assert_eq!(s.counter("redis_shop_command_mget_success", &[]).unwrap(), 3);
    assert_eq!(s.counter("redis_shop_command_mset_total", &[]).unwrap(), 1);
    assert_eq!(s.counter("redis_shop_splitter_split", &[]).unwrap(), 4, "the MSET and 3 MGETs");
    assert_eq!(s.counter("redis_shop_command_get_total", &[]).unwrap(), 1);
    assert_eq!(s.counter("redis_shop_command_get_error", &[]).unwrap(), 1);
    assert_eq!(s.get("redis_shop_upstream_redis1_rq_timeout", &[]).unwrap_or(0.0), 0.0);
}
