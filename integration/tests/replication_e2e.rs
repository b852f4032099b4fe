//! Replication with `&` end to end (issue 5, docs/replication.md): three sites on loopback, each a
//! real Envoy 1.40 running `geomesh_filter_scope.wasm` (with `http.replication`), a real
//! `geomesh-agent` process with replication, and a real application per site: json-server 0.17
//! (ids it generates itself) or, for the 100 MB body, `geomesh-blob-store`. Clients are real
//! (reqwest, curl). See `geomesh_integration::replication`.
//!
//! Needs `make build` (the .wasm, and `geomesh-agent` + `geomesh-blob-store` built in the profile
//! and target dir of this test run) and json-server (`scripts/bootstrap.sh`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use geomesh_integration::replication::{proc_memory, App, ReplicationPlan, ReplicationTopology};
use geomesh_integration::{wait_for, TestDir};
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

const DC1: usize = 0;
const DC2: usize = 1;
const DC3: usize = 2;
/// Longest wait for replicas to converge.
const CONVERGE: Duration = Duration::from_secs(15);

fn start(name: &str, plan: ReplicationPlan) -> (TestDir, ReplicationTopology) {
    let dir = TestDir::new(name).unwrap();
    let t = Instant::now();
    let topo = ReplicationTopology::start(&dir, plan).unwrap();
    eprintln!("[{name}] topology up in {:?}", t.elapsed());
    (dir, topo)
}

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.body)
    }
}

