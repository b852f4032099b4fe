//! Assigned client identifiers unique across Envoy worker threads (one Wasm VM each) and
//! across two Envoys in front of the same brokers: concurrent MQTT 5.0 clients with an empty
//! identifier get distinct ones, and each works (a message to its own topic comes back).

use std::time::Duration;

use anyhow::Result;
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::mosquitto::{run_paho, Mosquitto};
use geomesh_integration::TestDir;

const TABLE: &str = "\
workload_type: mqtt
default_cluster: mqtt1
local_cluster: mqtt1
upstream_timeout_ms: 5000
routing_table:
  user1: {type: key, cluster: mqtt2}
";

/// `n` clients per port at once, empty identifiers; each prints its assigned identifier and
/// whether its own message came back.
const CLIENTS: &str = r#"
import sys, time, threading, paho.mqtt.client as mqtt
ports, n = [int(p) for p in sys.argv[1].split(",")], int(sys.argv[2])
results, lock = [], threading.Lock()

def one(port, i):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    got, ready = threading.Event(), threading.Event()
    state = {}
    def on_connect(c, u, f, rc, p):
        state["id"] = getattr(p, "AssignedClientIdentifier", None)
        ready.set()
    c.on_connect = on_connect
    c.on_subscribe = lambda c, u, mid, codes, p: state.__setitem__("sub", True)
    c.on_message = lambda c, u, m: got.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    ok = False
    if ready.wait(10) and state["id"]:
        topic = ("user1/ids/%s" if i % 2 else "ids/%s") % state["id"]
        c.subscribe(topic, qos=1)
        end = time.time() + 10
        while "sub" not in state and time.time() < end:
            time.sleep(0.02)
        c.publish(topic, "mine", qos=1)
        ok = got.wait(10)
    with lock:
        results.append((state.get("id"), ok))
    time.sleep(0.5)
    c.disconnect(); c.loop_stop()

ts = [threading.Thread(target=one, args=(p, i)) for p in ports for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
for r in results:
    print(r[0], r[1])
"#;

#[test]
fn concurrent_empty_identifiers_get_distinct_ones_across_workers_and_envoys() -> Result<()> {
    let dir1 = TestDir::new("mqtt-ids-1")?;
    let dir2 = TestDir::new("mqtt-ids-2")?;
    let a = Mosquitto::start(&dir1, "mqtt1")?;
    let b = Mosquitto::start(&dir1, "mqtt2")?;
    let mut opts = FilterMeshOptions::new("geomesh_filter_mqtt", "geomesh_mqtt", TABLE);
    opts.envoy.concurrency = 2;
    let clusters = [("mqtt1", a.port), ("mqtt2", b.port)];
    let m1 = FilterMesh::start(&dir1, &opts, &clusters)?;
    let m2 = FilterMesh::start(&dir2, &opts, &clusters)?;
    let ports = format!("{},{}", m1.port, m2.port);
    let out = run_paho(&dir1, "ids", CLIENTS, &[ports, "10".into()])?;
    let rows: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect();
    assert_eq!(rows.len(), 20, "{out}");
    let mut ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        ids.iter()
            .all(|id| id.starts_with("geomesh") && id.len() == 23),
        "{out}"
    );
    assert!(
        rows.iter().all(|(_, ok)| ok == "True"),
        "each client works: {out}"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "distinct: {out}");
    // Both workers of each Envoy took connections.
    for m in [&m1, &m2] {
        for w in ["worker_0", "worker_1"] {
            let n = m.envoy.stat(&format!(
                "listener.127.0.0.1_{}.{w}.downstream_cx_total",
                m.port
            ))?;
            eprintln!("envoy {} {w}: {n:?} connections", m.port);
        }
    }
    // Each identifier connected to both brokers once, none taken over.
    std::thread::sleep(Duration::from_millis(300));
    for id in &ids {
        for broker in [&a, &b] {
            assert_eq!(
                broker.log().matches(&format!(" as {id} (")).count(),
                1,
                "{id}"
            );
        }
    }
    assert!(
        !a.log().contains("already connected"),
        "no session taken over"
    );
    Ok(())
}
