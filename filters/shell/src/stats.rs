//! Envoy's side of the filters' metrics: what a session (or a filter) recorded in a
//! [`Meter`] goes into Envoy's stats through the Proxy-Wasm metrics ABI.
//!
//! * **Names** are [`Metric::stat_name`]: `<workload>.<stat_prefix>.command.get.total`, the
//!   cluster part of upstream metrics named from the routing table of the configuration the
//!   [`Stats`] belongs to. Envoy shows them under its `wasmcustom.` namespace in `/stats` and
//!   without it in `/stats/prometheus` (README.md, "Metrics").
//! * **Ids** are defined once per name and VM (`define_metric`), lazily, the first time a
//!   metric is recorded: Envoy keeps a VM's metric ids in that VM (its `Wasm` object), so a
//!   name defined by one root context serves every other root context of the VM (a
//!   configuration reloaded by ECDS, another plugin) without a second `define_metric`. Each
//!   [`Stats`] (one per loaded configuration) keeps its own [`Metric`] -> id map, so the hot
//!   path builds no name and hashes no string.
//! * **Host calls**: one `increment_metric` per distinct counter and callback (the meter sums
//!   a counter's increments as they are recorded), one `record_metric` per histogram value, and
//!   none at all for a callback that recorded nothing.
//!
//! Usable by every filter: a network filter gets this through the shell (each [`Loaded`]
//! configuration has its [`Stats`], drained after each callback); an HTTP filter makes a
//! [`Stats`] from its configuration and calls [`Stats::record`] or [`Stats::drain`].
//!
//! [`Loaded`]: crate::Loaded

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use geomesh_core::config::DEFAULT_STAT_PREFIX;
use geomesh_core::metrics::{ConfigStat, MetricKind};
use geomesh_core::{ClusterId, Config, Meter, Metric, RoutingTable, Session, WorkloadType};
use proxy_wasm::hostcalls;
use rustc_hash::FxHashMap;
use proxy_wasm::types::{MetricType, Status};

/// Distinct stat names one VM defines at most; a metric beyond is not recorded (logged once).
/// The vocabulary is bounded (request types x 4, clusters x 13, a few more) but every
/// `stat_prefix` a reload brings adds its own names.
pub const MAX_NAMES: usize = 16384;

/// Name for the cluster part of an upstream metric whose cluster the table does not name.
const UNKNOWN_CLUSTER: &str = "unknown";

/// The metric host calls, behind a trait so that the bookkeeping is tested natively.
pub(crate) trait MetricHost {
    /// `define_metric`: the id of a new (or known) metric.
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32>;
    /// `increment_metric(id, n)`, `n` > 0.
    fn increment(&mut self, id: u32, n: u64) -> Recorded;
    /// `record_metric(id, value)`.
    fn record(&mut self, id: u32, value: u64) -> Recorded;
}

/// What the host did with an increment or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    Ok,
    /// The host does not know the id (it was defined in another VM): define it again.
    UnknownId,
    /// Refused otherwise; dropped.
    Refused,
}

/// Envoy, through the SDK's `hostcalls`.
///
/// Envoy 1.40 answers `define_metric` `Ok` (`BadArgument` only for a metric type other than
/// counter, gauge or histogram, and `InvalidMemoryAccess` only for a name outside the VM's
/// memory: neither can happen with the arguments below, and those two are the statuses on
/// which `hostcalls::define_metric` would panic); `increment_metric` `Ok`, `NotFound` (an id it
/// does not know) or `BadArgument` (an offset <= 0 for a counter); `record_metric` `Ok` or
/// `NotFound`. Every one of those is handled.
pub(crate) struct Envoy;

impl MetricHost for Envoy {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment(&mut self, id: u32, n: u64) -> Recorded {
        outcome(hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX)))
    }

    fn record(&mut self, id: u32, value: u64) -> Recorded {
        outcome(hostcalls::record_metric(id, value))
    }
}

fn outcome(r: Result<(), Status>) -> Recorded {
    match r {
        Ok(()) => Recorded::Ok,
        Err(Status::NotFound) => Recorded::UnknownId,
        Err(_) => Recorded::Refused,
    }
}

/// The names this VM defined, and their ids.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    ids: HashMap<String, u32>,
    full_logged: bool,
}

impl Registry {
    fn id(&mut self, host: &mut impl MetricHost, kind: MetricKind, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        if self.ids.len() >= MAX_NAMES {
            if !self.full_logged {
                self.full_logged = true;
                log::warn!("geomesh: {MAX_NAMES} metric names defined in this VM; `{name}` and later new ones are not recorded");
            }
            return None;
        }
        let id = host.define(kind, name)?;
        self.ids.insert(name.to_owned(), id);
        Some(id)
    }

