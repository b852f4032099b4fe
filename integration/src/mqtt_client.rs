//! A small blocking MQTT client over geomesh's own codec (`geomesh-mqtt`), for what the
//! command-line clients cannot do: a benchmark's publishers with a window of QoS 1 messages in
//! flight, timestamps in payloads, and watching the DISCONNECT a proxy sends when a broker is
//! lost. It speaks the real protocol to real brokers (and to Envoy in front of them): CONNECT
//! and CONNACK, PUBLISH at QoS 0/1, PUBACK, SUBSCRIBE and SUBACK, DISCONNECT.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::Mosquitto;
use geomesh_mqtt::{
    Ack, Bytes, BytesMut, ConnAck, Connect, Decoder, Disconnect, Limits, Packet, Properties,
    Publish, QoS, ReasonCode, Subscribe, SubscribeOptions, Subscription, Version,
};

/// Flush the write buffer once it holds this much (a publisher batches what it has, as an
/// event-loop client does between two reads).
const FLUSH_AT: usize = 16 * 1024;

/// One MQTT connection: a stream, a decoder for what the server sends, a write buffer.
pub struct MqttConn {
    pub version: Version,
    stream: TcpStream,
    dec: Decoder,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// The server's CONNACK.
    pub connack: ConnAck,
}

