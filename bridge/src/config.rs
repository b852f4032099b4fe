//! The bridge's configuration file (YAML, see docs/bridge-protocol.md, "Configuration of the
//! bridge"). Unknown fields are rejected, and every error names the field it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration error; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This bridge's site name.
    pub site: String,
    /// Filter connections: `host:port` or `unix:/path`.
    pub listen: String,
    /// gRPC from other bridges: `host:port`. Absent: this bridge serves no other site.
    #[serde(default)]
    pub grpc_listen: Option<String>,
    /// Admin HTTP (`/ready`, `/stats`): `host:port`. Absent: none.
    #[serde(default)]
    pub admin_listen: Option<String>,
    #[serde(default)]
    pub defaults: Defaults,
    /// Envoy cluster name -> where it is.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterSpec>,
    /// Other sites' bridges.
    #[serde(default)]
    pub sites: BTreeMap<String, SiteSpec>,
    /// Envoy admin URL (`http://host:port`): targets not in `clusters` are looked up in its
    /// `/clusters?format=json` (healthy hosts of the cluster of that name).
    #[serde(default)]
    pub envoy_admin: Option<String>,
    /// TLS with client certificates between sites (crate::tls). Required for `grpc_listen`
    /// or `sites` unless `plaintext` is true.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsFiles>,
    /// Tunnels between sites without TLS, asked for explicitly (a mesh's mTLS or an encrypted
    /// overlay network carries them, or a test).
    #[serde(default)]
    pub plaintext: bool,
}

/// Limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Connect timeout when `OPEN` says 0 (ms).
    pub connect_timeout_ms: u32,
    /// Bytes a channel may hold for its backend (before connect, or while the backend does not
    /// read) before the bridge stops reading the filter connection (backpressure; a frame that
    /// finds the channel under the limit is taken whole).
    pub channel_buffer_bytes: usize,
    /// Bytes for the filter the bridge holds before it stops reading backends (backpressure).
    pub filter_buffer_bytes: usize,
    /// Pending `WAKE` timers per filter connection; more is a connection error.
    pub max_timers: usize,
    /// How long an answer of Envoy's admin API is used (ms).
    pub envoy_admin_ttl_ms: u32,
    /// Interval of the `Ping` to every site (ms); 0 = no pings.
    pub ping_interval_ms: u32,
    /// On SIGTERM: how long open filter connections and tunnels may go on before they are cut
    /// (ms); 0 = cut at once. Keep it below the orchestrator's grace period (Kubernetes
    /// `terminationGracePeriodSeconds`, Swarm `stop_grace_period`).
    pub drain_timeout_ms: u32,
    /// After a filter connection's end of stream (the client half-closed): how long its
    /// backends, half-closed in turn, may go on answering before the channels left are closed
    /// with `STALLED` and the connection ends (ms); 0 = at once.
    pub half_close_drain_ms: u32,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 1000,
            channel_buffer_bytes: 8 << 20,
            filter_buffer_bytes: 4 << 20,
            max_timers: 65536,
            envoy_admin_ttl_ms: 2000,
            ping_interval_ms: 5000,
            drain_timeout_ms: 20_000,
            half_close_drain_ms: 5000,
        }
    }
}

/// Where a cluster is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// One `host:port`.
    #[serde(default)]
    pub address: Option<String>,
    /// Several `host:port` (tried in turn, starting round-robin).
    #[serde(default)]
    pub addresses: Option<Vec<String>>,
    /// The site the cluster lives at. At that site the addresses are used; elsewhere the
    /// channel goes to that site's bridge.
    #[serde(default)]
    pub site: Option<String>,
    /// More endpoints (`host:port` patterns) than its own addresses that a filter may open in
    /// this cluster by name (`CLUSTER@host:port`, crate::endpoints).
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// `endpoints` parsed (filled by [`Config::parse`]).
    #[serde(skip)]
    pub endpoint_patterns: Option<Vec<crate::endpoints::Pattern>>,
}