/// A request through site `site`'s Envoy.
fn call(
    topo: &ReplicationTopology,
    site: usize,
    method: &str,
    path: &str,
    scope: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut req = client().request(method.parse().unwrap(), format!("{}{path}", topo.url(site)));
    if let Some(s) = scope {
        req = req.header("x-scope", s);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

/// The leader's record of operation `seq`.
fn operation(topo: &ReplicationTopology, leader: usize, seq: u64) -> Value {
    let (st, v) = topo
        .agent_get(leader, &format!("/v1/replication/operations/{seq}"))
        .unwrap();
    assert_eq!(st, 200, "{v}");
    v
}

fn op_state(op: &Value, site: &str) -> String {
    op["sites"][site]["state"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

fn seq_of(a: &Answer) -> u64 {
    a.header("x-geomesh-operation")
        .parse()
        .unwrap_or_else(|_| panic!("no operation number: {a:?}"))
}

fn images(topo: &ReplicationTopology, site: usize) -> Vec<Value> {
    let (st, v) = topo.instance_get(site, "/images").unwrap();
    assert_eq!(st, 200, "{v}");
    v.as_array().unwrap().clone()
}

/// The item named `meta`'s replica on `site` (through the replicant's record at the leader).
fn local_id(topo: &ReplicationTopology, leader: usize, meta: &str, site: &str) -> Value {
    let (st, r) = topo
        .agent_get(leader, &format!("/v1/replication/replicants/{meta}"))
        .unwrap();
    assert_eq!(st, 200, "{r}");
    r["replicas"][site]["local_id"].clone()
}

fn is_meta(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 29 && s.starts_with("gm-"))
}

fn create_image(
    topo: &ReplicationTopology,
    site: usize,
    scope: &str,
    body: Value,
) -> (String, Answer) {
    let a = call(topo, site, "POST", "/images", Some(scope), Some(body));
    assert_eq!(a.status, 201, "{a:?}");
    assert!(is_meta(&a.body["id"]), "{a:?}");
    (a.body["id"].as_str().unwrap().to_owned(), a)
}

/// Waits until site `site`'s application holds `expected` at `path`.
fn wait_instance(
    topo: &ReplicationTopology,
    site: usize,
    path: &str,
    what: &str,
    pred: impl Fn(u16, &Value) -> bool,
) {
    let mut last = None;
    let r = wait_for(
        CONVERGE,
        &format!("{}: {what}", topo.plan.sites[site]),
        || {
            let (st, v) = topo.instance_get(site, path)?;
            let ok = pred(st, &v);
            last = Some((st, v));
            Ok(ok)
        },
    );
    if let Err(e) = r {
        panic!("{e:#}; last: {last:?}");
    }
}

/// Waits until operation `seq` of the leader's log is in the given state on each site.
fn wait_op(topo: &ReplicationTopology, leader: usize, seq: u64, states: &[(&str, &str)]) {
    let mut last = Value::Null;
    let r = wait_for(
        CONVERGE,
        &format!("operation {seq} in states {states:?}"),
        || {
            let op = operation(topo, leader, seq);
            let ok = states.iter().all(|(s, st)| op_state(&op, s) == *st);
            last = op;
            Ok(ok)
        },
    );
    if let Err(e) = r {
        panic!("{e:#}; operation: {last}");
    }
}

/// Waits until the leader's log has nothing open.
fn wait_queues_empty(topo: &ReplicationTopology, leader: usize) {
    let mut last = Value::Null;
    let r = wait_for(CONVERGE, "every queue of the leader empty", || {
        let (_, q) = topo.agent_get(leader, "/v1/replication/queues")?;
        let empty = q
            .as_object()
            .is_some_and(|m| m.values().all(|s| s["open"] == 0));
        last = q;
        Ok(empty)
    });
    if let Err(e) = r {
        panic!("{e:#}; queues: {last}");
    }
}

#[test]
fn create_read_update_delete_on_two_of_three_sites() {
    let mut plan = ReplicationPlan::free(App::JsonServer).unwrap();
    // Different contents per site, so json-server gives the same resource different ids.
    plan.seeds[DC2] = json!({ "images": (1..=5).map(|i| json!({ "id": i, "name": format!("dc2-only-{i}") })).collect::<Vec<_>>() });
    plan.seeds[DC3] = json!({ "images": [ { "id": 1, "name": "dc3-only" } ] });
    let (_dir, topo) = start("repl-crud", plan);
    let t0 = Instant::now();

    // Create at DC 1 on DC 1 & DC 2: the meta-id in the body and in Location, DC 1's answer.
    let (meta, a) = create_image(
        &topo,
        DC1,
        "{ image: DC 1 & DC 2 }",
        json!({ "name": "debian", "size": 3 }),
    );
    assert_eq!(
        a.body,
        json!({ "name": "debian", "size": 3, "id": meta }),
        "{a:?}"
    );
    assert_eq!(
        a.header("location"),
        format!("{}/images/{meta}", topo.url(DC1)),
        "{a:?}"
    );
    assert_eq!(a.header("x-geomesh-meta"), meta);
    assert_eq!(a.header("x-geomesh-replica"), "DC 1");
    assert_eq!(a.header("x-geomesh-routed-to"), "geomesh_agent_proxy");
    let create_seq = seq_of(&a);

    // Each application holds its own copy under its own id; the third site has nothing.
    wait_op(
        &topo,
        DC1,
        create_seq,
        &[("DC 1", "done"), ("DC 2", "done")],
    );
    assert_eq!(
        images(&topo, DC1),
        vec![json!({ "name": "debian", "size": 3, "id": 1 })]
    );
    assert_eq!(
        images(&topo, DC2)[5],
        json!({ "name": "debian", "size": 3, "id": 6 })
    );
    assert_eq!(
        images(&topo, DC3),
        vec![json!({ "id": 1, "name": "dc3-only" })]
    );
    assert_eq!(
        (
            local_id(&topo, DC1, &meta, "DC 1"),
            local_id(&topo, DC1, &meta, "DC 2")
        ),
        (json!(1), json!(6))
    );
    assert_eq!(
        topo.agent_get(DC3, &format!("/v1/replication/replicants/{meta}"))
            .unwrap()
            .0,
        404
    );
    let op = operation(&topo, DC1, create_seq);
    assert_eq!(
        (
            op["kind"].as_str(),
            op_state(&op, "DC 1"),
            op_state(&op, "DC 2")
        ),
        (Some("create"), "done".into(), "done".into())
    );
    assert!(op["sites"].get("DC 3").is_none(), "{op}");
    // DC 2's copy of the replicant learns both ids (the sync after the create).
    wait_for(CONVERGE, "DC 2's copy complete", || {
        let (st, r) = topo.agent_get(DC2, &format!("/v1/replication/replicants/{meta}"))?;
        Ok(st == 200
            && r["replicas"]["DC 1"]["local_id"] == 1
            && r["replicas"]["DC 2"]["local_id"] == 6
            && r["leader"] == "DC 1")
    })
    .unwrap();

    // GET by meta-id on both sites: the same content, each from its own replica (local-first).
    let expected = json!({ "name": "debian", "size": 3, "id": meta });
    for (site, name) in [(DC1, "DC 1"), (DC2, "DC 2")] {
        let g = call(&topo, site, "GET", &format!("/images/{meta}"), None, None);
        assert_eq!((g.status, &g.body), (200, &expected), "{g:?}");
        assert_eq!(g.header("x-geomesh-replica"), name);
    }
    // By DC 2's own local id on DC 2: the same resource, its id hidden.
    let g = call(&topo, DC2, "GET", "/images/6", None, None);
    assert_eq!((g.status, &g.body), (200, &expected), "{g:?}");
    // DC 2's list: its own items untouched, the replica under its meta-id.
    let l = call(&topo, DC2, "GET", "/images", None, None);
    assert_eq!(l.body.as_array().map(Vec::len), Some(6), "{l:?}");
    assert_eq!(l.body[0]["id"], 1);
    assert_eq!(l.body[5]["id"], json!(meta));
    // DC 3 holds no replica: an unpinned read is served by the nearest replica; a pinned one is not.
    let g = call(&topo, DC3, "GET", &format!("/images/{meta}"), None, None);
    assert_eq!((g.status, &g.body), (200, &expected), "{g:?}");
    assert!(
        ["DC 1", "DC 2"].contains(&g.header("x-geomesh-replica")),
        "{g:?}"
    );
    let g = call(
        &topo,
        DC3,
        "GET",
        &format!("/images/{meta}"),
        Some("{ image: DC 3 }"),
        None,
    );
    assert_eq!(g.status, 404, "{g:?}");
    assert_eq!(
        g.body.as_str().unwrap().trim(),
        format!("geomesh: site DC 3 holds no replica of {meta}; replicas: DC 1, DC 2")
    );
    assert_eq!(images(&topo, DC3).len(), 1, "DC 3 still has nothing");

    // PUT through the non-leader: DC 2 submits to the leader, answers with its own replica's
    // answer, and both applications have the new content under their own ids.
    let p = call(
        &topo,
        DC2,
        "PUT",
        &format!("/images/{meta}"),
        None,
        Some(json!({ "name": "debian-12", "size": 4, "id": meta })),
    );
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(
        p.body,
        json!({ "name": "debian-12", "size": 4, "id": meta })
    );
    assert_eq!(p.header("x-geomesh-replica"), "DC 2");
    assert_eq!(
        topo.instance_get(DC2, "/images/6").unwrap().1,
        json!({ "name": "debian-12", "size": 4, "id": 6 })
    );
    wait_instance(&topo, DC1, "/images/1", "the PUT", |_, v| {
        v["name"] == "debian-12"
    });
    assert_eq!(
        topo.instance_get(DC1, "/images/1").unwrap().1,
        json!({ "name": "debian-12", "size": 4, "id": 1 })
    );
    let op = operation(&topo, DC1, seq_of(&p));
    assert_eq!(
        (op["kind"].as_str(), op["origin"].as_str()),
        (Some("update"), Some("DC 2")),
        "{op}"
    );
    wait_queues_empty(&topo, DC1);
    let op = operation(&topo, DC1, seq_of(&p));
    for s in ["DC 1", "DC 2"] {
        assert_eq!(
            (op_state(&op, s), op["sites"][s]["status"].as_u64()),
            ("done".into(), Some(200)),
            "{op}"
        );
    }
    for site in [DC1, DC2, DC3] {
        let g = call(&topo, site, "GET", &format!("/images/{meta}"), None, None);
        assert_eq!(g.body["name"], "debian-12", "{g:?}");
    }

    // A scope naming another site: DC 1's filter forwards to DC 2's Envoy, whose filter hands the
    // request to DC 2's agent, pinned there: the read is DC 2's replica, the write still goes
    // through the leader's log.
    let g = call(
        &topo,
        DC1,
        "GET",
        &format!("/images/{meta}"),
        Some("{ image: DC 2 }"),
        None,
    );
    assert_eq!(
        (g.status, g.header("x-geomesh-replica")),
        (200, "DC 2"),
        "{g:?}"
    );
    let w = call(
        &topo,
        DC1,
        "PATCH",
        &format!("/images/{meta}"),
        Some("{ image: DC 2 }"),
        Some(json!({ "arch": "arm64" })),
    );
    assert_eq!(
        (w.status, w.header("x-geomesh-replica")),
        (200, "DC 2"),
        "{w:?}"
    );
    assert_eq!(operation(&topo, DC1, seq_of(&w))["origin"], "DC 2");
    wait_instance(&topo, DC1, "/images/1", "the PATCH", |_, v| {
        v["arch"] == "arm64"
    });

    // The JSON API and the status page.
    let (_, list) = topo.agent_get(DC1, "/v1/replication/replicants").unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let (_, ops) = topo
        .agent_get(DC1, &format!("/v1/replication/operations?meta={meta}"))
        .unwrap();
    let kinds: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k != "sync").collect::<Vec<_>>(),
        [&"create", &"update", &"update"],
        "{ops}"
    );
    let page = client()
        .get(format!("{}/", topo.agent_url(DC1)))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains(&meta) && page.contains("Recent operations") && page.contains("Queues"),
        "{page}"
    );
    let (st, _) = topo.agent_get(DC1, "/v1/sites").unwrap();
    assert_eq!(st, 200);

    // DELETE (at the leader) removes both replicas.
    let d = call(&topo, DC1, "DELETE", &format!("/images/{meta}"), None, None);
    assert_eq!(d.status, 200, "{d:?}");
    wait_instance(&topo, DC2, "/images/6", "the DELETE", |st, _| st == 404);
    assert_eq!(topo.instance_get(DC1, "/images/1").unwrap().0, 404);
    assert_eq!(images(&topo, DC2).len(), 5, "DC 2's own items stay");
    wait_for(CONVERGE, "the replicant deleted", || {
        let (_, r) = topo.agent_get(DC1, &format!("/v1/replication/replicants/{meta}"))?;
        Ok(r["state"] == "deleted")
    })
    .unwrap();
    for site in [DC1, DC2] {
        let g = call(&topo, site, "GET", &format!("/images/{meta}"), None, None);
        assert_eq!(g.status, 404, "{g:?}");
    }
    let w = call(
        &topo,
        DC2,
        "PUT",
        &format!("/images/{meta}"),
        None,
        Some(json!({ "name": "x" })),
    );
    assert_eq!(w.status, 404, "a deleted replicant takes no writes: {w:?}");

    // A create received by a site that is not among the targets: DC 3 leads it (its log) without
    // a replica; the first replica's answer comes back; writes elsewhere go to DC 3.
    let (meta3, a) = create_image(
        &topo,
        DC3,
        "{ image: DC 1 & DC 2 }",
        json!({ "name": "led-by-dc3" }),
    );
    assert!(
        ["DC 1", "DC 2"].contains(&a.header("x-geomesh-replica")),
        "{a:?}"
    );
    wait_queues_empty(&topo, DC3);
    assert_eq!(
        images(&topo, DC3),
        vec![json!({ "id": 1, "name": "dc3-only" })]
    );
    let (_, r) = topo
        .agent_get(DC3, &format!("/v1/replication/replicants/{meta3}"))
        .unwrap();
    assert_eq!(
        (
            r["leader"].as_str(),
            r["replicas"].as_object().map(|m| m.len())
        ),
        (Some("DC 3"), Some(2)),
        "{r}"
    );
    let p = call(
        &topo,
        DC1,
        "PUT",
        &format!("/images/{meta3}"),
        None,
        Some(json!({ "name": "renamed" })),
    );
    assert_eq!(
        (p.status, p.header("x-geomesh-replica")),
        (200, "DC 1"),
        "{p:?}"
    );
    wait_instance(&topo, DC2, "/images", "the PUT led by DC 3", |_, v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|i| i["name"] == "renamed"))
    });
    eprintln!("[repl-crud] scenario took {:?}", t0.elapsed());
}

