//! Counters batched across callbacks while a VM is busy.
//!
//! Each `increment_metric` is a host call, and a request through a network filter records
//! three or four counters (`command.<family>.total`, `upstream.<cluster>.rq_total`,
//! `command.<family>.success` ...): measured with `bench-redis`, draining them after every
//! callback cost Envoy about as much CPU per non-pipelined request as the rest of the Wasm
//! filter's own code. So a root context counts the callbacks that recorded something: below
//! [`BUSY_CALLBACKS`] in [`FLUSH_MS`] every callback hands its metrics to Envoy at once (a
//! client of a quiet proxy, or a test, reads exact counters as soon as it has its answer);
//! above, counters are summed here and handed over by the root's timer every [`FLUSH_MS`]
//! (one host call per distinct counter per period, whatever the request rate), until a period
//! sees fewer callbacks again. What is held when a VM stops (at most [`FLUSH_MS`] of counts)
//! is lost; a root context that ends hands its counts over first.
//!
//! Histogram values cannot be summed (Envoy takes them one by one, the ABI has no count), and
//! one `record_metric` per request was the largest host cost left: measured with `bench-mqtt`
//! (QoS 1, one publisher, `--baseline-wasm`), about 1 µs of Envoy CPU per message, a tenth of
//! Envoy's whole cost there. So while busy, a histogram gets at most about
//! [`HISTOGRAM_VALUES`] values per [`FLUSH_MS`]: each value is kept with probability 1/k,
//! k set at each tick from how many values that histogram saw in the period before (a random
//! choice, not every k-th value, so that values alternating between two kinds of request,
//! e.g. two shards, are sampled alike). Percentiles stay those of the traffic; the
//! histogram's sample count is then a sample count (the request count is `…total`). The first
//! period of a busy spell, and a quiet root, hand every value over.

use std::rc::Rc;

use geomesh_core::metrics::MetricKind;
use geomesh_core::{Meter, Metric, Millis};

use crate::stats::{self, MetricHost, Registry, Stats};

/// How long counters may be held while busy (and the timer's period then).
pub const FLUSH_MS: u64 = 100;
/// Callbacks recording metrics within [`FLUSH_MS`] from which counters are held (500/s).
pub const BUSY_CALLBACKS: u32 = 50;
/// Distinct counters held per configuration; beyond, a counter is handed over at once.
const MAX_HELD: usize = 1024;
/// Histogram values handed over per histogram and [`FLUSH_MS`] while busy, about.
pub const HISTOGRAM_VALUES: u32 = 200;

/// The counters held for one configuration's [`Stats`], with their sums.
type Held = (Rc<Stats>, Vec<(Metric, u64)>);

/// One root context's held counters and load (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    batched: bool,
    window_start: Millis,
    callbacks: u32,
    held: Vec<Held>,
    /// Histograms sampled while busy: (configuration, histogram, values seen this period,
    /// 1 in how many is kept).
    sampled: Vec<(Rc<Stats>, Metric, u32, u32)>,
    /// xorshift64 state for the sampling (never 0).
    rng: u64,
}

impl Batch {
    /// True while counters are held (the root's timer must run every [`FLUSH_MS`]).
    pub fn is_batched(&self) -> bool {
        self.batched
    }

    /// Takes what one callback recorded in `meter` (for `stats`); `now` is read only when
    /// not batching. True when this callback made the root start batching.
    pub fn take(
        &mut self,
        stats: &Rc<Stats>,
        meter: &mut Meter,
        now: impl FnOnce() -> Millis,
    ) -> bool {
        if meter.is_empty() {
            return false;
        }
        stats::with_envoy(|registry, host| self.take_with(stats, meter, now, registry, host))
    }

    /// The root's timer: hands the held counters over; false once the load has dropped (the
    /// timer may stop).
    pub fn tick(&mut self) -> bool {
        stats::with_envoy(|registry, host| self.tick_with(registry, host))
    }

    /// Hands the held counters over (the root context ends).
    pub fn flush(&mut self) {
        if !self.held.is_empty() {
            stats::with_envoy(|registry, host| self.flush_with(registry, host));
        }
    }

    pub(crate) fn take_with(
        &mut self,
        stats: &Rc<Stats>,
        meter: &mut Meter,
        now: impl FnOnce() -> Millis,
        registry: &mut Registry,
        host: &mut impl MetricHost,
    ) -> bool {
        if !self.batched {
            stats.drain_with(meter, registry, host);
            let now = now();
            if now.saturating_sub(self.window_start) >= FLUSH_MS {
                self.window_start = now;
                self.callbacks = 0;
            }
            self.callbacks = self.callbacks.saturating_add(1);
            if self.callbacks >= BUSY_CALLBACKS {
                self.batched = true;
                self.callbacks = 0;
                return true;
            }
            return false;
        }
        self.callbacks = self.callbacks.saturating_add(1);
        let at = match self.held.iter().position(|(s, _)| Rc::ptr_eq(s, stats)) {
            Some(i) => i,
            None => {
                self.held.push((stats.clone(), Vec::new()));
                self.held.len() - 1
            }
        };
        for (metric, n) in meter.drain() {
            let held = self.held.get_mut(at).map(|(_, h)| h);
            match (metric.kind(), held) {
                (MetricKind::Counter, Some(held)) => {
                    if let Some(entry) = held.iter_mut().find(|(m, _)| *m == metric) {
                        entry.1 = entry.1.saturating_add(n);
                    } else if held.len() < MAX_HELD {
                        held.push((metric, n));
                    } else {
                        stats.record_with(metric, n, registry, host);
                    }
                }
                _ => {
                    if self.keep_value(stats, metric) {
                        stats.record_with(metric, n, registry, host);
                    }
                }
            }
        }
        false
    }

    /// Whether a histogram value recorded while busy is handed over (see the module
    /// documentation).
    fn keep_value(&mut self, stats: &Rc<Stats>, metric: Metric) -> bool {
        let at = match self
            .sampled
            .iter()
            .position(|(s, m, _, _)| *m == metric && Rc::ptr_eq(s, stats))
        {
            Some(i) => i,
            None if self.sampled.len() < MAX_HELD => {
                self.sampled.push((stats.clone(), metric, 0, 1));
                self.sampled.len() - 1
            }
            None => return true,
        };
        let Some(entry) = self.sampled.get_mut(at) else {
            return true;
        };
        entry.2 = entry.2.saturating_add(1);
        let k = u64::from(entry.3);
        if k <= 1 {
            return true;
        }
        if self.rng == 0 {
            self.rng = 0x9E37_79B9_7F4A_7C15 ^ self.window_start;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % k == 0
    }

    pub(crate) fn tick_with(
        &mut self,
        registry: &mut Registry,
        host: &mut impl MetricHost,
    ) -> bool {
        self.flush_with(registry, host);
        // Each histogram's share for the next period, from what it saw in this one.
        self.sampled.retain_mut(|(_, _, seen, k)| {
            *k = seen.div_ceil(HISTOGRAM_VALUES).max(1);
            std::mem::replace(seen, 0) > 0
        });
        if self.callbacks < BUSY_CALLBACKS {
            self.batched = false;
            self.window_start = 0;
            self.sampled.clear();
        }
        self.callbacks = 0;
        self.batched
    }

    pub(crate) fn flush_with(&mut self, registry: &mut Registry, host: &mut impl MetricHost) {
        for (stats, held) in self.held.drain(..) {
            for (metric, n) in held {
                stats.record_with(metric, n, registry, host);
            }
        }
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
