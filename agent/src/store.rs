//! The agent's state: what it knows about every site and about its own
//! service instances, behind one lock held for microseconds at a time.
//!
//! Everything here is soft state, rebuilt by the next heartbeats after a
//! restart, so it lives in memory. Durable state (Cheops' replicants and
//! replication log) is in the replication store (`replication::db`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use geomesh_scope::health::{
    HeartbeatReply, RttEntry, RttSource, SiteStatus, SitesDocument, UpSource,
};

use crate::config::{AgentConfig, ProbeKind};

/// What the agent knows about one peer site.
#[derive(Debug, Clone)]
pub struct PeerState {
    pub name: String,
    pub url: String,
    pub static_rtt_ms: Option<f64>,
    pub static_up: Option<bool>,
    /// Verdict of the heartbeats (`None` until the first answer or `down_after` failures).
    pub heartbeat_up: Option<bool>,
    /// Smoothed measured RTT (ms).
    pub rtt_ms: Option<f64>,
    /// Last raw sample (ms).
    pub last_sample_ms: Option<f64>,
    pub last_ok: Option<Instant>,
    pub failures: u32,
    pub error: Option<String>,
    /// The peer's service instances, from its last answer (cleared when it is down).
    pub services: BTreeMap<String, bool>,
    /// The peer's own RTTs to its peers, from its last answer.
    pub their_rtt: Vec<RttEntry>,
}

impl PeerState {
    /// Up/down as reported: the static override, else the heartbeats' verdict.
    pub fn up(&self) -> (Option<bool>, UpSource) {
        match self.static_up {
            Some(up) => (Some(up), UpSource::Static),
            None => (self.heartbeat_up, UpSource::Heartbeat),
        }
    }

    /// RTT as reported: the static override, else the smoothed measurement.
    pub fn rtt(&self) -> Option<(f64, RttSource)> {
        match self.static_rtt_ms {
            Some(ms) => Some((ms, RttSource::Static)),
            None => self.rtt_ms.map(|ms| (ms, RttSource::Measured)),
        }
    }
}

/// What the agent knows about one of its own service instances.
#[derive(Debug, Clone)]
pub struct ServiceState {
    pub name: String,
    pub address: std::net::SocketAddr,
    pub probe: ProbeKind,
    pub path: String,
    pub up: Option<bool>,
    pub failures: u32,
    pub error: Option<String>,
    pub last_change: Option<Instant>,
}

