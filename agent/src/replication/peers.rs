//! Agent to agent, over the peers' API listeners (docs/replication.md,
//! "The agent's API"): deliveries (`peer/apply`, the [`Transport`] of a
//! leader), writes sent to a leader (`peer/submit`), reads served by
//! another replica (`peer/read`), and replicant look-ups.
//!
//! Wire form of the fields that travel in headers:
//!
//! * site names, suffixes, queries: [`enc`] (printable ASCII as is; `%`,
//!   `,` and every other byte `%XX`), read back with [`dec`];
//! * the replicant of a delivery: its JSON, base64url without padding
//!   (`x-geomesh-replicant`);
//! * the client's end-to-end headers: one `x-geomesh-h-<name>` each (so
//!   they never mix with the agents' own);
//! * a body: `x-geomesh-body-len: <n>` when there is one (absent: none).
//!
//! A peer answers a delivery with the instance's raw answer and
//! `x-geomesh-applied: 1` (`x-geomesh-truncated: <n>` when the replica kept
//! no body); any answer without that mark is the peer agent's own error:
//! not applied, retried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::instance::{DROPPED_RESPONSE_HEADERS, GEOMESH_PREFIX};
use super::metaid::MetaId;
use super::model::{Body, Replicant, Reply};
use super::paths::decode_segment;
use super::spool::file_body;
use super::transport::{Delivery, DeliveryError, DeliveryFuture, Transport};

/// Path of a delivery.
pub const APPLY_PATH: &str = "/v1/replication/peer/apply";
/// Path of a write sent to its leader.
pub const SUBMIT_PATH: &str = "/v1/replication/peer/submit";
/// Path of a read served by another replica.
pub const READ_PATH: &str = "/v1/replication/peer/read";
/// Path of a removal notice (a site removed from the system).
pub const REMOVED_PATH: &str = "/v1/replication/peer/removed";
/// Prefix of a forwarded client header.
pub const FORWARDED_PREFIX: &str = "x-geomesh-h-";
/// Mark of an answer that is the instance's.
pub const APPLIED: &str = "x-geomesh-applied";
/// Length of a body dropped by the replica (over its `max_reply_bytes`).
pub const TRUNCATED: &str = "x-geomesh-truncated";
/// Length of the body that follows.
pub const BODY_LEN: &str = "x-geomesh-body-len";
/// Set on every answer an agent writes itself (not an instance's).
pub const ERROR_MARK: &str = "x-geomesh-error";

/// Encodes a text for a header value (see the module documentation).
pub fn enc(s: &str) -> String {
    crate::replication::header_site(s)
}

/// Decodes [`enc`]'s form.
pub fn dec(s: &str) -> Option<String> {
    decode_segment(s)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding.
pub fn b64url_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(B64[idx as usize]));
        }
    }
    out
}

/// Decodes base64url (padding tolerated); `None` on any other character.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A header value from text (any byte but controls; obs-text allowed).
pub fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_bytes(s.as_bytes()).ok()
}

/// Sets each (name, value) whose value is a valid header value.
fn put_fields<const N: usize>(h: &mut HeaderMap, fields: [(&'static str, String); N]) {
    for (n, v) in fields {
        if let Some(v) = value(&v) {
            h.insert(n, v);
        }
    }
}

/// The client's headers as `x-geomesh-h-*` (names lower-case).
pub fn put_forwarded(h: &mut HeaderMap, headers: &[(String, String)]) {
    for (n, v) in headers {
        let name = format!("{FORWARDED_PREFIX}{}", n.to_ascii_lowercase());
        if let (Ok(name), Some(v)) = (HeaderName::from_bytes(name.as_bytes()), value(v)) {
            h.append(name, v);
        }
    }
}

/// The `x-geomesh-h-*` headers back as (name, value), in order.
pub fn take_forwarded(h: &axum::http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter_map(|(n, v)| {
            let name = n.as_str().strip_prefix(FORWARDED_PREFIX)?;
            let v = std::str::from_utf8(v.as_bytes()).ok()?;
            Some((name.to_owned(), v.to_owned()))
        })
        .collect()
}

/// First value of a header as text.
pub fn text<'a>(h: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
}

/// A header's decoded text ([`dec`]).
pub fn decoded(h: &axum::http::HeaderMap, name: &str) -> Option<String> {
    text(h, name).and_then(dec)
}

/// Describes a failed call (with its causes).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connection refused or unreachable"
    } else if e.is_timeout() {
        "timeout"
    } else {
        "request failed"
    };
    let mut s = kind.to_owned();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// The other sites' agents.
#[derive(Debug)]
pub struct PeerClient {
    site: String,
    urls: HashMap<String, String>,
    client: reqwest::Client,
    max_reply: usize,
}

