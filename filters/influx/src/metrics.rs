//! The metrics the kit defines (`geomesh_core::Metric`, names in filters/shell/README.md),
//! recorded by this HTTP filter: per request type (`write`, `query`, `ping`, `health`, `debug`,
//! `other`) `command.<family>.total|success|error|latency` at the end of the stream (success:
//! a status below 400, as InfluxDB's clients read it; latency: milliseconds from the request's
//! headers to the end of the stream), per shard cluster `upstream.<cluster>.rq_total` for each
//! request forwarded or call sent and `rq_timeout` / `cx_refused` for a call the shard did not
//! answer (no answer, or Envoy's own 5xx without InfluxDB's version header: after its deadline
//! or a 504 / before it), and `splitter.split|broadcast|local` per plan. The filter's
//! own `influx.*` counters stay beside them.

use geomesh_core::metrics::{CommandStat, PipelineStat, UpstreamStat};
use geomesh_core::{ClusterId, UpstreamFailureKind};

use super::*;

/// The `response.code` property: Envoy gives integers as 8 little-endian bytes.
fn response_code(bytes: &[u8]) -> Option<u16> {
    let raw: [u8; 8] = bytes.try_into().ok()?;
    u16::try_from(i64::from_le_bytes(raw)).ok()
}

impl InfluxHttp {
    fn record(&self, metric: Metric, n: u64) {
        if let Some(stats) = &self.stats {
            stats.record(metric, n);
        }
    }

    /// A request forwarded, or a call sent, to `cluster`.
    pub(crate) fn count_upstream(&self, cluster: ClusterId) {
        self.record(
            Metric::Upstream {
                cluster,
                stat: UpstreamStat::Requests,
            },
            1,
        );
    }

    /// A call to `cluster` that got no answer: a timeout once its deadline passed, otherwise a
    /// connection that failed.
    pub(crate) fn count_no_answer(&self, cluster: ClusterId, timed_out: bool) {
        let stat = if timed_out {
            UpstreamStat::Timeouts
        } else {
            UpstreamStat::Failure(UpstreamFailureKind::Refused)
        };
        self.record(Metric::Upstream { cluster, stat }, 1);
    }

    pub(crate) fn count_pipeline(&self, stat: PipelineStat) {
        self.record(Metric::Pipeline(stat), 1);
    }

    /// The request's `command.<family>.*`, once, at the end of the stream.
    pub(crate) fn record_request(&mut self) {
        let Some(started) = self.started.take() else {
            return;
        };
        let status = self
            .get_property(vec!["response", "code"])
            .and_then(|b| response_code(&b))
            .or_else(|| {
                self.get_http_response_header_bytes(":status")
                    .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
            });
        let family = self.family;
        let command = |stat| Metric::Command { family, stat };
        self.record(command(CommandStat::Total), 1);
        let ok = status.is_some_and(|s| s < 400);
        self.record(
            command(if ok {
                CommandStat::Success
            } else {
                CommandStat::Error
            }),
            1,
        );
        let ms = self
            .get_current_time()
            .duration_since(started)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.record(command(CommandStat::Latency), ms);
    }
}
