//! MQTT sharding end to end: real mosquitto 2.0 brokers behind a real Envoy running
//! `geomesh_filter_mqtt.wasm` (V8) and a real `geomesh-bridge`; real clients (`mosquitto_pub`,
//! `mosquitto_sub` with `-V mqttv311` and `-V mqttv5`, paho-mqtt) connect to Envoy as to one
//! broker. Where each message landed is checked on each broker directly (a `mosquitto_sub`
//! on `#` per broker, or the broker's log).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Result;
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::mosquitto::{mosquitto_pub, run_paho, Mosquitto, MosquittoSub, V311, V5};
use geomesh_integration::TestDir;
use geomesh_mqtt::{Bytes, BytesMut, Connect, Decoder, Limits, Packet, Publish, QoS, ReasonCode, Version};

/// Écharde's table over two brokers: `user1` topics and payloads holding `alert` on mqtt2,
/// everything else on mqtt1 (also the local cluster: `$SYS`).
const TABLE: &str = "\
workload_type: mqtt
default_cluster: mqtt1
local_cluster: mqtt1
upstream_timeout_ms: 2000
routing_table:
  user1: {type: key, cluster: mqtt2}
  alert: {type: value, cluster: mqtt2}
";

struct Site {
    dir: TestDir,
    a: Mosquitto,
    b: Mosquitto,
    mesh: FilterMesh,
}

fn site(name: &str) -> Result<Site> {
    let dir = TestDir::new(name)?;
    let a = Mosquitto::start(&dir, "mqtt1")?;
    let b = Mosquitto::start(&dir, "mqtt2")?;
    let opts = FilterMeshOptions::new("geomesh_filter_mqtt", "geomesh_mqtt", TABLE);
    let mesh = FilterMesh::start(&dir, &opts, &[("mqtt1", a.port), ("mqtt2", b.port)])?;
    Ok(Site { dir, a, b, mesh })
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    sorted(v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect())
}

/// A raw MQTT client with geomesh's codec (for what command-line clients cannot do: garbage,
/// a 256 MB header, watching the DISCONNECT of a lost broker).
struct Raw {
    s: TcpStream,
    v: Version,
    dec: Decoder,
    buf: BytesMut,
}

