//! The InfluxDB replay queue: the writes a down shard missed, stored durably and replayed in
//! order when it answers again.
//!
//! The InfluxDB filter (`filters/influx`) hands a shard's part of a write that failed
//! (connection failure, timeout, 5xx) to `POST /v1/influx/queue?cluster=<c>&<write parameters>`
//! with the exact line-protocol body it sent (points already stamped with the request's time).
//! The agent answers **204 only once the batch is committed** (SQLite under `data_dir`, WAL,
//! `synchronous=FULL`: the commit is fsync'd), **507** when the cluster's queue is at its bound
//! (`max_bytes` or `max_batches`), 404 for a cluster it has no shard URL for, 503 when the store
//! fails. One replayer task per cluster POSTs the oldest batch to `<shard>/write?<parameters>`,
//! deletes it after a 2xx, drops it after a 4xx (a batch the shard refuses would block the
//! queue forever: logged, counted), and retries anything else with a doubling delay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;

/// The endpoint the filter posts a failed shard's lines to.
pub const QUEUE_PATH: &str = "/v1/influx/queue";
/// The store's file under `data_dir`.
pub const DB_FILE: &str = "influx-replay.sqlite3";
/// The largest batch read (the filter's `max_decoded_bytes` bound).
pub const MAX_BATCH_BYTES: usize = 1 << 30;
/// The start of the 507 answer's text (the filter's 503 quotes it).
pub const QUEUE_FULL: &str = "replay queue full";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS influx_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster TEXT NOT NULL,
    query TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS influx_queue_cluster ON influx_queue(cluster, seq);
";

fn default_max_bytes() -> u64 {
    1 << 30
}
fn default_max_batches() -> u64 {
    1_000_000
}
fn default_retry_min() -> u64 {
    100
}
fn default_retry_max() -> u64 {
    5000
}
fn default_request_timeout() -> u64 {
    10_000
}

/// `influx_replay:` in the agent's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxReplayConfig {
    /// Where `influx-replay.sqlite3` lives.
    pub data_dir: PathBuf,
    /// Bound of one cluster's queue, in bytes of line protocol.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Bound of one cluster's queue, in batches (one failed write part each).
    #[serde(default = "default_max_batches")]
    pub max_batches: u64,
    /// First retry of a failed replay, doubling up to `retry_max_ms`.
    #[serde(default = "default_retry_min")]
    pub retry_min_ms: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: u64,
    /// One replay request's timeout.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Envoy cluster name (as the filter names it) -> the shard's InfluxDB base URL.
    pub shards: BTreeMap<String, String>,
}

impl InfluxReplayConfig {
    /// Checks the section; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.shards.is_empty() {
            return Err("`influx_replay.shards`: expected at least one cluster".into());
        }
        for (name, url) in &self.shards {
            if name.is_empty()
                || name
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b == b'&' || b == b'=')
            {
                return Err(format!("`influx_replay.shards`: bad cluster name `{name}`"));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "`influx_replay.shards.{name}`: expected http://host:port"
                ));
            }
        }
        if self.max_bytes == 0 {
            return Err("`influx_replay.max_bytes`: expected at least 1".into());
        }
        if self.max_batches == 0 {
            return Err("`influx_replay.max_batches`: expected at least 1".into());
        }
        if self.retry_min_ms == 0
            || self.retry_min_ms > self.retry_max_ms
            || self.retry_max_ms > 600_000
        {
            return Err(
                "`influx_replay.retry_min_ms`/`retry_max_ms`: expected 1 <= min <= max <= 600000"
                    .into(),
            );
        }
        if !(100..=3_600_000).contains(&self.request_timeout_ms) {
            return Err("`influx_replay.request_timeout_ms`: expected 100 to 3600000".into());
        }
        Ok(())
    }
}

/// One stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub seq: i64,
    /// The write's parameters (`db=..&rp=..&precision=..`), as the filter sent them.
    pub query: String,
    pub body: Vec<u8>,
}

/// Why a batch was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    UnknownCluster(String),
    Full {
        cluster: String,
        batches: u64,
        bytes: u64,
        max_batches: u64,
        max_bytes: u64,
    },
    Store(String),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::UnknownCluster(c) => write!(f, "geomesh-agent: no shard URL for cluster {c} in influx_replay.shards"),
            PushError::Full { cluster, batches, bytes, max_batches, max_bytes } => write!(
                f,
                "{QUEUE_FULL} for cluster {cluster}: {batches} batches, {bytes} bytes queued (limits {max_batches} batches, {max_bytes} bytes)"
            ),
            PushError::Store(e) => write!(f, "geomesh-agent: replay queue store failed: {e}"),
        }
    }
}

