//! What a session counts, without IO: the sans-IO side of the filters' metrics.
//!
//! A session records [`Metric`]s in its [`Meter`] as it handles bytes; after each callback the
//! host drains the meter into Envoy's stats through the Proxy-Wasm metrics ABI
//! (`define_metric` once per name and root context, then `increment_metric` /
//! `record_metric`). The names ([`Metric::stat_name`]) follow Envoy's native `redis_proxy`
//! where it has a counterpart (`redis.<stat_prefix>.command.get.total`,
//! `redis.<stat_prefix>.splitter.invalid_request`), so existing dashboards fit; every workload
//! uses the same shape under its own first segment (`mqtt.<stat_prefix>.command.publish.total`).
//!
//! Recording is cheap (a push onto a reused vector; names are built by the host once per
//! distinct metric), so sessions record on their hot path.

use crate::route::ClusterId;
use crate::session::UpstreamFailureKind;

/// Counter or histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Histogram,
}

/// What is measured of one request type (a Redis command, an MQTT packet type, a Kafka API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandStat {
    /// Requests received.
    Total,
    /// Requests answered with a success.
    Success,
    /// Requests answered with an error (from a server, or from the proxy).
    Error,
    /// Milliseconds from the request to its answer being ready (a histogram).
    Latency,
}

impl CommandStat {
    fn name(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::Success => "success",
            Self::Error => "error",
            Self::Latency => "latency",
        }
    }
}

/// What is measured per upstream cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamStat {
    /// Requests (or parts of requests) sent to the cluster.
    Requests,
    /// Requests the cluster did not answer within their deadline.
    Timeouts,
    /// Connections to the cluster that failed, by the bridge's close code.
    Failure(UpstreamFailureKind),
}

impl UpstreamStat {
    fn name(self) -> &'static str {
        match self {
            Self::Requests => "rq_total",
            Self::Timeouts => "rq_timeout",
            Self::Failure(kind) => match kind {
                UpstreamFailureKind::Local => "cx_closed_local",
                UpstreamFailureKind::Eof => "cx_closed_eof",
                UpstreamFailureKind::Refused => "cx_refused",
                UpstreamFailureKind::ConnectTimeout => "cx_connect_timeout",
                UpstreamFailureKind::Stalled => "cx_stalled",
                UpstreamFailureKind::UnknownTarget => "cx_unknown_target",
                UpstreamFailureKind::SiteUnreachable => "cx_site_unreachable",
                UpstreamFailureKind::Io => "cx_io_error",
                UpstreamFailureKind::Overflow => "cx_overflow",
                UpstreamFailureKind::BridgeLost => "cx_bridge_lost",
            },
        }
    }
}

/// What the shared pipeline counts, whatever the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PipelineStat {
    /// Requests split into one part per cluster.
    Split,
    /// Requests sent to every active cluster.
    Broadcast,
    /// Stored session requests replayed on a newly opened connection.
    Replayed,
    /// Requests answered by the proxy itself.
    Local,
    /// Client bytes that do not decode (Envoy's `splitter.invalid_request`).
    InvalidRequest,
    /// Requests refused as not supported through the proxy (`splitter.unsupported_command`).
    Unsupported,
    /// Messages a server pushed unasked (pub/sub) delivered to the client.
    Pushed,
}

impl PipelineStat {
    fn name(self) -> &'static str {
        match self {
            Self::Split => "split",
            Self::Broadcast => "broadcast",
            Self::Replayed => "replayed",
            Self::Local => "local",
            Self::InvalidRequest => "invalid_request",
            Self::Unsupported => "unsupported_command",
            Self::Pushed => "pushed",
        }
    }
}

/// One metric a session records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `<family>` is the request type, lower case (`get`, `publish`, `produce`).
    Command { family: &'static str, stat: CommandStat },
    /// Per upstream cluster (a table cluster; endpoint links count under their cluster).
    Upstream { cluster: ClusterId, stat: UpstreamStat },
    /// Per session, whatever the request.
    Pipeline(PipelineStat),
}

impl Metric {
    /// Counter or histogram.
    pub fn kind(&self) -> MetricKind {
        match self {
            Metric::Command {
                stat: CommandStat::Latency,
                ..
            } => MetricKind::Histogram,
            _ => MetricKind::Counter,
        }
    }

