//! The two example services of `examples/scope/`, real HTTP servers that know nothing of
//! geomesh (they only forward the carrier headers, as an application forwards its auth token or
//! an OpenTelemetry-instrumented one forwards `baggage`):
//!
//! * `--role t` (service `image`): `GET /image/<name>?size=N` answers `IMAGE <name> @ <site>\n`
//!   followed by N pattern bytes; `POST /upload` streams the body, counting bytes and summing
//!   them (never holding more than one chunk), and answers `{"site","bytes","sum"}`.
//! * `--role s` (service `compute`): `GET /compute/<name>` calls t through its sidecar
//!   (`--t-url`, the local Envoy's listener for `image`) forwarding only `x-scope`, `baggage`
//!   and `x-auth-token`, and answers JSON with what it saw and what t answered.
//!
//! Both: `GET /healthz`, `GET /stats` (`{"site","role","requests","uploads","upload_bytes"}`),
//! and `GET /ws`, a WebSocket that answers each text message `m` with `<site>: m` (an upgraded
//! connection crossing the sidecars).
//! Every answer names the serving site in `x-geomesh-site`; t also echoes the carrier headers it
//! received in `x-seen-<header>` (`-` when absent), so tests see what the application saw.
//!
//! ```text
//! geomesh-scope-example --role t --site "DC 2" --listen 127.0.0.1:18022
//! geomesh-scope-example --role s --site "DC 1" --listen 127.0.0.1:18011 --t-url http://127.0.0.1:18002
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// The carrier headers an application forwards.
const CARRIERS: [&str; 3] = ["x-scope", "baggage", "x-auth-token"];
/// Headers t echoes back as `x-seen-<name>`.
const ECHOED: [&str; 4] = [
    "x-scope",
    "baggage",
    "x-auth-token",
    "x-geomesh-forwarded-by",
];
/// Largest `size` of an image.
const MAX_IMAGE: usize = 64 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    S,
    T,
}

struct App {
    role: Role,
    site: String,
    t_url: Option<String>,
    client: reqwest::Client,
    requests: AtomicU64,
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
}

type Shared = Arc<App>;

fn usage() -> &'static str {
    "usage: geomesh-scope-example --role s|t --site NAME --listen HOST:PORT [--t-url URL]"
}

fn parse_args() -> Result<(Role, String, SocketAddr, Option<String>)> {
    let mut role = None;
    let mut site = None;
    let mut listen = None;
    let mut t_url = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--role" => {
                role = Some(match val()?.as_str() {
                    "s" => Role::S,
                    "t" => Role::T,
                    other => bail!("--role {other}: expected s or t"),
                })
            }
            "--site" => site = Some(val()?),
            "--listen" => listen = Some(val()?.parse().context("--listen")?),
            "--t-url" => t_url = Some(val()?.trim_end_matches('/').to_owned()),
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{}", usage()),
        }
    }
    let role = role.context(usage())?;
    if role == Role::S && t_url.is_none() {
        bail!("--role s needs --t-url (the sidecar's listener for t)");
    }
    Ok((
        role,
        site.context(usage())?,
        listen.context(usage())?,
        t_url,
    ))
}

fn site_header(app: &App) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("x-geomesh-site"),
        HeaderValue::from_str(&app.site).unwrap_or(HeaderValue::from_static("?")),
    )
}

fn seen(headers: &HeaderMap, name: &str) -> Value {
    match headers.get(name) {
        Some(v) => Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        None => Value::Null,
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn stats(State(app): State<Shared>) -> Json<Value> {
    Json(json!({
        "site": app.site,
        "role": if app.role == Role::S { "s" } else { "t" },
        "requests": app.requests.load(Ordering::Relaxed),
        "uploads": app.uploads.load(Ordering::Relaxed),
        "upload_bytes": app.upload_bytes.load(Ordering::Relaxed),
    }))
}

/// t: the image bytes, with the site marker on the first line.
async fn image(
    State(app): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    app.requests.fetch_add(1, Ordering::Relaxed);
    let size = q
        .get("size")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(256)
        .min(MAX_IMAGE);
    let mut body = format!("IMAGE {name} @ {}\n", app.site).into_bytes();
    body.extend((0..size).map(|i| b"geomesh"[i % 7]));
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    let (n, v) = site_header(&app);
    h.insert(n, v);
    h.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    for name in ECHOED {
        let v = headers
            .get(name)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
            .unwrap_or(HeaderValue::from_static("-"));
        if let Ok(n) = HeaderName::try_from(format!("x-seen-{name}")) {
            h.insert(n, v);
        }
    }
    resp
}

/// t: counts a streamed upload without keeping it.
async fn upload(State(app): State<Shared>, body: Body) -> Response {
    let mut stream = body.into_data_stream();
    let (mut bytes, mut sum) = (0u64, 0u64);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                bytes += c.len() as u64;
                sum = c.iter().fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
            }
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("upload broken after {bytes} bytes: {e}\n"),
                )
                    .into_response()
            }
        }
    }
    app.uploads.fetch_add(1, Ordering::Relaxed);
    app.upload_bytes.fetch_add(bytes, Ordering::Relaxed);
    let mut resp = Json(json!({ "site": app.site, "bytes": bytes, "sum": sum })).into_response();
    let (n, v) = site_header(&app);
    resp.headers_mut().insert(n, v);
    resp
}

