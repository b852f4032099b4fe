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
//! Recording is cheap (a counter is summed into its entry among the few distinct ones
//! recorded since the last drain, a histogram value pushed onto a reused vector; names are
//! built by the host once per distinct metric), so sessions record on their hot path.

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
    /// Every stat (a host that must define its stats up front lists them from here).
    pub const ALL: [CommandStat; 4] = [Self::Total, Self::Success, Self::Error, Self::Latency];

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
    /// Every stat (a host that must define its stats up front lists them from here).
    pub const ALL: [UpstreamStat; 12] = [
        Self::Requests,
        Self::Timeouts,
        Self::Failure(UpstreamFailureKind::Local),
        Self::Failure(UpstreamFailureKind::Eof),
        Self::Failure(UpstreamFailureKind::Refused),
        Self::Failure(UpstreamFailureKind::ConnectTimeout),
        Self::Failure(UpstreamFailureKind::Stalled),
        Self::Failure(UpstreamFailureKind::UnknownTarget),
        Self::Failure(UpstreamFailureKind::SiteUnreachable),
        Self::Failure(UpstreamFailureKind::Io),
        Self::Failure(UpstreamFailureKind::Overflow),
        Self::Failure(UpstreamFailureKind::BridgeLost),
    ];

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
    /// Every stat (a host that must define its stats up front lists them from here).
    pub const ALL: [PipelineStat; 7] =
        [Self::Split, Self::Broadcast, Self::Replayed, Self::Local, Self::InvalidRequest, Self::Unsupported, Self::Pushed];

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

/// What a host counts about its configuration (not a session's: the shell records these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigStat {
    /// A configuration was accepted (the first one included).
    Reload,
    /// A configuration was rejected (the filter keeps the previous one, or refuses connections).
    Rejected,
}

impl ConfigStat {
    fn name(self) -> &'static str {
        match self {
            Self::Reload => "reload",
            Self::Rejected => "rejected",
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
    /// Configurations accepted and rejected (recorded by the host shell).
    Config(ConfigStat),
    /// A counter of one filter's own (`group` `scope`, `name` `decision.local`): for what has no
    /// counterpart above, so that every filter's names are built and drained the same way.
    Event { group: &'static str, name: &'static str },
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
    /// * `splitter.split|broadcast|replayed|local|invalid_request|unsupported_command|pushed`,
    /// * `config.reload|rejected`,
    /// * `<group>.<name>` for an [`Metric::Event`].
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
            Metric::Config(c) => format!("{workload}.{stat_prefix}.config.{}", c.name()),
            Metric::Event { group, name } => format!("{workload}.{stat_prefix}.{group}.{name}"),
        }
    }
}

/// The metrics one session recorded since the host last drained them.
///
/// Counters are summed as they are recorded (one entry per distinct counter, whatever the
/// number of requests), so a host makes one host call per counter and callback; histogram
/// values are kept one by one. Both are bounded: a host that never drains (a native test)
/// does not grow memory without bound.
#[derive(Debug, Default)]
pub struct Meter {
    /// Distinct counters and their sums, in the order first recorded.
    counters: Vec<(Metric, u64)>,
    /// Histogram values, in the order recorded.
    samples: Vec<(Metric, u64)>,
    /// Records refused because a bound was reached.
    dropped: u64,
}

/// Distinct counters kept between drains; a new one beyond is dropped (and counted).
const MAX_COUNTERS: usize = 1024;
/// Histogram values kept between drains; later ones are dropped (and counted).
const MAX_SAMPLES: usize = 8192;