impl PeerClient {
    /// Peers by site name -> base URL; `read_timeout` bounds each wait for
    /// bytes (a peer that stops answering), `max_reply` the answers kept.
    /// With `tls`, peers are dialled over HTTPS with this agent's certificate.
    pub fn new(
        site: &str,
        urls: HashMap<String, String>,
        read_timeout: Duration,
        max_reply: usize,
        tls: Option<&crate::tls::PeerTls>,
    ) -> anyhow::Result<PeerClient> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .read_timeout(read_timeout)
            .no_proxy()
            .pool_max_idle_per_host(4);
        let client = crate::tls::peer_client(builder, tls)?;
        Ok(PeerClient {
            site: site.to_owned(),
            urls: urls
                .into_iter()
                .map(|(k, v)| (k, v.trim_end_matches('/').to_owned()))
                .collect(),
            client,
            max_reply,
        })
    }

    /// This site.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// Sites with a configured agent URL.
    pub fn sites(&self) -> impl Iterator<Item = &str> {
        self.urls.keys().map(String::as_str)
    }

    fn url(&self, site: &str, path: &str) -> Result<String, String> {
        self.urls
            .get(site)
            .map(|u| format!("{u}{path}"))
            .ok_or_else(|| format!("no agent configured for site {site}"))
    }

    /// The headers of a submit or read of `meta` by this site: the operation (method, path
    /// suffix, query), its origin, and the client's `headers` to forward.
    fn op_headers(
        &self,
        meta: &MetaId,
        method: &str,
        suffix: &str,
        query: Option<&str>,
        headers: &[(String, String)],
    ) -> HeaderMap {
        let mut h = HeaderMap::new();
        put_fields(
            &mut h,
            [
                ("x-geomesh-meta", meta.to_string()),
                ("x-geomesh-method", enc(method)),
                ("x-geomesh-suffix", enc(suffix)),
                ("x-geomesh-origin", enc(&self.site)),
            ],
        );
        if let Some(q) = query.and_then(|q| value(&enc(q))) {
            h.insert("x-geomesh-query", q);
        }
        put_forwarded(&mut h, headers);
        h
    }

    /// Sends a delivery to `site`'s agent; its instance's raw answer.
    pub async fn apply(&self, site: &str, d: Delivery) -> Result<Reply, DeliveryError> {
        let fail = |m: String| DeliveryError(format!("site {site}: {m}"));
        let url = self.url(site, APPLY_PATH).map_err(fail)?;
        let mut h = HeaderMap::new();
        let replicant = serde_json::to_vec(&d.replicant).map_err(|e| fail(e.to_string()))?;
        let fields = [
            ("x-geomesh-leader", enc(&d.leader)),
            ("x-geomesh-seq", d.seq.to_string()),
            ("x-geomesh-kind", d.kind.as_str().to_owned()),
            ("x-geomesh-method", enc(&d.method)),
            ("x-geomesh-target", enc(&d.target)),
            ("x-geomesh-replicant", b64url_encode(&replicant)),
        ];
        put_fields(&mut h, fields);
        if let Some(ack) = d.ack {
            h.insert("x-geomesh-ack", HeaderValue::from(ack));
        }
        put_forwarded(&mut h, &d.headers);
        let mut req = self.client.post(&url).headers(h);
        if let Some(body) = d.body {
            let (b, len) = match body {
                Body::File { path, len } => {
                    let (b, _) = file_body(&path)
                        .await
                        .map_err(|e| fail(format!("spooled body {}: {e}", path.display())))?;
                    (b, Some(len))
                }
                Body::Bytes(b) => {
                    let len = b.len() as u64;
                    (reqwest::Body::from(b), Some(len))
                }
                Body::Stream { body, len } => (body, len),
            };
            // A delivery's body always has a known length (spooled or in memory).
            let len = len.unwrap_or(0);
            req = req
                .header(BODY_LEN, len)
                .header("content-length", len)
                .body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| fail(format!("agent: {}", describe(&e))))?;
        let status = resp.status().as_u16();
        let applied = resp.headers().contains_key(APPLIED);
        let truncated = resp
            .headers()
            .get(TRUNCATED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter(|(n, _)| {
                !DROPPED_RESPONSE_HEADERS.contains(&n.as_str())
                    && n.as_str() != APPLIED
                    && n.as_str() != TRUNCATED
            })
            .filter_map(|(n, v)| {
                std::str::from_utf8(v.as_bytes())
                    .ok()
                    .map(|v| (n.as_str().to_owned(), v.to_owned()))
            })
            .collect();
        let (body, total) = read_bounded(resp, self.max_reply)
            .await
            .map_err(|e| fail(format!("agent's answer: {e}")))?;
        if !applied {
            let text = String::from_utf8_lossy(&body);
            return Err(fail(format!(
                "agent answered {status}: {}",
                text.trim().chars().take(300).collect::<String>()
            )));
        }
        let truncated = truncated.or((total > self.max_reply as u64).then_some(total));
        Ok(Reply {
            status,
            headers,
            body: if truncated.is_some() { Bytes::new() } else { body },
            truncated,
        })
    }

    /// Sends a write of `meta` to its leader; the leader's answer, unread.
    #[allow(clippy::too_many_arguments)]
    pub async fn submit(
        &self,
        leader: &str,
        meta: &MetaId,
        method: &str,
        suffix: &str,
        query: Option<&str>,
        headers: &[(String, String)],
        body: Option<(reqwest::Body, Option<u64>)>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let url = match self.url(leader, SUBMIT_PATH) {
            Ok(u) => u,
            // An unknown leader is reported like an unreachable one by the caller.
            Err(_) => format!("http://unknown-site.invalid{SUBMIT_PATH}"),
        };
        let h = self.op_headers(meta, method, suffix, query, headers);
        let mut req = self.client.post(&url).headers(h);
        if let Some((b, len)) = body {
            req = req.header(BODY_LEN, len.map_or_else(|| "-".to_owned(), |l| l.to_string()));
            if let Some(len) = len {
                req = req.header("content-length", len);
            }
            req = req.body(b);
        }
        req.send().await
    }

    /// Asks `site`'s agent to serve a read of `meta` from its replica.
    pub async fn read(
        &self,
        site: &str,
        meta: &MetaId,
        method: &str,
        suffix: &str,
        query: Option<&str>,
        headers: &[(String, String)],
    ) -> Result<reqwest::Response, String> {
        let url = self.url(site, READ_PATH)?;
        let h = self.op_headers(meta, method, suffix, query, headers);
        self.client
            .post(&url)
            .headers(h)
            .send()
            .await
            .map_err(|e| describe(&e))
    }

    /// Tells `peer` that `site` is removed from the system (the removal was
    /// asked of `requested_at`): JSON `{"site", "requested_at", "from"}`;
    /// `Ok` once the peer answered 200 (it applied the removal), within
    /// `timeout`.
    pub async fn notify_removed(
        &self,
        peer: &str,
        site: &str,
        requested_at: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let url = self.url(peer, REMOVED_PATH)?;
        let body = serde_json::json!({ "site": site, "requested_at": requested_at, "from": self.site });
        let resp = self
            .client
            .post(&url)
            .timeout(timeout)
            .json(&body)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let (b, _) = read_bounded(resp, 4096).await.unwrap_or_default();
        Err(format!("{peer} answered {status}: {}", String::from_utf8_lossy(&b).trim()))
    }

    /// `GET /v1/replication/replicants/<meta>` on `site`'s agent: `Ok(None)`
    /// when it does not know it.
    pub async fn replicant(&self, site: &str, meta: &MetaId) -> Result<Option<Replicant>, String> {
        let url = self.url(site, &format!("/v1/replication/replicants/{meta}"))?;
        let resp = self
            .client
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        match resp.status().as_u16() {
            200 => {
                let (b, _) = read_bounded(resp, 1 << 20).await?;
                serde_json::from_slice(&b)
                    .map(Some)
                    .map_err(|e| format!("bad replicant from {site}: {e}"))
            }
            404 => Ok(None),
            s => Err(format!("status {s}")),
        }
    }
}

