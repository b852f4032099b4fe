//! The agent's configuration file (YAML; JSON works too).
//!
//! ```yaml
//! site: DC 1                      # this agent's site, as scopes spell it
//! listen: 127.0.0.1:9101          # the HTTP API
//! plaintext: true                 # peers over plain HTTP, said explicitly (else `tls:`, below)
//! interval_ms: 1000               # heartbeat and probe period (default 1000)
//! timeout_ms: 1000                # per heartbeat and per probe (default 1000)
//! down_after: 1                   # failures in a row before a peer or a service is down (default 1)
//! rtt_smoothing: 0.3              # weight of a new RTT sample (EWMA, default 0.3; 1 = no smoothing)
//! peers:
//!   - name: DC 2
//!     url: http://127.0.0.1:9201  # the peer's agent
//!     rtt_ms: 20                  # optional: static RTT, replaces the measurement
//!     up: true                    # optional: static state, replaces the heartbeat's verdict
//! services:                       # the local service instances this agent probes
//!   - name: image
//!     address: 127.0.0.1:8012
//!     probe: http                 # tcp (connect, default) | http (GET `path`, 2xx = up)
//!     path: /healthz              # default /healthz
//! influx_replay:                  # optional: the InfluxDB filter's replay queue (crate::influx_replay)
//!   data_dir: /var/lib/geomesh/dc1
//!   shards: { influx_b: "http://10.0.0.2:8086" }   # the filter's cluster name -> the shard
//! replication:                    # optional: Cheops' replication (`&`), docs/replication.md
//!   listen: 127.0.0.1:9102        # the proxy listener (the scope filter's cluster)
//!   data_dir: /var/lib/geomesh/dc1
//! ```
//!
//! Between sites, with certificates instead of `plaintext` ([`crate::tls`]):
//!
//! ```yaml
//! peer_listen: 0.0.0.0:9103       # the peers' heartbeats and replication: HTTPS, client certs
//! tls: { cert: /etc/geomesh/tls/tls.crt, key: /etc/geomesh/tls/tls.key, ca: /etc/geomesh/tls/ca.crt }
//! peers:
//!   - { name: DC 2, url: "https://agent-dc2:9103" }
//! ```
//!
//! Site and service names follow scope-lang's rules (checked with
//! `geomesh-scope`'s registry, so a name the agent accepts is one a scope can
//! name); errors name the field.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::replication::config::ReplicationConfig;

/// How a service instance is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// A TCP connect succeeds.
    #[default]
    Tcp,
    /// `GET path` answers 2xx.
    Http,
}

/// A peer site's agent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's site name.
    pub name: String,
    /// Base URL of the peer's agent (`http://host:port`).
    pub url: String,
    /// Static RTT in milliseconds (replaces the measured one).
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// Static up/down (replaces the heartbeat's verdict).
    #[serde(default)]
    pub up: Option<bool>,
}

/// A local service instance.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service name, as scopes spell it.
    pub name: String,
    /// `host:port` of the instance.
    pub address: SocketAddr,
    /// How to probe it.
    #[serde(default)]
    pub probe: ProbeKind,
    /// Path for `probe: http`.
    #[serde(default = "default_health_path")]
    pub path: String,
}

fn default_health_path() -> String {
    "/healthz".to_owned()
}

fn default_interval() -> u64 {
    1000
}

fn default_down_after() -> u32 {
    1
}

