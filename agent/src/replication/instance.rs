//! HTTP calls from an agent to its own site's application instance
//! (directly, not through Envoy: the agent's own requests must not be
//! scoped again, as in Cheops).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::model::{Body, Reply};
use super::spool::file_body;

/// Hop-by-hop headers (RFC 9110 section 7.6.1 and the usual extras).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers never forwarded to an instance besides the hop-by-hop
/// ones and geomesh's own ([`dropped_request_header`]): the length
/// (recomputed), validators and preconditions (they are per site: an ETag of
/// one replica means nothing to another), `accept-encoding` (replaced by
/// `identity` so answers can be rewritten) and `expect`.
pub const DROPPED_REQUEST_ONLY: &[&str] = &[
    "content-length",
    "accept-encoding",
    "expect",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
];

/// Whether a (lower-case) request header is never forwarded to an instance:
/// hop-by-hop ones, [`DROPPED_REQUEST_ONLY`] and geomesh's own.
pub fn dropped_request_header(name: &str) -> bool {
    HOP_BY_HOP.contains(&name) || DROPPED_REQUEST_ONLY.contains(&name) || name.starts_with(GEOMESH_PREFIX)
}

/// Response headers not passed on: hop-by-hop ones and the length.
pub const DROPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Prefix of geomesh's own headers (never forwarded to an application).
pub const GEOMESH_PREFIX: &str = "x-geomesh-";

/// The request headers of a client request worth forwarding to
/// instances, lower-cased, in order. Values that are not text are
/// dropped (and counted in the second element).
pub fn forwardable<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> (Vec<(String, String)>, usize) {
    let mut out = Vec::new();
    let mut dropped = 0;
    for (name, value) in headers {
        let n = name.to_ascii_lowercase();
        if dropped_request_header(&n) {
            continue;
        }
        match std::str::from_utf8(value) {
            Ok(v) => out.push((n, v.to_owned())),
            Err(_) => dropped += 1,
        }
    }
    (out, dropped)
}

/// Why an instance call did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One service instance of this site.
#[derive(Debug, Clone)]
pub struct Instance {
    client: reqwest::Client,
    base: String,
    max_reply: usize,
}

impl Instance {
    /// An instance at `http://<address>`; answers over `max_reply` bytes are
    /// drained and dropped (marked truncated).
    pub fn new(
        address: std::net::SocketAddr,
        max_reply: usize,
        timeout: Duration,
    ) -> reqwest::Result<Instance> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .read_timeout(timeout)
            .no_proxy()
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(Instance {
            client,
            base: format!("http://{address}"),
            max_reply,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request and returns the answer unread (its body streams):
    /// for pass-through requests and reads. `headers` are sent as given
    /// except hop-by-hop ones, the length and geomesh's own (the caller picks
    /// the rest); `identity` forces `accept-encoding: identity` (answers the
    /// agent may rewrite). `body`: a stream and its length when known.
    pub async fn send_streaming(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: Option<(reqwest::Body, Option<u64>)>,
        identity: bool,
    ) -> Result<reqwest::Response, Unreachable> {
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| Unreachable(format!("method {method:?}: {e}")))?;
        let url = format!("{}{}", self.base, target);
        let mut req = self.client.request(m, &url);
        for (n, v) in headers {
            let n = n.to_ascii_lowercase();
            if HOP_BY_HOP.contains(&n.as_str())
                || n == "content-length"
                || n.starts_with(GEOMESH_PREFIX)
                || (identity && n == "accept-encoding")
            {
                continue;
            }
            if let Ok(v) = reqwest::header::HeaderValue::from_bytes(v.as_bytes()) {
                req = req.header(n.as_str(), v);
            }
        }
        if identity {
            req = req.header("accept-encoding", "identity");
        }
        if let Some((b, len)) = body {
            if let Some(len) = len {
                req = req.header("content-length", len.to_string());
            }
            req = req.body(b);
        }
        req.send()
            .await
            .map_err(|e| Unreachable(describe(&e, &url)))
    }

    /// Sends one request (`target` = path and query) and reads the answer.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: Option<Body>,
    ) -> Result<Reply, Unreachable> {
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| Unreachable(format!("method {method:?}: {e}")))?;
        let url = format!("{}{}", self.base, target);
        let mut req = self.client.request(m, &url);
        for (n, v) in headers {
            if !dropped_request_header(n) {
                req = req.header(n.as_str(), v.as_str());
            }
        }
        req = req.header("accept-encoding", "identity");
        if let Some(body) = body {
            let (b, len) = match body {
                Body::File { path, len } => {
                    let (b, _) = file_body(&path).await.map_err(|e| {
                        Unreachable(format!("spooled body {}: {e}", path.display()))
                    })?;
                    (b, Some(len))
                }
                Body::Bytes(b) => {
                    let len = b.len() as u64;
                    (reqwest::Body::from(b), Some(len))
                }
                Body::Stream { body, len } => (body, len),
            };
            if let Some(len) = len {
                req = req.header("content-length", len.to_string());
            }
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Unreachable(describe(&e, &url)))?;
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter(|(n, _)| !DROPPED_RESPONSE_HEADERS.contains(&n.as_str()))
            .filter_map(|(n, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (n.as_str().to_owned(), v.to_owned()))
            })
            .collect();
        let mut body = BytesMut::new();
        let mut total: u64 = 0;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Unreachable(describe(&e, &url)))?;
            total = total.saturating_add(chunk.len() as u64);
            if total <= self.max_reply as u64 {
                body.extend_from_slice(&chunk);
            }
        }
        let truncated = (total > self.max_reply as u64).then_some(total);
        Ok(Reply {
            status,
            headers,
            body: if truncated.is_some() {
                Bytes::new()
            } else {
                body.freeze()
            },
            truncated,
        })
    }
}

fn describe(e: &reqwest::Error, url: &str) -> String {
    let kind = if e.is_connect() {
        "connection refused or unreachable"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_body() || e.is_decode() {
        "answer cut"
    } else {
        "request failed"
    };
    let mut s = format!("{url}: {kind}");
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwardable_headers() {
        let h: Vec<(&str, &[u8])> = vec![
            ("Content-Type", b"application/json"),
            ("Content-Length", b"12"),
            ("Host", b"envoy:8080"),
            ("X-Geomesh-Replicate", b"DC1"),
            ("If-Match", b"W/\"1\""),
            ("Accept-Encoding", b"gzip"),
            ("X-Auth-Token", b"tok"),
            ("X-Bin", b"\xff"),
        ];
        let (out, dropped) = forwardable(h);
        assert_eq!(
            out,
            [
                ("content-type".to_owned(), "application/json".to_owned()),
                ("host".to_owned(), "envoy:8080".to_owned()),
                ("x-auth-token".to_owned(), "tok".to_owned())
            ]
        );
        assert_eq!(dropped, 1);
    }
}