    fn forget(&mut self, name: &str) {
        self.ids.remove(name);
    }
}

thread_local! {
    /// One per VM (a VM runs on one thread).
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// Runs `f` with this VM's registry and Envoy as the metric host.
pub(crate) fn with_envoy<R>(f: impl FnOnce(&mut Registry, &mut Envoy) -> R) -> R {
    REGISTRY.with(|r| f(&mut r.borrow_mut(), &mut Envoy))
}

/// Where one configuration's metrics go: its workload and `stat_prefix` (the first two
/// segments of every name), its routing table (cluster names), and the ids of the metrics it
/// recorded so far.
#[derive(Debug)]
pub struct Stats {
    workload: &'static str,
    stat_prefix: String,
    table: Option<Rc<RoutingTable>>,
    ids: RefCell<FxHashMap<Metric, u32>>,
}

impl Stats {
    /// Metrics named `<workload>.<stat_prefix>.…`; upstream metrics name their cluster from
    /// `table` (`None`: a filter without one, e.g. an HTTP filter).
    pub fn new(workload: WorkloadType, stat_prefix: &str, table: Option<Rc<RoutingTable>>) -> Self {
        Self {
            workload: workload.name(),
            stat_prefix: stat_prefix.to_owned(),
            table,
            ids: RefCell::new(FxHashMap::default()),
        }
    }

    /// The `stat_prefix` of the names.
    pub fn stat_prefix(&self) -> &str {
        &self.stat_prefix
    }

    /// The full stat name of `metric` (as defined with Envoy, before its `wasmcustom.`).
    pub fn name(&self, metric: &Metric) -> String {
        let table = self.table.as_deref();
        let cluster = |id: ClusterId| {
            let name = table.map(|t| t.cluster_name(id)).unwrap_or_default();
            if name.is_empty() { UNKNOWN_CLUSTER } else { name }.to_owned()
        };
        metric.stat_name(self.workload, &self.stat_prefix, &cluster)
    }

    /// Hands what `session` recorded to Envoy (no host call if it recorded nothing).
    pub fn drain_session<S: Session + ?Sized>(&self, session: &mut S) {
        if let Some(meter) = session.meter() {
            self.drain(meter);
        }
    }

    /// Hands every entry of `meter` to Envoy and empties it.
    pub fn drain(&self, meter: &mut Meter) {
        if meter.is_empty() {
            return;
        }
        REGISTRY.with(|r| self.drain_with(meter, &mut r.borrow_mut(), &mut Envoy));
    }

    /// Adds `n` to a counter (or records the value `n` in a histogram) at once, without a
    /// meter: for a host's own events (a configuration loaded, a request decided).
    pub fn record(&self, metric: Metric, n: u64) {
        REGISTRY.with(|r| self.record_with(metric, n, &mut r.borrow_mut(), &mut Envoy));
    }

    /// Defines `metric` now, so that Envoy shows it (at 0) before anything is recorded: for
    /// the few counters an alert watches (`config.rejected`), or a filter's fixed set.
    pub fn define(&self, metric: Metric) {
        REGISTRY.with(|r| {
            let _ = self.id(metric, &mut r.borrow_mut(), &mut Envoy);
        });
    }

    pub(crate) fn drain_with(&self, meter: &mut Meter, registry: &mut Registry, host: &mut impl MetricHost) {
        for (metric, n) in meter.drain() {
            self.record_with(metric, n, registry, host);
        }
    }

    pub(crate) fn record_with(&self, metric: Metric, n: u64, registry: &mut Registry, host: &mut impl MetricHost) {
        let kind = metric.kind();
        if kind == MetricKind::Counter && n == 0 {
            return;
        }
        // Twice at most: a second time if the host did not know a cached id (a VM whose memory
        // was copied from another one would hold that one's ids).
        for _ in 0..2 {
            let Some(id) = self.id(metric, registry, host) else {
                return;
            };
            let done = match kind {
                MetricKind::Counter => host.increment(id, n),
                MetricKind::Histogram => host.record(id, n),
            };
            if done != Recorded::UnknownId {
                return;
            }
            self.ids.borrow_mut().remove(&metric);
            registry.forget(&self.name(&metric));
        }
    }

    fn id(&self, metric: Metric, registry: &mut Registry, host: &mut impl MetricHost) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(&metric) {
            return Some(*id);
        }
        let id = registry.id(host, metric.kind(), &self.name(&metric))?;
        let mut ids = self.ids.borrow_mut();
        if ids.len() < MAX_NAMES {
            ids.insert(metric, id);
        }
        Some(id)
    }
}

