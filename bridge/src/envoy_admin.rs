//! Cluster lookup in Envoy's admin API (`GET /clusters?format=json`), for targets the bridge's
//! own configuration does not name. One vocabulary (Envoy cluster names) then works everywhere,
//! Istio's `outbound|6379||redis.ns.svc.cluster.local` included.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

/// Largest admin answer read.
const MAX_BODY: usize = 64 << 20;

/// Healthy hosts (`ip:port`) of every cluster Envoy knows.
pub type ClusterHosts = HashMap<String, Vec<String>>;

/// Fetches and parses `/clusters?format=json` from `authority` (`host:port`) under `prefix`.
pub async fn fetch(authority: &str, prefix: &str, timeout: Duration) -> Result<ClusterHosts, String> {
    let body = tokio::time::timeout(timeout, get(authority, &format!("{prefix}/clusters?format=json")))
        .await
        .map_err(|_| format!("no answer from Envoy admin {authority} in {} ms", timeout.as_millis()))??;
    let json: Value =
        serde_json::from_slice(&body).map_err(|e| format!("Envoy admin {authority}: bad /clusters JSON: {e}"))?;
    Ok(parse_clusters(&json))
}

/// The healthy hosts of every cluster in a `/clusters?format=json` document.
pub fn parse_clusters(json: &Value) -> ClusterHosts {
    let mut out = ClusterHosts::new();
    let statuses = json.get("cluster_statuses").and_then(Value::as_array);
    for cluster in statuses.into_iter().flatten() {
        let Some(name) = cluster.get("name").and_then(Value::as_str) else {
            continue;
        };
        let hosts = cluster.get("host_statuses").and_then(Value::as_array);
        let healthy: Vec<String> = hosts
            .into_iter()
            .flatten()
            .filter(|h| is_healthy(h))
            .filter_map(|h| {
                let sa = h.get("address")?.get("socket_address")?;
                let ip = sa.get("address")?.as_str()?;
                let port = sa.get("port_value")?.as_u64()?;
                Some(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                })
            })
            .collect();
        out.insert(name.to_owned(), healthy);
    }
    out
}

fn is_healthy(host: &Value) -> bool {
    let Some(h) = host.get("health_status") else {
        return true;
    };
    let flag = |k: &str| h.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("failed_active_health_check")
        || flag("failed_outlier_check")
        || flag("pending_dynamic_removal")
        || flag("excluded_via_immediate_hc_fail")
        || flag("active_hc_timeout")
    {
        return false;
    }
    match h.get("eds_health_status").and_then(Value::as_str) {
        None | Some("HEALTHY") | Some("UNKNOWN") | Some("DEGRADED") => true,
        Some(_) => false,
    }
}

/// `GET http://{authority}{path}` through reqwest (hyper): 200 or an error, at most
/// [`MAX_BODY`] bytes.
async fn get(authority: &str, path: &str) -> Result<Vec<u8>, String> {
    use futures_util::StreamExt as _;
    let err = |e: reqwest::Error| format!("Envoy admin {authority}: {e}");
    let client = reqwest::Client::builder().no_proxy().build().map_err(err)?;
    let resp = client
        .get(format!("http://{authority}{path}"))
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(err)?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("Envoy admin {authority}{path}: answered `{}`", resp.status()));
    }
    let mut body = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(err)?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("Envoy admin {authority}{path}: answer over {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_hosts_only() {
        let doc = serde_json::json!({
            "cluster_statuses": [
                { "name": "redis1", "host_statuses": [
                    { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 6379 } },
                      "health_status": { "eds_health_status": "HEALTHY" } },
                    { "address": { "socket_address": { "address": "127.0.0.2", "port_value": 6379 } },
                      "health_status": { "eds_health_status": "HEALTHY", "failed_outlier_check": true } },
                    { "address": { "socket_address": { "address": "::1", "port_value": 7 } },
                      "health_status": { "eds_health_status": "UNHEALTHY" } },
                    { "address": { "socket_address": { "address": "::1", "port_value": 8 } } }
                ]},
                { "name": "empty" }
            ]
        });
        let m = parse_clusters(&doc);
        assert_eq!(m["redis1"], vec!["127.0.0.1:6379".to_string(), "[::1]:8".to_string()]);
        assert!(m["empty"].is_empty());
    }
}
