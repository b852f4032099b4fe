//! A routing table replaced through ECDS under a live MQTT subscriber: its subscription moves to
//! the broker the new table names (SUBSCRIBE there, UNSUBSCRIBE on the old one) at its next
//! packet (its keep-alive PINGREQ here), and new PUBLISHes follow the new table.

use std::time::Duration;

use anyhow::Result;
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::mosquitto::{mosquitto_pub, Mosquitto, MosquittoSub, V311, V5};
use geomesh_integration::TestDir;

const OLD: &str = "workload_type: mqtt\ndefault_cluster: mqtt1\nlocal_cluster: mqtt1\nupstream_timeout_ms: 5000\nrouting_table:\n  user1: {type: key, cluster: mqtt2}\n";
const NEW: &str = "workload_type: mqtt\ndefault_cluster: mqtt1\nlocal_cluster: mqtt1\nupstream_timeout_ms: 5000\nrouting_table:\n  user1: {type: key, cluster: mqtt3}\n";

#[test]
fn an_ecds_table_change_moves_a_live_subscription() -> Result<()> {
    let dir = TestDir::new("mqtt-ecds")?;
    let a = Mosquitto::start(&dir, "mqtt1")?;
    let b = Mosquitto::start(&dir, "mqtt2")?;
    let c = Mosquitto::start(&dir, "mqtt3")?;
    let mut opts = FilterMeshOptions::new("geomesh_filter_mqtt", "geomesh_mqtt", OLD);
    opts.ecds = true;
    let mut mesh = FilterMesh::start(
        &dir,
        &opts,
        &[("mqtt1", a.port), ("mqtt2", b.port), ("mqtt3", c.port)],
    )?;
    mesh.envoy
        .wait_log("configuration generation 1 loaded", Duration::from_secs(20))?;
    let t = Duration::from_secs(15);
    // A 5.0 subscriber through the proxy, keep-alive 5 s, on user1/# (mqtt2 under OLD).
    let sub = MosquittoSub::start(
        &dir,
        mesh.port,
        V5,
        "user1/#",
        2,
        40,
        &["-k", "5", "-q", "1"],
    )?;
    b.wait_log(&format!("Received SUBSCRIBE from {}", sub.client_id), 1, t)?;
    mosquitto_pub(
        &dir,
        mesh.port,
        V311,
        "user1/before",
        "old table",
        &["-q", "1"],
    )?;
    b.wait_log("user1/before", 1, t)?;

    mesh.set_filter_config(NEW)?;
    mesh.envoy
        .wait_log("configuration generation 2 loaded", Duration::from_secs(20))?;
    // At the subscriber's next PINGREQ: SUBSCRIBE on mqtt3 (never used by this client before:
    // the CONNECT first), UNSUBSCRIBE on mqtt2.
    c.wait_log(&format!("Received SUBSCRIBE from {}", sub.client_id), 1, t)?;
    b.wait_log(
        &format!("Received UNSUBSCRIBE from {}", sub.client_id),
        1,
        t,
    )?;
    assert!(
        c.log().contains(&format!(" as {} (", sub.client_id)),
        "same client id on mqtt3"
    );
    // A new publisher follows the new table, and the subscriber gets it from mqtt3.
    mosquitto_pub(
        &dir,
        mesh.port,
        V5,
        "user1/after",
        "new table",
        &["-q", "1"],
    )?;
    c.wait_log("user1/after", 1, t)?;
    assert!(!b.log().contains("user1/after"), "nothing on the old owner");
    let got = sub.messages(Duration::from_secs(45))?;
    assert_eq!(
        got,
        [
            ("user1/before".to_owned(), "old table".to_owned()),
            ("user1/after".to_owned(), "new table".to_owned())
        ]
    );
    assert!(!a.log().contains("user1/"), "mqtt1 never carried user1");
    Ok(())
}