/// Reads an answer's body, keeping at most `max` bytes (the rest is read
/// and dropped); the kept bytes and the total.
pub async fn read_bounded(resp: reqwest::Response, max: usize) -> Result<(Bytes, u64), String> {
    let mut body = BytesMut::new();
    let mut total: u64 = 0;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| describe(&e))?;
        total = total.saturating_add(chunk.len() as u64);
        if total <= max as u64 {
            body.extend_from_slice(&chunk);
        }
    }
    Ok((body.freeze(), total))
}

/// The leader's transport to other sites: [`PeerClient::apply`].
#[derive(Debug, Clone)]
pub struct HttpPeers(pub Arc<PeerClient>);

impl Transport for HttpPeers {
    fn deliver<'a>(&'a self, site: &'a str, d: Delivery) -> DeliveryFuture<'a> {
        Box::pin(self.0.apply(site, d))
    }
}

/// Whether a header is one of the agents' own (never shown to an instance).
pub fn is_geomesh(name: &str) -> bool {
    name.len() >= GEOMESH_PREFIX.len()
        && name
            .get(..GEOMESH_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(GEOMESH_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar", &[0xff, 0xfe, 0x00]] {
            let e = b64url_encode(data);
            assert!(!e.contains('=') && !e.contains('+') && !e.contains('/'), "{e}");
            assert_eq!(b64url_decode(&e).unwrap(), data);
        }
        assert_eq!(b64url_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64url_encode(b"fo"), "Zm8");
        assert_eq!(b64url_decode("Zm8=").unwrap(), b"fo");
        assert!(b64url_decode("Zm8*").is_none());
    }

    #[test]
    fn texts_in_headers() {
        for s in ["DC 1", "Zürich", "/images/6?a=b%20c", "a,b"] {
            assert_eq!(dec(&enc(s)).as_deref(), Some(s));
            assert!(value(&enc(s)).is_some());
        }
        assert!(is_geomesh("X-Geomesh-Meta") && !is_geomesh("x-geo"));
    }
}
