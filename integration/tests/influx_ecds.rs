//! The InfluxDB filter's routing table replaced at run time through ECDS: real Envoy, three real
//! `influxd`, reqwest on one keep-alive connection across the swap. New writes follow the new
//! table, queries route by it, and what was written under the old table stays where it was
//! (nothing is moved: protocols/influx/README.md, "Changing the routing table").

use std::time::Duration;

use anyhow::Result;
use geomesh_integration::influx::{InfluxMesh, MeshOptions};
use geomesh_integration::TestDir;
use reqwest::blocking::Client;
use serde_json::Value;

const OLD: &str = "workload_type: influxdb
default_cluster: influx-a
local_cluster: influx-a
upstream_timeout_ms: 3000
routing_table:
  cpu: influx-b
";

/// cpu moves to influx-c, mem (the default's before) to influx-b.
const NEW: &str = "workload_type: influxdb
default_cluster: influx-a
local_cluster: influx-a
upstream_timeout_ms: 3000
routing_table:
  cpu: influx-c
  mem: influx-b
";

fn values(text: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["results"][0]["series"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn influx_ecds_swap_routes_new_requests_by_the_new_table() -> Result<()> {
    let dir = TestDir::new("influx_ecds")?;
    let mut mesh = InfluxMesh::start_opts(
        &dir,
        MeshOptions {
            shards: 3,
            config: OLD.to_owned(),
            ecds: true,
            ..MeshOptions::default()
        },
    )?;
    mesh.envoy
        .wait_log("geomesh influx", Duration::from_secs(20))?;
    let url = mesh.url();
    // One client, one keep-alive connection, before and after the swap.
    let c = Client::builder().timeout(Duration::from_secs(20)).build()?;
    let post_query = |q: &str| {
        c.post(format!("{url}/query"))
            .form(&[("q", q)])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let write = |body: &str| {
        c.post(format!("{url}/write?db=db"))
            .body(body.to_owned())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let select = |q: &str| {
        let r = c
            .get(format!("{url}/query"))
            .query(&[("db", "db"), ("q", q)])
            .send()
            .unwrap();
        let routed = r
            .headers()
            .get("x-geomesh-routed-to")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (routed, r.text().unwrap())
    };
    assert_eq!(post_query("CREATE DATABASE db"), 200);
    assert_eq!(write("cpu v=1 1000000000\nmem v=1 1000000000\n"), 204);
    let (a, b, cc) = (&mesh.shards[0], &mesh.shards[1], &mesh.shards[2]);
    assert_eq!(a.measurements("db")?, ["mem"]);
    assert_eq!(b.measurements("db")?, ["cpu"]);
    assert!(cc.measurements("db")?.is_empty());
    let (routed, _) = select("SELECT * FROM cpu");
    assert_eq!(routed, "influx-b");

    mesh.set_filter_config(NEW)?;
    mesh.envoy
        .wait_log("3 clusters, local influx-a", Duration::from_secs(20))?;

    // A shard the new table adds has none of the databases yet: CREATE DATABASE, broadcast to
    // every shard of the new table (idempotent on those that have it).
    assert_eq!(write("cpu v=9 9000000000\n"), 404, "influx-c: database not found");
    assert_eq!(post_query("CREATE DATABASE db"), 200);
    // New writes follow the new table: a split batch and a one-shard write.
    assert_eq!(write("cpu v=2 2000000000\nmem v=2 2000000000\n"), 204);
    assert_eq!(write("cpu v=3 3000000000\n"), 204);
    let (a, b, cc) = (&mesh.shards[0], &mesh.shards[1], &mesh.shards[2]);
    assert_eq!(cc.measurements("db")?, ["cpu"]);
    let mut on_b = b.measurements("db")?;
    on_b.sort();
    assert_eq!(
        on_b,
        ["cpu", "mem"],
        "old cpu stays on b, new mem lands there"
    );
    assert_eq!(a.measurements("db")?, ["mem"], "old mem stays on a");
    // Queries route by the new table: cpu's new shard, whose data starts at the swap.
    let (routed, text) = select("SELECT v FROM cpu");
    assert_eq!(routed, "influx-c");
    let v: Vec<f64> = values(&text)
        .iter()
        .map(|r| r[1].as_f64().unwrap())
        .collect();
    assert_eq!(
        v,
        [2.0, 3.0],
        "the point written under the old table is not moved: {text}"
    );
    // Broadcast statements still see every shard (SHOW merges them all).
    let (_, text) = select("SHOW MEASUREMENTS");
    assert_eq!(
        values(&text),
        [serde_json::json!(["cpu"]), serde_json::json!(["mem"])]
    );
    // A bad configuration is refused; the table in force stays.
    mesh.envoy
        .tolerate_wasm_log("Failed to configure base Wasm plugin");
    mesh.set_filter_config("workload_type: influxdb\n")?;
    mesh.envoy
        .wait_log("`default_cluster`: missing", Duration::from_secs(20))?;
    assert_eq!(write("cpu v=4 4000000000\n"), 204);
    let (routed, text) = select("SELECT v FROM cpu");
    assert_eq!(routed, "influx-c");
    assert_eq!(values(&text).len(), 3, "{text}");
    assert!(
        mesh.envoy.wasm_failure().is_none(),
        "{:?}",
        mesh.envoy.wasm_failure()
    );
    Ok(())
}