/// A replica site stopped during a PUT: DC 2's agent receives the PUT's delivery and holds it
/// before its application sees it (test hook `delay_apply_ms`, agent/README.md); during the hold
/// DC 2's application and agent are SIGKILLed. The leader records the lost delivery as pending,
/// more writes follow while DC 2 is down (at the leader and through DC 3); restarted on its data,
/// DC 2 gets the PUT and every later write once each, in log order: the final state of PUT,
/// PATCH, PUT, PATCH is reached only in that order.
#[test]
fn a_replica_site_stopped_during_a_put_converges_in_order() {
    let mut plan = ReplicationPlan::free(App::JsonServer).unwrap();
    plan.agent_extra.insert(
        DC2,
        "  test_hooks: { delay_apply_ms: { update: 600000 } }\n".into(),
    );
    let (_dir, mut topo) = start("repl-site-down", plan);
    let (meta, _) = create_image(
        &topo,
        DC1,
        "{ image: DC 1 & DC 2 }",
        json!({ "name": "v0" }),
    );
    wait_queues_empty(&topo, DC1);
    let dc2_id = local_id(&topo, DC1, &meta, "DC 2");
    let dc1_id = local_id(&topo, DC1, &meta, "DC 1");

    // The PUT: DC 1 answers; its delivery to DC 2 is in flight, held inside DC 2's agent.
    let put = call(
        &topo,
        DC1,
        "PUT",
        &format!("/images/{meta}"),
        None,
        Some(json!({ "name": "v1" })),
    );
    assert_eq!(
        (put.status, put.header("x-geomesh-replica")),
        (200, "DC 1"),
        "{put:?}"
    );
    let put_seq = seq_of(&put);
    wait_op(
        &topo,
        DC1,
        put_seq,
        &[("DC 1", "done"), ("DC 2", "in_flight")],
    );
    wait_for(CONVERGE, "DC 2's agent holding the PUT", || {
        Ok(topo
            .agent_log(DC2)
            .contains("test hook: holding the delivery before it reaches the instance"))
    })
    .unwrap();
    assert_eq!(
        topo.instance_get(DC2, &format!("/images/{dc2_id}"))
            .unwrap()
            .1["name"],
        "v0"
    );

    // DC 2 stopped during the hold: its application and its agent killed.
    let t = Instant::now();
    topo.kill_app(DC2).unwrap();
    topo.kill_agent(DC2).unwrap();
    wait_op(
        &topo,
        DC1,
        put_seq,
        &[("DC 1", "done"), ("DC 2", "pending")],
    );
    let op = operation(&topo, DC1, put_seq);
    assert!(
        op["sites"]["DC 2"]["error"].is_string(),
        "the lost delivery is recorded: {op}"
    );
    eprintln!(
        "[repl-site-down] the leader saw the delivery to DC 2 lost {:?} after the kill",
        t.elapsed()
    );
    wait_for(Duration::from_secs(10), "DC 1 sees DC 2 down", || {
        topo.sees(DC1, DC2, false)
    })
    .unwrap();

    // Three more writes while DC 2 is down: at the leader, through DC 3 (no replica there: its
    // agent sends the write to the leader) and at the leader again. DC 1 answers each.
    let writes = [
        (DC1, "PATCH", json!({ "a": 1 })),
        (DC3, "PUT", json!({ "name": "v2" })),
        (DC1, "PATCH", json!({ "b": 3 })),
    ];
    let mut seqs = vec![put_seq];
    for (site, method, body) in writes {
        let w = call(
            &topo,
            site,
            method,
            &format!("/images/{meta}"),
            None,
            Some(body),
        );
        assert_eq!(w.status, 200, "{w:?}");
        assert_eq!(w.header("x-geomesh-replica"), "DC 1", "{w:?}");
        assert_eq!(w.body["id"], json!(meta), "{w:?}");
        seqs.push(seq_of(&w));
    }
    let final_state = |id: &Value| json!({ "name": "v2", "id": id, "b": 3 });
    assert_eq!(
        topo.instance_get(DC1, &format!("/images/{dc1_id}"))
            .unwrap()
            .1,
        final_state(&dc1_id)
    );
    let (_, q) = topo.agent_get(DC1, "/v1/replication/queues").unwrap();
    assert_eq!(
        (q["DC 2"]["open"].as_u64(), q["DC 2"]["next_seq"].as_u64()),
        (Some(4), Some(put_seq)),
        "{q}"
    );
    for &seq in &seqs {
        let op = operation(&topo, DC1, seq);
        assert_eq!(
            (op_state(&op, "DC 1"), op_state(&op, "DC 2")),
            ("done".into(), "pending".into()),
            "{op}"
        );
    }

    // DC 2 back, without the hook: its agent's heartbeat up edge wakes DC 2's queue at the leader.
    let t = Instant::now();
    topo.start_app(DC2).unwrap();
    topo.start_agent(DC2, "").unwrap();
    wait_queues_empty(&topo, DC1);
    eprintln!(
        "[repl-site-down] DC 2 converged {:?} after its restart began",
        t.elapsed()
    );
    assert_eq!(
        topo.instance_get(DC2, &format!("/images/{dc2_id}"))
            .unwrap()
            .1,
        final_state(&dc2_id)
    );
    assert_eq!(images(&topo, DC2).len(), 1, "nothing applied twice");
    let mut last_ms = 0;
    for &seq in &seqs {
        let op = operation(&topo, DC1, seq);
        let s = &op["sites"]["DC 2"];
        assert_eq!(
            (s["state"].as_str(), s["status"].as_u64()),
            (Some("done"), Some(200)),
            "{op}"
        );
        let at = s["updated_ms"].as_u64().unwrap();
        assert!(
            at >= last_ms,
            "DC 2 applied #{seq} before the previous one: {op}"
        );
        last_ms = at;
    }
    // Sent again after the restart (and maybe tried once more while DC 2 was down, before the
    // heartbeats said so).
    let attempts = operation(&topo, DC1, put_seq)["sites"]["DC 2"]["attempts"]
        .as_u64()
        .unwrap();
    assert!(attempts >= 2, "the PUT was sent again: {attempts} attempts");
    let log = topo.agent_log(DC2);
    assert!(
        !log.contains("delivery sent to the instance again"),
        "the held PUT never reached the instance before: {log}"
    );
    topo.wait_converged(Duration::from_secs(10)).unwrap();
    let g = call(&topo, DC2, "GET", &format!("/images/{meta}"), None, None);
    assert_eq!(
        (g.status, &g.body),
        (200, &final_state(&json!(meta))),
        "{g:?}"
    );
    assert_eq!(g.header("x-geomesh-replica"), "DC 2");
}

