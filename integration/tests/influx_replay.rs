//! The InfluxDB replay queue end to end: real Envoy running `geomesh_filter_influx.wasm` with
//! `replay_cluster`, two real `influxd` 1.6 shards, a real `geomesh-agent` with an
//! `influx_replay:` section (its SQLite store in the test dir), and reqwest as the client.
//! A shard is stopped, a write spanning both shards is acknowledged once the agent stored the
//! down shard's lines, and the shard, started again on the same port and data, gets them in
//! order with their original timestamps; a queue too small for a write makes the client's 503
//! say so, and so does an agent that is down.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use geomesh_integration::influx::{run_influx_py, InfluxMesh};
use geomesh_integration::TestDir;
use reqwest::blocking::{Client, Response};
use serde_json::Value;

/// cpu on influx-b, the rest on influx-a; a failed part goes to the agent's queue.
const CONFIG: &str = "workload_type: influxdb
default_cluster: influx-a
local_cluster: influx-a
upstream_timeout_ms: 3000
routing_table:
  cpu: influx-b
influxdb:
  replay_cluster: geomesh_agent
";

const BATCHES: &str = "geomesh_agent_influx_replay_batches";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn write(url: &str, body: &str) -> Response {
    client()
        .post(format!("{url}/write?db=db"))
        .body(body.to_owned())
        .send()
        .unwrap()
}

