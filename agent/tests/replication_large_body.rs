//! A 100 MiB body replicated to two sites through the engine: spooled to
//! disk chunk by chunk and streamed to each instance, so the process's peak
//! resident memory grows by far less than the body. Alone in its own test
//! binary (its own process), so no other test's allocations blur the figure.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use geomesh_agent::replication::applier::AlwaysUp;
use geomesh_agent::replication::executor::{Executor, LocalService};
use geomesh_agent::replication::instance::{forwardable, Instance};
use geomesh_agent::replication::rewrite::IdFields;
use geomesh_agent::replication::spool::Spool;
use geomesh_agent::replication::transport::InProcess;
use geomesh_agent::replication::{Answer, Applier, ApplierConfig, CreateRequest, Db, MetaId};
use serde_json::{json, Value};

/// Reads VmHWM (peak resident set) of this process, in bytes.
fn peak_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_body_streams_through_the_spool_to_two_sites() {
    // json-server takes at most 10 MB: the instances here are small real HTTP servers that
    // count the bytes they receive (streamed) and answer with an id and the count.
    async fn blob_store(listener: tokio::net::TcpListener, first_id: u64) {
        use axum::extract::Request;
        let next = Arc::new(std::sync::atomic::AtomicU64::new(first_id));
        let app = axum::Router::new().route(
            "/blobs",
            axum::routing::post(move |req: Request| {
                let next = next.clone();
                async move {
                    let mut n: u64 = 0;
                    let mut s = req.into_body().into_data_stream();
                    while let Some(c) = s.next().await {
                        n += c.unwrap().len() as u64;
                    }
                    let id = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    (
                        axum::http::StatusCode::CREATED,
                        axum::Json(json!({"id": id, "bytes": n})),
                    )
                }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut transport = InProcess::new();
    let mut dbs = Vec::new();
    for (i, site) in ["DC 1", "DC 2"].iter().enumerate() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(blob_store(l, 100 * (i as u64 + 1)));
        let db = Db::open(&dir.path().join(format!("{i}.sqlite3"))).unwrap();
        let svc = LocalService {
            instance: Instance::new(addr, 1 << 20, Duration::from_secs(30)).unwrap(),
            ids: IdFields::default(),
        };
        transport = transport.with(
            site,
            Arc::new(Executor::new(
                site,
                db.clone(),
                [("blob".to_owned(), svc)].into(),
                1 << 20,
                1 << 20,
            )),
        );
        dbs.push(db);
    }
    let spool = Spool::open(&dir.path().join("spool"), 1 << 30).unwrap();
    let a = Applier::start(
        ApplierConfig::new("DC 1"),
        dbs[0].clone(),
        spool,
        Arc::new(transport),
        Arc::new(AlwaysUp),
    )
    .await
    .unwrap();
    let before = peak_rss();
    const SIZE: u64 = 100 << 20;
    let chunks = futures_util::stream::iter(0..100u32)
        .map(|i| Ok::<_, std::io::Error>(Bytes::from(vec![(i % 251) as u8; 1 << 20])));
    let spooled = a.spool().write(chunks).await.unwrap();
    assert_eq!(spooled.len, SIZE);
    let ans = a
        .create(CreateRequest {
            service: "blob".into(),
            path: "/blobs".into(),
            query: None,
            method: "POST".into(),
            headers: forwardable([("Content-Type", b"application/octet-stream".as_slice())]).0,
            body: Some(spooled),
            sites: vec!["DC 1".into(), "DC 2".into()],
            origin: "DC 1".into(),
        })
        .await
        .unwrap();
    let (status, body) = match &ans {
        Answer::Replied { reply, .. } => (
            reply.status,
            serde_json::from_slice::<Value>(&reply.body).unwrap(),
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(status, 201);
    assert_eq!(body["bytes"], json!(SIZE));
    assert!(MetaId::parse(body["id"].as_str().unwrap()).is_some());
    assert!(a.wait_idle(Duration::from_secs(60)).await);
    let meta = MetaId::parse(body["id"].as_str().unwrap()).unwrap();
    let r = dbs[0].replicant(&meta).unwrap().unwrap();
    assert_eq!(r.local_id("DC 1").unwrap().json(), &json!(100));
    assert_eq!(r.local_id("DC 2").unwrap().json(), &json!(200));
    let grown = peak_rss().saturating_sub(before);
    eprintln!(
        "peak RSS before {} MiB, growth {} MiB",
        before >> 20,
        grown >> 20
    );
    assert!(
        grown < 40 << 20,
        "peak RSS grew by {} MiB for a 100 MiB body sent twice",
        grown >> 20
    );
}
