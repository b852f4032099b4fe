//! Probes of the local service instances: a TCP connect, or an HTTP GET
//! answered 2xx, within the timeout.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;

use crate::config::ProbeKind;
use crate::store::Store;

/// One probe.
pub async fn probe(
    client: &reqwest::Client,
    kind: ProbeKind,
    address: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    match kind {
        ProbeKind::Tcp => match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("connect {address}: {e}")),
            Err(_) => Err(format!("connect {address}: timeout")),
        },
        ProbeKind::Http => {
            let url = format!("http://{address}{path}");
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("GET {url}: status {}", r.status())),
                Err(e) if e.is_timeout() => Err(format!("GET {url}: timeout")),
                Err(e) => Err(format!("GET {url}: {e}")),
            }
        }
    }
}

/// Runs forever: probes local service `i` every `interval`.
pub async fn run_service(store: Store, i: usize, client: reqwest::Client, interval: Duration, timeout: Duration) {
    let (kind, address, path) = {
        let s = store.read();
        let Some(svc) = s.services.get(i) else { return };
        (svc.probe, svc.address, svc.path.clone())
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let r = probe(&client, kind, address, &path, timeout).await;
        store.write().probe_result(i, r);
    }
}
