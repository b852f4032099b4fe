//! `/metrics` of two real agents (in this process) with real json-servers, parsed by a
//! Prometheus text-format parser (`prometheus-parse`): per-site up and RTT, and the replication
//! queue of a leader whose delivery to the other site is held back (depth 1, lag growing).

mod common;

use std::time::{Duration, Instant};

use common::{free_port, JsonServer};
use geomesh_agent::{Agent, AgentConfig};
use prometheus_parse::{Scrape, Value};
use serde_json::json;

fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

async fn scrape(http: &reqwest::Client, agent: &Agent) -> Scrape {
    let r = http.get(format!("http://{}/metrics", agent.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let body = r.text().await.unwrap();
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_two_agents_parse_and_show_sites_and_the_replication_queue() {
    let dir = tempfile::tempdir().unwrap();
    let apps = [
        JsonServer::start(dir.path(), "a", &json!({ "images": [] })),
        JsonServer::start(dir.path(), "b", &json!({ "images": [] })),
    ];
    let (api, proxy) = ([free_port(), free_port()], [free_port(), free_port()]);
    let mut agents = Vec::new();
    for (i, (site, other)) in [("A", "B"), ("B", "A")].into_iter().enumerate() {
        // A holds every delivery to B back: B's queue at A stays open.
        let hooks = if site == "A" { ", test_hooks: { delay_before_delivery_ms: { B: 600000 } }" } else { "" };
        let c = AgentConfig::parse(&format!(
            "site: {site}\nlisten: 127.0.0.1:{}\ninterval_ms: 100\ntimeout_ms: 300\n\
             plaintext: true\n\
             peers: [{{ name: {other}, url: \"http://127.0.0.1:{}\" }}]\n\
             services: [{{ name: image, address: \"127.0.0.1:{}\" }}]\n\
             replication: {{ listen: \"127.0.0.1:{}\", data_dir: \"{}\", client_wait_ms: 5000{hooks} }}\n",
            api[i],
            api[1 - i],
            apps[i].port,
            proxy[i],
            dir.path().join(site).display()
        ))
        .unwrap();
        agents.push(Agent::start(&c).await.unwrap());
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .post(format!("http://{}/images", agents[0].proxy_addr.unwrap()))
        .header("x-geomesh-service", "image")
        .header("x-geomesh-replicate", "A, B")
        .header("x-geomesh-scope", "{ image: A & B }")
        .json(&json!({ "name": "alpine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = scrape(&http, &agents[0]).await;
        let ready = value(&s, "geomesh_agent_site_rtt_seconds", &[("site", "B")]).is_some()
            && value(&s, "geomesh_agent_replication_lag_seconds", &[("site", "B")]).is_some_and(|l| l > 0.0);
        if ready {
            break s;
        }
        assert!(Instant::now() < deadline, "metrics never showed B: {:?}", s.samples);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(value(&s, "geomesh_agent_site", &[("site", "A")]), Some(1.0));
    assert_eq!(value(&s, "geomesh_agent_site_up", &[("site", "B")]), Some(1.0));
    let rtt = value(&s, "geomesh_agent_site_rtt_seconds", &[("site", "B")]).unwrap();
    assert!(rtt > 0.0 && rtt < 1.0, "{rtt}");
    assert_eq!(value(&s, "geomesh_agent_heartbeat_failures", &[("site", "B")]), Some(0.0));
    assert_eq!(value(&s, "geomesh_agent_replication_queue_depth", &[("site", "B")]), Some(1.0));
    assert_eq!(value(&s, "geomesh_agent_replication_queue_depth", &[("site", "A")]), Some(0.0));
    assert_eq!(value(&s, "geomesh_agent_replication_finished_total", &[("site", "A")]), Some(1.0));
    assert_eq!(value(&s, "geomesh_agent_replication_store_errors", &[]), Some(0.0));
    // B leads nothing: an empty queue, but its heartbeats were counted.
    let s = scrape(&http, &agents[1]).await;
    assert!(value(&s, "geomesh_agent_heartbeats_served_total", &[]).is_some_and(|n| n >= 1.0));
    assert_eq!(value(&s, "geomesh_agent_site_up", &[("site", "A")]), Some(1.0));
}