/// The replica sites of `meta` in site `i`'s record of it.
fn replica_sites(topo: &ReplicationTopology, i: usize, meta: &str) -> Vec<String> {
    let (st, r) = topo
        .agent_get(i, &format!("/v1/replication/replicants/{meta}"))
        .unwrap();
    assert_eq!(st, 200, "{r}");
    r["replicas"].as_object().unwrap().keys().cloned().collect()
}

/// Removing a site from the system is one call on any agent. DC 3 is down (Envoy, agent and
/// application stopped) with an update queued for it; the removal is asked of DC 2, which leads
/// nothing: DC 2 tells DC 1, the leader, which drops DC 3 from its replicant (the queued update
/// dropped, DC 2's copy synced). Writes through either remaining site then reach DC 1 and DC 2
/// only, and nothing queues for DC 3. A replicant DC 3 leads stays readable on its other replica,
/// read-only. When DC 3 comes back it is told too and forgets the others' replicants; a create
/// naming it is refused.
#[test]
fn a_site_removed_while_down_leaves_every_replicant() {
    let (_dir, mut topo) = start(
        "repl-remove",
        ReplicationPlan::free(App::JsonServer).unwrap(),
    );
    let (meta, _) = create_image(
        &topo,
        DC1,
        "{ image: DC 1 & DC 2 & DC 3 }",
        json!({ "name": "r0" }),
    );
    let (meta3, _) = create_image(
        &topo,
        DC3,
        "{ image: DC 1 & DC 3 }",
        json!({ "name": "led-by-dc3" }),
    );
    wait_queues_empty(&topo, DC1);
    wait_queues_empty(&topo, DC3);
    assert_eq!(replica_sites(&topo, DC2, &meta), ["DC 1", "DC 2", "DC 3"]);

    topo.stop_site(DC3).unwrap();
    for i in [DC1, DC2] {
        wait_for(Duration::from_secs(10), "DC 3 seen down", || {
            topo.sees(i, DC3, false)
        })
        .unwrap();
    }
    let w = call(
        &topo,
        DC1,
        "PATCH",
        &format!("/images/{meta}"),
        None,
        Some(json!({ "a": 1 })),
    );
    assert_eq!(w.status, 200, "{w:?}");
    let queued = seq_of(&w);
    let (_, q) = topo.agent_get(DC1, "/v1/replication/queues").unwrap();
    assert_eq!(q["DC 3"]["open"], 1, "{q}");

    // One call, on DC 2.
    let t = Instant::now();
    let (st, v) = topo
        .agent_post(DC2, "/v1/replication/sites/DC%203/remove")
        .unwrap();
    eprintln!("[repl-remove] removal answered in {:?}: {v}", t.elapsed());
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["site"].as_str(), v["requested_at"].as_str()),
        (Some("DC 3"), Some("DC 2")),
        "{v}"
    );
    assert_eq!(v["notices"]["DC 1"]["state"], "done", "{v}");
    assert_eq!(
        v["notices"]["DC 3"]["state"], "pending",
        "DC 3 is down: {v}"
    );
    // The leader's part, done on DC 1: DC 3 out of the replicant, its queued update dropped, a
    // sync for DC 2's copy.
    assert_eq!(replica_sites(&topo, DC1, &meta), ["DC 1", "DC 2"]);
    assert_eq!(op_state(&operation(&topo, DC1, queued), "DC 3"), "dropped");
    let (_, removed) = topo.agent_get(DC1, "/v1/replication/removed").unwrap();
    assert_eq!(
        (
            removed[0]["site"].as_str(),
            removed[0]["requested_at"].as_str()
        ),
        (Some("DC 3"), Some("DC 2")),
        "{removed}"
    );
    wait_for(CONVERGE, "DC 2's copy without DC 3", || {
        let (_, r) = topo.agent_get(DC2, &format!("/v1/replication/replicants/{meta}"))?;
        Ok(r["replicas"].get("DC 3").is_none())
    })
    .unwrap();

    // Writes go on at both remaining sites, answered at once, and nothing queues for DC 3.
    let mut seqs = Vec::new();
    for (site, method, body) in [
        (DC2, "PUT", json!({ "name": "r1" })),
        (DC1, "PATCH", json!({ "b": 2 })),
    ] {
        let t = Instant::now();
        let w = call(
            &topo,
            site,
            method,
            &format!("/images/{meta}"),
            None,
            Some(body),
        );
        assert_eq!(
            (w.status, w.header("x-geomesh-replica")),
            (200, topo.plan.sites[site].as_str()),
            "{w:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        seqs.push(seq_of(&w));
    }
    wait_queues_empty(&topo, DC1);
    for seq in seqs {
        let op = operation(&topo, DC1, seq);
        assert_eq!(
            op["sites"].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["DC 1", "DC 2"],
            "{op}"
        );
    }
    let (_, q) = topo.agent_get(DC1, "/v1/replication/queues").unwrap();
    assert_eq!(q["DC 3"]["open"], 0, "{q}");
    for site in [DC1, DC2] {
        assert_eq!(
            images(&topo, site)[0],
            json!({ "name": "r1", "id": local_id(&topo, DC1, &meta, &topo.plan.sites[site]), "b": 2 })
        );
    }

    // The replicant DC 3 leads: DC 1's replica still serves reads; writes are refused.
    let g = call(&topo, DC1, "GET", &format!("/images/{meta3}"), None, None);
    assert_eq!(
        (g.status, g.header("x-geomesh-replica")),
        (200, "DC 1"),
        "{g:?}"
    );
    let w = call(
        &topo,
        DC1,
        "PUT",
        &format!("/images/{meta3}"),
        None,
        Some(json!({ "name": "no" })),
    );
    assert_eq!(w.status, 503, "{w:?}");
    assert_eq!(
        w.body.as_str().unwrap().trim(),
        format!("geomesh: {meta3} is read-only on site DC 1 until it reaches its leader DC 3 (site DC 3 was removed from the system)")
    );

    // DC 3 back: DC 2's notice reaches it, and it forgets the replicants others lead.
    let t = Instant::now();
    topo.start_site(DC3).unwrap();
    wait_for(CONVERGE, "DC 3 told of its removal", || {
        let (_, r) = topo.agent_get(DC2, "/v1/replication/removed")?;
        Ok(r[0]["notices"]["DC 3"]["state"] == "done")
    })
    .unwrap();
    eprintln!(
        "[repl-remove] DC 3 acknowledged its removal {:?} after its restart began",
        t.elapsed()
    );
    assert_eq!(
        topo.agent_get(DC3, &format!("/v1/replication/replicants/{meta}"))
            .unwrap()
            .0,
        404
    );
    assert_eq!(replica_sites(&topo, DC3, &meta3), ["DC 3"]);
    assert!(topo
        .agent_log(DC3)
        .contains("this site was removed from the system"));
    // Its application got nothing after the removal.
    assert!(
        images(&topo, DC3)
            .iter()
            .any(|i| i["name"] == "r0" && i.get("a").is_none()),
        "{:?}",
        images(&topo, DC3)
    );
    topo.wait_converged(Duration::from_secs(10)).unwrap();
    let c = call(
        &topo,
        DC1,
        "POST",
        "/images",
        Some("{ image: DC 1 & DC 3 }"),
        Some(json!({ "name": "x" })),
    );
    assert_eq!(c.status, 400, "{c:?}");
    assert!(
        c.body
            .as_str()
            .unwrap()
            .contains("site DC 3 was removed from the system"),
        "{c:?}"
    );
    let (_, q) = topo.agent_get(DC1, "/v1/replication/queues").unwrap();
    assert_eq!(q["DC 3"]["open"], 0, "{q}");
}

