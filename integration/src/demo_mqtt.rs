//! The MQTT part of `make demo`: two mosquitto brokers as shards behind Envoy running
//! `geomesh_filter_mqtt.wasm` and a bridge, Écharde's table (`user1` topics and `alert`
//! payloads on mqtt2); `mosquitto_pub` / `mosquitto_sub` (3.1.1 and 5.0) through it, and what
//! landed read on each broker directly.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::mesh::{FilterMesh, FilterMeshOptions};
use crate::mosquitto::{mosquitto_pub, Mosquitto, MosquittoSub, V311, V5};
use crate::process::{Proc, TestDir};

/// The MQTT filter's configuration in the demo: Écharde's table over two brokers.
pub const MQTT_CONFIG: &str = "workload_type: mqtt
default_cluster: mqtt1
local_cluster: mqtt1
upstream_timeout_ms: 5000
routing_table:
  user1: { type: key, cluster: mqtt2 }
  alert: { type: value, cluster: mqtt2 }
";

const T: Duration = Duration::from_secs(20);

/// Two brokers, the bridge and Envoy.
pub struct MqttDemo {
    pub dir: TestDir,
    pub a: Mosquitto,
    pub b: Mosquitto,
    pub mesh: FilterMesh,
}

impl MqttDemo {
    pub fn start(dir: &TestDir) -> Result<MqttDemo> {
        let own = TestDir::new("demo-mqtt")?;
        let a = Mosquitto::start(dir, "mqtt1")?;
        let b = Mosquitto::start(dir, "mqtt2")?;
        let opts = FilterMeshOptions::new("geomesh_filter_mqtt", "geomesh_mqtt", MQTT_CONFIG);
        let mesh = FilterMesh::start(&own, &opts, &[("mqtt1", a.port), ("mqtt2", b.port)])?;
        Ok(MqttDemo {
            dir: own,
            a,
            b,
            mesh,
        })
    }

    pub fn port(&self) -> u16 {
        self.mesh.port
    }

    pub fn procs(&mut self) -> Vec<(String, &mut Proc)> {
        vec![
            ("envoy (mqtt)".to_owned(), self.mesh.envoy.proc()),
            (
                "geomesh-bridge (mqtt)".to_owned(),
                &mut self.mesh.bridge.proc,
            ),
            ("mosquitto mqtt1".to_owned(), &mut self.a.proc),
            ("mosquitto mqtt2".to_owned(), &mut self.b.proc),
        ]
    }

    /// Commands to try: (what it shows, argv, a text its output holds; `None`: it blocks).
    pub fn tries(&self) -> Vec<(&'static str, Vec<String>, Option<&'static str>)> {
        let p = self.port().to_string();
        let b = self.b.port.to_string();
        let sv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        vec![
            (
                "MQTT: subscribe through geomesh (sensors/# is held on both brokers, fanned in)",
                sv(&[
                    "mosquitto_sub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &p,
                    "-V",
                    "mqttv5",
                    "-t",
                    "sensors/#",
                    "-v",
                ]),
                None,
            ),
            (
                "…and publish an alert in another terminal (its payload routes it to mqtt2)",
                sv(&[
                    "mosquitto_pub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &p,
                    "-V",
                    "mqttv311",
                    "-q",
                    "1",
                    "-t",
                    "sensors/9",
                    "-m",
                    "alert: smoke",
                ]),
                Some(""),
            ),
            (
                "MQTT: the retained status through geomesh (mqtt2 owns user1/#)",
                sv(&[
                    "mosquitto_sub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &p,
                    "-V",
                    "mqttv5",
                    "-t",
                    "user1/#",
                    "-v",
                    "-C",
                    "1",
                    "-W",
                    "5",
                ]),
                Some("user1/status online"),
            ),
            (
                "MQTT: what mqtt2 holds retained (directly)",
                sv(&[
                    "mosquitto_sub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &b,
                    "-t",
                    "#",
                    "-v",
                    "-C",
                    "1",
                    "-W",
                    "5",
                ]),
                Some("user1/status online"),
            ),
        ]
    }
}