/// Another site's bridge.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// `http://host:port` of its `grpc_listen`.
    pub grpc: String,
}

/// Where a filter-facing listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => f.write_str(a),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Where a resolved cluster is, per this bridge's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement<'a> {
    /// Connect to these addresses.
    Local(&'a [String]),
    /// Ask this site's bridge.
    Remote(&'a str),
}

impl Config {
    /// Parses and validates YAML (JSON is YAML too).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut cfg: Config = serde_yaml_ng::from_str(text).map_err(|e| ConfigError(format!("config: {e}")))?;
        cfg.normalise()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// `address` becomes a one-element `addresses`, so that the rest only reads `addresses`.
    fn normalise(&mut self) -> Result<(), ConfigError> {
        for (name, spec) in &mut self.clusters {
            match (&spec.address, &spec.addresses) {
                (Some(_), Some(_)) => return err(format!("clusters.{name}: give `address` or `addresses`, not both")),
                (Some(a), None) => spec.addresses = Some(vec![a.clone()]),
                _ => {}
            }
            if let Some(list) = &spec.endpoints {
                let patterns = list
                    .iter()
                    .map(|p| crate::endpoints::Pattern::parse(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ConfigError(format!("clusters.{name}.endpoints: {e}")))?;
                spec.endpoint_patterns = Some(patterns);
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.site.trim().is_empty() {
            return err("site: must not be empty");
        }
        self.listen_addr()?;
        if let Some(a) = &self.grpc_listen {
            check_host_port(a).map_err(|e| ConfigError(format!("grpc_listen: {e}")))?;
        }
        if let Some(a) = &self.admin_listen {
            check_host_port(a).map_err(|e| ConfigError(format!("admin_listen: {e}")))?;
        }
        let d = &self.defaults;
        if d.connect_timeout_ms == 0 {
            return err("defaults.connect_timeout_ms: must be > 0");
        }
        if d.channel_buffer_bytes == 0 {
            return err("defaults.channel_buffer_bytes: must be > 0");
        }
        if d.filter_buffer_bytes < 65536 {
            return err("defaults.filter_buffer_bytes: must be at least 65536");
        }
        if d.max_timers == 0 {
            return err("defaults.max_timers: must be > 0");
        }
        for (name, site) in &self.sites {
            if name == &self.site {
                return err(format!("sites.{name}: this is the bridge's own site"));
            }
            check_grpc_url(&site.grpc).map_err(|e| ConfigError(format!("sites.{name}.grpc: {e}")))?;
        }
        for (name, spec) in &self.clusters {
            if name.is_empty() {
                return err("clusters: a cluster name is empty");
            }
            if let Some(addrs) = &spec.addresses {
                if addrs.is_empty() {
                    return err(format!("clusters.{name}.addresses: must not be empty"));
                }
                for a in addrs {
                    check_host_port(a).map_err(|e| ConfigError(format!("clusters.{name}.addresses: {e}")))?;
                }
            }
            match &spec.site {
                Some(site) if site != &self.site => {
                    if !self.sites.contains_key(site) {
                        return err(format!("clusters.{name}.site: unknown site `{site}` (not in `sites`)"));
                    }
                }
                _ => {
                    if spec.addresses.is_none() {
                        return err(format!(
                            "clusters.{name}: needs `address` or `addresses` (or `site` naming another site)"
                        ));
                    }
                }
            }
        }
        if let Some(url) = &self.envoy_admin {
            parse_http_url(url).map_err(|e| ConfigError(format!("envoy_admin: {e}")))?;
        }
        crate::tls::validate(self)
    }

    /// The filter-facing listener.
    pub fn listen_addr(&self) -> Result<ListenAddr, ConfigError> {
        if let Some(p) = self.listen.strip_prefix("unix:") {
            if p.is_empty() {
                return err("listen: `unix:` needs a path");
            }
            return Ok(ListenAddr::Unix(PathBuf::from(p)));
        }
        check_host_port(&self.listen).map_err(|e| ConfigError(format!("listen: {e}")))?;
        Ok(ListenAddr::Tcp(self.listen.clone()))
    }

    /// Where a configured cluster is; `None` if the configuration does not name it.
    pub fn placement(&self, target: &str) -> Option<Placement<'_>> {
        let spec = self.clusters.get(target)?;
        match &spec.site {
            Some(site) if site != &self.site => Some(Placement::Remote(site)),
            _ => spec.addresses.as_deref().map(Placement::Local),
        }
    }
}

impl Config {
    /// True when configured cluster `cluster` allows a filter to open `endpoint` by name
    /// (crate::endpoints): one of its own addresses or of its `endpoints` patterns.
    pub fn allows_endpoint(&self, cluster: &str, endpoint: &str) -> bool {
        self.clusters.get(cluster).is_some_and(|spec| {
            crate::endpoints::allowed(
                spec.endpoint_patterns.as_deref(),
                spec.addresses.as_deref().unwrap_or_default(),
                endpoint,
            )
        })
    }
}

/// Checks `host:port` (IPv6 as `[::1]:port`).
pub fn check_host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("`{s}` is not host:port"));
    };
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    if port.parse::<u16>().is_err() {
        return Err(format!("`{s}` has no valid port"));
    }
    Ok(())
}