fn spool_files(topo: &ReplicationTopology, site: usize) -> usize {
    std::fs::read_dir(topo.sites[site].data_dir.join("spool"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".body"))
                .count()
        })
        .unwrap_or(0)
}

/// The leader's agent SIGKILLed twice at chosen points of a fan-out (test hooks, see
/// agent/README.md): once after DC 2 applied a create but before the leader recorded it, once
/// between the fan-outs of an update (applied on DC 1 and DC 3, not yet sent to DC 2).
/// Restarted on its store, it resumes: DC 2 gets the create again and answers it from its
/// deduplication table (one resource, not two), then the update; every replica converges.
#[test]
fn the_leaders_agent_killed_between_fan_outs_loses_nothing() {
    let mut plan = ReplicationPlan::free(App::JsonServer).unwrap();
    plan.agent_extra.insert(
        DC1,
        "  test_hooks: { delay_after_delivery_ms: { DC 2: 600000 } }\n".into(),
    );
    let (_dir, mut topo) = start("repl-leader-kill", plan);
    let scope = "{ image: DC 1 & DC 2 & DC 3 }";

    // Kill 1: DC 2 applied the create, the leader holds the answer uncommitted.
    let (meta, a) = create_image(&topo, DC1, scope, json!({ "name": "k0" }));
    assert_eq!(a.header("x-geomesh-replica"), "DC 1");
    let create = seq_of(&a);
    wait_instance(&topo, DC2, "/images", "DC 2 applied the create", |_, v| {
        v.as_array().is_some_and(|a| a.len() == 1)
    });
    wait_op(
        &topo,
        DC1,
        create,
        &[("DC 1", "done"), ("DC 2", "in_flight"), ("DC 3", "done")],
    );
    topo.kill_agent(DC1).unwrap();

    // Kill 2: restarted with deliveries to DC 2 held before sending; an update is applied on
    // DC 1 and DC 3 and waits for DC 2 behind the create.
    topo.start_agent(
        DC1,
        "  test_hooks: { delay_before_delivery_ms: { DC 2: 600000 } }\n",
    )
    .unwrap();
    assert!(
        topo.agent_log(DC1).contains("resumed_deliveries=1"),
        "{}",
        topo.agent_log(DC1)
    );
    topo.wait_converged(Duration::from_secs(10)).unwrap();
    let p = call(
        &topo,
        DC1,
        "PUT",
        &format!("/images/{meta}"),
        None,
        Some(json!({ "name": "k1" })),
    );
    assert_eq!(
        (p.status, p.header("x-geomesh-replica")),
        (200, "DC 1"),
        "{p:?}"
    );
    let update = seq_of(&p);
    wait_op(
        &topo,
        DC1,
        update,
        &[("DC 1", "done"), ("DC 2", "pending"), ("DC 3", "done")],
    );
    assert_eq!(
        topo.instance_get(DC3, "/images/1").unwrap().1,
        json!({ "name": "k1", "id": 1 })
    );
    assert_eq!(
        op_state(&operation(&topo, DC1, create), "DC 2"),
        "pending",
        "in flight before the kill, pending after the restart"
    );
    assert_eq!(
        images(&topo, DC2),
        vec![json!({ "name": "k0", "id": 1 })],
        "DC 2 has not seen the update"
    );
    assert!(
        spool_files(&topo, DC1) >= 1,
        "the update's body stays spooled until DC 2 has it"
    );
    topo.kill_agent(DC1).unwrap();

    // Restarted without hooks: everything converges.
    let t = Instant::now();
    topo.start_agent(DC1, "").unwrap();
    wait_queues_empty(&topo, DC1);
    eprintln!(
        "[repl-leader-kill] converged {:?} after the second restart",
        t.elapsed()
    );
    for site in [DC1, DC2, DC3] {
        assert_eq!(
            images(&topo, site),
            vec![json!({ "name": "k1", "id": 1 })],
            "{}",
            topo.plan.sites[site]
        );
    }
    let op = operation(&topo, DC1, create);
    assert_eq!(
        (
            op["sites"]["DC 2"]["attempts"].as_u64(),
            op["sites"]["DC 2"]["status"].as_u64()
        ),
        (Some(2), Some(201)),
        "{op}"
    );
    assert_eq!(local_id(&topo, DC1, &meta, "DC 2"), json!(1));
    let dc2_log = topo.agent_log(DC2);
    assert!(
        dc2_log.contains("delivery already applied: answer replayed"),
        "{dc2_log}"
    );
    assert_eq!(
        spool_files(&topo, DC1),
        0,
        "spooled bodies removed once applied everywhere"
    );
    for site in [DC1, DC2, DC3] {
        let g = call(&topo, site, "GET", &format!("/images/{meta}"), None, None);
        assert_eq!(
            (g.status, &g.body),
            (200, &json!({ "name": "k1", "id": meta })),
            "{g:?}"
        );
    }
}