fn say_line(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

fn show(v: &[(String, String)]) -> String {
    v.iter()
        .map(|(t, p)| format!("{t} {p:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The demo's MQTT traffic; `check(what, ok, detail)` records each claim, `row` prints a line.
pub fn mqtt_section(
    m: &MqttDemo,
    mut check: impl FnMut(&str, bool, String) -> Result<()>,
    mut row: impl FnMut(&str, &str, Option<Duration>, &str),
) -> Result<()> {
    let port = m.port();
    say_line(&format!(
        "\n== MQTT sharding (Écharde): one MQTT broker at 127.0.0.1:{port}, 2 mosquitto brokers as shards =="
    ));
    say_line("the filter's configuration (user1 topics and payloads holding `alert` on mqtt2):");
    for l in MQTT_CONFIG.lines() {
        say_line(&format!("  | {l}"));
    }
    // What lands on each broker, read there directly; a wildcard subscriber through geomesh.
    let on_a = MosquittoSub::start(&m.dir, m.a.port, V311, "#", 1, 20, &[])?;
    let on_b = MosquittoSub::start(&m.dir, m.b.port, V311, "#", 3, 20, &[])?;
    m.a.wait_log(&format!("Received SUBSCRIBE from {}", on_a.client_id), 1, T)?;
    m.b.wait_log(&format!("Received SUBSCRIBE from {}", on_b.client_id), 1, T)?;
    let t = Instant::now();
    let fan_in = MosquittoSub::start(&m.dir, port, V5, "sensors/#", 2, 20, &["-q", "1"])?;
    for broker in [&m.a, &m.b] {
        broker.wait_log(
            &format!("Received SUBSCRIBE from {}", fan_in.client_id),
            1,
            T,
        )?;
    }
    row(
        "mosquitto_sub -V mqttv5 -t 'sensors/#'",
        "both (fanned out)",
        Some(t.elapsed()),
        "subscribed on mqtt1 and mqtt2",
    );

    for (version, topic, payload, place) in [
        (V311, "sensors/1", "21C", "mqtt1 (default)"),
        (V5, "sensors/2", "alert: 90C", "mqtt2 (value route)"),
        (V5, "user1/cart", "3 items", "mqtt2 (key route)"),
    ] {
        let t = Instant::now();
        mosquitto_pub(&m.dir, port, version, topic, payload, &["-q", "1"])?;
        row(
            &format!("mosquitto_pub -V {version} -q 1 -t {topic} -m {payload:?}"),
            place,
            Some(t.elapsed()),
            "PUBACK",
        );
    }
    let t = Instant::now();
    mosquitto_pub(
        &m.dir,
        port,
        V5,
        "user1/status",
        "online",
        &["-q", "1", "-r"],
    )?;
    row(
        "mosquitto_pub -V mqttv5 -r -t user1/status -m online",
        "mqtt2 (retained)",
        Some(t.elapsed()),
        "PUBACK",
    );

    let got_a = sorted(on_a.messages(Duration::from_secs(30))?);
    let want_a = vec![("sensors/1".to_owned(), "21C".to_owned())];
    check("what mqtt1 received", got_a == want_a, show(&got_a))?;
    row(
        &format!("mosquitto_sub -p {} -t '#'", m.a.port),
        "mqtt1 directly",
        None,
        &show(&got_a),
    );
    let got_b = sorted(on_b.messages(Duration::from_secs(30))?);
    let want_b = sorted(
        [
            ("sensors/2", "alert: 90C"),
            ("user1/cart", "3 items"),
            ("user1/status", "online"),
        ]
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect(),
    );
    check("what mqtt2 received", got_b == want_b, show(&got_b))?;
    row(
        &format!("mosquitto_sub -p {} -t '#'", m.b.port),
        "mqtt2 directly",
        None,
        &show(&got_b),
    );
    let got = sorted(fan_in.messages(Duration::from_secs(30))?);
    let want = vec![
        ("sensors/1".to_owned(), "21C".to_owned()),
        ("sensors/2".to_owned(), "alert: 90C".to_owned()),
    ];
    check(
        "the wildcard subscriber got both brokers' messages",
        got == want,
        show(&got),
    )?;
    row(
        "…the sensors/# subscriber through geomesh",
        "mqtt1 + mqtt2",
        None,
        &show(&got),
    );
    Ok(())
}
