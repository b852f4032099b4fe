//! `GET /metrics`: the bridge's counters in the Prometheus text exposition format (version
//! 0.0.4), encoded by `prometheus-client` from the live [`Stats`](crate::Stats) at scrape time
//! (a [`Collector`]: the data path keeps its own atomics and pays nothing per scrape-less second).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `geomesh_bridge_ready`, `geomesh_bridge_draining` | gauge | |
//! | `geomesh_bridge_filter_connections_active` / `_total` | gauge / counter | |
//! | `geomesh_bridge_channels_active` / `_total`, `geomesh_bridge_remote_channels_total` | gauge / counter | |
//! | `geomesh_bridge_shared_channels_total`, `geomesh_bridge_pool_connections_total` | counter | shared channels, pooled connections made |
//! | `geomesh_bridge_bytes_total` | counter | `direction`: `from_filters`, `to_filters`, `to_backends`, `from_backends` |
//! | `geomesh_bridge_channel_closes_total` | counter | `code`: the `CLOSED` code (`EOF`, `REFUSED`, `STALLED`, ...) |
//! | `geomesh_bridge_stalls_total`, `geomesh_bridge_connect_timeouts_total` | counter | (the `STALLED` and `CONNECT_TIMEOUT` closes) |
//! | `geomesh_bridge_wakes_total`, `geomesh_bridge_errors_total` | counter | |
//! | `geomesh_bridge_tunnels_in_active` / `_total` | gauge / counter | |
//! | `geomesh_bridge_site_up` | gauge (1/0) | `site` |
//! | `geomesh_bridge_site_rtt_seconds` | gauge | `site` (last `Ping` round trip; absent while down) |

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use geomesh_frame::CloseCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::stats::CLOSE_NAMES;
use crate::Shared;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug)]
struct BridgeCollector(Arc<Shared>);

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

impl Collector for BridgeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let sh = &self.0;
        let st = &sh.stats;
        let site = sh.snapshot().config.site.clone();
        gauge(&mut e, "geomesh_bridge_ready", "1 once every listener is bound, until a drain starts", f64::from(u8::from(sh.is_ready())))?;
        gauge(&mut e, "geomesh_bridge_draining", "1 once a drain (SIGTERM) started", f64::from(u8::from(sh.is_draining())))?;
        let mut info = e.encode_descriptor("geomesh_bridge_site", "This bridge's site (value 1)", None, MetricType::Gauge)?;
        ConstGauge::new(1).encode(info.encode_family(&[("site", site.as_str())])?)?;
        gauge(&mut e, "geomesh_bridge_filter_connections_active", "Open connections from filters", st.filter_connections_active.load(Relaxed) as f64)?;
        counter(&mut e, "geomesh_bridge_filter_connections", "Connections from filters accepted", st.filter_connections_total.load(Relaxed))?;
        gauge(&mut e, "geomesh_bridge_channels_active", "Open channels (backend connections and tunnels)", st.channels_active.load(Relaxed) as f64)?;
        counter(&mut e, "geomesh_bridge_channels", "Channels opened", st.channels_total.load(Relaxed))?;
        counter(&mut e, "geomesh_bridge_remote_channels", "Channels opened to another site's bridge", st.remote_channels_total.load(Relaxed))?;
        counter(&mut e, "geomesh_bridge_shared_channels", "Channels carried by pooled backend connections", st.shared_channels_total.load(Relaxed))?;
        counter(&mut e, "geomesh_bridge_pool_connections", "Pooled backend connections made", st.pool_connections_total.load(Relaxed))?;
        let [from_filters, to_filters, to_backends, from_backends, wakes] = st.bytes();
        let mut bytes = e.encode_descriptor("geomesh_bridge_bytes", "Bytes carried, by direction", None, MetricType::Counter)?;
        for (dir, v) in [
            ("from_filters", from_filters),
            ("to_filters", to_filters),
            ("to_backends", to_backends),
            ("from_backends", from_backends),
        ] {
            ConstCounter::new(v).encode(bytes.encode_family(&[("direction", dir)])?)?;
        }
        let mut closes = e.encode_descriptor("geomesh_bridge_channel_closes", "Channels closed, by CLOSED code", None, MetricType::Counter)?;
        for (name, c) in CLOSE_NAMES.iter().zip(&st.closed) {
            ConstCounter::new(c.load(Relaxed)).encode(closes.encode_family(&[("code", *name)])?)?;
        }
        let closed = |code: CloseCode| st.closed.get(code as usize).map_or(0, |c| c.load(Relaxed));
        counter(&mut e, "geomesh_bridge_stalls", "Channels closed because the backend stalled (no reply within the filter's timeout)", closed(CloseCode::Stalled))?;
        counter(&mut e, "geomesh_bridge_connect_timeouts", "Channels whose backend did not accept within the connect timeout", closed(CloseCode::ConnectTimeout))?;
        counter(&mut e, "geomesh_bridge_wakes", "WAKE frames answered", wakes)?;
        counter(&mut e, "geomesh_bridge_errors", "Filter connections ended by a protocol error", st.errors.load(Relaxed))?;
        gauge(&mut e, "geomesh_bridge_tunnels_in_active", "Open tunnels from other sites", st.tunnels_in_active.load(Relaxed) as f64)?;
        counter(&mut e, "geomesh_bridge_tunnels_in", "Tunnels from other sites accepted", st.tunnels_in_total.load(Relaxed))?;
        let sites = st.sites_snapshot();
        let mut up = e.encode_descriptor("geomesh_bridge_site_up", "1 if the site's bridge answered the last Ping", None, MetricType::Gauge)?;
        for (name, r) in &sites {
            ConstGauge::new(i64::from(r.is_ok())).encode(up.encode_family(&[("site", name.as_str())])?)?;
        }
        let mut rtt = e.encode_descriptor("geomesh_bridge_site_rtt_seconds", "Round trip of the last Ping to the site's bridge", None, MetricType::Gauge)?;
        for (name, r) in &sites {
            if let Ok(us) = r {
                ConstGauge::new(*us as f64 / 1e6).encode(rtt.encode_family(&[("site", name.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// The exposition text of `shared`'s counters now.
pub fn render(shared: &Arc<Shared>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BridgeCollector(shared.clone())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        out = format!("# encoding failed: {e}\n");
    }
    out
}