/// The whole state.
#[derive(Debug)]
pub struct State {
    pub site: String,
    pub down_after: u32,
    pub rtt_smoothing: f64,
    pub peers: Vec<PeerState>,
    pub services: Vec<ServiceState>,
    pub started: Instant,
    pub heartbeats_served: u64,
    /// The InfluxDB replay queue, when configured (its depths are atomics: no I/O under the lock).
    pub influx_replay: Option<std::sync::Arc<crate::influx_replay::ReplayQueue>>,
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl State {
    pub fn new(c: &AgentConfig) -> Self {
        State {
            site: c.site.clone(),
            down_after: c.down_after,
            rtt_smoothing: c.rtt_smoothing,
            peers: c
                .peers
                .iter()
                .map(|p| PeerState {
                    name: p.name.clone(),
                    url: p.url.trim_end_matches('/').to_owned(),
                    static_rtt_ms: p.rtt_ms,
                    static_up: p.up,
                    heartbeat_up: None,
                    rtt_ms: None,
                    last_sample_ms: None,
                    last_ok: None,
                    failures: 0,
                    error: None,
                    services: BTreeMap::new(),
                    their_rtt: Vec::new(),
                })
                .collect(),
            services: c
                .services
                .iter()
                .map(|s| ServiceState {
                    name: s.name.clone(),
                    address: s.address,
                    probe: s.probe,
                    path: s.path.clone(),
                    up: None,
                    failures: 0,
                    error: None,
                    last_change: None,
                })
                .collect(),
            started: Instant::now(),
            heartbeats_served: 0,
            influx_replay: None,
        }
    }

    /// A heartbeat to peer `i` answered after `rtt`. Returns whether the
    /// peer just came up (it was down or never heard of): the replication
    /// log then retries that site at once.
    pub fn heartbeat_ok(&mut self, i: usize, rtt: Duration, reply: HeartbeatReply) -> bool {
        let a = self.rtt_smoothing;
        let Some(p) = self.peers.get_mut(i) else { return false };
        let sample = ms(rtt);
        p.rtt_ms = Some(match p.rtt_ms {
            Some(prev) => prev * (1.0 - a) + sample * a,
            None => sample,
        });
        p.last_sample_ms = Some(sample);
        let came_up = p.heartbeat_up != Some(true);
        if came_up {
            tracing::info!(peer = %p.name, rtt_ms = sample, "peer up");
        }
        p.heartbeat_up = Some(true);
        p.last_ok = Some(Instant::now());
        p.failures = 0;
        p.error = None;
        p.services = reply.services;
        p.their_rtt = reply
            .rtt
            .into_iter()
            .filter(|e| e.a == p.name && e.b != p.name)
            .collect();
        came_up
    }

    /// A heartbeat to peer `i` failed.
    pub fn heartbeat_failed(&mut self, i: usize, error: String) {
        let down_after = self.down_after;
        let Some(p) = self.peers.get_mut(i) else { return };
        p.failures = p.failures.saturating_add(1);
        if p.failures >= down_after {
            if p.heartbeat_up != Some(false) {
                tracing::warn!(peer = %p.name, %error, failures = p.failures, "peer down");
            }
            p.heartbeat_up = Some(false);
            p.services.clear();
            p.their_rtt.clear();
        }
        p.error = Some(error);
    }

    /// A probe of local service `i` finished.
    pub fn probe_result(&mut self, i: usize, result: Result<(), String>) {
        let down_after = self.down_after;
        let Some(s) = self.services.get_mut(i) else { return };
        match result {
            Ok(()) => {
                if s.up != Some(true) {
                    tracing::info!(service = %s.name, address = %s.address, "service up");
                    s.last_change = Some(Instant::now());
                }
                s.up = Some(true);
                s.failures = 0;
                s.error = None;
            }
            Err(e) => {
                s.failures = s.failures.saturating_add(1);
                if s.failures >= down_after {
                    if s.up != Some(false) {
                        tracing::warn!(service = %s.name, address = %s.address, error = %e, "service down");
                        s.last_change = Some(Instant::now());
                    }
                    s.up = Some(false);
                }
                s.error = Some(e);
            }
        }
    }

    /// Own service instances: name -> up (an instance not probed yet counts as down).
    pub fn own_services(&self) -> BTreeMap<String, bool> {
        self.services
            .iter()
            .map(|s| (s.name.clone(), s.up == Some(true)))
            .collect()
    }

    /// This agent's own row of RTTs.
    pub fn own_rtt(&self) -> Vec<RttEntry> {
        self.peers
            .iter()
            .filter_map(|p| {
                p.rtt().map(|(ms, source)| RttEntry {
                    a: self.site.clone(),
                    b: p.name.clone(),
                    ms,
                    source,
                })
            })
            .collect()
    }

    /// The answer to a peer's heartbeat.
    pub fn heartbeat_reply(&self) -> HeartbeatReply {
        HeartbeatReply {
            site: self.site.clone(),
            generated_at_ms: unix_ms(),
            services: self.own_services(),
            rtt: self.own_rtt(),
        }
    }

    /// `GET /v1/sites`.
    pub fn sites_document(&self) -> SitesDocument {
        let mut sites = vec![SiteStatus {
            name: self.site.clone(),
            local: true,
            up: Some(true),
            up_source: UpSource::Local,
            rtt_ms: Some(0.0),
            rtt_source: None,
            services: self.own_services(),
            last_heartbeat_ms_ago: None,
            consecutive_failures: 0,
            error: None,
        }];
        for p in &self.peers {
            let (up, up_source) = p.up();
            let rtt = p.rtt();
            sites.push(SiteStatus {
                name: p.name.clone(),
                local: false,
                up,
                up_source,
                rtt_ms: rtt.map(|r| r.0),
                rtt_source: rtt.map(|r| r.1),
                services: p.services.clone(),
                last_heartbeat_ms_ago: p
                    .last_ok
                    .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
                consecutive_failures: p.failures,
                error: p.error.clone(),
            });
        }
        // Pairs between sites: ours first (they win), then second-hand ones, each unordered pair
        // once; two second-hand measurements of one pair (B->C from B, C->B from C) are averaged.
        let mut rtt = self.own_rtt();
        let key = |a: &str, b: &str| {
            if a <= b {
                (a.to_owned(), b.to_owned())
            } else {
                (b.to_owned(), a.to_owned())
            }
        };
        let mut second: BTreeMap<(String, String), (f64, u32, RttSource)> = BTreeMap::new();
        for p in &self.peers {
            for e in &p.their_rtt {
                if e.b == self.site || !e.ms.is_finite() || e.ms < 0.0 {
                    continue;
                }
                let slot = second.entry(key(&e.a, &e.b)).or_insert((0.0, 0, e.source));
                slot.0 += e.ms;
                slot.1 += 1;
                if e.source == RttSource::Static {
                    slot.2 = RttSource::Static;
                }
            }
        }
        for ((a, b), (sum, n, source)) in second {
            rtt.push(RttEntry {
                a,
                b,
                ms: sum / f64::from(n.max(1)),
                source,
            });
        }
        SitesDocument {
            site: self.site.clone(),
            generated_at_ms: unix_ms(),
            sites,
            rtt,
        }
    }
}

/// The state shared by the API, the heartbeat and the probe tasks.
#[derive(Clone, Debug)]
pub struct Store(Arc<RwLock<State>>);

impl Store {
    pub fn new(c: &AgentConfig) -> Self {
        Store(Arc::new(RwLock::new(State::new(c))))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let c = AgentConfig::parse(
            r#"
site: A
listen: 127.0.0.1:1
plaintext: true
down_after: 2
rtt_smoothing: 0.5
peers:
  - { name: B, url: "http://127.0.0.1:2/" }
  - { name: C, url: "http://127.0.0.1:3", rtt_ms: 7, up: true }
services:
  - { name: img, address: "127.0.0.1:4" }
"#,
        )
        .unwrap();
        State::new(&c)
    }

