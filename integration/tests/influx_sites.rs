//! A shard at another site: site dc1's Envoy (the InfluxDB filter, shard `influx-a` local)
//! reaches `influx-dc2`, an `influxd` at site dc2, through dc2's Envoy (its own InfluxDB filter,
//! everything local there), over a WAN link made of a delaying, cuttable TCP relay. The same
//! shape as scope's cross-site HTTP: an Envoy cluster per remote site pointing at that site's
//! Envoy. Clients: reqwest and the `influxdb` Python client; placement read on each `influxd`.

use std::time::{Duration, Instant};

use anyhow::Result;
use geomesh_integration::envoy::{static_cluster, wasm_http_filter, EnvoyOptions};
use geomesh_integration::influx::{
    buffer_filter, listener, run_influx_py, InfluxMesh, Influxd, MeshOptions, WASM_REL,
};
use geomesh_integration::ports::free_port;
use geomesh_integration::relay::Relay;
use geomesh_integration::{Envoy, EnvoyConfig, TestDir, WasmPlugin};
use reqwest::blocking::Client;
use serde_json::Value;

/// Site dc1: net lives at dc2, the rest here.
const DC1: &str = "workload_type: influxdb
default_cluster: influx-a
local_cluster: influx-a
upstream_timeout_ms: 2000
routing_table:
  net: influx-dc2
";

/// Site dc2's own filter: everything on its local influxd.
const DC2: &str = "workload_type: influxdb
default_cluster: dc2-local
local_cluster: dc2-local
";

const PY_QUERY: &str = r#"
import sys
from influxdb import InfluxDBClient
c = InfluxDBClient(host="127.0.0.1", port=int(sys.argv[1]), database="db", timeout=20)
for p in c.query("SELECT rx FROM net").get_points():
    print(p["time"], p["rx"])
"#;

#[test]
fn influx_shard_at_another_site() -> Result<()> {
    let dir = TestDir::new("influx_sites")?;
    // Site dc2: its influxd behind its Envoy.
    let remote = Influxd::start(&dir, "dc2-influx")?;
    let dc2_port = free_port()?;
    let plugin = WasmPlugin::new("influx", "geomesh_influx", WASM_REL, DC2.to_owned());
    let cfg = EnvoyConfig::new()?
        .listener(listener(
            "influx_dc2",
            dc2_port,
            vec![wasm_http_filter(&plugin), buffer_filter()],
            None,
        ))
        .cluster(static_cluster("dc2-local", &[remote.port]));
    let _dc2 = Envoy::start_with(&dir, "envoy-dc2", &cfg, &EnvoyOptions::default())?;
    // The WAN link dc1 -> dc2: 10 ms each way.
    let wan = Relay::start(dc2_port)?;
    wan.set_delay(Duration::from_millis(10));
    // Site dc1: influx-a local, influx-dc2 = dc2's Envoy through the link.
    let mesh = InfluxMesh::start_opts(
        &dir,
        MeshOptions {
            shards: 1,
            config: DC1.to_owned(),
            clusters: vec![static_cluster("influx-dc2", &[wan.port()])],
            ..MeshOptions::default()
        },
    )?;
    let url = mesh.url();
    let c = Client::builder().timeout(Duration::from_secs(20)).build()?;
    let r = c
        .post(format!("{url}/query"))
        .form(&[("q", "CREATE DATABASE db")])
        .send()?;
    assert_eq!(
        r.status().as_u16(),
        200,
        "broadcast to both sites: {}",
        r.text()?
    );
    // A batch spanning both sites.
    let r = c
        .post(format!("{url}/write?db=db"))
        .body("cpu v=1 1000000000\nnet,if=eth0 rx=7i 1000000000\nnet,if=eth1 rx=8i 2000000000\n")
        .send()?;
    assert_eq!(r.status().as_u16(), 204, "{}", r.text()?);
    assert_eq!(mesh.shards[0].measurements("db")?, ["cpu"]);
    assert_eq!(remote.measurements("db")?, ["net"], "net stored at dc2");
    // A one-shard write to the remote site (relayed as received).
    let r = c
        .post(format!("{url}/write?db=db"))
        .body("net,if=eth2 rx=9i 3000000000\n")
        .send()?;
    assert_eq!(r.status().as_u16(), 204, "{}", r.text()?);
    // Queries: routed to dc2, fanned out over both sites and merged.
    let r = c
        .get(format!("{url}/query"))
        .query(&[("db", "db"), ("q", "SELECT rx FROM net")])
        .send()?;
    assert_eq!(r.headers()["x-geomesh-routed-to"], "influx-dc2");
    let doc: Value = serde_json::from_str(&r.text()?)?;
    assert_eq!(
        doc["results"][0]["series"][0]["values"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let r = c
        .get(format!("{url}/query"))
        .query(&[
            ("db", "db"),
            ("q", "SHOW MEASUREMENTS; SELECT * FROM cpu, net"),
        ])
        .send()?;
    let doc: Value = serde_json::from_str(&r.text()?)?;
    assert_eq!(
        doc["results"][0]["series"][0]["values"],
        serde_json::json!([["cpu"], ["net"]]),
        "{doc}"
    );
    let names: Vec<&str> = doc["results"][1]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu", "net"]);
    // A library client reading the remote shard through dc1.
    let py = run_influx_py(&dir, "py-query", PY_QUERY, &[mesh.port.to_string()])?;
    assert_eq!(py.lines().count(), 3, "{py}");
    assert!(py.contains(" 9"), "{py}");
    // The link cut: a write for dc2 fails within the deadline, naming the cluster; dc1's part
    // of a split batch is kept and said.
    wan.cut();
    let t = Instant::now();
    let r = c
        .post(format!("{url}/write?db=db"))
        .body("cpu v=2 2000000000\nnet rx=1i 4000000000\n")
        .send()?;
    let (status, text) = (r.status().as_u16(), r.text()?);
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("influx-dc2") && text.contains("written elsewhere: 1 points to influx-a"),
        "{text}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        t.elapsed()
    );
    wan.restore();
    let r = c
        .post(format!("{url}/write?db=db"))
        .body("net rx=2i 5000000000\n")
        .send()?;
    assert_eq!(r.status().as_u16(), 204, "link back: {}", r.text()?);
    Ok(())
}
