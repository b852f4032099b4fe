//! The MQTT filter's own code, natively (a benchmark, not a test): what `filters/shell` does in
//! its two data callbacks, without Envoy, V8 or the bridge. A [`Mux`] over a
//! [`geomesh_mqtt::MqttSession`] with the table of `bench-mqtt` (`a/...` on `mqtt-a`, `b/...`
//! on `mqtt-b`); a client connection (MQTT 5.0) is set up, then each round is one client
//! callback carrying `--batch` QoS 1 PUBLISHes of 100 bytes (alternating `a/t0` and `b/t0`)
//! and one bridge callback carrying both brokers' PUBACKs as GMB/1 `DATA` frames, as
//! `bench-mqtt`'s QoS 1 one-publisher cell sees them. Prints ns per message (PUBLISH and its
//! PUBACK); run it under `perf record` to see where the filter's time goes (V8 runs the same
//! code as Wasm, slower, and without symbols in a profile of Envoy).
//!
//! ```text
//! cargo run --release -p geomesh-integration --bin bench-mqtt-filter [-- --messages N --batch B]
//! ```

use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use geomesh_core::{Config, RoutingTable, Session};
use geomesh_frame::{encode_data, split_frame, Kind, Mux, Open};
use geomesh_integration::mqtt_client::publish;
use geomesh_mqtt::{
    Ack, BytesMut, ConnAck, Connect, Decoder, Limits, Packet, QoS, Settings, Version,
};

const TABLE: &str = "\
workload_type: mqtt
default_cluster: mqtt-a
local_cluster: mqtt-a
upstream_timeout_ms: 10000
routing_table:
  b: {type: key, cluster: mqtt-b}
";

/// The brokers' side of the bridge: channel ids by OPEN, a decoder per channel, and the
/// answers each broker gives (CONNACK, PUBACK), framed as the bridge frames them.
struct Brokers {
    chans: Vec<(u16, Decoder)>,
}

impl Brokers {
    /// Reads the filter's frames; returns the bridge's frames answering them.
    fn answer(&mut self, frames: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = frames;
        while let Some((f, n)) = split_frame(rest)? {
            rest = rest.get(n..).unwrap_or_default();
            match f.kind {
                Kind::Open => {
                    Open::parse(f.payload)?;
                    self.chans
                        .push((f.chan, Decoder::from_client(Limits::default())));
                }
                Kind::Data => {
                    let Some((_, dec)) = self.chans.iter_mut().find(|(c, _)| *c == f.chan) else {
                        bail!("DATA on channel {} before its OPEN", f.chan);
                    };
                    let mut buf = BytesMut::from(f.payload);
                    let mut answers = BytesMut::new();
                    while let Some(d) =
                        dec.decode(&mut buf).map_err(|e| anyhow::anyhow!("{e:?}"))?
                    {
                        let reply = match d.packet {
                            Packet::Connect(_) => Packet::ConnAck(ConnAck::accepted(false)),
                            Packet::Publish(p) => {
                                Packet::PubAck(Ack::new(p.packet_id.context("QoS 1 has an id")?))
                            }
                            _ => continue,
                        };
                        reply
                            .encode(Version::V5, &mut answers)
                            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                    }
                    if !answers.is_empty() {
                        encode_data(&mut out, Kind::BridgeData, f.chan, &answers);
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

fn main() -> Result<()> {
    let mut messages = 1_000_000usize;
    let mut batch = 8usize;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--messages" => messages = v.parse()?,
            "--batch" => batch = v.parse::<usize>()?.clamp(1, 20),
            _ => bail!("unknown argument {k}; see the file's documentation"),
        }
    }
    let config = Config::parse(TABLE.as_bytes())?;
    let settings = Settings::from_config(&config)?;
    let table = Rc::new(RoutingTable::new(&config)?);
    let mut session = geomesh_mqtt::session_with_seed(table.clone(), 10_000, &settings, 1);
    let mut mux = Mux::new("bench", table, 0, 10_000);
    let mut brokers = Brokers { chans: Vec::new() };

    // CONNECT, and the merged CONNACK back.
    let mut connect = Connect::new(Version::V5, "bench".to_owned());
    connect.keep_alive = 60;
    let bytes = Packet::Connect(Box::new(connect))
        .to_bytes(Version::V5)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let now = 1_000_000;
    let out = mux.on_downstream(&mut session, &bytes, false, now);
    let answers = brokers.answer(&out.bytes)?;
    let back = mux.on_upstream(&mut session, &answers, false, now);
    if back.bytes.first() != Some(&0x20) {
        bail!("no CONNACK for the client: {:?}", back.bytes);
    }

    // Every round's PUBLISHes are all acknowledged within the round, so one batch (ids 1..=B)
    // serves every round, as a client reusing its identifiers would.
    let payload = vec![b'x'; 100];
    let mut client = BytesMut::new();
    for i in 0..batch {
        let p = publish(
            ["a/t0", "b/t0"][i % 2],
            QoS::AtLeastOnce,
            Some(i as u16 + 1),
            &payload,
        );
        p.encode(Version::V5, &mut client)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let mut acked = 0usize;
    let rounds = messages / batch;
    let mut filter = Duration::ZERO;
    let t0 = Instant::now();
    for r in 0..rounds {
        let now = 1_000_000 + (r / 1000) as u64;
        let t = Instant::now();
        let out = mux.on_downstream(&mut session, &client, false, now);
        filter += t.elapsed();
        let answers = brokers.answer(&out.bytes)?;
        let t = Instant::now();
        let back = mux.on_upstream(&mut session, &answers, false, now);
        // The shell drains the meter after each callback.
        if let Some(m) = session.meter() {
            m.drain().for_each(drop);
        }
        filter += t.elapsed();
        // Each PUBACK to the client is 4 bytes (reason Success, no properties).
        acked += back.bytes.len() / 4;
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = rounds * batch;
    if acked != n {
        bail!("{acked} PUBACKs for {n} PUBLISHes");
    }
    println!(
        "{n} QoS 1 PUBLISHes in batches of {batch}: filter {:.0} ns per message (PUBLISH in, PUBACK out), {:.0} ns with the scripted brokers",
        filter.as_secs_f64() * 1e9 / n as f64,
        secs * 1e9 / n as f64
    );
    Ok(())
}
