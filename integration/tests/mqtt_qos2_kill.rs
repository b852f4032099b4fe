//! QoS 2 with a broker killed mid-flight: the MQTT 5.0 client gets a DISCONNECT naming the
//! broker within the upstream timeout, and every message the client got PUBCOMP for is on its
//! broker (the surviving one, and the killed one once restarted from its persistence file),
//! read there directly with `mosquitto_sub --retained-only`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::mosquitto::{Mosquitto, MosquittoSub, V311};
use geomesh_integration::TestDir;
use geomesh_mqtt::{Ack, Bytes, BytesMut, Connect, Decoder, Limits, Packet, Publish, QoS, Version};

const TABLE: &str = "workload_type: mqtt\ndefault_cluster: mqtt1\nlocal_cluster: mqtt1\nupstream_timeout_ms: 2000\nrouting_table:\n  user1: {type: key, cluster: mqtt2}\n";

struct Raw {
    s: TcpStream,
    dec: Decoder,
    buf: BytesMut,
}

impl Raw {
    fn send(&mut self, p: Packet) -> Result<()> {
        self.s.write_all(&p.to_bytes(Version::V5)?)?;
        Ok(())
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

fn publish(topic: &str, id: u16) -> Packet {
    let mut p = Publish::new(
        Bytes::from(topic.to_owned()),
        QoS::ExactlyOnce,
        Bytes::from(format!("v{id}")),
    );
    p.packet_id = Some(id);
    p.retain = true;
    Packet::Publish(p)
}

fn retained(dir: &TestDir, port: u16) -> Result<Vec<String>> {
    let sub = MosquittoSub::start(dir, port, V311, "#", 100_000, 3, &["--retained-only"])?;
    let mut t: Vec<String> = sub
        .messages(Duration::from_secs(20))?
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    t.sort();
    Ok(t)
}

#[test]
fn qos2_with_a_broker_killed_mid_flight_loses_nothing_acknowledged() -> Result<()> {
    let dir = TestDir::new("mqtt-qos2-kill")?;
    let persist = |name: &str| {
        format!("persistence true\npersistence_location {}/\npersistence_file {name}.db\nautosave_interval 1\nautosave_on_changes true", dir.path().display())
    };
    let a = Mosquitto::start_with_config(&dir, "mqtt1", &persist("mqtt1"))?;
    let b = Mosquitto::start_with_config(&dir, "mqtt2", &persist("mqtt2"))?;
    let opts = FilterMeshOptions::new("geomesh_filter_mqtt", "geomesh_mqtt", TABLE);
    let mesh = FilterMesh::start(&dir, &opts, &[("mqtt1", a.port), ("mqtt2", b.port)])?;
    let s = TcpStream::connect(("127.0.0.1", mesh.port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut c = Raw {
        s,
        dec: Decoder::from_server(Version::V5, Limits::default()),
        buf: BytesMut::new(),
    };
    c.send(Packet::Connect(Box::new(Connect::new(
        Version::V5,
        "qos2-kill",
    ))))?;
    assert!(matches!(c.recv()?, Some(Packet::ConnAck(a)) if a.code == 0));
    // 20 complete QoS 2 flows, alternately on each broker.
    let mut completed = Vec::new();
    for id in 1..=20u16 {
        let topic = if id % 2 == 0 {
            format!("user1/q/{id}")
        } else {
            format!("q/{id}")
        };
        c.send(publish(&topic, id))?;
        match c.recv()? {
            Some(Packet::PubRec(r)) if r.packet_id == id => {}
            other => bail!("expected PUBREC {id}, got {other:?}"),
        }
        c.send(Packet::PubRel(Ack::new(id)))?;
        match c.recv()? {
            Some(Packet::PubComp(r)) if r.packet_id == id => completed.push(topic),
            other => bail!("expected PUBCOMP {id}, got {other:?}"),
        }
    }
    std::thread::sleep(Duration::from_millis(1500)); // the brokers' autosave
                                                     // Mid-flight on mqtt2: PUBREC received, then the broker is killed before the PUBREL.
    c.send(publish("user1/q/21", 21))?;
    assert!(matches!(c.recv()?, Some(Packet::PubRec(r)) if r.packet_id == 21));
    b.proc.signal(9)?;
    let t0 = Instant::now();
    c.send(Packet::PubRel(Ack::new(21)))?;
    match c.recv()? {
        Some(Packet::Disconnect(d)) => {
            let text =
                String::from_utf8_lossy(d.properties.reason_string.as_deref().unwrap_or_default())
                    .into_owned();
            assert!(text.contains("mqtt2"), "{text}");
        }
        other => bail!("expected a DISCONNECT naming mqtt2, got {other:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        t0.elapsed()
    );
    assert_eq!(c.recv()?, None, "then closed");
    // Every PUBCOMP'd message is on its broker: mqtt1 directly, mqtt2 restarted from its file.
    let b2 = Mosquitto::start_with_config(&dir, "mqtt2-restarted", &persist("mqtt2"))?;
    let mut on_brokers = retained(&dir, a.port)?;
    on_brokers.extend(retained(&dir, b2.port)?);
    for t in &completed {
        assert!(
            on_brokers.contains(t),
            "{t} was PUBCOMP'd but is on no broker: {on_brokers:?}"
        );
    }
    assert!(
        retained(&dir, a.port)?
            .iter()
            .all(|t| !t.starts_with("user1/")),
        "placement"
    );
    drop(mesh);
    Ok(())
}
