//! Site health as the per-site agent (`geomesh-agent`) reports it, and the
//! view a filter resolves `;` and `around` against.
//!
//! The wire types here are the agent's JSON API (`GET /v1/sites`,
//! `GET /v1/heartbeat`), shared by the agent (which writes them) and the
//! filter (which reads them), so the two cannot drift apart. Sans-IO: the
//! caller fetches the bytes and says what time it is.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::resolve::SiteTable;

/// The agent's site table.
pub const SITES_PATH: &str = "/v1/sites";
/// What one agent asks another every heartbeat.
pub const HEARTBEAT_PATH: &str = "/v1/heartbeat";
/// Largest `/v1/sites` document a filter accepts, in bytes.
pub const MAX_SITES_DOCUMENT: usize = 1 << 20;

/// Where an up/down state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpSource {
    /// The agent's own site: up while the agent runs.
    #[serde(rename = "self")]
    Local,
    /// The last heartbeats (answered or not).
    #[default]
    Heartbeat,
    /// A static override in the agent's configuration.
    Static,
}

/// Where a round-trip time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RttSource {
    /// Measured by heartbeats (smoothed).
    #[default]
    Measured,
    /// A static override in the agent's configuration.
    Static,
}

/// One site as an agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteStatus {
    /// The site name, as scopes spell it (`DC 1`).
    pub name: String,
    /// Whether this is the reporting agent's own site.
    #[serde(default)]
    pub local: bool,
    /// `true` up, `false` down, `null` not known yet (no heartbeat so far).
    pub up: Option<bool>,
    /// Where `up` comes from.
    #[serde(default)]
    pub up_source: UpSource,
    /// Round-trip time from the reporting agent's site, in milliseconds.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// Where `rtt_ms` comes from.
    #[serde(default)]
    pub rtt_source: Option<RttSource>,
    /// Service instances at that site: name -> up (probed by that site's agent).
    #[serde(default)]
    pub services: BTreeMap<String, bool>,
    /// Milliseconds since the last answered heartbeat (`null`: never).
    #[serde(default)]
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Heartbeats failed in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Why the last heartbeat failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// A round-trip time between two sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RttEntry {
    /// One site.
    pub a: String,
    /// The other site.
    pub b: String,
    /// Milliseconds.
    pub ms: f64,
    /// Where it comes from.
    #[serde(default)]
    pub source: RttSource,
}

/// `GET /v1/sites`: everything an agent knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SitesDocument {
    /// The reporting agent's site.
    pub site: String,
    /// When the document was written (Unix milliseconds).
    pub generated_at_ms: u64,
    /// Every site, the agent's own first.
    pub sites: Vec<SiteStatus>,
    /// Round-trip times between pairs of sites, first- and second-hand
    /// (each pair once; the reporting agent's own measurements win).
    #[serde(default)]
    pub rtt: Vec<RttEntry>,
}

/// `GET /v1/heartbeat?from=<site>`: what an agent tells a peer about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The answering agent's site.
    pub site: String,
    /// When it answered (Unix milliseconds).
    pub generated_at_ms: u64,
    /// Its service instances: name -> up.
    pub services: BTreeMap<String, bool>,
    /// Its own round-trip times to its peers (`a` is its site).
    #[serde(default)]
    pub rtt: Vec<RttEntry>,
}

/// Why a sites document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthError(pub String);

impl fmt::Display for HealthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sites document: {}", self.0)
    }
}

impl std::error::Error for HealthError {}

/// Milliseconds as a duration; `None` for negative, NaN or absurd values.
pub fn ms_to_duration(ms: f64) -> Option<Duration> {
    if !ms.is_finite() || ms < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(ms / 1000.0).ok()
}

/// What a filter resolves against: up/down and RTT per site (a
/// [`SiteTable`]) and which service instances are up at each site.
///
/// Anything not reported is available: a site never heard of, a service a
/// site's agent does not probe. An empty `Health` therefore routes as a
/// static configuration would.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    table: SiteTable,
    services: BTreeMap<String, BTreeMap<String, bool>>,
    reporter: String,
    generated_at_ms: u64,
}

impl Health {
    /// Nothing known: everything available, no RTT.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses a `GET /v1/sites` answer (at most [`MAX_SITES_DOCUMENT`] bytes).
    pub fn from_json(bytes: &[u8]) -> Result<Self, HealthError> {
        if bytes.len() > MAX_SITES_DOCUMENT {
            return Err(HealthError(format!(
                "{} bytes is over the limit of {MAX_SITES_DOCUMENT}",
                bytes.len()
            )));
        }
        let doc: SitesDocument =
            serde_json::from_slice(bytes).map_err(|e| HealthError(e.to_string()))?;
        Ok(Self::from_document(&doc))
    }

