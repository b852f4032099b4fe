//! Counters for `/stats`. Each filter connection counts its bytes in its own [`ConnCounters`]
//! (one writer, plain stores, a cache line no other thread writes); `/stats` adds up the live
//! ones and the totals of the connections that are gone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use geomesh_frame::CloseCode;

/// Names of the `CLOSED` codes, indexed by code.
pub const CLOSE_NAMES: [&str; 9] = [
    "LOCAL",
    "EOF",
    "REFUSED",
    "CONNECT_TIMEOUT",
    "STALLED",
    "UNKNOWN_TARGET",
    "SITE_UNREACHABLE",
    "IO",
    "OVERFLOW",
];

/// The name of a code.
pub fn close_name(code: CloseCode) -> &'static str {
    CLOSE_NAMES.get(code as usize).copied().unwrap_or("IO")
}

/// Byte counts of one filter connection. Only its own task writes them.
#[derive(Debug, Default)]
pub struct ConnCounters {
    pub from_filter: AtomicU64,
    pub to_filter: AtomicU64,
    pub to_backends: AtomicU64,
    pub from_backends: AtomicU64,
    pub wakes: AtomicU64,
}

impl ConnCounters {
    /// Adds `n` to a counter this thread alone writes (no locked instruction).
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// Every counter of one bridge.
#[derive(Debug, Default)]
pub struct Stats {
    pub filter_connections_active: AtomicU64,
    pub filter_connections_total: AtomicU64,
    pub channels_active: AtomicU64,
    pub channels_total: AtomicU64,
    pub remote_channels_total: AtomicU64,
    /// Channels opened shared (`OPEN_SHARED`) and carried by a pooled connection.
    pub shared_channels_total: AtomicU64,
    /// Pooled backend connections made (first use, and again after a failure).
    pub pool_connections_total: AtomicU64,
    pub bytes_from_filters: AtomicU64,
    pub bytes_to_filters: AtomicU64,
    pub bytes_to_backends: AtomicU64,
    pub bytes_from_backends: AtomicU64,
    pub wakes: AtomicU64,
    pub errors: AtomicU64,
    pub tunnels_in_active: AtomicU64,
    pub tunnels_in_total: AtomicU64,
    pub closed: [AtomicU64; 9],
    /// Per site: last `Ping` round trip in µs, or the last error.
    pub sites: Mutex<BTreeMap<String, Result<u64, String>>>,
    live: Mutex<HashMap<u64, Arc<ConnCounters>>>,
    next_conn: AtomicU64,
}

impl Stats {
    /// Registers the counters of a new filter connection.
    pub fn register(&self) -> (u64, Arc<ConnCounters>) {
        let id = self.next_conn.fetch_add(1, Relaxed);
        let c = Arc::new(ConnCounters::default());
        if let Ok(mut m) = self.live.lock() {
            m.insert(id, c.clone());
        }
        (id, c)
    }

    /// A connection is gone: its counts move to the totals.
    pub fn retire(&self, id: u64) {
        let c = self.live.lock().ok().and_then(|mut m| m.remove(&id));
        if let Some(c) = c {
            self.bytes_from_filters.fetch_add(c.from_filter.load(Relaxed), Relaxed);
            self.bytes_to_filters.fetch_add(c.to_filter.load(Relaxed), Relaxed);
            self.bytes_to_backends.fetch_add(c.to_backends.load(Relaxed), Relaxed);
            self.bytes_from_backends.fetch_add(c.from_backends.load(Relaxed), Relaxed);
            self.wakes.fetch_add(c.wakes.load(Relaxed), Relaxed);
        }
    }

    /// (from filters, to filters, to backends, from backends, wakes), live connections included.
    pub fn bytes(&self) -> [u64; 5] {
        let mut t = [
            self.bytes_from_filters.load(Relaxed),
            self.bytes_to_filters.load(Relaxed),
            self.bytes_to_backends.load(Relaxed),
            self.bytes_from_backends.load(Relaxed),
            self.wakes.load(Relaxed),
        ];
        if let Ok(m) = self.live.lock() {
            for c in m.values() {
                t[0] += c.from_filter.load(Relaxed);
                t[1] += c.to_filter.load(Relaxed);
                t[2] += c.to_backends.load(Relaxed);
                t[3] += c.from_backends.load(Relaxed);
                t[4] += c.wakes.load(Relaxed);
            }
        }
        t
    }

    pub fn count_close(&self, code: CloseCode) {
        if let Some(c) = self.closed.get(code as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    fn pairs(&self) -> Vec<(&'static str, u64)> {
        let [from_filters, to_filters, to_backends, from_backends, wakes] = self.bytes();
        vec![
            (
                "filter_connections_active",
                self.filter_connections_active.load(Relaxed),
            ),
            ("filter_connections_total", self.filter_connections_total.load(Relaxed)),
            ("channels_active", self.channels_active.load(Relaxed)),
            ("channels_total", self.channels_total.load(Relaxed)),
            ("remote_channels_total", self.remote_channels_total.load(Relaxed)),
            ("shared_channels_total", self.shared_channels_total.load(Relaxed)),
            ("pool_connections_total", self.pool_connections_total.load(Relaxed)),
            ("bytes_from_filters", from_filters),
            ("bytes_to_filters", to_filters),
            ("bytes_to_backends", to_backends),
            ("bytes_from_backends", from_backends),
            ("wakes", wakes),
            ("errors", self.errors.load(Relaxed)),
            ("tunnels_in_active", self.tunnels_in_active.load(Relaxed)),
            ("tunnels_in_total", self.tunnels_in_total.load(Relaxed)),
        ]
    }

    /// Per site: the last `Ping` round trip in µs, or the last error.
    pub fn sites_snapshot(&self) -> BTreeMap<String, Result<u64, String>> {
        self.sites.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `name value` lines; closes as `closed.CODE n`, sites as `site.NAME.rtt_us n` or
    /// `site.NAME.error "..."`.
    pub fn render_text(&self, site: &str) -> String {
        let mut s = format!("site {site}\n");
        for (k, v) in self.pairs() {
            let _ = writeln!(s, "{k} {v}");
        }
        for (name, c) in CLOSE_NAMES.iter().zip(&self.closed) {
            let _ = writeln!(s, "closed.{name} {}", c.load(Relaxed));
        }
        for (name, r) in self.sites_snapshot() {
            match r {
                Ok(us) => {
                    let _ = writeln!(s, "site.{name}.rtt_us {us}");
                }
                Err(e) => {
                    let _ = writeln!(s, "site.{name}.error {e:?}");
                }
            }
        }
        s
    }

    /// The same as JSON.
    pub fn render_json(&self, site: &str) -> String {
        let mut m = serde_json::Map::new();
        m.insert("site".into(), site.into());
        for (k, v) in self.pairs() {
            m.insert(k.into(), v.into());
        }
        let closed: serde_json::Map<String, serde_json::Value> = CLOSE_NAMES
            .iter()
            .zip(&self.closed)
            .map(|(n, c)| ((*n).to_owned(), c.load(Relaxed).into()))
            .collect();
        m.insert("closed".into(), closed.into());
        let sites: serde_json::Map<String, serde_json::Value> = self
            .sites_snapshot()
            .into_iter()
            .map(|(n, r)| {
                let v = match r {
                    Ok(us) => serde_json::json!({ "rtt_us": us }),
                    Err(e) => serde_json::json!({ "error": e }),
                };
                (n, v)
            })
            .collect();
        m.insert("sites".into(), sites.into());
        serde_json::Value::Object(m).to_string()
    }
}