impl Meter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to a counter, or records the value `n` in a histogram.
    pub fn add(&mut self, metric: Metric, n: u64) {
        match metric.kind() {
            MetricKind::Histogram => {
                if self.samples.len() < MAX_SAMPLES {
                    self.samples.push((metric, n));
                } else {
                    self.dropped = self.dropped.saturating_add(1);
                }
            }
            MetricKind::Counter => {
                // Latest first: a session records the same few counters over and over.
                if let Some(entry) = self.counters.iter_mut().rev().find(|(m, _)| *m == metric) {
                    entry.1 = entry.1.saturating_add(n);
                } else if self.counters.len() < MAX_COUNTERS {
                    self.counters.push((metric, n));
                } else {
                    self.dropped = self.dropped.saturating_add(1);
                }
            }
        }
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
        self.counters.is_empty() && self.samples.is_empty()
    }

    /// The sum of counter `metric` (or the number of values of histogram `metric`) recorded
    /// since the last drain: for tests of what a session counts.
    pub fn count(&self, metric: &Metric) -> u64 {
        match metric.kind() {
            MetricKind::Counter => self.counters.iter().filter(|(m, _)| m == metric).map(|(_, n)| *n).sum(),
            MetricKind::Histogram => self.samples.iter().filter(|(m, _)| m == metric).count() as u64,
        }
    }

    /// Records refused since the meter was made because a bound was reached (a host that
    /// drains after every callback sees none unless one callback answers more than 8192
    /// requests: then the latency values beyond are dropped, never a counter's sum).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Hands every entry to the host and forgets them: each distinct counter once with its sum
    /// (in the order first recorded), then the histogram values in the order recorded.
    pub fn drain(&mut self) -> impl Iterator<Item = (Metric, u64)> + '_ {
        self.counters.drain(..).chain(self.samples.drain(..))
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
        assert_eq!(Metric::Config(ConfigStat::Reload).stat_name("redis", "p", &name), "redis.p.config.reload");
        let event = Metric::Event { group: "scope", name: "decision.local" };
        assert_eq!(event.stat_name("http", "p", &name), "http.p.scope.decision.local");
        assert_eq!(event.kind(), MetricKind::Counter);
    }

    #[test]
    fn a_meter_is_drained_and_bounded() {
        let mut m = Meter::new();
        m.request("get");
        m.answered("get", true, 3);
        assert_eq!(m.drain().count(), 3);
        assert!(m.is_empty());
        for _ in 0..(MAX_SAMPLES * 2 + 5) {
            m.request("get");
            m.answered("get", true, 1);
        }
        // Counters are summed exactly, however many; histogram values are bounded.
        let total = Metric::Command { family: "get", stat: CommandStat::Total };
        let latency = Metric::Command { family: "get", stat: CommandStat::Latency };
        assert_eq!(m.count(&total), (MAX_SAMPLES * 2 + 5) as u64);
        assert_eq!(m.count(&latency), MAX_SAMPLES as u64);
        assert_eq!(m.dropped(), (MAX_SAMPLES + 5) as u64);
        assert_eq!(m.drain().count(), 2 + MAX_SAMPLES);
        for i in 0..(MAX_COUNTERS + 1) {
            m.upstream(ClusterId(i as u16), UpstreamStat::Requests);
        }
        assert_eq!(m.drain().count(), MAX_COUNTERS);
        assert_eq!(m.dropped(), (MAX_SAMPLES + 6) as u64);
    }

    #[test]
    fn counters_are_summed_and_drained_before_values() {
        let mut m = Meter::new();
        let split = Metric::Pipeline(PipelineStat::Split);
        m.request("mget");
        m.pipeline(PipelineStat::Split);
        m.upstream(ClusterId(0), UpstreamStat::Requests);
        m.upstream(ClusterId(1), UpstreamStat::Requests);
        m.answered("mget", true, 4);
        m.request("mget");
        m.pipeline(PipelineStat::Split);
        m.answered("mget", false, 7);
        m.add(split, 3);
        assert_eq!(m.count(&split), 5);
        let got: Vec<(Metric, u64)> = m.drain().collect();
        let cmd = |stat| Metric::Command { family: "mget", stat };
        assert_eq!(
            got,
            vec![
                (cmd(CommandStat::Total), 2),
                (split, 5),
                (Metric::Upstream { cluster: ClusterId(0), stat: UpstreamStat::Requests }, 1),
                (Metric::Upstream { cluster: ClusterId(1), stat: UpstreamStat::Requests }, 1),
                (cmd(CommandStat::Success), 1),
                (cmd(CommandStat::Error), 1),
                (cmd(CommandStat::Latency), 4),
                (cmd(CommandStat::Latency), 7),
            ]
        );
    }
}