fn create_db(url: &str) {
    let r = client()
        .post(format!("{url}/query"))
        .form(&[("q", "CREATE DATABASE db")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// `SELECT * FROM <m>` on a shard directly, times in ns: rows of [time, value].
fn rows(shard_url: &str, m: &str) -> Vec<(i64, f64)> {
    let r = client()
        .get(format!("{shard_url}/query"))
        .query(&[
            ("db", "db"),
            ("q", &format!("SELECT value FROM {m}")),
            ("epoch", "ns"),
        ])
        .send()
        .unwrap();
    let doc: Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    doc["results"][0]["series"][0]["values"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|v| (v[0].as_i64().unwrap(), v[1].as_f64().unwrap()))
        .collect()
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if ok()? {
            return Ok(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what}: not within {limit:?}")
}

#[test]
fn influx_down_shard_is_replayed_in_order_with_its_timestamps() -> Result<()> {
    let dir = TestDir::new("influx_replay")?;
    let mut mesh = InfluxMesh::start_with_agent(&dir, 2, CONFIG, Some(""))?;
    let url = mesh.url();
    create_db(&url);
    assert_eq!(mesh.agent_metric(BATCHES, "influx-b")?, Some(0.0));
    mesh.shards[1].stop()?;
    let before = now_ns();
    // cpu value=2 has no timestamp: the filter stamps it with the request's time.
    let r = write(
        &url,
        "cpu,k=x value=1 5000000000\ncpu,k=y value=2\nmem value=3 5000000000\n",
    );
    let after = now_ns();
    let status = r.status().as_u16();
    let queued = r
        .headers()
        .get("x-geomesh-queued")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(status, 204, "{}", r.text()?);
    assert_eq!(queued.as_deref(), Some("influx-b"));
    // Same series and time again: the later value must win after the replay (order).
    let r = write(&url, "cpu,k=x value=9 5000000000\nmem value=4 6000000000\n");
    assert_eq!(r.status().as_u16(), 204, "{}", r.text()?);
    assert_eq!(
        rows(&mesh.shards[0].url(), "mem"),
        [(5_000_000_000, 3.0), (6_000_000_000, 4.0)]
    );
    assert_eq!(mesh.agent_metric(BATCHES, "influx-b")?, Some(2.0));
    assert!(
        mesh.agent_metric("geomesh_agent_influx_replay_bytes", "influx-b")?
            .unwrap_or(0.0)
            > 0.0
    );
    std::thread::sleep(Duration::from_millis(1500));
    let restarted = now_ns();
    mesh.shards[1].restart()?;
    let took = wait_for("queue drained", Duration::from_secs(20), || {
        Ok(mesh.agent_metric(BATCHES, "influx-b")? == Some(0.0))
    })?;
    eprintln!("queue of 2 batches replayed {took:?} after the shard answered /ping");
    let b = mesh.shards[1].url();
    let x: Vec<(i64, f64)> = rows(&b, "cpu").into_iter().collect();
    assert_eq!(x.len(), 2, "{x:?}");
    assert_eq!(
        x[0],
        (5_000_000_000, 9.0),
        "replayed in order: the second write's value wins"
    );
    let (t, v) = x[1];
    assert_eq!(v, 2.0);
    assert!(
        before <= t && t <= after && t < restarted,
        "kept the request's time: {t} (write {before}..{after}, restart {restarted})"
    );
    assert_eq!(
        mesh.agent_metric("geomesh_agent_influx_replay_replayed_total", "influx-b")?,
        Some(2.0)
    );
    assert_eq!(
        mesh.agent_metric("geomesh_agent_influx_replay_dropped_total", "influx-b")?,
        Some(0.0)
    );
    // Up again: written directly, nothing queued.
    let r = write(&url, "cpu,k=z value=5 7000000000\nmem value=5 7000000000\n");
    assert_eq!(r.status().as_u16(), 204);
    assert!(r.headers().get("x-geomesh-queued").is_none());
    assert_eq!(mesh.agent_metric(BATCHES, "influx-b")?, Some(0.0));
    Ok(())
}

#[test]
fn influx_full_or_unavailable_queue_is_said() -> Result<()> {
    let dir = TestDir::new("influx_replay_full")?;
    let mut mesh = InfluxMesh::start_with_agent(&dir, 2, CONFIG, Some("  max_bytes: 40\n"))?;
    let url = mesh.url();
    create_db(&url);
    mesh.shards[1].stop()?;
    // 23 bytes: fits.
    let r = write(&url, "cpu value=1 1000000000\nmem value=1 1000000000\n");
    assert_eq!(r.status().as_u16(), 204, "{}", r.text()?);
    // 2 x 23 more: does not.
    let r = write(
        &url,
        "cpu value=2 2000000000\ncpu value=3 3000000000\nmem value=2 2000000000\n",
    );
    let status = r.status().as_u16();
    let text = r.text()?;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("cluster influx-b")
            && text.contains("replay queue full")
            && text.contains("written elsewhere: 1 points to influx-a"),
        "{text}"
    );
    assert_eq!(mesh.agent_metric(BATCHES, "influx-b")?, Some(1.0));
    // The agent down: the 503 says the queue is unavailable.
    if let Some(a) = mesh.agent.as_mut() {
        a.stop()?;
    }
    let r = write(&url, "cpu value=4 4000000000\nmem value=4 4000000000\n");
    let status = r.status().as_u16();
    let text = r.text()?;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("influx-b") && text.contains("replay queue unavailable"),
        "{text}"
    );
    Ok(())
}

/// The `influxdb` Python client writing one point without a time (one shard: forwarded as
/// received) through Envoy; prints OK when the client saw a success.
const PY_WRITE: &str = r#"
import sys
from influxdb import InfluxDBClient
c = InfluxDBClient(host="127.0.0.1", port=int(sys.argv[1]), database="db", timeout=20)
ok = c.write_points([{"measurement": "cpu", "tags": {"k": "py"}, "fields": {"value": 6.0}}])
print("OK" if ok else "FAILED")
"#;

#[test]
fn influx_one_shard_write_to_a_down_shard_is_queued() -> Result<()> {
    let dir = TestDir::new("influx_replay_one")?;
    let mut mesh = InfluxMesh::start_with_agent(&dir, 2, CONFIG, Some(""))?;
    let url = mesh.url();
    create_db(&url);
    mesh.shards[1].stop()?;
    // Every point on the down shard: no split, the relay fails, the queue takes the batch.
    let before = now_ns();
    let r = write(&url, "cpu,k=x value=1 5000000000\ncpu,k=y value=2\n");
    let after = now_ns();
    let status = r.status().as_u16();
    let queued = r
        .headers()
        .get("x-geomesh-queued")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!((status, queued.as_deref()), (204, Some("influx-b")), "{}", r.text()?);
    // gzip, forwarded as received, queued inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"cpu,k=g value=3 6000000000\n")?;
    let r = client()
        .post(format!("{url}/write?db=db"))
        .header("content-encoding", "gzip")
        .body(gz.finish()?)
        .send()?;
    assert_eq!(r.status().as_u16(), 204, "{}", r.text()?);
    // A real library client: the write is acknowledged.
    let py = run_influx_py(&dir, "py-write", PY_WRITE, &[mesh.port.to_string()])?;
    assert_eq!(py.trim(), "OK");
    assert_eq!(mesh.agent_metric(BATCHES, "influx-b")?, Some(3.0));
    // Without a queue for that write's shard being needed, nothing is queued.
    let r = write(&url, "mem value=1 1000000000\n");
    assert_eq!(r.status().as_u16(), 204);
    assert!(r.headers().get("x-geomesh-queued").is_none());
    mesh.shards[1].restart()?;
    wait_for("queue drained", Duration::from_secs(20), || {
        Ok(mesh.agent_metric(BATCHES, "influx-b")? == Some(0.0))
    })?;
    let b = mesh.shards[1].url();
    let got = rows(&b, "cpu");
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got.contains(&(5_000_000_000, 1.0)) && got.contains(&(6_000_000_000, 3.0)), "{got:?}");
    let stamped: Vec<i64> = got
        .iter()
        .filter(|(_, v)| *v == 2.0)
        .map(|(t, _)| *t)
        .collect();
    assert!(
        stamped.len() == 1 && before <= stamped[0] && stamped[0] <= after,
        "the request's time, not the replay's: {stamped:?} ({before}..{after})"
    );
    assert!(got.iter().any(|(_, v)| *v == 6.0), "the Python client's point: {got:?}");
    Ok(())
}