/// A replica whose agent cannot reach the leader's (both directions of the link cut, heartbeats
/// included): its reads are served from its own replica (stale while cut), its writes answer 503
/// saying the resource is read-only there; the leader goes on, and the replica catches up once
/// the link is back.
#[test]
fn a_replica_cut_off_from_its_leader_serves_reads_and_refuses_writes() {
    let (_dir, topo) = start(
        "repl-partition",
        ReplicationPlan::free(App::JsonServer).unwrap(),
    );
    let (meta, _) = create_image(
        &topo,
        DC1,
        "{ image: DC 1 & DC 2 }",
        json!({ "name": "p0" }),
    );
    wait_queues_empty(&topo, DC1);
    let dc2_id = local_id(&topo, DC1, &meta, "DC 2");

    topo.cut_agents(DC1, DC2);
    let t = Instant::now();
    topo.wait_sites(DC2, Duration::from_secs(10), "DC 1 down", |d| {
        d.sites
            .iter()
            .any(|s| s.name == "DC 1" && s.up == Some(false))
    })
    .unwrap();
    eprintln!(
        "[repl-partition] DC 2 saw DC 1 down after {:?}",
        t.elapsed()
    );
    let g = call(&topo, DC2, "GET", &format!("/images/{meta}"), None, None);
    assert_eq!(
        (g.status, &g.body["name"], g.header("x-geomesh-replica")),
        (200, &json!("p0"), "DC 2"),
        "{g:?}"
    );
    for method in ["PUT", "DELETE"] {
        let t = Instant::now();
        let w = call(
            &topo,
            DC2,
            method,
            &format!("/images/{meta}"),
            None,
            Some(json!({ "name": "no" })),
        );
        assert_eq!(w.status, 503, "{w:?}");
        let msg = w.body.as_str().unwrap_or_default();
        assert!(
            msg.starts_with(&format!(
                "geomesh: {meta} is read-only on site DC 2 until it reaches its leader DC 1 ("
            )),
            "{msg}"
        );
        assert_eq!(w.header("x-geomesh-error"), "replication");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "answered at once: {:?}",
            t.elapsed()
        );
    }
    assert_eq!(
        topo.instance_get(DC2, &format!("/images/{dc2_id}"))
            .unwrap()
            .1["name"],
        "p0"
    );

    // The leader keeps writing; DC 2 reads its (now stale) replica meanwhile.
    wait_for(Duration::from_secs(10), "DC 1 sees DC 2 down", || {
        topo.sees(DC1, DC2, false)
    })
    .unwrap();
    let p = call(
        &topo,
        DC1,
        "PUT",
        &format!("/images/{meta}"),
        None,
        Some(json!({ "name": "p1" })),
    );
    assert_eq!(
        (p.status, p.header("x-geomesh-replica")),
        (200, "DC 1"),
        "{p:?}"
    );
    let g = call(&topo, DC2, "GET", &format!("/images/{meta}"), None, None);
    assert_eq!(
        (g.status, &g.body["name"]),
        (200, &json!("p0")),
        "stale while cut: {g:?}"
    );
    // DC 3 still reaches the leader: its writes go through.
    let p3 = call(
        &topo,
        DC3,
        "PATCH",
        &format!("/images/{meta}"),
        None,
        Some(json!({ "tag": "from-dc3" })),
    );
    assert_eq!(p3.status, 200, "{p3:?}");

    topo.restore_agents(DC1, DC2);
    wait_queues_empty(&topo, DC1);
    assert_eq!(
        topo.instance_get(DC2, &format!("/images/{dc2_id}"))
            .unwrap()
            .1,
        json!({ "name": "p1", "id": dc2_id, "tag": "from-dc3" })
    );
    wait_for(Duration::from_secs(10), "DC 2 sees DC 1 up", || {
        topo.sees(DC2, DC1, true)
    })
    .unwrap();
    let w = call(
        &topo,
        DC2,
        "PUT",
        &format!("/images/{meta}"),
        None,
        Some(json!({ "name": "p2" })),
    );
    assert_eq!(
        (w.status, w.header("x-geomesh-replica")),
        (200, "DC 2"),
        "writable again: {w:?}"
    );
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Peak and current resident memory of a process (MiB).
fn mem(pid: u32) -> (u64, u64) {
    (
        proc_memory(pid, "VmHWM").unwrap() >> 20,
        proc_memory(pid, "VmRSS").unwrap() >> 20,
    )
}

