//! TLS between agents, with real agents (`Agent::start`, in this process), a real json-server per
//! site and certificates made here (rcgen, geomesh-tls's `testing`):
//!
//! * two agents with certificates from one CA heartbeat each other and replicate a create over
//!   their peer listeners (HTTPS, client certificates);
//! * an agent whose certificate another CA signed is refused (its heartbeats fail, the peer
//!   never counts them), and so are a client without a certificate and plain HTTP;
//! * the peer endpoints are not on the plain `listen` (nothing bypasses TLS);
//! * after the files are rotated to a new CA, a reload (SIGHUP's) lets the agents that have the
//!   new certificates in, and keeps the old ones out.

use std::path::Path;
use std::time::{Duration, Instant};

use geomesh_agent::{Agent, AgentConfig};
use geomesh_tls::testing::Ca;
use geomesh_tls::TlsFiles;
use serde_json::{json, Value};

mod common;
use common::{free_port, JsonServer};

struct Site {
    api: u16,
    peer: u16,
    proxy: u16,
}

impl Site {
    fn new() -> Site {
        Site { api: free_port(), peer: free_port(), proxy: free_port() }
    }
}

fn config(name: &str, me: &Site, peers: &[(&str, &Site)], tls: &TlsFiles, app: u16, data: &Path) -> AgentConfig {
    let peers: Vec<String> = peers
        .iter()
        .map(|(n, s)| format!("{{ name: {n}, url: \"https://127.0.0.1:{}\" }}", s.peer))
        .collect();
    AgentConfig::parse(&format!(
        "site: {name}\nlisten: 127.0.0.1:{}\npeer_listen: 127.0.0.1:{}\ninterval_ms: 100\ntimeout_ms: 500\n{}\
         peers: [{}]\n\
         services: [{{ name: image, address: \"127.0.0.1:{app}\" }}]\n\
         replication: {{ listen: \"127.0.0.1:{}\", data_dir: \"{}\", client_wait_ms: 5000, retry_min_ms: 20, retry_max_ms: 200 }}\n",
        me.api,
        me.peer,
        tls.yaml(),
        peers.join(", "),
        me.proxy,
        data.join(name).display()
    ))
    .unwrap()
}