/// s: calls t through the sidecar, forwarding only the carrier headers.
async fn compute(
    State(app): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    app.requests.fetch_add(1, Ordering::Relaxed);
    let Some(t_url) = &app.t_url else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no --t-url\n").into_response();
    };
    let mut req = app.client.get(format!("{t_url}/image/{name}?size=16"));
    for c in CARRIERS {
        if let Some(v) = headers.get(c) {
            req = req.header(c, v.as_bytes());
        }
    }
    let seen_by_s = json!({
        "x-scope": seen(&headers, "x-scope"),
        "baggage": seen(&headers, "baggage"),
        "x-auth-token": seen(&headers, "x-auth-token"),
    });
    let (status, image) = match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let h = r.headers().clone();
            let body = r.bytes().await.unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            let hv = |n: &str| {
                h.get(n)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            let image = json!({
                "status": status,
                "site": hv("x-geomesh-site"),
                "routed_to": hv("x-geomesh-routed-to"),
                "first_line": text.lines().next().unwrap_or(""),
                "seen_by_t": {
                    "x-scope": hv("x-seen-x-scope"),
                    "baggage": hv("x-seen-baggage"),
                    "x-auth-token": hv("x-seen-x-auth-token"),
                    "x-geomesh-forwarded-by": hv("x-seen-x-geomesh-forwarded-by"),
                },
            });
            (
                if status == 200 {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_GATEWAY
                },
                image,
            )
        }
        Err(e) => (StatusCode::BAD_GATEWAY, json!({ "error": e.to_string() })),
    };
    let mut resp = (
        status,
        Json(json!({ "service": "compute", "site": app.site, "seen": seen_by_s, "image": image })),
    )
        .into_response();
    let (n, v) = site_header(&app);
    resp.headers_mut().insert(n, v);
    resp
}

/// Both: a WebSocket echo that names the serving site in every answer.
async fn ws(State(app): State<Shared>, upgrade: WebSocketUpgrade) -> Response {
    app.requests.fetch_add(1, Ordering::Relaxed);
    let site = app.site.clone();
    upgrade.on_upgrade(move |socket| echo(socket, site))
}

async fn echo(mut socket: WebSocket, site: String) {
    while let Some(Ok(msg)) = socket.recv().await {
        let answer = match msg {
            Message::Text(t) => Message::Text(format!("{site}: {}", t.as_str()).into()),
            Message::Close(_) => break,
            // Pings are answered by axum itself; binary and pongs are not echoed.
            _ => continue,
        };
        if socket.send(answer).await.is_err() {
            break;
        }
    }
}

fn main() -> Result<()> {
    let (role, site, listen, t_url) = parse_args()?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let app = Arc::new(App {
        role,
        site,
        t_url,
        client,
        requests: AtomicU64::new(0),
        uploads: AtomicU64::new(0),
        upload_bytes: AtomicU64::new(0),
    });
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/stats", get(stats))
        .route("/ws", get(ws));
    router = match role {
        Role::T => router
            .route("/image/{name}", get(image))
            .route("/upload", post(upload)),
        Role::S => router.route("/compute/{name}", get(compute)),
    };
    let router = router.with_state(app.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("bind {listen}"))?;
        eprintln!(
            "geomesh-scope-example: {} ({}) at site {} on {listen}",
            if role == Role::S { "s" } else { "t" },
            if role == Role::S { "compute" } else { "image" },
            app.site
        );
        axum::serve(listener, router).await.context("serve")
    })
}
