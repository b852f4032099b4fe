//! `/metrics` of a real bridge, parsed by a Prometheus text-format parser (`prometheus-parse`),
//! after traffic through a local channel and a channel to another site.

mod common;

use std::time::{Duration, Instant};

use common::*;
use prometheus_parse::{Scrape, Value};

const FIVE: Duration = Duration::from_secs(5);

fn scrape(b: &BridgeProc) -> Scrape {
    let (status, body) = b.admin_get("/metrics");
    assert!(status.contains("200"), "{status}: {body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The value of `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn metrics_parse_and_count_channels_bytes_closes_and_sites() {
    let near = Redis::start();
    let far = Redis::start();
    let dc2 = BridgeProc::start(&format!(
        "site: dc2\nlisten: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\nplaintext: true\nadmin_listen: 127.0.0.1:0\nclusters:\n  far: {{ address: \"{}\" }}\n",
        far.addr()
    ));
    let dc1 = BridgeProc::start(&format!(
        "site: dc1\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndefaults: {{ ping_interval_ms: 100 }}\nplaintext: true\nclusters:\n  near: {{ address: \"{}\" }}\n  far: {{ site: dc2 }}\n  nowhere: {{ address: \"127.0.0.1:{}\" }}\nsites:\n  dc2: {{ grpc: \"http://{}\" }}\n  dc3: {{ grpc: \"http://127.0.0.1:{}\" }}\n",
        near.addr(),
        free_port(),
        dc2.grpc.as_ref().unwrap(),
        free_port()
    ));
    let mut g = dc1.client();
    g.open(1, "near", 0, 0);
    g.open(2, "far", 0, 0);
    g.roundtrip(1, &["SET", "a", "1"], b"+OK\r\n");
    g.roundtrip(2, &["SET", "b", "2"], b"+OK\r\n");
    g.open(3, "nowhere", 0, 0);
    g.expect_closed(3, FIVE);

    // Pings run every 100 ms: wait until both sites have a verdict.
    let deadline = Instant::now() + FIVE;
    let s = loop {
        let s = scrape(&dc1);
        if value(&s, "geomesh_bridge_site_rtt_seconds", &[("site", "dc2")]).is_some()
            && value(&s, "geomesh_bridge_site_up", &[("site", "dc3")]).is_some()
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no site verdicts: {:?}", s.samples);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(value(&s, "geomesh_bridge_ready", &[]), Some(1.0));
    assert_eq!(value(&s, "geomesh_bridge_site", &[("site", "dc1")]), Some(1.0));
    assert_eq!(value(&s, "geomesh_bridge_channels_total", &[]), Some(3.0));
    assert_eq!(value(&s, "geomesh_bridge_remote_channels_total", &[]), Some(1.0));
    assert_eq!(value(&s, "geomesh_bridge_channels_active", &[]), Some(2.0));
    assert_eq!(value(&s, "geomesh_bridge_filter_connections_active", &[]), Some(1.0));
    assert_eq!(value(&s, "geomesh_bridge_channel_closes_total", &[("code", "REFUSED")]), Some(1.0));
    assert_eq!(value(&s, "geomesh_bridge_stalls_total", &[]), Some(0.0));
    assert_eq!(value(&s, "geomesh_bridge_connect_timeouts_total", &[]), Some(0.0));
    let to_backends = value(&s, "geomesh_bridge_bytes_total", &[("direction", "to_backends")]).unwrap();
    assert!(to_backends > 0.0, "{to_backends}");
    assert_eq!(value(&s, "geomesh_bridge_site_up", &[("site", "dc2")]), Some(1.0));
    assert_eq!(value(&s, "geomesh_bridge_site_up", &[("site", "dc3")]), Some(0.0));
    let rtt = value(&s, "geomesh_bridge_site_rtt_seconds", &[("site", "dc2")]).unwrap();
    assert!(rtt > 0.0 && rtt < 1.0, "{rtt}");
    assert!(value(&s, "geomesh_bridge_site_rtt_seconds", &[("site", "dc3")]).is_none());
    // The called side counts its tunnel.
    let s2 = scrape(&dc2);
    assert_eq!(value(&s2, "geomesh_bridge_tunnels_in_total", &[]), Some(1.0));
    // The type lines are there for every family (a scraper keys on them).
    let (_, body) = dc1.admin_get("/metrics");
    for t in ["# TYPE geomesh_bridge_bytes_total counter", "# TYPE geomesh_bridge_site_up gauge"] {
        assert!(body.contains(t), "{t} missing:\n{body}");
    }
    // The other admin paths on the same server.
    assert!(dc1.admin_get("/healthz").0.contains("200"));
    assert!(dc1.admin_get("/stats?format=json").1.contains("\"channels_total\":3"));
    assert!(dc1.admin_get("/nope").0.contains("404"));
}