    /// The stat name: `<workload>.<stat_prefix>.` then
    /// * `command.<family>.total|success|error|latency`,
    /// * `upstream.<cluster>.rq_total|rq_timeout|cx_refused|...`,
    /// * `splitter.split|broadcast|replayed|local|invalid_request|unsupported_command|pushed`.
    ///
    /// `cluster_name` names a cluster id (the host's current routing table). Dots in names are
    /// kept: Envoy's stats treat them as separators, as in its own `cluster.<name>.` stats.
    pub fn stat_name(&self, workload: &str, stat_prefix: &str, cluster_name: &dyn Fn(ClusterId) -> String) -> String {
        match self {
            Metric::Command { family, stat } => {
                format!("{workload}.{stat_prefix}.command.{family}.{}", stat.name())
            }
            Metric::Upstream { cluster, stat } => {
                format!("{workload}.{stat_prefix}.upstream.{}.{}", cluster_name(*cluster), stat.name())
            }
            Metric::Pipeline(p) => format!("{workload}.{stat_prefix}.splitter.{}", p.name()),
        }
    }
}

/// The metrics one session recorded since the host last drained them.
#[derive(Debug, Default)]
pub struct Meter {
    entries: Vec<(Metric, u64)>,
}

/// Entries kept before the oldest are coalesced away: a host that never drains (a native test)
/// must not grow memory without bound.
const MAX_ENTRIES: usize = 4096;

impl Meter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to a counter, or records the value `n` in a histogram.
    pub fn add(&mut self, metric: Metric, n: u64) {
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.push((metric, n));
    }

    /// Adds one to a counter.
    pub fn incr(&mut self, metric: Metric) {
        self.add(metric, 1);
    }

    /// Counts one request of type `family` (its total).
    pub fn request(&mut self, family: &'static str) {
        self.incr(Metric::Command {
            family,
            stat: CommandStat::Total,
        });
    }

    /// Counts the answer to one request of type `family`: success or error, and its latency.
    pub fn answered(&mut self, family: &'static str, ok: bool, latency_ms: u64) {
        let stat = if ok { CommandStat::Success } else { CommandStat::Error };
        self.incr(Metric::Command { family, stat });
        self.add(
            Metric::Command {
                family,
                stat: CommandStat::Latency,
            },
            latency_ms,
        );
    }

    /// Counts a pipeline event.
    pub fn pipeline(&mut self, stat: PipelineStat) {
        self.incr(Metric::Pipeline(stat));
    }

    /// Counts an upstream event.
    pub fn upstream(&mut self, cluster: ClusterId, stat: UpstreamStat) {
        self.incr(Metric::Upstream { cluster, stat });
    }

    /// True when nothing was recorded since the last drain.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hands every entry to the host, oldest first, and forgets them.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (Metric, u64)> {
        self.entries.drain(..)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn names_follow_envoys_redis_proxy() {
        let name = |c: ClusterId| format!("c{}", c.0);
        let m = Metric::Command {
            family: "get",
            stat: CommandStat::Total,
        };
        assert_eq!(m.stat_name("redis", "geomesh", &name), "redis.geomesh.command.get.total");
        assert_eq!(m.kind(), MetricKind::Counter);
        let l = Metric::Command {
            family: "mget",
            stat: CommandStat::Latency,
        };
        assert_eq!(l.kind(), MetricKind::Histogram);
        assert_eq!(
            Metric::Pipeline(PipelineStat::InvalidRequest).stat_name("redis", "p", &name),
            "redis.p.splitter.invalid_request"
        );
        assert_eq!(
            Metric::Upstream {
                cluster: ClusterId(2),
                stat: UpstreamStat::Failure(UpstreamFailureKind::Refused)
            }
            .stat_name("mqtt", "p", &name),
            "mqtt.p.upstream.c2.cx_refused"
        );
    }

    #[test]
    fn a_meter_is_drained_and_bounded() {
        let mut m = Meter::new();
        m.request("get");
        m.answered("get", true, 3);
        assert_eq!(m.drain().count(), 3);
        assert!(m.is_empty());
        for _ in 0..(MAX_ENTRIES * 2 + 5) {
            m.request("get");
        }
        assert!(m.drain().count() <= MAX_ENTRIES);
    }
}
