//! `make demo`: starts a topology on loopback, drives real client traffic through it, prints
//! what happened and tears everything down.
//!
//! Today's topology is the baseline every geomesh path is compared with: a redis-server behind
//! Envoy's tcp_proxy, reached by the `redis` crate. Later issues extend it with the filters,
//! the bridge and several sites.

use std::time::Instant;

use anyhow::{Context, Result};
use geomesh_integration::envoy::{static_cluster, tcp_listener, tcp_proxy_filter};
use geomesh_integration::{free_port, Envoy, EnvoyConfig, Redis, TestDir};
use redis::Commands;

fn main() -> Result<()> {
    let dir = TestDir::new("demo")?;
    let redis = Redis::start(&dir, "redis-a")?;
    let listen = free_port()?;
    let cfg = EnvoyConfig::new()?
        .listener(tcp_listener(
            "redis_in",
            listen,
            vec![tcp_proxy_filter("redis_in", "redis_a")],
        ))
        .cluster(static_cluster("redis_a", &[redis.port]));
    let envoy = Envoy::start(&dir, "envoy", &cfg)?;
    println!("redis-server  127.0.0.1:{}", redis.port);
    println!(
        "envoy         127.0.0.1:{listen} (admin {})",
        envoy.admin_port()
    );

    let client = redis::Client::open(format!("redis://127.0.0.1:{listen}/"))?;
    let mut con = client.get_connection().context("connect through Envoy")?;
    let t = Instant::now();
    let n = 1000;
    for i in 0..n {
        let _: () = con.set(format!("demo:{i}"), i)?;
    }
    let back: Vec<i64> = (0..n)
        .map(|i| con.get(format!("demo:{i}")))
        .collect::<redis::RedisResult<_>>()?;
    anyhow::ensure!(
        back == (0..n).collect::<Vec<i64>>(),
        "values read back differ"
    );
    let elapsed = t.elapsed();
    println!(
        "{n} SET + {n} GET through Envoy in {elapsed:?} ({:.0} round trips/s)",
        (2 * n) as f64 / elapsed.as_secs_f64()
    );
    let cx = envoy
        .stat("cluster.redis_a.upstream_cx_total")?
        .unwrap_or(0);
    println!("envoy cluster.redis_a.upstream_cx_total = {cx}");
    Ok(())
}
