//! MQTT flow control end to end: a client's Receive Maximum never exceeded by all brokers
//! together, and a client over the Receive Maximum it was given disconnected with 0x93; the
//! metrics Envoy shows for it (per packet type, per broker). Real mosquitto 2.0 brokers, a
//! real Envoy running `geomesh_filter_mqtt.wasm` and a real bridge, paho-mqtt clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::mosquitto::{paho_path, Mosquitto, MosquittoSub, V311};
use geomesh_integration::paths::system_bin;
use geomesh_integration::{Proc, TestDir};
use geomesh_mqtt::{
    Bytes, BytesMut, Connect, Decoder, Limits, Packet, Publish, QoS, ReasonCode, Version,
};

/// Écharde's table over two brokers: `user1` topics and payloads holding `alert` on mqtt2,
/// everything else on mqtt1.
const TABLE: &str = "\
workload_type: mqtt
default_cluster: mqtt1
local_cluster: mqtt1
upstream_timeout_ms: 5000
routing_table:
  user1: {type: key, cluster: mqtt2}
  alert: {type: value, cluster: mqtt2}
";

/// Runs a paho-mqtt script for up to `timeout`; its stdout.
fn paho(
    dir: &TestDir,
    name: &str,
    script: &str,
    args: &[String],
    timeout: Duration,
) -> Result<String> {
    let file = dir.write(format!("{name}.py"), script)?;
    let mut cmd = Command::new(system_bin("python3")?);
    cmd.arg(&file).args(args).env("PYTHONPATH", paho_path()?);
    let mut proc = Proc::spawn(dir, name, cmd)?;
    let status = proc.wait_exit(timeout)?;
    let (out, err) = proc.logs();
    if !status.success() {
        bail!("{name}.py failed ({status}):\n{out}\n{err}");
    }
    Ok(out)
}

/// A paho v5 subscriber with Receive Maximum 20 and manual acknowledgements (a thread acks
/// the oldest message 0.3 ms after it came, so that the window stays full), a publisher
/// sending 10 000 QoS 1 messages alternately to a topic of each broker. The subscriber
/// counts what it holds unacknowledged at each arrival.
const TEN_THOUSAND: &str = r#"
import sys, time, threading, collections, paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
port, n = int(sys.argv[1]), int(sys.argv[2])

lock = threading.Lock()
pending = collections.deque()
state = {"outstanding": 0, "peak": 0, "got": 0, "dups": 0}
seen = set()

def on_message(c, u, m):
    with lock:
        state["outstanding"] += 1
        state["peak"] = max(state["peak"], state["outstanding"])
        state["got"] += 1
        key = (m.topic, m.payload)
        if key in seen:
            state["dups"] += 1
        seen.add(key)
        pending.append((m.mid, m.qos))

sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rm20-sub", protocol=mqtt.MQTTv5, manual_ack=True)
sub.on_message = on_message
sub.on_disconnect = lambda c, u, f, rc, p: print("disconnected", rc, p, flush=True)
if len(sys.argv) > 3:
    sub.enable_logger()
    import logging; logging.basicConfig(level=logging.DEBUG)
props = Properties(PacketTypes.CONNECT)
props.ReceiveMaximum = 20
sub.connect("127.0.0.1", port, properties=props)
sub.loop_start()
subacked = threading.Event()
sub.on_subscribe = lambda c, u, mid, codes, p: subacked.set()
sub.subscribe([("flow/#", 1), ("user1/flow/#", 1)])
if not subacked.wait(10):
    print("no suback"); sys.exit(1)

stop = False
def acker():
    while not stop:
        item = None
        with lock:
            if pending:
                item = pending.popleft()
        if item is None:
            time.sleep(0.0005)
            continue
        time.sleep(0.0003)
        with lock:
            state["outstanding"] -= 1
        sub.ack(item[0], item[1])
t = threading.Thread(target=acker, daemon=True)
t.start()

pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rm20-pub", protocol=mqtt.MQTTv5)
pub.max_inflight_messages_set(20)
pub.max_queued_messages_set(0)
pub.connect("127.0.0.1", port)
pub.loop_start()
infos = []
t0 = time.time()
for i in range(n):
    topic = ("flow/%d" % (i % 10)) if i % 2 == 0 else ("user1/flow/%d" % (i % 10))
    infos.append(pub.publish(topic, "m%d" % i, qos=1))