async fn wait(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn peer_up(a: &Agent, peer: &str) -> Option<bool> {
    let s = a.store.read();
    s.peers.iter().find(|p| p.name == peer).and_then(|p| p.heartbeat_up)
}

fn heartbeats_served(a: &Agent) -> u64 {
    a.store.read().heartbeats_served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_certificates_heartbeat_and_replicate_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, rogue) = (Ca::new("geomesh test CA"), Ca::new("another CA"));
    let apps = [
        JsonServer::start(dir.path(), "a", &json!({ "images": [] })),
        JsonServer::start(dir.path(), "b", &json!({ "images": [] })),
    ];
    let (sa, sb, sc) = (Site::new(), Site::new(), Site::new());
    let a = Agent::start(&config("A", &sa, &[("B", &sb)], &ca.leaf(dir.path(), "a", &ca), apps[0].port, dir.path()))
        .await
        .unwrap();
    let b = Agent::start(&config("B", &sb, &[("A", &sa)], &ca.leaf(dir.path(), "b", &ca), apps[1].port, dir.path()))
        .await
        .unwrap();
    assert_eq!(a.peer_addr.unwrap().port(), sa.peer);
    wait("A and B see each other over TLS", || peer_up(&a, "B") == Some(true) && peer_up(&b, "A") == Some(true)).await;

    // A create at A, replicated to B through the peer listeners.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .post(format!("http://127.0.0.1:{}/images", sa.proxy))
        .header("x-geomesh-service", "image")
        .header("x-geomesh-replicate", "A, B")
        .header("x-geomesh-scope", "{ image: A & B }")
        .json(&json!({ "name": "over-tls" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let meta = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = http
            .get(format!("http://127.0.0.1:{}/images", apps[1].port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v.as_array().is_some_and(|items| items.iter().any(|i| i["name"] == "over-tls")) {
            break;
        }
        assert!(Instant::now() < deadline, "B's json-server never got the replicated create: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, copy) = {
        let r = http.get(format!("http://127.0.0.1:{}/v1/replication/replicants/{meta}", sb.api)).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!((st, copy["leader"].as_str()), (200, Some("A")), "{copy}");

    // C: a certificate another CA signed (C trusts B's CA, so only B's check can refuse it).
    let c = Agent::start(&config("C", &sc, &[("B", &sb)], &rogue.leaf(dir.path(), "c", &ca), apps[0].port, dir.path()))
        .await
        .unwrap();
    let served = heartbeats_served(&b);
    wait("C sees B down", || peer_up(&c, "B") == Some(false)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // B kept serving A (every 100 ms) and nobody else: C's attempts never reached the handler.
    let from_a_only = heartbeats_served(&b) - served;
    assert!(from_a_only <= 8, "{from_a_only} heartbeats in ~0.5 s: C's got through");
    let error = c.store.read().peers[0].error.clone().unwrap_or_default();
    assert!(!error.is_empty(), "C's failed heartbeat says nothing");

    // No certificate at all (the CA trusted, so only the missing client certificate fails).
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(ca.client_without_certificate())
        .no_proxy()
        .build()
        .unwrap();
    let heartbeat = format!("https://127.0.0.1:{}/v1/heartbeat?from=X", sb.peer);
    assert!(anonymous.get(&heartbeat).send().await.is_err(), "a client without a certificate got an answer");
    // Plain HTTP to the TLS port.
    assert!(http.get(format!("http://127.0.0.1:{}/v1/heartbeat", sb.peer)).send().await.is_err());
    // The plain API does not serve the peer endpoints.
    for (method, path) in [("GET", "/v1/heartbeat?from=X"), ("POST", "/v1/replication/peer/apply"), ("POST", "/v1/replication/peer/submit")] {
        let r = http
            .request(method.parse().unwrap(), format!("http://127.0.0.1:{}{path}", sb.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path} on the plain API");
    }
    // ... and still serves what the local filter, probes and people read.
    assert_eq!(http.get(format!("http://127.0.0.1:{}/v1/sites", sb.api)).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("http://127.0.0.1:{}/healthz", sb.api)).send().await.unwrap().status(), 200);
    drop(c);

    // Rotation: B's files move to the other CA and B reloads (SIGHUP's reload_tls). New
    // connections get the new files: an agent with the new CA's certificate gets in (it trusts
    // only the new CA, so B serves the new certificate too), one with the old CA's is refused.
    // Open connections keep what they had (A's pooled one).
    rogue.leaf(dir.path(), "b", &rogue);
    b.reload_tls().unwrap();
    let (sd, se) = (Site::new(), Site::new());
    let d = Agent::start(&config("D", &sd, &[("B", &sb)], &rogue.leaf(dir.path(), "d", &rogue), apps[0].port, dir.path()))
        .await
        .unwrap();
    let e = Agent::start(&config("E", &se, &[("B", &sb)], &ca.leaf(dir.path(), "e", &ca), apps[0].port, dir.path()))
        .await
        .unwrap();
    wait("D (new CA) sees B up", || peer_up(&d, "B") == Some(true)).await;
    wait("E (old CA) sees B down", || peer_up(&e, "B") == Some(false)).await;
    // A reload that fails keeps the files in use.
    std::fs::remove_file(dir.path().join("b/key.pem")).unwrap();
    assert!(format!("{:#}", b.reload_tls().unwrap_err()).contains("tls.key"));
    let sf = Site::new();
    let f = Agent::start(&config("F", &sf, &[("B", &sb)], &rogue.leaf(dir.path(), "f", &rogue), apps[0].port, dir.path()))
        .await
        .unwrap();
    wait("F sees B up after the failed reload", || peer_up(&f, "B") == Some(true)).await;
}

/// The binary's glue: `--watch-tls` reads the files again when their bytes change, SIGHUP
/// always; a reload that fails is logged and keeps the files in use.
#[test]
fn the_binary_reloads_its_tls_files_on_change_and_on_sighup() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("geomesh test CA");
    let tls = ca.leaf(dir.path(), "a", &ca);
    let site = Site::new();
    let cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "site: A\nlisten: 127.0.0.1:{}\npeer_listen: 127.0.0.1:{}\n{}peers: [{{ name: B, url: \"https://127.0.0.1:1\" }}]\n",
            site.api,
            site.peer,
            tls.yaml()
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_geomesh-agent"))
        .args(["--config"])
        .arg(&cfg)
        .args(["--watch-tls", "1", "--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let wait_log = |needle: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.matches(needle).count() >= count {
                return;
            }
            assert!(Instant::now() < deadline, "no {needle:?} (x{count}) in the log:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_log("geomesh-agent started", 1);
    ca.leaf(dir.path(), "a", &ca); // a renewal: same paths, new bytes
    wait_log("the TLS files changed", 1);
    // SIGHUP reloads whatever the bytes; with a file missing, the reload fails and says so.
    std::fs::remove_file(&tls.key).unwrap();
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) };
    wait_log("TLS files not reloaded", 1);
    assert!(std::fs::read_to_string(&log).unwrap().contains("SIGHUP"));
    // The peer listener still serves, with the files loaded before: a peer's certificate passes.
    let peer = ca.leaf(dir.path(), "b", &ca).load().unwrap();
    let client = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(geomesh_tls::ClientIdentity::new(&peer).unwrap().client_config().unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let r = client.get(format!("https://127.0.0.1:{}/v1/heartbeat?from=B", site.peer)).send().unwrap();
    assert_eq!(r.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}
