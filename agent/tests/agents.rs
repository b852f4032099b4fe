//! Two real agents on loopback heartbeating each other, probing real TCP and HTTP servers.

use std::net::TcpListener as StdListener;
use std::time::{Duration, Instant};

use geomesh_agent::{Agent, AgentConfig};
use geomesh_scope::health::{SitesDocument, UpSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tiny real HTTP/1.1 server answering `200 ok` to anything, until aborted.
async fn http_ok_server(listener: TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
                .await;
        });
    }
}

async fn sites(client: &reqwest::Client, port: u16) -> SitesDocument {
    client
        .get(format!("http://127.0.0.1:{port}/v1/sites"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_for(
    what: &str,
    client: &reqwest::Client,
    port: u16,
    pred: impl Fn(&SitesDocument) -> bool,
) -> SitesDocument {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = sites(client, port).await;
        if pred(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {d:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn site<'a>(d: &'a SitesDocument, name: &str) -> &'a geomesh_scope::health::SiteStatus {
    d.sites.iter().find(|s| s.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_heartbeat_probe_and_notice_failures() {
    let (pa, pb) = (free_port(), free_port());
    let tcp_svc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = tcp_svc.local_addr().unwrap().port();
    let http_svc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = http_svc.local_addr().unwrap().port();
    let http_task = tokio::spawn(http_ok_server(http_svc));

    let a = AgentConfig::parse(&format!(
        "site: DC 1\nlisten: 127.0.0.1:{pa}\ninterval_ms: 100\ntimeout_ms: 300\nplaintext: true\n\
         peers:\n  - {{ name: DC 2, url: \"http://127.0.0.1:{pb}\" }}\n  - {{ name: DC 3, url: \"http://127.0.0.1:1\", rtt_ms: 12, up: true }}\n\
         services:\n  - {{ name: compute, address: \"127.0.0.1:{tcp_port}\" }}\n"
    ))
    .unwrap();
    let b = AgentConfig::parse(&format!(
        "site: DC 2\nlisten: 127.0.0.1:{pb}\ninterval_ms: 100\ntimeout_ms: 300\nplaintext: true\n\
         peers:\n  - {{ name: DC 1, url: \"http://127.0.0.1:{pa}\" }}\n\
         services:\n  - {{ name: image, address: \"127.0.0.1:{http_port}\", probe: http }}\n"
    ))
    .unwrap();
    let agent_a = Agent::start(&a).await.unwrap();
    let agent_b = Agent::start(&b).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let d = wait_for("DC 1 to see DC 2 up with image up", &client, pa, |d| {
        let s = site(d, "DC 2");
        s.up == Some(true) && s.services.get("image") == Some(&true) && s.rtt_ms.is_some()
    })
    .await;
    assert_eq!(site(&d, "DC 1").services.get("compute"), Some(&true));
    assert!(site(&d, "DC 1").local);
    let rtt = site(&d, "DC 2").rtt_ms.unwrap();
    assert!(rtt > 0.0 && rtt < 300.0, "loopback RTT {rtt}");
    // Static overrides: DC 3 has no agent at all but is reported up with its static RTT.
    let dc3 = site(&d, "DC 3");
    assert_eq!((dc3.up, dc3.up_source, dc3.rtt_ms), (Some(true), UpSource::Static, Some(12.0)));
    assert!(dc3.consecutive_failures > 0 && dc3.error.is_some());
    // Second-hand RTT: DC 2's own view of DC 1 is not duplicated; DC 1's pairs are there.
    assert!(d.rtt.iter().any(|e| e.a == "DC 1" && e.b == "DC 2"));

    // DC 2's image instance stops: DC 2's agent probes it down, DC 1 learns it by heartbeat.
    http_task.abort();
    let _ = http_task.await;
    wait_for("DC 1 to see DC 2's image down", &client, pa, |d| {
        let s = site(d, "DC 2");
        s.up == Some(true) && s.services.get("image") == Some(&false)
    })
    .await;

    // The local TCP instance stops.
    drop(tcp_svc);
    wait_for("DC 1's compute down", &client, pa, |d| {
        site(d, "DC 1").services.get("compute") == Some(&false)
    })
    .await;

    // DC 2's agent stops: DC 1 marks the site down.
    drop(agent_b);
    let d = wait_for("DC 2 down", &client, pa, |d| site(d, "DC 2").up == Some(false)).await;
    assert!(site(&d, "DC 2").services.is_empty());

    // The API around it.
    let health = client
        .get(format!("http://127.0.0.1:{pa}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let page = client
        .get(format!("http://127.0.0.1:{pa}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("site DC 1") && page.contains("DC 3") && page.contains("down"), "{page}");
    let hb: geomesh_scope::HeartbeatReply = client
        .get(format!("http://127.0.0.1:{pa}/v1/heartbeat?from=test"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hb.site, "DC 1");
    assert_eq!(hb.services.get("compute"), Some(&false));
    drop(agent_a);
}

#[tokio::test]
async fn a_peer_answering_as_another_site_is_down() {
    let (pa, pb) = (free_port(), free_port());
    let a = AgentConfig::parse(&format!(
        "site: A\nlisten: 127.0.0.1:{pa}\ninterval_ms: 100\nplaintext: true\npeers: [{{ name: B, url: \"http://127.0.0.1:{pb}\" }}]\n"
    ))
    .unwrap();
    // The agent listening where A expects B says it is C.
    let c = AgentConfig::parse(&format!("site: C\nlisten: 127.0.0.1:{pb}\ninterval_ms: 100\n")).unwrap();
    let _a = Agent::start(&a).await.unwrap();
    let _c = Agent::start(&c).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let d = wait_for("B down", &client, pa, |d| site(d, "B").up == Some(false)).await;
    let err = site(&d, "B").error.clone().unwrap();
    assert!(err.contains("answered as site \"C\""), "{err}");
}