/// One cluster's queue: its shard and its figures (kept in step with the store under its lock).
#[derive(Debug, Default)]
pub struct ClusterQueue {
    pub url: String,
    pub batches: AtomicU64,
    pub bytes: AtomicU64,
    pub replayed: AtomicU64,
    pub dropped: AtomicU64,
    wake: tokio::sync::Notify,
}

/// The durable queues of every configured cluster.
#[derive(Debug)]
pub struct ReplayQueue {
    conn: Mutex<Connection>,
    pub clusters: BTreeMap<String, ClusterQueue>,
    pub config: InfluxReplayConfig,
}

fn store_err(e: rusqlite::Error) -> PushError {
    PushError::Store(e.to_string())
}

impl ReplayQueue {
    /// Opens (creating if needed) `<data_dir>/influx-replay.sqlite3`; the depths are read back.
    pub fn open(config: &InfluxReplayConfig) -> anyhow::Result<ReplayQueue> {
        std::fs::create_dir_all(&config.data_dir)?;
        Self::open_at(&config.data_dir.join(DB_FILE), config)
    }

    fn open_at(path: &Path, config: &InfluxReplayConfig) -> anyhow::Result<ReplayQueue> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL + FULL: each commit is fsync'd before it returns.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            anyhow::bail!("journal_mode WAL refused (got {mode})");
        }
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        conn.execute_batch(SCHEMA)?;
        let clusters: BTreeMap<String, ClusterQueue> = config
            .shards
            .iter()
            .map(|(c, u)| {
                (
                    c.clone(),
                    ClusterQueue {
                        url: u.trim_end_matches('/').to_owned(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        {
            let mut st = conn.prepare("SELECT cluster, COUNT(*), COALESCE(SUM(length(body)), 0) FROM influx_queue GROUP BY cluster")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (c, n, b) = row?;
                match clusters.get(&c) {
                    Some(q) => {
                        q.batches.store(n.max(0) as u64, Ordering::Relaxed);
                        q.bytes.store(b.max(0) as u64, Ordering::Relaxed);
                    }
                    None => {
                        tracing::warn!(cluster = %c, batches = n, "influx replay: batches of a cluster no longer in influx_replay.shards are kept, not replayed")
                    }
                }
            }
        }
        Ok(ReplayQueue {
            conn: Mutex::new(conn),
            clusters,
            config: config.clone(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a batch to `cluster`'s queue; returns once it is committed.
    pub fn push(&self, cluster: &str, query: &str, body: &[u8]) -> Result<(), PushError> {
        let q = self
            .clusters
            .get(cluster)
            .ok_or_else(|| PushError::UnknownCluster(cluster.to_owned()))?;
        let conn = self.conn();
        let batches = q.batches.load(Ordering::Relaxed);
        let bytes = q.bytes.load(Ordering::Relaxed);
        let len = body.len() as u64;
        if batches.saturating_add(1) > self.config.max_batches
            || bytes.saturating_add(len) > self.config.max_bytes
        {
            return Err(PushError::Full {
                cluster: cluster.to_owned(),
                batches,
                bytes,
                max_batches: self.config.max_batches,
                max_bytes: self.config.max_bytes,
            });
        }
        conn.execute(
            "INSERT INTO influx_queue(cluster, query, body, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![cluster, query, body, crate::store::unix_ms() as i64],
        )
        .map_err(store_err)?;
        q.batches.fetch_add(1, Ordering::Relaxed);
        q.bytes.fetch_add(len, Ordering::Relaxed);
        q.wake.notify_one();
        Ok(())
    }

    /// The oldest batch of `cluster`.
    pub fn front(&self, cluster: &str) -> Result<Option<Batch>, PushError> {
        self.conn()
            .query_row(
                "SELECT seq, query, body FROM influx_queue WHERE cluster = ?1 ORDER BY seq LIMIT 1",
                [cluster],
                |r| {
                    Ok(Batch {
                        seq: r.get(0)?,
                        query: r.get(1)?,
                        body: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(store_err)
    }

    /// Removes a replayed (or dropped) batch.
    pub fn remove(&self, cluster: &str, b: &Batch) -> Result<(), PushError> {
        let conn = self.conn();
        let n = conn
            .execute("DELETE FROM influx_queue WHERE seq = ?1", [b.seq])
            .map_err(store_err)?;
        if n > 0 {
            if let Some(q) = self.clusters.get(cluster) {
                let _ = q
                    .batches
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_sub(1))
                    });
                let len = b.body.len() as u64;
                let _ = q
                    .bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_sub(len))
                    });
            }
        }
        Ok(())
    }
}

/// What the replayer does with a shard's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: written, delete.
    Replayed,
    /// 4xx: the shard will never take it; drop it (logged, counted).
    Dropped,
    /// No answer or 5xx: retry later.
    Retry,
}

/// The outcome of a replay answered `status` (`None`: no answer).
pub fn outcome(status: Option<u16>) -> Outcome {
    match status {
        Some(s) if (200..300).contains(&s) => Outcome::Replayed,
        Some(s) if (400..500).contains(&s) => Outcome::Dropped,
        _ => Outcome::Retry,
    }
}

/// Replays `cluster`'s queue in order, for ever.
pub async fn run(queue: Arc<ReplayQueue>, cluster: String, client: reqwest::Client) {
    let Some(q) = queue.clusters.get(&cluster) else {
        return;
    };
    let min = Duration::from_millis(queue.config.retry_min_ms);
    let max = Duration::from_millis(queue.config.retry_max_ms);
    let mut delay = min;
    loop {
        let qq = queue.clone();
        let c = cluster.clone();
        let next = tokio::task::spawn_blocking(move || qq.front(&c)).await;
        let batch = match next {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => {
                let _ = tokio::time::timeout(max, q.wake.notified()).await;
                continue;
            }
            Ok(Err(e)) => {
                tracing::error!(%cluster, error = %e, "influx replay: cannot read the queue");
                tokio::time::sleep(max).await;
                continue;
            }
            Err(e) => {
                tracing::error!(%cluster, error = %e, "influx replay: store task failed");
                tokio::time::sleep(max).await;
                continue;
            }
        };
        let url = if batch.query.is_empty() {
            format!("{}/write", q.url)
        } else {
            format!("{}/write?{}", q.url, batch.query)
        };
        let r = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(batch.body.clone())
            .send()
            .await;
        let (status, why) = match r {
            Ok(resp) => {
                let s = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                (Some(s), text)
            }
            Err(e) => (None, e.to_string()),
        };
        match outcome(status) {
            Outcome::Retry => {
                tracing::debug!(%cluster, ?status, error = %why, delay_ms = delay.as_millis() as u64, "influx replay: shard not answering, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(max);
                continue;
            }
            o => {
                if o == Outcome::Dropped {
                    tracing::warn!(%cluster, ?status, answer = %why, bytes = batch.body.len(), "influx replay: the shard refused a queued batch; dropped");
                    q.dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    q.replayed.fetch_add(1, Ordering::Relaxed);
                }
                delay = min;
                let qq = queue.clone();
                let c = cluster.clone();
                match tokio::task::spawn_blocking(move || qq.remove(&c, &batch)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(%cluster, error = %e, "influx replay: cannot delete a replayed batch");
                        tokio::time::sleep(max).await;
                    }
                    Err(e) => {
                        tracing::error!(%cluster, error = %e, "influx replay: store task failed");
                        tokio::time::sleep(max).await;
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct ClusterParam {
    cluster: Option<String>,
}

/// `POST /v1/influx/queue?cluster=<c>&<write parameters>`.
pub fn router(queue: Arc<ReplayQueue>) -> Router {
    // Any batch the filter can send (its max_decoded_bytes is at most 1 GiB) is read and judged
    // by the queue's bounds (507), not cut by axum's default 2 MB limit.
    Router::new()
        .route(QUEUE_PATH, post(push))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(queue)
}

async fn push(
    State(queue): State<Arc<ReplayQueue>>,
    Query(p): Query<ClusterParam>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(cluster) = p.cluster.filter(|c| !c.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            "geomesh-agent: missing cluster=\n".into(),
        );
    };
    if body.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "geomesh-agent: empty batch\n".into(),
        );
    }
    let query: String = raw
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("cluster="))
        .collect::<Vec<_>>()
        .join("&");
    let r = tokio::task::spawn_blocking(move || queue.push(&cluster, &query, &body)).await;
    match r {
        Ok(Ok(())) => (StatusCode::NO_CONTENT, String::new()),
        Ok(Err(e)) => {
            let status = match e {
                PushError::UnknownCluster(_) => StatusCode::NOT_FOUND,
                PushError::Full { .. } => StatusCode::INSUFFICIENT_STORAGE,
                PushError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::warn!(error = %e, "influx replay: batch refused");
            (status, format!("{e}\n"))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("geomesh-agent: replay queue store failed: {e}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, max_bytes: u64) -> InfluxReplayConfig {
        InfluxReplayConfig {
            data_dir: dir.to_owned(),
            max_bytes,
            max_batches: 3,
            retry_min_ms: 10,
            retry_max_ms: 100,
            request_timeout_ms: 1000,
            shards: [("influx_b".to_owned(), "http://127.0.0.1:1/".to_owned())].into(),
        }
    }

    fn depth(q: &ReplayQueue) -> (u64, u64) {
        let c = &q.clusters["influx_b"];
        (
            c.batches.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn batches_come_back_in_order_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), 1000);
        {
            let q = ReplayQueue::open(&c).unwrap();
            assert_eq!(q.clusters["influx_b"].url, "http://127.0.0.1:1");
            q.push("influx_b", "db=x", b"m a=1 1\n").unwrap();
            q.push("influx_b", "db=x&precision=s", b"m a=2 2\n")
                .unwrap();
            assert_eq!(depth(&q), (2, 16));
        }
        // A new agent on the same data_dir finds both, oldest first.
        let q = ReplayQueue::open(&c).unwrap();
        assert_eq!(depth(&q), (2, 16));
        let first = q.front("influx_b").unwrap().unwrap();
        assert_eq!(
            (first.query.as_str(), first.body.as_slice()),
            ("db=x", &b"m a=1 1\n"[..])
        );
        q.remove("influx_b", &first).unwrap();
        let second = q.front("influx_b").unwrap().unwrap();
        assert_eq!(second.query, "db=x&precision=s");
        q.remove("influx_b", &second).unwrap();
        assert_eq!(q.front("influx_b").unwrap(), None);
        assert_eq!(depth(&q), (0, 0));
    }

    #[test]
    fn full_and_unknown_are_refused_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let q = ReplayQueue::open(&config(dir.path(), 20)).unwrap();
        q.push("influx_b", "", b"0123456789").unwrap();
        let e = q.push("influx_b", "", b"0123456789x").unwrap_err();
        assert!(matches!(e, PushError::Full { .. }));
        assert!(e.to_string().starts_with(QUEUE_FULL), "{e}");
        assert!(e.to_string().contains("influx_b"), "{e}");
        q.push("influx_b", "", b"1").unwrap();
        q.push("influx_b", "", b"2").unwrap();
        assert!(
            matches!(
                q.push("influx_b", "", b"3"),
                Err(PushError::Full { batches: 3, .. })
            ),
            "max_batches"
        );
        assert!(matches!(
            q.push("influx_a", "", b"x"),
            Err(PushError::UnknownCluster(_))
        ));
        assert_eq!(depth(&q), (3, 12));
    }

    #[test]
    fn answers_decide_replay_drop_or_retry() {
        assert_eq!(outcome(Some(204)), Outcome::Replayed);
        assert_eq!(outcome(Some(400)), Outcome::Dropped);
        assert_eq!(outcome(Some(404)), Outcome::Dropped);
        assert_eq!(outcome(Some(500)), Outcome::Retry);
        assert_eq!(outcome(Some(503)), Outcome::Retry);
        assert_eq!(outcome(None), Outcome::Retry);
    }

    #[test]
    fn config_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let ok = config(dir.path(), 1);
        assert!(ok.validate().is_ok());
        let mut c = ok.clone();
        c.shards.clear();
        assert!(c.validate().unwrap_err().contains("influx_replay.shards"));
        let mut c = ok.clone();
        c.shards.insert("x".into(), "ftp://x".into());
        assert!(c.validate().unwrap_err().contains("influx_replay.shards.x"));
        let mut c = ok.clone();
        c.max_bytes = 0;
        assert!(c.validate().unwrap_err().contains("max_bytes"));
        let mut c = ok;
        c.retry_min_ms = 1000;
        assert!(c.validate().unwrap_err().contains("retry_min_ms"));
    }
}