    /// The view a document gives. RTTs of the `rtt` list are applied first,
    /// then each site's `rtt_ms` (the reporter's own measurement) on top.
    pub fn from_document(doc: &SitesDocument) -> Self {
        let mut table = SiteTable::new();
        let mut services = BTreeMap::new();
        for e in &doc.rtt {
            if let Some(d) = ms_to_duration(e.ms) {
                table.set_rtt(&e.a, &e.b, d);
            }
        }
        for s in &doc.sites {
            if let Some(up) = s.up {
                table.set_up(&s.name, up);
            }
            if let Some(d) = s.rtt_ms.and_then(ms_to_duration) {
                if s.name != doc.site {
                    table.set_rtt(&doc.site, &s.name, d);
                }
            }
            services.insert(s.name.clone(), s.services.clone());
        }
        Health {
            table,
            services,
            reporter: doc.site.clone(),
            generated_at_ms: doc.generated_at_ms,
        }
    }

    /// Up/down and RTTs.
    pub fn table(&self) -> &SiteTable {
        &self.table
    }

    /// The site of the agent that reported (empty for [`Health::empty`]).
    pub fn reporter(&self) -> &str {
        &self.reporter
    }

    /// When the agent wrote the document (Unix ms; 0 for [`Health::empty`]).
    pub fn generated_at_ms(&self) -> u64 {
        self.generated_at_ms
    }

    /// Every site the document listed, in name order.
    pub fn sites(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// Whether `service`'s instance at `site` is up, if reported.
    pub fn service_up(&self, site: &str, service: &str) -> Option<bool> {
        self.services.get(site).and_then(|m| m.get(service)).copied()
    }

    /// True unless the site is reported down or the service's instance
    /// there is reported down.
    pub fn available(&self, site: &str, service: &str) -> bool {
        self.table.available(site) && self.service_up(site, service) != Some(false)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn doc() -> SitesDocument {
        serde_json::from_str(
            r#"{
              "site": "DC 1", "generated_at_ms": 7,
              "sites": [
                {"name": "DC 1", "local": true, "up": true, "up_source": "self",
                 "services": {"image": false, "compute": true}},
                {"name": "DC 2", "up": true, "rtt_ms": 20.0, "rtt_source": "static",
                 "services": {"image": true}},
                {"name": "DC 3", "up": false, "rtt_ms": 5.5, "services": {"image": true}},
                {"name": "DC 4", "up": null}
              ],
              "rtt": [{"a": "DC 2", "b": "DC 3", "ms": 3.0}, {"a": "DC 1", "b": "DC 2", "ms": 99.0}]
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn availability_per_site_and_service() {
        let h = Health::from_document(&doc());
        assert!(!h.available("DC 1", "image"), "local image probed down");
        assert!(h.available("DC 1", "compute"));
        assert!(h.available("DC 1", "unprobed"));
        assert!(h.available("DC 2", "image"));
        assert!(!h.available("DC 3", "image"), "site down");
        assert!(h.available("DC 4", "image"), "unknown = available");
        assert!(h.available("DC 9", "image"));
        assert_eq!(h.reporter(), "DC 1");
        assert_eq!(h.generated_at_ms(), 7);
    }

    #[test]
    fn own_rtt_wins_over_second_hand() {
        let h = Health::from_document(&doc());
        let t = h.table();
        assert_eq!(t.rtt("DC 1", "DC 2"), Some(Duration::from_millis(20)));
        assert_eq!(t.rtt("DC 2", "DC 3"), Some(Duration::from_millis(3)));
        assert_eq!(t.rtt("DC 3", "DC 1"), Some(Duration::from_micros(5500)));
        assert_eq!(t.rtt("DC 1", "DC 4"), None);
    }

    #[test]
    fn bad_documents_are_refused_not_panicked_on() {
        assert!(Health::from_json(b"").is_err());
        assert!(Health::from_json(b"{\"site\": 1}").is_err());
        assert!(Health::from_json(&vec![b' '; MAX_SITES_DOCUMENT + 1]).is_err());
        let weird = br#"{"site":"A","generated_at_ms":0,"sites":[{"name":"B","up":true,"rtt_ms":-1}],
                          "rtt":[{"a":"A","b":"C","ms":1e300}]}"#;
        let h = Health::from_json(weird).unwrap();
        assert_eq!(h.table().rtt("A", "B"), None);
        assert_eq!(h.table().rtt("A", "C"), None);
        assert_eq!(ms_to_duration(f64::NAN), None);
    }

    #[test]
    fn round_trips_through_json() {
        let d = doc();
        let text = serde_json::to_string(&d).unwrap();
        let back: SitesDocument = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
        assert!(text.contains("\"up_source\":\"self\""), "{text}");
    }
}
