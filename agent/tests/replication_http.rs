//! The replication's HTTP surfaces with two real agents (`Agent::start`, in this process) and a
//! real json-server 0.17 per site: the proxy listener as the scope filter calls it (hand-over
//! headers), the peer endpoints between the agents, the JSON API and its errors. (With Envoy,
//! agent processes, three sites and faults: integration/tests/replication_e2e.rs.)

use std::path::Path;
use std::time::{Duration, Instant};

use geomesh_agent::{Agent, AgentConfig};
use serde_json::{json, Value};

mod common;
use common::{free_port, JsonServer};

struct Two {
    _dir: tempfile::TempDir,
    _apps: Vec<JsonServer>,
    agents: Vec<Agent>,
    http: reqwest::Client,
}

fn config(site: &str, api: u16, proxy: u16, peer: (&str, u16), app: u16, data: &Path) -> AgentConfig {
    AgentConfig::parse(&format!(
        "site: {site}\nlisten: 127.0.0.1:{api}\ninterval_ms: 100\ntimeout_ms: 300\nplaintext: true\n\
         peers: [{{ name: {}, url: \"http://127.0.0.1:{}\" }}]\n\
         services: [{{ name: image, address: \"127.0.0.1:{app}\" }}]\n\
         replication: {{ listen: \"127.0.0.1:{proxy}\", data_dir: \"{}\", client_wait_ms: 5000, retry_min_ms: 20, retry_max_ms: 200 }}\n",
        peer.0,
        peer.1,
        data.display()
    ))
    .unwrap()
}

impl Two {
    async fn start() -> Two {
        let dir = tempfile::tempdir().unwrap();
        let apps = vec![
            JsonServer::start(dir.path(), "a", &json!({ "images": [] })),
            JsonServer::start(dir.path(), "b", &json!({ "images": [ { "id": 1, "name": "b-only" } ] })),
        ];
        let (api, proxy) = ([free_port(), free_port()], [free_port(), free_port()]);
        let mut agents = Vec::new();
        for (i, (site, other)) in [("A", "B"), ("B", "A")].into_iter().enumerate() {
            let c = config(site, api[i], proxy[i], (other, api[1 - i]), apps[i].port, &dir.path().join(site));
            agents.push(Agent::start(&c).await.unwrap());
        }
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let two = Two { _dir: dir, _apps: apps, agents, http };
        // Both see each other up.
        for i in 0..2 {
            two.wait(&format!("agent {i} sees its peer"), || {
                let s = two.agents[i].store.read();
                s.peers[0].heartbeat_up == Some(true)
            })
            .await;
        }
        two
    }

    async fn wait(&self, what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn proxy(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.agents[i].proxy_addr.unwrap())
    }