fn check_grpc_url(s: &str) -> Result<(), String> {
    // https:// (TLS) or http:// (plaintext): which one the configuration allows is crate::tls's.
    match s.strip_prefix("https://") {
        Some(rest) => parse_http_url(&format!("http://{rest}")).map(|_| ()),
        None => parse_http_url(s).map(|_| ()),
    }
}

/// Splits `http://host:port[/path]` into (`host:port`, `/path`).
pub fn parse_http_url(s: &str) -> Result<(String, String), String> {
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{s}` is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    check_host_port(authority).map_err(|e| format!("`{s}`: {e}"))?;
    Ok((authority.to_owned(), path.trim_end_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
site: dc1
listen: 127.0.0.1:15000
grpc_listen: 127.0.0.1:15001
defaults:
  connect_timeout_ms: 500
clusters:
  redis1-master: { address: 127.0.0.1:6379 }
  redis3: { addresses: [127.0.0.1:6380, "localhost:6381"] }
  redis2-master: { site: dc2 }
  shared: { site: dc1, address: 127.0.0.1:7000 }
sites:
  dc2: { grpc: "http://127.0.0.1:16001" }
envoy_admin: http://127.0.0.1:9901
plaintext: true
"#;

    #[test]
    fn parses_the_documented_shape() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.site, "dc1");
        assert_eq!(c.defaults.connect_timeout_ms, 500);
        assert_eq!(
            c.defaults.channel_buffer_bytes,
            8 << 20,
            "unset defaults keep their value"
        );
        assert_eq!(c.listen_addr().unwrap(), ListenAddr::Tcp("127.0.0.1:15000".into()));
        assert_eq!(
            c.placement("redis1-master"),
            Some(Placement::Local(&["127.0.0.1:6379".to_string()][..]))
        );
        assert_eq!(c.placement("redis2-master"), Some(Placement::Remote("dc2")));
        assert_eq!(
            c.placement("shared"),
            Some(Placement::Local(&["127.0.0.1:7000".to_string()][..]))
        );
        assert_eq!(
            c.placement("redis3")
                .map(|p| matches!(p, Placement::Local(a) if a.len() == 2)),
            Some(true)
        );
        assert_eq!(c.placement("nope"), None);
    }

    #[test]
    fn unix_listen() {
        let c = Config::parse("site: a\nlisten: unix:/tmp/b.sock\n").unwrap();
        assert_eq!(c.listen_addr().unwrap(), ListenAddr::Unix("/tmp/b.sock".into()));
    }

    fn rejects(text: &str, needle: &str) {
        let e = Config::parse(text).unwrap_err().0;
        assert!(e.contains(needle), "error `{e}` does not mention `{needle}`");
    }

    #[test]
    fn errors_name_the_field() {
        rejects("site: a\nlisten: x:1\nbogus: 1\n", "bogus");
        rejects(
            "site: a\nlisten: x:1\ndefaults: { connect_timeout_msx: 3 }\n",
            "connect_timeout_msx",
        );
        rejects("site: a\n", "listen");
        rejects("site: a\nlisten: nowhere\n", "listen");
        rejects("site: a\nlisten: 'unix:'\n", "listen");
        rejects("site: ''\nlisten: x:1\n", "site");
        rejects("site: a\nlisten: x:1\nclusters: { r: {} }\n", "clusters.r");
        rejects(
            "site: a\nlisten: x:1\nclusters: { r: { address: h:99999 } }\n",
            "clusters.r.addresses",
        );
        rejects(
            "site: a\nlisten: x:1\nclusters: { r: { addresses: [] } }\n",
            "clusters.r.addresses",
        );
        rejects(
            "site: a\nlisten: x:1\nplaintext: true\nclusters: { r: { site: b } }\n",
            "clusters.r.site",
        );
        rejects("site: a\nlisten: x:1\nclusters: { r: { site: a } }\n", "clusters.r");
        rejects("site: a\nlisten: x:1\nclusters: { r: { addresss: h:1 } }\n", "addresss");
        rejects(
            "site: a\nlisten: x:1\nclusters: { r: { address: h:1, addresses: [h:1] } }\n",
            "clusters.r",
        );
        rejects(
            "site: a\nlisten: x:1\nplaintext: true\nsites: { b: { grpc: '127.0.0.1:1' } }\n",
            "sites.b.grpc",
        );
        rejects(
            "site: a\nlisten: x:1\nplaintext: true\nsites: { b: { grpc: 'https://h:1' } }\n",
            "sites.b.grpc",
        );
        rejects(
            "site: a\nlisten: x:1\nplaintext: true\nsites: { a: { grpc: 'http://h:1' } }\n",
            "sites.a",
        );
        // Between sites: TLS, or plaintext said explicitly; the URL's scheme agrees.
        rejects("site: a\nlisten: x:1\ngrpc_listen: x:2\n", "tls: missing");
        rejects("site: a\nlisten: x:1\nsites: { b: { grpc: 'http://h:1' } }\n", "tls: missing");
        let tls = "tls: { cert: /c, key: /k, ca: /a }\n";
        rejects(
            &format!("site: a\nlisten: x:1\n{tls}sites: {{ b: {{ grpc: 'http://h:1' }} }}\n"),
            "sites.b.grpc",
        );
        rejects(&format!("site: a\nlisten: x:1\nplaintext: true\n{tls}"), "not both");
        rejects("site: a\nlisten: x:1\ntls: { cert: /c }\n", "key");
        assert!(Config::parse(&format!(
            "site: a\nlisten: x:1\ngrpc_listen: x:2\n{tls}sites: {{ b: {{ grpc: 'https://h:1' }} }}\n"
        ))
        .is_ok());
        rejects("site: a\nlisten: x:1\nenvoy_admin: localhost\n", "envoy_admin");
        rejects("site: a\nlisten: x:1\ngrpc_listen: x\n", "grpc_listen");
        rejects(
            "site: a\nlisten: x:1\ndefaults: { connect_timeout_ms: 0 }\n",
            "defaults.connect_timeout_ms",
        );
        rejects(
            "site: a\nlisten: x:1\ndefaults: { filter_buffer_bytes: 10 }\n",
            "defaults.filter_buffer_bytes",
        );
        rejects("site: [\n", "config");
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:9901").unwrap(),
            ("127.0.0.1:9901".into(), "".into())
        );
        assert_eq!(
            parse_http_url("http://h:1/admin/").unwrap(),
            ("h:1".into(), "/admin".into())
        );
        assert!(parse_http_url("http://h/").is_err());
    }
}