/// A 100 MB body (GEOMESH_REPLICATION_BYTES to change it) created with `&` on two sites through
/// Envoy and the agents, streamed all the way into `geomesh-blob-store` on both sites, and read
/// back by meta-id through the other site's Envoy: neither Envoy's nor an agent's peak resident
/// memory grows by more than a fraction of it.
#[test]
fn a_100_mb_body_is_replicated_to_two_sites_without_buffering() {
    let size: u64 = std::env::var("GEOMESH_REPLICATION_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000_000);
    let (_dir, mut topo) = start("repl-100mb", ReplicationPlan::free(App::BlobStore).unwrap());
    let (e1, a1, _) = topo.pids(DC1);
    let (e2, a2, _) = topo.pids(DC2);
    let watched = [
        ("Envoy DC 1", e1.unwrap()),
        ("agent DC 1", a1.unwrap()),
        ("agent DC 2", a2.unwrap()),
        ("Envoy DC 2", e2.unwrap()),
    ];
    let before: Vec<(u64, u64)> = watched.iter().map(|(_, p)| mem(*p)).collect();

    // Upload with real curl, streamed from a pipe (chunked: no length known in advance).
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "-X",
            "POST",
            "-T",
            "-",
            "-H",
            "expect:",
            "-H",
            "content-type: application/octet-stream",
        ])
        .args(["-H", "x-scope: { image: DC 1 & DC 2 }", "-D", "-"])
        .arg(format!("{}/blobs", topo.url(DC1)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        let chunk: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let (mut sent, mut h) = (0u64, FNV_OFFSET);
        while sent < size {
            let n = (size - sent).min(chunk.len() as u64) as usize;
            stdin.write_all(&chunk[..n]).unwrap();
            h = fnv(h, &chunk[..n]);
            sent += n as u64;
        }
        h
    });
    let hash = format!("{:016x}", writer.join().unwrap());
    let out = child.wait_with_output().unwrap();
    let upload = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", &text));
    assert!(head.starts_with("HTTP/1.1 201"), "{text}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(is_meta(&v["id"]), "{v}");
    assert_eq!(
        (v["bytes"].as_u64(), v["fnv1a64"].as_str()),
        (Some(size), Some(hash.as_str())),
        "{v}"
    );
    let meta = v["id"].as_str().unwrap().to_owned();

    wait_queues_empty(&topo, DC1);
    let replicated = t.elapsed();
    for site in [DC1, DC2] {
        let (_, list) = topo.instance_get(site, "/blobs").unwrap();
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(
            (list[0]["bytes"].as_u64(), list[0]["fnv1a64"].as_str()),
            (Some(size), Some(hash.as_str())),
            "{list}"
        );
    }
    assert_eq!(topo.instance_get(DC3, "/blobs").unwrap().1, json!([]));
    assert_eq!(
        spool_files(&topo, DC1),
        0,
        "the spooled body is removed once both sites have it"
    );

    // Read back by meta-id through DC 2's Envoy: DC 2's replica, streamed.
    let t = Instant::now();
    let mut r = client()
        .get(format!("{}/blobs/{meta}", topo.url(DC2)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-geomesh-replica"], "DC 2");
    let (mut n, mut h, mut buf) = (0u64, FNV_OFFSET, vec![0u8; 1 << 16]);
    loop {
        let k = std::io::Read::read(&mut r, &mut buf).unwrap();
        if k == 0 {
            break;
        }
        n += k as u64;
        h = fnv(h, &buf[..k]);
    }
    assert_eq!((n, format!("{h:016x}")), (size, hash.clone()));
    let read_back = t.elapsed();

    let after: Vec<(u64, u64)> = watched.iter().map(|(_, p)| mem(*p)).collect();
    let mb = size as f64 / 1e6;
    eprintln!(
        "[repl-100mb] {mb:.0} MB: uploaded and answered in {upload:?} ({:.0} MB/s), on both sites after {replicated:?}, read back at DC 2 in {read_back:?}",
        mb / upload.as_secs_f64()
    );
    for (((name, _), b), a) in watched.iter().zip(&before).zip(&after) {
        eprintln!(
            "[repl-100mb] {name}: peak RSS {} -> {} MiB (+{}), RSS {} -> {} MiB",
            b.0,
            a.0,
            a.0 - b.0,
            b.1,
            a.1
        );
        assert!(
            (a.0 - b.0) * 1_048_576 < size / 4,
            "{name}'s peak RSS grew by {} MiB for a {mb:.0} MB body: it was buffered",
            a.0 - b.0
        );
    }
}