impl MqttConn {
    /// Connects to 127.0.0.1:`port` as `client_id` (clean start, keep alive 60 s) and waits for
    /// an accepting CONNACK.
    pub fn connect(port: u16, version: Version, client_id: &str) -> Result<MqttConn> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connect to :{port}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = MqttConn {
            version,
            stream,
            dec: Decoder::from_server(version, Limits::default()),
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(FLUSH_AT * 2),
            connack: ConnAck::accepted(false),
        };
        let mut connect = Connect::new(version, client_id.to_owned());
        connect.keep_alive = 60;
        c.send(&Packet::Connect(Box::new(connect)))?;
        match c.recv()? {
            Some(Packet::ConnAck(a)) if a.code == 0 => c.connack = a,
            other => bail!("{client_id} on :{port}: expected an accepting CONNACK, got {other:?}"),
        }
        Ok(c)
    }

    /// Sets how long [`MqttConn::recv`] waits for bytes.
    pub fn set_read_timeout(&self, t: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(t))?;
        Ok(())
    }

    /// Encodes `p` into the write buffer (sent at the next flush, or now if the buffer is full).
    pub fn queue(&mut self, p: &Packet) -> Result<()> {
        p.encode(self.version, &mut self.wbuf)?;
        if self.wbuf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf)?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Sends `p` now.
    pub fn send(&mut self, p: &Packet) -> Result<()> {
        self.queue(p)?;
        self.flush()
    }

    /// The next packet from the server; `None` when it closed the connection. A read timeout
    /// is an error.
    pub fn recv(&mut self) -> Result<Option<Packet>> {
        loop {
            if let Some(d) = self.dec.decode(&mut self.rbuf)? {
                return Ok(Some(d.packet));
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Subscribes to `filters` (packet identifier `id`) and returns the SUBACK's codes; packets
    /// that arrive before the SUBACK are dropped.
    pub fn subscribe(&mut self, id: u16, filters: &[(&str, QoS)]) -> Result<Vec<u8>> {
        let sub = Subscribe {
            packet_id: id,
            properties: Default::default(),
            filters: filters
                .iter()
                .map(|(f, q)| Subscription {
                    filter: Bytes::copy_from_slice(f.as_bytes()),
                    options: SubscribeOptions::qos(*q),
                })
                .collect(),
        };
        self.send(&Packet::Subscribe(sub))?;
        loop {
            match self.recv()? {
                Some(Packet::SubAck(a)) if a.packet_id == id => return Ok(a.reasons),
                Some(_) => continue,
                None => bail!("closed before the SUBACK"),
            }
        }
    }

    /// Sends a DISCONNECT (normal) and closes.
    pub fn disconnect(mut self) -> Result<()> {
        self.send(&Packet::Disconnect(Disconnect {
            reason: ReasonCode::SUCCESS,
            properties: Box::new(Properties::default()),
        }))
    }

    /// A second handle on the same connection for a reader thread: its own decoder and buffer.
    pub fn reader(&self) -> Result<MqttConn> {
        Ok(MqttConn {
            version: self.version,
            stream: self.stream.try_clone()?,
            dec: Decoder::from_server(self.version, Limits::default()),
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::new(),
            connack: self.connack.clone(),
        })
    }
}

/// A PUBLISH of `payload` on `topic` at `qos` (`id` for QoS 1 and 2).
pub fn publish(topic: &str, qos: QoS, id: Option<u16>, payload: &[u8]) -> Packet {
    let mut p = Publish::new(
        Bytes::copy_from_slice(topic.as_bytes()),
        qos,
        Bytes::copy_from_slice(payload),
    );
    p.packet_id = id;
    Packet::Publish(p)
}

/// A PUBACK for `id`.
pub fn puback(id: u16) -> Packet {
    Packet::PubAck(Ack::new(id))
}

/// Payload size of `bench-mqtt`'s PUBLISHes.
pub const PAYLOAD: usize = 100;

/// One publisher: `n` messages alternating `a/<tag>` and `b/<tag>`.
pub fn publisher(
    mut c: MqttConn,
    tag: String,
    qos: QoS,
    n: usize,
    window: u16,
    start: Arc<Barrier>,
) -> Result<()> {
    let topics = [format!("a/{tag}"), format!("b/{tag}")];
    let payload = vec![b'x'; PAYLOAD];
    let window = window
        .min(c.connack.properties.receive_maximum.unwrap_or(u16::MAX))
        .max(1) as usize;
    let mut reader = c.reader()?;
    let acks = match qos {
        QoS::AtMostOnce => 2,
        _ => n,
    };
    let (tx, rx) = mpsc::channel::<()>();
    let acker = std::thread::spawn(move || -> Result<()> {
        for _ in 0..acks {
            match reader.recv()? {
                Some(Packet::PubAck(_)) => {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
                other => bail!("expected a PUBACK, got {other:?}"),
            }
        }
        Ok(())
    });
    start.wait();
    let mut id: u16 = 0;
    let mut next_id = || {
        id = id.checked_add(1).unwrap_or(1);
        id
    };
    let mut credits = window;
    for i in 0..n {
        let topic = &topics[i % 2];
        if qos == QoS::AtMostOnce {
            c.queue(&publish(topic, qos, None, &payload))?;
            continue;
        }
        if credits == 0 {
            c.flush()?;
            rx.recv().context("the PUBACK reader ended")?;
            credits += 1;
            while rx.try_recv().is_ok() {
                credits += 1;
            }
        }
        c.queue(&publish(topic, qos, Some(next_id()), &payload))?;
        credits -= 1;
    }
    if qos == QoS::AtMostOnce {
        // One acknowledged message per topic (so per broker): everything before it is there.
        for topic in &topics {
            c.queue(&publish(topic, QoS::AtLeastOnce, Some(next_id()), &payload))?;
        }
    }
    c.flush()?;
    acker
        .join()
        .map_err(|_| anyhow::anyhow!("PUBACK reader panicked"))??;
    c.disconnect()
}

/// Through geomesh, `a/...` lands on A and `b/...` on B, and nowhere else (read on each broker).
pub fn check_split(port: u16, a: &Mosquitto, b: &Mosquitto) -> Result<()> {
    let mut on = Vec::new();
    for (name, broker) in [("a", a), ("b", b)] {
        let mut s = MqttConn::connect(broker.port, Version::V5, &format!("check-{name}"))?;
        s.subscribe(1, &[("#", QoS::AtLeastOnce)])?;
        on.push(s);
    }
    let mut p = MqttConn::connect(port, Version::V5, "check-pub")?;
    for (i, t) in ["a/check", "b/check", "a/check", "b/check"]
        .iter()
        .enumerate()
    {
        p.send(&publish(t, QoS::AtLeastOnce, Some(i as u16 + 1), b"check"))?;
        if !matches!(p.recv()?, Some(Packet::PubAck(_))) {
            bail!("no PUBACK through geomesh");
        }
    }
    for (name, s) in ["a", "b"].iter().zip(on.iter_mut()) {
        s.set_read_timeout(Duration::from_millis(500))?;
        let mut topics = Vec::new();
        while let Ok(Some(Packet::Publish(m))) = s.recv() {
            if let Some(id) = m.packet_id {
                s.send(&puback(id))?;
            }
            topics.push(String::from_utf8_lossy(&m.topic).into_owned());
        }
        let want = format!("{name}/check");
        if topics != [want.clone(), want] {
            bail!("broker {name} got {topics:?}");
        }
    }
    Ok(())
}