    fn reply(site: &str, img: bool, rtt: &[(&str, f64)]) -> HeartbeatReply {
        HeartbeatReply {
            site: site.into(),
            generated_at_ms: 0,
            services: [("img".to_string(), img)].into(),
            rtt: rtt
                .iter()
                .map(|(b, ms)| RttEntry { a: site.into(), b: (*b).into(), ms: *ms, source: RttSource::Measured })
                .collect(),
        }
    }

    #[test]
    fn heartbeats_smooth_rtt_and_mark_down_after_n_failures() {
        let mut s = state();
        assert_eq!(s.peers[0].url, "http://127.0.0.1:2");
        s.heartbeat_ok(0, Duration::from_millis(10), reply("B", true, &[("C", 3.0), ("A", 9.0)]));
        s.heartbeat_ok(0, Duration::from_millis(30), reply("B", true, &[("C", 3.0)]));
        assert_eq!(s.peers[0].rtt_ms, Some(20.0));
        assert_eq!(s.peers[0].up(), (Some(true), UpSource::Heartbeat));
        s.heartbeat_failed(0, "timeout".into());
        assert_eq!(s.peers[0].up().0, Some(true), "one failure of two");
        s.heartbeat_failed(0, "timeout".into());
        assert_eq!(s.peers[0].up().0, Some(false));
        assert!(s.peers[0].services.is_empty());
        s.heartbeat_failed(1, "refused".into());
        s.heartbeat_failed(1, "refused".into());
        assert_eq!(s.peers[1].up(), (Some(true), UpSource::Static), "static wins");
    }

    #[test]
    fn sites_document_has_every_site_and_each_pair_once() {
        let mut s = state();
        s.probe_result(0, Ok(()));
        s.heartbeat_ok(0, Duration::from_millis(4), reply("B", false, &[("C", 3.0), ("A", 99.0)]));
        let d = s.sites_document();
        assert_eq!(d.site, "A");
        let names: Vec<&str> = d.sites.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(d.sites[0].services.get("img"), Some(&true));
        assert_eq!(d.sites[1].services.get("img"), Some(&false));
        assert_eq!(d.sites[2].rtt_ms, Some(7.0));
        assert_eq!(d.sites[2].rtt_source, Some(RttSource::Static));
        let pairs: Vec<(&str, &str, f64)> =
            d.rtt.iter().map(|e| (e.a.as_str(), e.b.as_str(), e.ms)).collect();
        assert_eq!(pairs, [("A", "B", 4.0), ("A", "C", 7.0), ("B", "C", 3.0)]);
        // The filter's view agrees.
        let h = geomesh_scope::Health::from_document(&d);
        assert!(!h.available("B", "img"));
        assert!(h.available("A", "img"));
        assert_eq!(h.table().rtt("C", "B"), Some(Duration::from_millis(3)));
    }

    #[test]
    fn services_go_down_after_n_failed_probes() {
        let mut s = state();
        assert_eq!(s.own_services().get("img"), Some(&false), "not probed yet");
        s.probe_result(0, Ok(()));
        s.probe_result(0, Err("refused".into()));
        assert_eq!(s.own_services().get("img"), Some(&true));
        s.probe_result(0, Err("refused".into()));
        assert_eq!(s.own_services().get("img"), Some(&false));
    }
}
