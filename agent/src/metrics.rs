//! `GET /metrics`: what the agent knows, in the Prometheus text exposition format (version
//! 0.0.4), encoded by `prometheus-client` at scrape time from the store and the replication log.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `geomesh_agent_site` | gauge (1) | `site`: this agent's |
//! | `geomesh_agent_site_up` | gauge (1/0; absent before a verdict) | `site` (the peers) |
//! | `geomesh_agent_site_rtt_seconds` | gauge | `site` (smoothed, or the static value) |
//! | `geomesh_agent_heartbeat_failures` | gauge | `site`: failures in a row |
//! | `geomesh_agent_service_up` | gauge | `service` (this site's instances) |
//! | `geomesh_agent_heartbeats_served_total` | counter | |
//! | `geomesh_agent_replication_queue_depth` | gauge | `site`: operations of this leader's log still open there |
//! | `geomesh_agent_replication_lag_seconds` | gauge | `site`: age of the oldest open operation there (0 when none) |
//! | `geomesh_agent_replication_finished_total` | counter | `site`: operations finished there |
//! | `geomesh_agent_influx_replay_batches` | gauge | `cluster`: write batches queued for the shard |
//! | `geomesh_agent_influx_replay_bytes` | gauge | `cluster`: their line protocol, bytes |
//! | `geomesh_agent_influx_replay_replayed_total` | counter | `cluster`: batches the shard took (2xx) |
//! | `geomesh_agent_influx_replay_dropped_total` | counter | `cluster`: batches the shard refused (4xx), dropped |

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::replication::node::Node;
use crate::store::Store;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One site's replication queue, read from the log before encoding.
#[derive(Debug, Clone)]
struct Queue {
    site: String,
    open: u64,
    finished: u64,
    lag_s: f64,
}

#[derive(Debug)]
struct AgentCollector {
    store: Store,
    queues: Option<Result<Vec<Queue>, String>>,
}

fn family<'a>(e: &'a mut DescriptorEncoder, name: &'a str, help: &str, t: MetricType) -> Result<prometheus_client::encoding::MetricEncoder<'a>, std::fmt::Error> {
    e.encode_descriptor(name, help, None, t)
}

impl Collector for AgentCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = self.store.read();
        let mut f = family(&mut e, "geomesh_agent_site", "This agent's site (value 1)", MetricType::Gauge)?;
        ConstGauge::new(1).encode(f.encode_family(&[("site", s.site.as_str())])?)?;
        let mut f = family(&mut e, "geomesh_agent_site_up", "1 if the site is up (heartbeats or static)", MetricType::Gauge)?;
        for p in &s.peers {
            if let (Some(up), _) = p.up() {
                ConstGauge::new(i64::from(up)).encode(f.encode_family(&[("site", p.name.as_str())])?)?;
            }
        }
        let mut f = family(&mut e, "geomesh_agent_site_rtt_seconds", "Round trip to the site's agent (smoothed, or static)", MetricType::Gauge)?;
        for p in &s.peers {
            if let Some((ms, _)) = p.rtt() {
                ConstGauge::new(ms / 1e3).encode(f.encode_family(&[("site", p.name.as_str())])?)?;
            }
        }
        let mut f = family(&mut e, "geomesh_agent_heartbeat_failures", "Failed heartbeats in a row", MetricType::Gauge)?;
        for p in &s.peers {
            ConstGauge::new(i64::from(p.failures)).encode(f.encode_family(&[("site", p.name.as_str())])?)?;
        }
        let mut f = family(&mut e, "geomesh_agent_service_up", "1 if this site's instance answered its last probe", MetricType::Gauge)?;
        for svc in &s.services {
            if let Some(up) = svc.up {
                ConstGauge::new(i64::from(up)).encode(f.encode_family(&[("service", svc.name.as_str())])?)?;
            }
        }
        ConstCounter::new(s.heartbeats_served).encode(family(
            &mut e,
            "geomesh_agent_heartbeats_served",
            "Heartbeats answered to other sites",
            MetricType::Counter,
        )?)?;
        if let Some(q) = &s.influx_replay {
            use std::sync::atomic::Ordering::Relaxed;
            let mut f = family(&mut e, "geomesh_agent_influx_replay_batches", "InfluxDB write batches queued for the shard", MetricType::Gauge)?;
            for (c, cq) in &q.clusters {
                ConstGauge::new(cq.batches.load(Relaxed) as i64).encode(f.encode_family(&[("cluster", c.as_str())])?)?;
            }
            let mut f = family(&mut e, "geomesh_agent_influx_replay_bytes", "Bytes of line protocol queued for the shard", MetricType::Gauge)?;
            for (c, cq) in &q.clusters {
                ConstGauge::new(cq.bytes.load(Relaxed) as i64).encode(f.encode_family(&[("cluster", c.as_str())])?)?;
            }
            let mut f = family(&mut e, "geomesh_agent_influx_replay_replayed", "Queued batches the shard took (2xx)", MetricType::Counter)?;
            for (c, cq) in &q.clusters {
                ConstCounter::new(cq.replayed.load(Relaxed)).encode(f.encode_family(&[("cluster", c.as_str())])?)?;
            }
            let mut f = family(&mut e, "geomesh_agent_influx_replay_dropped", "Queued batches the shard refused (4xx), dropped", MetricType::Counter)?;
            for (c, cq) in &q.clusters {
                ConstCounter::new(cq.dropped.load(Relaxed)).encode(f.encode_family(&[("cluster", c.as_str())])?)?;
            }
        }
        drop(s);
        if let Some(Ok(queues)) = &self.queues {
            let mut f = family(&mut e, "geomesh_agent_replication_queue_depth", "Operations of this leader's log still open at the site", MetricType::Gauge)?;
            for q in queues {
                ConstGauge::new(q.open as i64).encode(f.encode_family(&[("site", q.site.as_str())])?)?;
            }
            let mut f = family(&mut e, "geomesh_agent_replication_lag_seconds", "Age of the oldest operation still open at the site (0: none)", MetricType::Gauge)?;
            for q in queues {
                ConstGauge::new(q.lag_s).encode(f.encode_family(&[("site", q.site.as_str())])?)?;
            }
            let mut f = family(&mut e, "geomesh_agent_replication_finished", "Operations of this leader's log finished at the site", MetricType::Counter)?;
            for q in queues {
                ConstCounter::new(q.finished).encode(f.encode_family(&[("site", q.site.as_str())])?)?;
            }
        }
        let err = matches!(&self.queues, Some(Err(_)));
        ConstGauge::new(i64::from(err)).encode(family(
            &mut e,
            "geomesh_agent_replication_store_errors",
            "1 if the replication log could not be read for this scrape",
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The exposition text now (the replication log is read on the blocking pool).
pub async fn render(store: Store, node: Option<Arc<Node>>) -> String {
    let queues = match node {
        None => None,
        Some(n) => Some(
            tokio::task::spawn_blocking(move || -> Result<Vec<Queue>, String> {
                let now = now_ms();
                let mut out = Vec::new();
                for (site, q) in n.db.queues().map_err(|e| e.to_string())? {
                    let oldest = match q.next_seq {
                        Some(seq) => n.db.op(seq).map_err(|e| e.to_string())?.map(|o| o.created_ms),
                        None => None,
                    };
                    out.push(Queue {
                        site,
                        open: q.open,
                        finished: q.finished,
                        lag_s: oldest.map_or(0.0, |c| now.saturating_sub(c) as f64 / 1e3),
                    });
                }
                Ok(out)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string())),
        ),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AgentCollector { store, queues }));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        out = format!("# encoding failed: {e}\n");
    }
    out
}
