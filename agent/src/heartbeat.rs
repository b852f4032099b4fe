//! Heartbeats: every interval, one `GET <peer>/v1/heartbeat?from=<site>` per
//! peer, timed. The answer carries the peer's own service health and RTTs,
//! so every agent knows, for every site, whether it is up, how far it is and
//! which services are up there.

use std::time::{Duration, Instant};

use geomesh_scope::health::{HeartbeatReply, HEARTBEAT_PATH};
use tokio::time::MissedTickBehavior;

use crate::store::Store;

/// Largest heartbeat answer accepted.
const MAX_REPLY: usize = 256 * 1024;

/// Percent-encodes a query value (site names may hold spaces and non-ASCII).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One heartbeat to `url`: the peer's answer and the round-trip time.
pub async fn beat(
    client: &reqwest::Client,
    url: &str,
    from: &str,
    expect_site: &str,
) -> Result<(HeartbeatReply, Duration), String> {
    let started = Instant::now();
    let resp = client
        .get(format!("{url}{HEARTBEAT_PATH}?from={}", query_value(from)))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| describe(&e))?;
    let rtt = started.elapsed();
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    if body.len() > MAX_REPLY {
        return Err(format!("answer of {} bytes is too large", body.len()));
    }
    let reply: HeartbeatReply =
        serde_json::from_slice(&body).map_err(|e| format!("bad answer: {e}"))?;
    if reply.site != expect_site {
        return Err(format!(
            "answered as site {:?}, configured as {:?}",
            reply.site, expect_site
        ));
    }
    Ok((reply, rtt))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    }
}

/// Called with a peer's site name when its heartbeats come back.
pub type OnUp = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Runs forever: heartbeats peer `i` every `interval`; `on_up` is told
/// when the peer comes (back) up.
pub async fn run_peer(
    store: Store,
    i: usize,
    client: reqwest::Client,
    interval: Duration,
    on_up: Option<OnUp>,
) {
    let (site, name, url) = {
        let s = store.read();
        let Some(p) = s.peers.get(i) else { return };
        (s.site.clone(), p.name.clone(), p.url.clone())
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match beat(&client, &url, &site, &name).await {
            Ok((reply, rtt)) => {
                let came_up = store.write().heartbeat_ok(i, rtt, reply);
                if came_up {
                    if let Some(f) = &on_up {
                        f(&name);
                    }
                }
            }
            Err(e) => store.write().heartbeat_failed(i, e),
        }
    }
}
