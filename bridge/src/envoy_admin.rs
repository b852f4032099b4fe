//! Cluster lookup in Envoy's admin API (`GET /clusters?format=json`), for targets the bridge's
//! own configuration does not name. One vocabulary (Envoy cluster names) then works everywhere,
//! Istio's `outbound|6379||redis.ns.svc.cluster.local` included.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// A minimal HTTP/1.1 GET (`Connection: close`), chunked or not.
async fn get(authority: &str, path: &str) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("Envoy admin {authority}: {e}"))?;
    let _ = s.set_nodelay(true);
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("Envoy admin {authority}: {e}"))?;
    let mut raw = Vec::new();
    (&mut s)
        .take(MAX_BODY as u64)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("Envoy admin {authority}: {e}"))?;
    parse_response(&raw).map_err(|e| format!("Envoy admin {authority}{path}: {e}"))
}

fn parse_response(raw: &[u8]) -> Result<Vec<u8>, String> {
    let end = find(raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!("answered `{status}`"));
    }
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let eol = find(rest, b"\r\n").ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk")?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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

    #[test]
    fn chunked_and_plain_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), b"abcde");
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi";
        assert_eq!(parse_response(r).unwrap(), b"hi");
        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n")
            .unwrap_err()
            .contains("404"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").is_err());
    }
}
