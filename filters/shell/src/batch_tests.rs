#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use geomesh_core::metrics::CommandStat;
use geomesh_core::WorkloadType;

use super::*;
use crate::stats::Recorded;

/// Envoy as these tests see it: the increments and values it was handed, by name.
#[derive(Default)]
struct Host {
    names: Vec<String>,
    /// (name, n) for every increment, (name, value) for every histogram value.
    calls: Vec<(String, u64)>,
}

impl MetricHost for Host {
    fn define(&mut self, _kind: MetricKind, name: &str) -> Option<u32> {
        self.names.push(name.to_owned());
        Some(self.names.len() as u32)
    }
    fn increment(&mut self, id: u32, n: u64) -> Recorded {
        self.calls.push((self.names[id as usize - 1].clone(), n));
        Recorded::Ok
    }
    fn record(&mut self, id: u32, value: u64) -> Recorded {
        self.calls
            .push((self.names[id as usize - 1].clone(), value));
        Recorded::Ok
    }
}

fn total() -> Metric {
    Metric::Command {
        family: "get",
        stat: CommandStat::Total,
    }
}

fn latency() -> Metric {
    Metric::Command {
        family: "get",
        stat: CommandStat::Latency,
    }
}

/// One request's metrics: a counter and a latency value.
fn request() -> Meter {
    let mut m = Meter::new();
    m.incr(total());
    m.add(latency(), 3);
    m
}

fn sum(host: &Host, name: &str) -> u64 {
    host.calls
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .sum()
}

const TOTAL: &str = "redis.p.command.get.total";
const LATENCY: &str = "redis.p.command.get.latency";

#[test]
fn a_quiet_root_hands_every_callback_over_at_once() {
    let stats = Rc::new(Stats::new(WorkloadType::Redis, "p", None));
    let (mut batch, mut reg, mut host) = (Batch::default(), Registry::default(), Host::default());
    // Fewer than BUSY_CALLBACKS per FLUSH_MS, for a long time.
    for i in 0..200u64 {
        let armed = batch.take_with(
            &stats,
            &mut request(),
            || i * FLUSH_MS / 10,
            &mut reg,
            &mut host,
        );
        assert!(!armed, "callback {i}");
        assert_eq!(sum(&host, TOTAL), i + 1, "exact after each callback");
    }
    assert!(!batch.is_batched());
}

#[test]
fn a_busy_root_holds_counters_until_its_timer_and_never_histogram_values() {
    let stats = Rc::new(Stats::new(WorkloadType::Redis, "p", None));
    let (mut batch, mut reg, mut host) = (Batch::default(), Registry::default(), Host::default());
    let mut armed = 0;
    for _ in 0..BUSY_CALLBACKS {
        armed += u32::from(batch.take_with(&stats, &mut request(), || 1000, &mut reg, &mut host));
    }
    assert_eq!(
        armed, 1,
        "the callback that reaches the threshold arms the timer"
    );
    assert!(batch.is_batched());
    let calls = host.calls.len();
    for _ in 0..1000 {
        assert!(!batch.take_with(
            &stats,
            &mut request(),
            || panic!("no clock while batching"),
            &mut reg,
            &mut host
        ));
    }
    // Only the latency values went to Envoy meanwhile, one by one.
    assert_eq!(host.calls.len() - calls, 1000);
    assert_eq!(sum(&host, TOTAL), u64::from(BUSY_CALLBACKS));
    // The timer: one increment for the 1000 requests; still busy.
    assert!(batch.tick_with(&mut reg, &mut host));
    assert_eq!(sum(&host, TOTAL), u64::from(BUSY_CALLBACKS) + 1000);
    assert_eq!(host.calls.last().unwrap(), &(TOTAL.to_owned(), 1000));
    assert_eq!(
        host.calls.iter().filter(|(n, _)| n == LATENCY).count(),
        BUSY_CALLBACKS as usize + 1000
    );
    // A quiet period: handed over, then at once again.
    batch.take_with(&stats, &mut request(), || 0, &mut reg, &mut host);
    assert!(!batch.tick_with(&mut reg, &mut host));
    assert_eq!(sum(&host, TOTAL), u64::from(BUSY_CALLBACKS) + 1001);
    batch.take_with(&stats, &mut request(), || 5000, &mut reg, &mut host);
    assert_eq!(sum(&host, TOTAL), u64::from(BUSY_CALLBACKS) + 1002);
}

#[test]
fn held_counters_keep_their_configuration() {
    let a = Rc::new(Stats::new(WorkloadType::Redis, "a", None));
    let b = Rc::new(Stats::new(WorkloadType::Redis, "b", None));
    let (mut batch, mut reg, mut host) = (Batch::default(), Registry::default(), Host::default());
    for _ in 0..BUSY_CALLBACKS {
        batch.take_with(&a, &mut request(), || 0, &mut reg, &mut host);
    }
    for s in [&a, &b, &b] {
        batch.take_with(s, &mut request(), || 0, &mut reg, &mut host);
    }
    batch.flush_with(&mut reg, &mut host);
    assert_eq!(
        sum(&host, "redis.a.command.get.total"),
        u64::from(BUSY_CALLBACKS) + 1
    );
    assert_eq!(sum(&host, "redis.b.command.get.total"), 2);
}

#[test]
fn a_busy_root_samples_histogram_values_after_its_first_period() {
    let stats = Rc::new(Stats::new(WorkloadType::Redis, "p", None));
    let (mut batch, mut reg, mut host) = (Batch::default(), Registry::default(), Host::default());
    for _ in 0..BUSY_CALLBACKS {
        batch.take_with(&stats, &mut request(), || 1000, &mut reg, &mut host);
    }
    let per_period = 20 * HISTOGRAM_VALUES;
    let latencies = |h: &Host| h.calls.iter().filter(|(n, _)| n == LATENCY).count() as u32;
    // The first busy period: every value.
    let before = latencies(&host);
    for _ in 0..per_period {
        batch.take_with(&stats, &mut request(), || 1000, &mut reg, &mut host);
    }
    assert_eq!(latencies(&host) - before, per_period);
    assert!(batch.tick_with(&mut reg, &mut host));
    // Later periods: about HISTOGRAM_VALUES each; counters stay exact.
    for period in 0..5u32 {
        let before = latencies(&host);
        for _ in 0..per_period {
            batch.take_with(&stats, &mut request(), || 1000, &mut reg, &mut host);
        }
        let kept = latencies(&host) - before;
        assert!(
            kept > HISTOGRAM_VALUES / 2 && kept < HISTOGRAM_VALUES * 2,
            "period {period}: {kept} values kept of {per_period}"
        );
        assert!(batch.tick_with(&mut reg, &mut host));
    }
    assert_eq!(
        sum(&host, TOTAL),
        u64::from(BUSY_CALLBACKS) + 6 * u64::from(per_period)
    );
    // Quiet again: every value at once.
    assert!(!batch.tick_with(&mut reg, &mut host));
    let before = latencies(&host);
    batch.take_with(&stats, &mut request(), || 9000, &mut reg, &mut host);
    assert_eq!(latencies(&host) - before, 1);
}