impl Raw {
    fn open(port: u16, v: Version) -> Result<Raw> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Raw { s, v, dec: Decoder::from_server(v, Limits::default()), buf: BytesMut::new() })
    }

    fn connect(port: u16, v: Version, id: &str) -> Result<Raw> {
        let mut r = Raw::open(port, v)?;
        let mut c = Connect::new(v, id.to_owned());
        c.keep_alive = 30;
        r.send(Packet::Connect(Box::new(c)))?;
        match r.recv()? {
            Some(Packet::ConnAck(a)) if a.code == 0 => Ok(r),
            other => anyhow::bail!("expected an accepting CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, p: Packet) -> Result<()> {
        self.s.write_all(&p.to_bytes(self.v)?)?;
        Ok(())
    }

    /// The next packet; `None` when the proxy closed the connection.
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

fn publish(topic: &str, qos: QoS, id: Option<u16>, payload: &str) -> Packet {
    let mut p = Publish::new(Bytes::copy_from_slice(topic.as_bytes()), qos, Bytes::copy_from_slice(payload.as_bytes()));
    p.packet_id = id;
    Packet::Publish(p)
}

#[test]
fn echarde_table_routes_publishes_and_subscriptions_span_brokers() -> Result<()> {
    let s = site("mqtt-e2e-routes")?;
    let port = s.mesh.port;
    // What lands on each broker, read there directly.
    let on_a = MosquittoSub::start(&s.dir, s.a.port, V311, "#", 3, 20, &[])?;
    let on_b = MosquittoSub::start(&s.dir, s.b.port, V311, "#", 3, 20, &[])?;
    s.a.wait_log(&format!("Received SUBSCRIBE from {}", on_a.client_id), 1, Duration::from_secs(10))?;
    s.b.wait_log(&format!("Received SUBSCRIBE from {}", on_b.client_id), 1, Duration::from_secs(10))?;
    // Subscribers through the proxy: a wildcard spanning both brokers (5.0), one broker (3.1.1).
    let spanning = MosquittoSub::start(&s.dir, port, V5, "sensors/+", 2, 20, &["-q", "2"])?;
    let user1 = MosquittoSub::start(&s.dir, port, V311, "user1/#", 1, 20, &["-q", "1"])?;
    for sub in [&spanning, &user1] {
        s.a.wait_log(&format!(" as {} (", sub.client_id), 1, Duration::from_secs(10))?;
        s.b.wait_log(&format!(" as {} (", sub.client_id), 1, Duration::from_secs(10))?;
    }
    // sensors/+ can be carried by both (alert payloads go to mqtt2); user1/# only by mqtt2.
    s.a.wait_log(&format!("Received SUBSCRIBE from {}", spanning.client_id), 1, Duration::from_secs(10))?;
    s.b.wait_log(&format!("Received SUBSCRIBE from {}", spanning.client_id), 1, Duration::from_secs(10))?;
    s.b.wait_log(&format!("Received SUBSCRIBE from {}", user1.client_id), 1, Duration::from_secs(10))?;
    assert!(!s.a.log().contains(&format!("Received SUBSCRIBE from {}", user1.client_id)), "user1/# on mqtt2 only");

    mosquitto_pub(&s.dir, port, V311, "sensors/1", "20C", &["-q", "1"])?;
    mosquitto_pub(&s.dir, port, V5, "sensors/2", "alert: 90C", &["-q", "2"])?;
    mosquitto_pub(&s.dir, port, V5, "user1/cart", "3 items", &["-q", "1"])?;
    mosquitto_pub(&s.dir, port, V311, "other/x", "plain", &["-q", "2"])?;
    mosquitto_pub(&s.dir, port, V5, "misc/alert", "calm", &[])?;

    let t = Duration::from_secs(30);
    assert_eq!(
        sorted(on_a.messages(t)?),
        pairs(&[("sensors/1", "20C"), ("other/x", "plain"), ("misc/alert", "calm")])
    );
    let b_got = sorted(on_b.messages(t)?);
    assert_eq!(b_got, pairs(&[("sensors/2", "alert: 90C"), ("user1/cart", "3 items")]));
    assert_eq!(sorted(spanning.messages(t)?), pairs(&[("sensors/1", "20C"), ("sensors/2", "alert: 90C")]));
    assert_eq!(user1.messages(t)?, pairs(&[("user1/cart", "3 items")]));
    Ok(())
}

const PAHO_FEATURES: &str = r#"
import sys, time, threading, paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
port = int(sys.argv[1])

def client(cid, v5=True):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    c.got = []
    c.lock = threading.Lock()
    def on_message(c, u, m):
        with c.lock:
            c.got.append((m.topic, m.payload.decode(), bool(m.retain)))
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c

def wait(cond, t=10):
    end = time.time() + t
    while time.time() < end and not cond():
        time.sleep(0.05)

# Retained: published through the proxy, read back by a new subscriber: exactly once.
p = client("paho-pub")
p.publish("status/7", "online", qos=1, retain=True).wait_for_publish(5)
p.publish("user1/status", "alert: hot", qos=1, retain=True).wait_for_publish(5)
r = client("paho-retained")
r.subscribe("status/#", qos=1)
r.subscribe("user1/#", qos=1)
wait(lambda: len(r.got) >= 2, 3)
time.sleep(0.5)
print("retained", sorted(r.got))

# $share: two members of one group, 20 messages over both brokers: each delivered once.
m1, m2 = client("paho-share-1"), client("paho-share-2")
for m in (m1, m2):
    m.subscribe("$share/g/jobs/#", qos=1)
time.sleep(1)
for i in range(20):
    topic = "jobs/%d" % i
    payload = "alert %d" % i if i % 2 else "job %d" % i
    p.publish(topic, payload, qos=1).wait_for_publish(5)
wait(lambda: len(m1.got) + len(m2.got) >= 20)
time.sleep(0.5)
print("share", len(m1.got) + len(m2.got), len(set(x[0] for x in m1.got + m2.got)))

# Topic alias: the second PUBLISH carries only the alias.
props = Properties(PacketTypes.PUBLISH)
props.TopicAlias = 1
p.publish("user1/alias", "first", qos=1, properties=props).wait_for_publish(5)
props = Properties(PacketTypes.PUBLISH)
props.TopicAlias = 1
p.publish("", "second", qos=1, properties=props).wait_for_publish(5)
print("alias ok")

for c in (p, r, m1, m2):
    c.disconnect()
    c.loop_stop()
"#;

#[test]
fn retained_share_and_topic_alias_with_paho() -> Result<()> {
    let s = site("mqtt-e2e-paho")?;
    let on_b = MosquittoSub::start(&s.dir, s.b.port, V5, "user1/alias", 2, 30, &[])?;
    s.b.wait_log(&format!("Received SUBSCRIBE from {}", on_b.client_id), 1, Duration::from_secs(10))?;
    let out = run_paho(&s.dir, "features", PAHO_FEATURES, &[s.mesh.port.to_string()])?;
    let line = |k: &str| out.lines().find(|l| l.starts_with(k)).unwrap_or_default().to_owned();
    assert_eq!(
        line("retained"),
        "retained [('status/7', 'online', True), ('user1/status', 'alert: hot', True)]",
        "one retained message each, from its owner: {out}"
    );
    assert_eq!(line("share"), "share 20 20", "each message reached the group once: {out}");
    assert_eq!(line("alias"), "alias ok");
    // The alias was resolved by the proxy: the broker got the full topic both times.
    assert_eq!(on_b.messages(Duration::from_secs(30))?, pairs(&[("user1/alias", "first"), ("user1/alias", "second")]));
    // Retained messages live on their owner only: read them on each broker directly.
    let direct = |port: u16, filter: &str| -> Result<Vec<(String, String)>> {
        MosquittoSub::start(&s.dir, port, V311, filter, 1, 2, &[])?.messages(Duration::from_secs(10))
    };
    assert_eq!(direct(s.a.port, "status/7")?, pairs(&[("status/7", "online")]));
    assert_eq!(direct(s.b.port, "status/7")?, vec![]);
    assert_eq!(direct(s.b.port, "user1/status")?, pairs(&[("user1/status", "alert: hot")]));
    assert_eq!(direct(s.a.port, "user1/status")?, vec![]);
    Ok(())
}

#[test]
fn the_will_is_published_by_its_owner_only() -> Result<()> {
    let s = site("mqtt-e2e-will")?;
    let on_a = MosquittoSub::start(&s.dir, s.a.port, V311, "#", 1, 8, &[])?;
    let on_b = MosquittoSub::start(&s.dir, s.b.port, V311, "#", 1, 20, &[])?;
    s.a.wait_log(&format!("Received SUBSCRIBE from {}", on_a.client_id), 1, Duration::from_secs(10))?;
    s.b.wait_log(&format!("Received SUBSCRIBE from {}", on_b.client_id), 1, Duration::from_secs(10))?;
    let script = r#"
import sys, os, time, paho.mqtt.client as mqtt
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-will", protocol=mqtt.MQTTv5)
c.will_set("user1/will", "gone", qos=1)
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_start()
time.sleep(1)
print("connected", c.is_connected(), flush=True)
os._exit(0)   # no DISCONNECT: the connection just ends
"#;
    let out = run_paho(&s.dir, "will", script, &[s.mesh.port.to_string()])?;
    assert!(out.contains("connected True"), "{out}");
    assert_eq!(on_b.messages(Duration::from_secs(30))?, pairs(&[("user1/will", "gone")]), "the will from mqtt2");
    assert_eq!(on_a.messages(Duration::from_secs(30))?, vec![], "never N wills");
    Ok(())
}

#[test]
fn garbage_huge_headers_and_a_killed_broker() -> Result<()> {
    let s = site("mqtt-e2e-faults")?;
    let port = s.mesh.port;
    // A 256 MB remaining length: 5.0 DISCONNECT 0x95 at the header, nothing buffered.
    let mut c = Raw::connect(port, Version::V5, "huge")?;
    c.s.write_all(&[0x30, 0xff, 0xff, 0xff, 0x7f])?;
    match c.recv()? {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::PACKET_TOO_LARGE),
        other => panic!("expected DISCONNECT 0x95, got {other:?}"),
    }
    assert_eq!(c.recv()?, None, "closed");
    // Garbage from a 3.1.1 client: closed; other connections untouched.
    let mut keep = Raw::connect(port, Version::V311, "keeper")?;
    let mut g = Raw::connect(port, Version::V311, "garbage")?;
    g.s.write_all(b"\xf0\x00GET / HTTP/1.1\r\n\r\n")?;
    assert_eq!(g.recv()?, None, "3.1.1: closed without words");
    keep.send(publish("other/1", QoS::AtLeastOnce, Some(1), "still here"))?;
    assert!(matches!(keep.recv()?, Some(Packet::PubAck(a)) if a.packet_id == 1));
    // Garbage before CONNECT.
    let mut raw = TcpStream::connect(("127.0.0.1", port))?;
    raw.set_read_timeout(Some(Duration::from_secs(10)))?;
    raw.write_all(b"hello world\r\n")?;
    let mut buf = [0u8; 16];
    let n = raw.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed");

    // A broker killed mid-flight: the 5.0 client publishing there gets a DISCONNECT naming
    // it within the upstream timeout; the 3.1.1 client is closed. Nothing acknowledged is lost.
    let mut v5 = Raw::connect(port, Version::V5, "killed-5")?;
    let mut v3 = Raw::connect(port, Version::V311, "killed-3")?;
    v5.send(publish("user1/a", QoS::AtLeastOnce, Some(1), "before"))?;
    assert!(matches!(v5.recv()?, Some(Packet::PubAck(a)) if a.packet_id == 1));
    s.b.proc.signal(9)?;
    let t0 = Instant::now();
    v5.send(publish("user1/a", QoS::AtLeastOnce, Some(2), "after"))?;
    match v5.recv()? {
        Some(Packet::Disconnect(d)) => {
            let text = String::from_utf8_lossy(d.properties.reason_string.as_deref().unwrap_or_default()).into_owned();
            assert!(text.contains("mqtt2"), "{text}");
        }
        other => panic!("expected a DISCONNECT, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "bounded: {:?}", t0.elapsed());
    assert_eq!(v3.recv()?, None, "3.1.1: closed");
    // A new client while mqtt2 is down: its CONNECT cannot reach every broker, the client is
    // refused (3.1.1: Server unavailable), never left hanging.
    let mut late = Raw::open(port, Version::V311)?;
    late.send(Packet::Connect(Box::new(Connect::new(Version::V311, "late"))))?;
    match late.recv()? {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, 3, "server unavailable"),
        other => panic!("expected a refusing CONNACK, got {other:?}"),
    }
    // mqtt1 itself was not touched.
    mosquitto_pub(&s.dir, s.a.port, V311, "direct/x", "ok", &[])?;
    drop(s.mesh);
    Ok(())
}