fn default_smoothing() -> f64 {
    0.3
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This agent's site.
    pub site: String,
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Heartbeat and probe period (ms).
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Timeout of one heartbeat or probe (ms).
    #[serde(default = "default_interval")]
    pub timeout_ms: u64,
    /// Failures in a row before a peer or a service counts as down.
    #[serde(default = "default_down_after")]
    pub down_after: u32,
    /// Weight of a new RTT sample in the moving average.
    #[serde(default = "default_smoothing")]
    pub rtt_smoothing: f64,
    /// Peer sites.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Local service instances.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// Replication (`&`): the proxy listener, the store, the log's settings.
    #[serde(default)]
    pub replication: Option<ReplicationConfig>,
    /// Where the other sites' agents reach this one (heartbeats, replication between agents);
    /// required with `tls` when there are peers ([`crate::tls`]).
    #[serde(default)]
    pub peer_listen: Option<SocketAddr>,
    /// TLS with client certificates between agents ([`crate::tls`]).
    #[serde(default)]
    pub tls: Option<geomesh_tls::TlsFiles>,
    /// Peers over plain HTTP, asked for explicitly (a mesh's mTLS or an encrypted network
    /// carries them, or a test on loopback).
    #[serde(default)]
    pub plaintext: bool,
    /// The InfluxDB replay queue ([`crate::influx_replay`]): the writes a down shard missed.
    #[serde(default)]
    pub influx_replay: Option<crate::influx_replay::InfluxReplayConfig>,
}

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read agent configuration {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("agent configuration {}", path.display()))
    }

    /// Parses and validates a configuration text.
    pub fn parse(text: &str) -> Result<Self> {
        let c: AgentConfig = serde_yaml_ng::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        c.validate()?;
        Ok(c)
    }

    /// Heartbeat and probe period.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Timeout of one heartbeat or probe.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    fn validate(&self) -> Result<()> {
        if !(10..=600_000).contains(&self.interval_ms) {
            bail!("`interval_ms`: expected 10 to 600000");
        }
        if !(10..=600_000).contains(&self.timeout_ms) {
            bail!("`timeout_ms`: expected 10 to 600000");
        }
        if !(1..=1000).contains(&self.down_after) {
            bail!("`down_after`: expected 1 to 1000");
        }
        if !(self.rtt_smoothing > 0.0 && self.rtt_smoothing <= 1.0) {
            bail!("`rtt_smoothing`: expected a number in (0, 1]");
        }
        // The registry applies scope-lang's name rules and refuses two sites that would share a
        // cluster name.
        let mut reg = geomesh_scope::Registry::builder(self.site.clone()).pattern("{site}_{service}");
        for (i, p) in self.peers.iter().enumerate() {
            if p.name == self.site {
                bail!("`peers[{i}].name`: `{}` is this agent's own site", p.name);
            }
            if self.peers.iter().take(i).any(|q| q.name == p.name) {
                bail!("`peers[{i}].name`: `{}` listed twice", p.name);
            }
            if let Some(r) = p.rtt_ms {
                if !(r.is_finite() && (0.0..=3_600_000.0).contains(&r)) {
                    bail!("`peers[{i}].rtt_ms`: expected 0 to 3600000");
                }
            }
            reg = reg.site(p.name.clone());
        }
        for (i, s) in self.services.iter().enumerate() {
            if self.services.iter().take(i).any(|t| t.name == s.name) {
                bail!("`services[{i}].name`: `{}` listed twice", s.name);
            }
            if !s.path.starts_with('/') {
                bail!("`services[{i}].path`: expected an absolute path");
            }
            reg = reg.service(s.name.clone());
        }
        reg.build().map_err(|e| anyhow::anyhow!("site or service names: {e}"))?;
        crate::tls::validate(self)?;
        if let Some(r) = &self.influx_replay {
            r.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if let Some(r) = &self.replication {
            r.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
            if r.listen == self.listen {
                bail!("`replication.listen`: the same address as `listen`");
            }
            for name in r.services.keys() {
                if !self.services.iter().any(|s| &s.name == name) {
                    bail!("`replication.services.{name}`: no service `{name}` in `services`");
                }
            }
            let sites: Vec<&str> = std::iter::once(self.site.as_str())
                .chain(self.peers.iter().map(|p| p.name.as_str()))
                .collect();
            for site in r
                .test_hooks
                .delay_before_delivery_ms
                .keys()
                .chain(r.test_hooks.delay_after_delivery_ms.keys())
            {
                if !sites.contains(&site.as_str()) {
                    bail!("`replication.test_hooks`: unknown site `{site}`");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_parses() {
        let c = AgentConfig::parse(
            r#"
site: DC 1
listen: 127.0.0.1:9101
plaintext: true
interval_ms: 500
peers:
  - { name: DC 2, url: "http://127.0.0.1:9201", rtt_ms: 20 }
  - { name: DC 3, url: "http://127.0.0.1:9301", up: false }
services:
  - { name: image, address: "127.0.0.1:8012", probe: http }
  - { name: compute, address: "127.0.0.1:8011" }
"#,
        )
        .unwrap();
        assert_eq!(c.interval(), Duration::from_millis(500));
        assert_eq!(c.timeout_ms, 1000);
        assert_eq!(c.peers[0].rtt_ms, Some(20.0));
        assert_eq!(c.peers[1].up, Some(false));
        assert_eq!(c.services[0].probe, ProbeKind::Http);
        assert_eq!(c.services[0].path, "/healthz");
        assert_eq!(c.services[1].probe, ProbeKind::Tcp);
        assert!(c.replication.is_none());
    }

    #[test]
    fn replication_section() {
        let base = "site: A\nlisten: 127.0.0.1:1\nplaintext: true\npeers: [{name: B, url: \"http://x:1\"}]\nservices: [{name: image, address: \"127.0.0.1:2\"}]\n";
        let c = AgentConfig::parse(&format!(
            "{base}replication:\n  listen: 127.0.0.1:3\n  data_dir: /tmp/x\n  services: {{image: {{id_pointers: [\"/image/id\"]}}}}\n  test_hooks: {{delay_before_delivery_ms: {{B: 5}}}}\n"
        ))
        .unwrap();
        let r = c.replication.unwrap();
        assert_eq!(r.listen.port(), 3);
        assert_eq!(r.test_hooks.delay_before_delivery_ms.get("B"), Some(&5));
        for (extra, needle) in [
            ("  listen: 127.0.0.1:1\n  data_dir: x\n", "replication.listen"),
            ("  listen: 127.0.0.1:3\n  data_dir: x\n  services: {video: {}}\n", "replication.services.video"),
            ("  listen: 127.0.0.1:3\n  data_dir: x\n  client_wait_ms: 1\n", "client_wait_ms"),
            ("  listen: 127.0.0.1:3\n  data_dir: x\n  test_hooks: {delay_after_delivery_ms: {C: 1}}\n", "unknown site `C`"),
            ("  listen: 127.0.0.1:3\n", "data_dir"),
        ] {
            let e = format!("{:#}", AgentConfig::parse(&format!("{base}replication:\n{extra}")).unwrap_err());
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let base = "site: A\nlisten: 127.0.0.1:1\nplaintext: true\n";
        for (extra, needle) in [
            ("bogus: 1\n", "bogus"),
            ("interval_ms: 0\n", "interval_ms"),
            ("rtt_smoothing: 0\n", "rtt_smoothing"),
            ("peers: [{name: A, url: \"http://x:1\"}]\n", "peers[0].name"),
            ("peers: [{name: B, url: \"ftp://x\"}]\n", "peers[0].url"),
            ("peers: [{name: B, url: \"http://x:1\"}, {name: B, url: \"http://y:1\"}]\n", "peers[1].name"),
            ("peers: [{name: B, url: \"http://x:1\", rtt_ms: -1}]\n", "peers[0].rtt_ms"),
            ("peers: [{name: a-b, url: \"http://x:1\"}, {name: a_b, url: \"http://y:1\"}]\n", "a_b"),
            ("services: [{name: s, address: \"nope\"}]\n", "address"),
            ("peers: [{name: B, url: \"https://x:1\"}]\n", "peers[0].url"),
            ("peer_listen: 127.0.0.1:1\n", "`peer_listen`: the same address as `listen`"),
        ] {
            let e = format!("{:#}", AgentConfig::parse(&format!("{base}{extra}")).unwrap_err());
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }

    #[test]
    fn tls_between_agents_is_required_or_explicitly_off() {
        let base = "site: A\nlisten: 127.0.0.1:1\n";
        let tls = "tls: { cert: /c, key: /k, ca: /a }\n";
        let peer = "peers: [{name: B, url: \"https://x:1\"}]\n";
        let ok = |t: &str| AgentConfig::parse(&format!("{base}{t}")).unwrap();
        let rejects = |t: &str, needle: &str| {
            let e = format!("{:#}", AgentConfig::parse(&format!("{base}{t}")).unwrap_err());
            assert!(e.contains(needle), "{t}: {e}");
        };
        // Nothing between sites: neither is needed.
        assert!(ok("").tls.is_none());
        rejects("peers: [{name: B, url: \"http://x:1\"}]\n", "`tls`: missing");
        rejects("peer_listen: 127.0.0.1:2\n", "`tls`: missing");
        rejects(&format!("plaintext: true\n{tls}"), "not both");
        rejects(&format!("{tls}{peer}"), "`peer_listen`: missing");
        rejects(&format!("{tls}peer_listen: 127.0.0.1:2\npeers: [{{name: B, url: \"http://x:1\"}}]\n"), "expected https://");
        rejects("tls: { cert: /c }\npeer_listen: 127.0.0.1:2\n", "key");
        let c = ok(&format!("{tls}peer_listen: 127.0.0.1:2\n{peer}"));
        assert_eq!(c.tls.unwrap().ca, std::path::PathBuf::from("/a"));
        assert_eq!(c.peer_listen.unwrap().port(), 2);
        // Plaintext with a listener of its own for the peers.
        assert!(ok("plaintext: true\npeer_listen: 127.0.0.1:2\npeers: [{name: B, url: \"http://x:1\"}]\n").plaintext);
    }
}