    fn api(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.agents[i].addr)
    }

    async fn get(&self, url: String) -> (u16, Value) {
        let r = self.http.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_peers_and_api_of_two_agents() {
    let two = Two::start().await;

    // A create as the scope filter hands it over (`{ image: A & B }` at A).
    let r = two
        .http
        .post(two.proxy(0, "/images"))
        .header("x-geomesh-service", "image")
        .header("x-geomesh-replicate", "A, B")
        .header("x-geomesh-scope", "{ image: A & B }")
        .json(&json!({ "name": "alpine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-geomesh-replica"], "A");
    let v: Value = r.json().await.unwrap();
    let meta = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v, json!({ "name": "alpine", "id": meta }));

    // B's copy, with both local ids (A: 1, B: 2 after its own item 1), through the API.
    let deadline = Instant::now() + Duration::from_secs(10);
    let copy = loop {
        let (st, c) = two.get(two.api(1, &format!("/v1/replication/replicants/{meta}"))).await;
        if st == 200 && c["replicas"]["A"]["local_id"] == 1 && c["replicas"]["B"]["local_id"] == 2 {
            break c;
        }
        assert!(Instant::now() < deadline, "B's copy: {st} {c}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((copy["leader"].as_str(), copy["state"].as_str()), (Some("A"), Some("active")));

    // A read at B by A's meta-id is served by B's replica; by B's local id too; pinned at B too.
    for (path, pinned) in [(format!("/images/{meta}"), false), ("/images/2".to_owned(), false), (format!("/images/{meta}"), true)] {
        let mut rq = two.http.get(two.proxy(1, &path)).header("x-geomesh-service", "image");
        if pinned {
            rq = rq.header("x-geomesh-pinned", "1");
        }
        let r = rq.send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["x-geomesh-replica"], "B");
        assert_eq!(r.json::<Value>().await.unwrap(), json!({ "name": "alpine", "id": meta }));
    }
    // HEAD answers the length of what GET answers (the rewritten body), at a replica and at
    // the leader.
    for site in [0, 1] {
        let path = format!("/images/{meta}");
        let get = two.http.get(two.proxy(site, &path)).header("x-geomesh-service", "image").send().await.unwrap();
        let get_len = get.bytes().await.unwrap().len();
        let head = two.http.head(two.proxy(site, &path)).header("x-geomesh-service", "image").send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["content-length"].to_str().unwrap(), get_len.to_string(), "HEAD at site {site}");
    }
    // Without the hand-over headers the proxy refuses (only the scope filter calls it).
    let (st, v) = two.get(two.proxy(1, "/images/1")).await;
    assert_eq!((st, v.as_str().map(|s| s.contains("x-geomesh-service"))), (400, Some(true)), "{v}");
    // B's own item, not replicated: passed through unchanged; the list shows the replica's meta-id.
    let r = two.http.get(two.proxy(1, "/images/1")).header("x-geomesh-service", "image").send().await.unwrap();
    assert!(!r.headers().contains_key("x-geomesh-replica"));
    assert_eq!(r.json::<Value>().await.unwrap(), json!({ "id": 1, "name": "b-only" }));
    let r = two.http.get(two.proxy(1, "/images")).header("x-geomesh-service", "image").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([{ "id": 1, "name": "b-only" }, { "name": "alpine", "id": meta }]));

    // A write at B goes to the leader A (peer/submit), answered by B's replica.
    let r = two
        .http
        .patch(two.proxy(1, &format!("/images/{meta}")))
        .header("x-geomesh-service", "image")
        .header("authorization", "Bearer SECRET-TOKEN-123")
        .json(&json!({ "size": 7 }))
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["x-geomesh-replica"].to_str().unwrap()), (200, "B"));
    let seq: u64 = r.headers()["x-geomesh-operation"].to_str().unwrap().parse().unwrap();
    let (st, op) = two.get(two.api(0, &format!("/v1/replication/operations/{seq}"))).await;
    assert_eq!((st, op["origin"].as_str(), op["kind"].as_str()), (200, Some("B"), Some("update")), "{op}");
    // Credentials travel to the replicas but the API does not show them.
    assert!(op["headers"].to_string().contains("[redacted]") && !op.to_string().contains("SECRET"), "{op}");
    let (_, ops) = two.get(two.api(0, &format!("/v1/replication/operations?meta={meta}&site=B"))).await;
    assert!(ops.as_array().unwrap().len() >= 2, "{ops}");
    let (_, q) = two.get(two.api(0, "/v1/replication/queues")).await;
    assert!(q["B"].is_object(), "{q}");

    // Errors: bad hand-over headers, bad API parameters, a peer delivery without its fields.
    let r = two
        .http
        .post(two.proxy(0, "/images"))
        .header("x-geomesh-service", "image")
        .header("x-geomesh-replicate", "A, Z")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["x-geomesh-error"].to_str().unwrap()), (400, "replication"));
    assert!(r.text().await.unwrap().contains("unknown site Z"));
    for (path, status) in [
        ("/v1/replication/operations?limit=0", 400),
        ("/v1/replication/operations/999", 404),
        ("/v1/replication/replicants/42", 400),
        ("/v1/replication/replicants/gm-00000000000000000000000000", 404),
    ] {
        let (st, v) = two.get(two.api(0, path)).await;
        assert_eq!(st, status, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    let r = two.http.post(two.api(1, "/v1/replication/peer/apply")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(!r.headers().contains_key("x-geomesh-applied"));

    // Removing B from the system, asked of A: the replicant A leads keeps A only, and B, told
    // at once, forgets its copy.
    let r = two.http.post(two.api(0, "/v1/replication/sites/B/remove")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["here"]["replicants"], json!([meta]), "{v}");
    assert_eq!(v["notices"]["B"]["state"], "done", "{v}");
    let (_, rep) = two.get(two.api(0, &format!("/v1/replication/replicants/{meta}"))).await;
    assert!(rep["replicas"].get("B").is_none(), "{rep}");
    let (st, _) = two.get(two.api(1, &format!("/v1/replication/replicants/{meta}"))).await;
    assert_eq!(st, 404, "B dropped its copy");
    let (_, removed) = two.get(two.api(1, "/v1/replication/removed")).await;
    assert_eq!((removed[0]["site"].as_str(), removed[0]["requested_at"].as_str()), (Some("B"), Some("A")), "{removed}");
    let r = two.http.post(two.api(0, "/v1/replication/sites/Z/remove")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // The status page lists it.
    let page = two.http.get(two.api(0, "/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&meta) && page.contains("Replicants"), "{page}");
}

#[tokio::test]
async fn without_replication_the_api_says_so() {
    let port = free_port();
    let c = AgentConfig::parse(&format!("site: A\nlisten: 127.0.0.1:{port}\n")).unwrap();
    let agent = Agent::start(&c).await.unwrap();
    assert!(agent.replication.is_none() && agent.proxy_addr.is_none());
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/v1/replication/replicants", agent.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("not configured"), "{v}");
}