for info in infos:
    info.wait_for_publish(60)
published = sum(1 for i in infos if i.is_published())
end = time.time() + 120
while time.time() < end:
    with lock:
        if state["got"] >= n and not pending and state["outstanding"] == 0:
            break
    time.sleep(0.05)
time.sleep(0.5)
stop = True
dt = time.time() - t0
with lock:
    print("published", published)
    print("received", state["got"], "distinct", len(seen), "dups", state["dups"])
    print("peak", state["peak"])
    print("seconds %.1f" % dt)
pub.disconnect(); pub.loop_stop()
sub.disconnect(); sub.loop_stop()
"#;

#[test]
fn ten_thousand_qos1_messages_through_receive_maximum_20_over_two_brokers() -> Result<()> {
    let dir = TestDir::new("mqtt-flow-rm20")?;
    // mosquitto drops QoS 1 messages beyond 1000 queued for a slow client by default.
    let a = Mosquitto::start_with_config(&dir, "mqtt1", "max_queued_messages 0")?;
    let b = Mosquitto::start_with_config(&dir, "mqtt2", "max_queued_messages 0")?;
    let opts = FilterMeshOptions::new("geomesh_filter_mqtt", "geomesh_mqtt", TABLE);
    let mesh = FilterMesh::start(&dir, &opts, &[("mqtt1", a.port), ("mqtt2", b.port)])?;
    // Where each message landed, read on each broker directly.
    let on_a = MosquittoSub::start(&dir, a.port, V311, "#", 5000, 120, &["-q", "1"])?;
    let on_b = MosquittoSub::start(&dir, b.port, V311, "#", 5000, 120, &["-q", "1"])?;
    a.wait_log(
        &format!("Received SUBSCRIBE from {}", on_a.client_id),
        1,
        Duration::from_secs(10),
    )?;
    b.wait_log(
        &format!("Received SUBSCRIBE from {}", on_b.client_id),
        1,
        Duration::from_secs(10),
    )?;

    let out = paho(
        &dir,
        "rm20",
        TEN_THOUSAND,
        &[mesh.port.to_string(), "10000".into()],
        Duration::from_secs(240),
    )?;
    eprintln!("{out}");
    let line = |k: &str| {
        out.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(line("published"), "published 10000", "{out}");
    assert_eq!(
        line("received"),
        "received 10000 distinct 10000 dups 0",
        "each exactly once: {out}"
    );
    let peak: u32 = line("peak").trim_start_matches("peak ").parse()?;
    assert!(
        peak <= 20,
        "never more than 20 unacknowledged at the subscriber: {peak}"
    );
    assert!(peak >= 10, "the window was used (peak {peak})");

    // Each broker got its half and nothing else.
    let got_a = on_a.messages(Duration::from_secs(130))?;
    let got_b = on_b.messages(Duration::from_secs(130))?;
    assert_eq!(got_a.len(), 5000);
    assert_eq!(got_b.len(), 5000);
    assert!(got_a.iter().all(|(t, _)| t.starts_with("flow/")));
    assert!(got_b.iter().all(|(t, _)| t.starts_with("user1/flow/")));
    // Each broker was given a share of 10 in the subscriber's CONNECT; mosquitto 2.0.11 keeps
    // to it only roughly (its own log: PUBLISHes sent minus PUBACKs received), the proxy held
    // the rest back.
    for (name, m) in [("mqtt1", &a), ("mqtt2", &b)] {
        let (mut n, mut max) = (0i64, 0i64);
        for l in m.log().lines() {
            if l.contains("Sending PUBLISH to rm20-sub") {
                n += 1;
                max = max.max(n);
            } else if l.contains("Received PUBACK from rm20-sub") {
                n -= 1;
            }
        }
        eprintln!("{name}: at most {max} PUBLISHes in flight to the proxy (share 10)");
        assert_eq!(n, 0, "{name}: every PUBLISH acknowledged");
    }
    // Metrics per packet type and per broker (filters/shell/README.md "Metrics").
    let stat = |n: &str| {
        mesh.envoy
            .stat(&format!("wasmcustom.mqtt.geomesh.{n}"))
            .unwrap()
            .unwrap_or(0)
    };
    assert_eq!(stat("command.publish.total"), 10_000);
    assert!(
        stat("command.puback.total") >= 10_000,
        "the subscriber's PUBACKs"
    );
    assert_eq!(stat("command.subscribe.total"), 1);
    assert_eq!(stat("command.connect.total"), 2);
    assert!(
        stat("upstream.mqtt1.rq_total") >= 5000,
        "{}",
        stat("upstream.mqtt1.rq_total")
    );
    assert!(
        stat("upstream.mqtt2.rq_total") >= 5000,
        "{}",
        stat("upstream.mqtt2.rq_total")
    );
    assert!(
        stat("splitter.pushed") >= 10_000,
        "{}",
        stat("splitter.pushed")
    );
    Ok(())
}

/// A raw MQTT 5.0 client with geomesh's codec.
struct Raw {
    s: TcpStream,
    dec: Decoder,
    buf: BytesMut,
}

impl Raw {
    fn connect(port: u16, id: &str) -> Result<(Raw, u16)> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut r = Raw {
            s,
            dec: Decoder::from_server(Version::V5, Limits::default()),
            buf: BytesMut::new(),
        };
        r.s.write_all(
            &Packet::Connect(Box::new(Connect::new(Version::V5, id.to_owned())))
                .to_bytes(Version::V5)?,
        )?;
        match r.recv()? {
            Some(Packet::ConnAck(a)) if a.code == 0 => {
                let rm = a.properties.receive_maximum.unwrap_or(u16::MAX);
                Ok((r, rm))
            }
            other => bail!("expected an accepting CONNACK, got {other:?}"),
        }
    }

    fn recv(&mut self) -> Result<Option<Packet>> {
        loop {
            if let Some(d) = self.dec.decode(&mut self.buf)? {
                return Ok(Some(d.packet));
            }
            let mut chunk = [0u8; 4096];
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[test]
fn a_client_over_the_merged_receive_maximum_gets_disconnect_0x93() -> Result<()> {
    let dir = TestDir::new("mqtt-flow-client-rm")?;
    let a = Mosquitto::start_with_config(&dir, "mqtt1", "max_inflight_messages 10")?;
    let b = Mosquitto::start_with_config(&dir, "mqtt2", "max_inflight_messages 20")?;
    let opts = FilterMeshOptions::new("geomesh_filter_mqtt", "geomesh_mqtt", TABLE);
    let mesh = FilterMesh::start(&dir, &opts, &[("mqtt1", a.port), ("mqtt2", b.port)])?;
    let (mut c, rm) = Raw::connect(mesh.port, "over-rm")?;
    assert_eq!(rm, 10, "the merged CONNACK gives the brokers' minimum");
    // 11 QoS 1 PUBLISHes in one write, before any PUBACK can come back.
    let mut bytes = Vec::new();
    for id in 1..=11u16 {
        let topic = if id % 2 == 0 { "user1/x" } else { "other/x" };
        let mut p = Publish::new(
            Bytes::from(topic),
            QoS::AtLeastOnce,
            Bytes::from(format!("m{id}")),
        );
        p.packet_id = Some(id);
        bytes.extend_from_slice(&Packet::Publish(p).to_bytes(Version::V5)?);
    }
    c.s.write_all(&bytes)?;
    let mut acks = Vec::new();
    let disconnect = loop {
        match c.recv()? {
            Some(Packet::PubAck(p)) => acks.push(p.packet_id),
            Some(Packet::Disconnect(d)) => break d,
            other => bail!("expected PUBACKs then a DISCONNECT, got {other:?} after {acks:?}"),
        }
    };
    assert_eq!(disconnect.reason, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    acks.sort();
    assert_eq!(
        acks,
        (1..=10).collect::<Vec<u16>>(),
        "the ten within the limit were carried"
    );
    assert_eq!(c.recv()?, None, "then closed");
    // The eleventh reached no broker: read back on each directly (none retained; the logs).
    std::thread::sleep(Duration::from_millis(300));
    let published = |m: &Mosquitto| m.log().matches("Received PUBLISH from over-rm").count();
    assert_eq!(published(&a) + published(&b), 10);
    drop(mesh);
    Ok(())
}