/// Counts an accepted configuration (`<workload>.<stat_prefix>.config.reload`) once per Envoy,
/// not once per VM, and remembers its `stat_prefix` for the rejections of plugin `plugin`.
///
/// Envoy 1.40 configures every accepted configuration in `--concurrency` + 2 VMs (a new base
/// VM on the main thread, which checks it, then one per thread: the main thread's and each
/// worker's); the first of them counts it: the FNV-1a hash of the text, followed by its
/// `stat_prefix`, goes into Proxy-Wasm shared data (`geomesh.config.<plugin>`, shared by every VM
/// with the same `vm_id`, and the only memory that outlives a base VM) with a compare-and-swap,
/// and a VM that finds that value there counts nothing. So an update to the very same text
/// counts nothing either; a rollback to an earlier text counts.
pub fn count_accepted(stats: &Stats, plugin: &str, text: &[u8]) {
    // Shown at 0 from the start: an alert on its increase then fires on the first rejection.
    stats.define(Metric::Config(ConfigStat::Rejected));
    let mut value = fnv1a(text).to_vec();
    value.extend_from_slice(stats.stat_prefix().as_bytes());
    if first_to_see(&mut EnvoySharedData, &config_key(plugin), &value) {
        stats.record(Metric::Config(ConfigStat::Reload), 1);
    }
}

/// Counts a rejected configuration of plugin `plugin` (`<workload>.<prefix>.config.rejected`)
/// under [`rejected_prefix`] (the prefix in use: the one [`count_accepted`] last stored for the
/// plugin), and returns the [`Stats`] it counted under (for what a filter left without
/// configuration answers). Envoy 1.40 checks an update in its base VM only and drops it there,
/// so each rejected update counts once.
pub fn count_rejected(workload: WorkloadType, plugin: &str, text: &[u8]) -> Stats {
    let current = current_prefix(&mut EnvoySharedData, &config_key(plugin));
    let stats = Stats::new(workload, &rejected_prefix(text, current.as_deref()), None);
    stats.record(Metric::Config(ConfigStat::Rejected), 1);
    stats
}

/// The `stat_prefix` a rejected configuration counts under: the one its text names if that can
/// be read and is valid (the configuration was rejected for another field), else `current`
/// (the configuration the filter keeps using), else the default `geomesh`.
pub fn rejected_prefix(text: &[u8], current: Option<&str>) -> String {
    Config::stat_prefix_of(text)
        .or_else(|| current.map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_STAT_PREFIX.to_owned())
}

fn config_key(plugin: &str) -> String {
    format!("geomesh.config.{plugin}")
}

/// 64-bit FNV-1a: the same in every VM of the binary, no key.
fn fnv1a(bytes: &[u8]) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.to_le_bytes()
}

/// The `stat_prefix` stored after the hash under `key`, if any.
pub(crate) fn current_prefix(data: &mut impl SharedData, key: &str) -> Option<String> {
    let (value, _) = data.get(key)?;
    let prefix = value?.get(8..)?.to_vec();
    String::from_utf8(prefix).ok().filter(|p| !p.is_empty())
}

/// Proxy-Wasm shared data, as [`first_to_see`] uses it.
pub(crate) trait SharedData {
    /// The value and its compare-and-swap token (`None`, `None`: no such key).
    fn get(&mut self, key: &str) -> Option<(Option<Vec<u8>>, Option<u32>)>;
    /// Sets `value` if the key's token is still `cas` (`None`: unconditionally); false on a
    /// mismatch.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// Envoy's shared data: `get` answers `Ok` or `NotFound`, `set` `Ok` or `CasMismatch`, the
/// statuses `hostcalls` handles (it would panic on any other, which Envoy 1.40 never returns).
struct EnvoySharedData;

impl SharedData for EnvoySharedData {
    fn get(&mut self, key: &str) -> Option<(Option<Vec<u8>>, Option<u32>)> {
        hostcalls::get_shared_data(key).ok()
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

/// Whether this VM is the first to put `value` under `key` (true if shared data cannot be
/// read: then every VM counts rather than none).
pub(crate) fn first_to_see(data: &mut impl SharedData, key: &str, value: &[u8]) -> bool {
    // Each round ends in a set or in finding `value`; rounds repeat only while other VMs write
    // other values, which they do once each.
    for _ in 0..8 {
        let Some((current, cas)) = data.get(key) else {
            return true;
        };
        if current.as_deref() == Some(value) {
            return false;
        }
        if data.set(key, value, cas) {
            return true;
        }
    }
    true
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
