//! The HTTP filter's configuration: Écharde's vocabulary with
//! `workload_type: http` and an `http:` section.
//!
//! ```yaml
//! workload_type: http
//! type_proxy: upstream               # informational, as for every filter
//! default_cluster: dc_1_image        # the local instance of the service this listener serves
//! local_cluster: dc_1_image          # (defaults to default_cluster; the one used)
//! http:
//!   service: image                   # the service behind this listener (required)
//!   site: DC 1                       # the site this Envoy runs in (required)
//!   sites: [DC 1, DC 2, DC 3]        # every site scopes may name
//!   services: [compute, image]       # every service scopes may name
//!   cluster_pattern: "{site}_{service}"
//!   clusters:                        # explicit (service, site) -> cluster, win over the pattern
//!     - { service: image, site: DC 4, cluster: dc_4_images_v2 }
//!   agent:                           # site health for `;` and `around` (optional)
//!     cluster: geomesh_agent         # Envoy cluster of the local geomesh-agent
//!     authority: geomesh-agent       # :authority of the call (default geomesh-agent)
//!     path: /v1/sites                # (default)
//!     tick_ms: 500                   # fetch period (default 500)
//!     timeout_ms: 1000               # per fetch (default 1000)
//!     stale_after_ms: 10000          # forget the table if no fetch succeeded for this long
//!   headers:
//!     cluster: x-geomesh-cluster     # the header the route's cluster_header reads
//!     forwarded_by: x-geomesh-forwarded-by
//!   token_cache:                     # the X-Auth-Token piggyback memory
//!     ttl_ms: 60000
//!     slots: 1024
//!   replication:                     # resources of this service may be replicated (`&`, optional)
//!     cluster: geomesh_agent_proxy   # Envoy cluster of the local agent's proxy listener
//! ```
//!
//! With `replication`, every request this site serves for the service goes
//! through the local agent (docs/replication.md, "Filter -> agent hand-over"):
//! see [`crate::request`].
//!
//! `routing_table` is refused (it means nothing for HTTP). Every error names
//! the field (`http.agent.tick_ms`). The fields, ranges, defaults and text rules
//! are declared once, in [`table`], which the JSON Schema is written from too.

use geomesh_core::config::fields::{as_map, kind_of, opt_str, req_str};
use geomesh_core::config::spec::{Section, Text};
use geomesh_core::{Config, ConfigError, WorkloadType};
use serde_yaml_ng::{Mapping, Value};

use crate::resolve::Registry;

pub mod table;

use table::{AGENT, CLUSTER_ENTRY, HEADERS, HTTP, REPLICATION, TOKEN_CACHE};

/// Where and how often the filter asks the local agent for the site table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// Envoy cluster of the local agent.
    pub cluster: String,
    /// `:authority` of the call.
    pub authority: String,
    /// `:path` of the call.
    pub path: String,
    /// Fetch period in milliseconds.
    pub tick_ms: u64,
    /// Timeout of one fetch in milliseconds.
    pub timeout_ms: u64,
    /// After this long without a successful fetch the table is dropped
    /// (everything counts as available again) rather than trusted.
    pub stale_after_ms: u64,
}

/// The piggyback token memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheSettings {
    /// How long a stripped token's scope is remembered.
    pub ttl_ms: u64,
    /// Number of shared-data slots (bounds the memory).
    pub slots: u32,
}

/// Where requests for a service whose resources may be replicated go: the
/// local agent's proxy listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSettings {
    /// Envoy cluster of the local agent's proxy listener (`replication.listen`
    /// in the agent's configuration).
    pub cluster: String,
}

/// A validated `workload_type: http` configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The service this listener serves.
    pub service: String,
    /// The site this Envoy runs in.
    pub site: String,
    /// The local instance's cluster (`local_cluster`).
    pub local_cluster: String,
    /// (service, site) -> cluster.
    pub registry: Registry,
    /// Site health source; `None`: no health, every site counts as available.
    pub agent: Option<AgentSettings>,
    /// Request header the route's `cluster_header` reads.
    pub cluster_header: String,
    /// Request header marking a request forwarded by a peer site's filter.
    pub forwarded_header: String,
    /// Token memory.
    pub token_cache: TokenCacheSettings,
    /// `Some` when the service's resources may be replicated (`&`): requests
    /// served by this site go through the local agent.
    pub replication: Option<ReplicationSettings>,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::new(field, message)
}

/// The text field `key` of the map at `path`, else its declared default.
fn text_or_default<'a>(
    section: &Section,
    map: &'a Mapping,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ConfigError> {
    Ok(opt_str(map, key, path)?.or(section.declared(key, path)?.default_text()))
}

fn str_list(map: &Mapping, key: &str, path: &str) -> Result<Vec<String>, ConfigError> {
    let p = format!("{path}.{key}");
    match map.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| err(format!("{p}[{i}]"), format!("expected a string, found {}", kind_of(v))))
            })
            .collect(),
        Some(other) => Err(err(p, format!("expected a list of names, found {}", kind_of(other)))),
    }
}

/// An HTTP header name we write: lowercase token characters only.
fn header_name(s: &str, field: &str) -> Result<String, ConfigError> {
    if Text::HeaderName.accepts(s) {
        Ok(s.to_owned())
    } else {
        Err(err(
            field,
            format!("`{}` is not a lowercase HTTP header name (a-z, 0-9, '-', '_')", s.escape_default()),
        ))
    }
}

impl HttpSettings {
    /// Parses a whole filter configuration text: the common fields with
    /// [`Config::parse`], then the `http:` section.
    pub fn parse(text: &[u8]) -> Result<(Config, HttpSettings), ConfigError> {
        let config = Config::parse(text)?;
        let settings = Self::from_config(&config)?;
        Ok((config, settings))
    }

    /// Validates the `http:` section of an already parsed configuration.
    pub fn from_config(config: &Config) -> Result<HttpSettings, ConfigError> {
        if config.workload_type != WorkloadType::Http {
            return Err(err(
                "workload_type",
                format!(
                    "the scope filter serves `http`, the configuration says `{}`",
                    config.workload_type.name()
                ),
            ));
        }
        if !config.routes.is_empty() {
            return Err(err(
                "routing_table",
                "not used by workload_type http: scopes choose the site, `http.clusters` and `http.cluster_pattern` name the clusters",
            ));
        }
        let Some(section) = config.extension.as_ref() else {
            return Err(err("http", "missing; it names at least `service` and `site`"));
        };
        let map = as_map(section, "http")?;
        HTTP.check(map, "http")?;
        let service = req_str(map, "service", "http")?.to_owned();
        let site = req_str(map, "site", "http")?.to_owned();

        let mut builder = Registry::builder(site.clone()).service(service.clone());
        for s in str_list(map, "sites", "http")? {
            builder = builder.site(s);
        }
        for s in str_list(map, "services", "http")? {
            builder = builder.service(s);
        }
        if let Some(p) = opt_str(map, "cluster_pattern", "http")? {
            builder = builder.pattern(p);
        }
        // The local instance of this listener's service is local_cluster, whatever the pattern
        // says; an explicit entry for the same pair must agree (the builder refuses two).
        let mut explicit_local = None;
        match map.get("clusters") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("http.clusters[{i}]");
                    let m = as_map(item, &p)?;
                    CLUSTER_ENTRY.check(m, &p)?;
                    let svc = req_str(m, "service", &p)?;
                    let st = req_str(m, "site", &p)?;
                    let cl = req_str(m, "cluster", &p)?;
                    if svc == service && st == site {
                        explicit_local = Some((p.clone(), cl.to_owned()));
                    }
                    builder = builder.cluster(svc, st, cl);
                }
            }
            Some(other) => {
                return Err(err(
                    "http.clusters",
                    format!("expected a list of {{service, site, cluster}}, found {}", kind_of(other)),
                ))
            }
        }
        match explicit_local {
            Some((p, cl)) if cl != config.local_cluster => {
                return Err(err(
                    p,
                    format!(
                        "cluster `{cl}` for ({service}, {site}) differs from local_cluster `{}`; the local instance is local_cluster",
                        config.local_cluster
                    ),
                ))
            }
            Some(_) => {}
            None => builder = builder.cluster(service.clone(), site.clone(), config.local_cluster.clone()),
        }
        let registry = builder.build().map_err(|e| err("http", e.0))?;

        let agent = match map.get("agent") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let m = as_map(v, "http.agent")?;
                AGENT.check(m, "http.agent")?;
                let cluster = req_str(m, "cluster", "http.agent")?.to_owned();
                let authority = text_or_default(&AGENT, m, "authority", "http.agent")?
                    .unwrap_or_default()
                    .to_owned();
                let path = text_or_default(&AGENT, m, "path", "http.agent")?
                    .unwrap_or_default()
                    .to_owned();
                if !AGENT.declared("path", "http.agent")?.text().accepts(&path) {
                    return Err(err("http.agent.path", "expected an absolute path such as /v1/sites"));
                }
                if !AGENT.declared("authority", "http.agent")?.text().accepts(&authority) {
                    return Err(err("http.agent.authority", "expected a host name, no spaces"));
                }
                let tick_ms = AGENT.int(m, "tick_ms", "http.agent")?;
                let timeout_ms = AGENT.int(m, "timeout_ms", "http.agent")?;
                let stale_after_ms = AGENT.int(m, "stale_after_ms", "http.agent")?;
                if stale_after_ms <= tick_ms {
                    return Err(err(
                        "http.agent.stale_after_ms",
                        format!("must be longer than tick_ms ({tick_ms})"),
                    ));
                }
                Some(AgentSettings {
                    cluster,
                    authority,
                    path,
                    tick_ms,
                    timeout_ms,
                    stale_after_ms,
                })
            }
        };

        let no_fields = Mapping::new();
        let headers = match map.get("headers").filter(|v| !v.is_null()) {
            Some(v) => as_map(v, "http.headers")?,
            None => &no_fields,
        };
        HEADERS.check(headers, "http.headers")?;
        let cluster_header = header_name(
            text_or_default(&HEADERS, headers, "cluster", "http.headers")?.unwrap_or_default(),
            "http.headers.cluster",
        )?;
        let forwarded_header = header_name(
            text_or_default(&HEADERS, headers, "forwarded_by", "http.headers")?.unwrap_or_default(),
            "http.headers.forwarded_by",
        )?;
        let reserved = [
            crate::carrier::X_SCOPE,
            crate::carrier::X_AUTH_TOKEN,
            crate::carrier::BAGGAGE,
        ];
        for (h, field) in [
            (&cluster_header, "http.headers.cluster"),
            (&forwarded_header, "http.headers.forwarded_by"),
        ] {
            if reserved.contains(&h.as_str()) {
                return Err(err(field, format!("`{h}` is a scope carrier")));
            }
        }
        if cluster_header == forwarded_header {
            return Err(err("http.headers", "`cluster` and `forwarded_by` must differ"));
        }

        let tokens = match map.get("token_cache").filter(|v| !v.is_null()) {
            Some(v) => as_map(v, "http.token_cache")?,
            None => &no_fields,
        };
        TOKEN_CACHE.check(tokens, "http.token_cache")?;
        let token_cache = TokenCacheSettings {
            ttl_ms: TOKEN_CACHE.int(tokens, "ttl_ms", "http.token_cache")?,
            slots: TOKEN_CACHE.int(tokens, "slots", "http.token_cache")? as u32,
        };

        let replication = match map.get("replication") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let m = as_map(v, "http.replication")?;
                REPLICATION.check(m, "http.replication")?;
                let cluster = req_str(m, "cluster", "http.replication")?;
                if !REPLICATION.declared("cluster", "http.replication")?.text().accepts(cluster) {
                    return Err(err(
                        "http.replication.cluster",
                        "expected an Envoy cluster name (printable ASCII, no spaces)",
                    ));
                }
                Some(ReplicationSettings {
                    cluster: cluster.to_owned(),
                })
            }
        };

        Ok(HttpSettings {
            service,
            site,
            local_cluster: config.local_cluster.clone(),
            registry,
            agent,
            cluster_header,
            forwarded_header,
            token_cache,
            replication,
        })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const FULL: &str = r#"
workload_type: http
type_proxy: upstream
default_cluster: dc_1_image
http:
  service: image
  site: DC 1
  sites: [DC 1, DC 2, DC 3]
  services: [compute, image]
  cluster_pattern: "{site}_{service}"
  clusters:
    - { service: image, site: DC 4, cluster: dc_3_image }
  agent:
    cluster: geomesh_agent
    tick_ms: 250
  headers:
    cluster: x-route-to
  token_cache:
    ttl_ms: 5000
    slots: 16
  replication:
    cluster: geomesh_agent_proxy
"#;

    #[test]
    fn full_example_parses() {
        let (c, s) = HttpSettings::parse(FULL.as_bytes()).unwrap();
        assert_eq!(c.local_cluster, "dc_1_image");
        assert_eq!(s.service, "image");
        assert_eq!(s.site, "DC 1");
        assert_eq!(s.registry.cluster("image", "DC 2").unwrap(), "dc_2_image");
        assert_eq!(s.registry.cluster("image", "DC 4").unwrap(), "dc_3_image");
        assert_eq!(s.registry.cluster("image", "DC 1").unwrap(), "dc_1_image");
        assert_eq!(s.registry.cluster("compute", "DC 3").unwrap(), "dc_3_compute");
        let a = s.agent.unwrap();
        assert_eq!((a.cluster.as_str(), a.tick_ms, a.timeout_ms), ("geomesh_agent", 250, 1000));
        assert_eq!(a.path, "/v1/sites");
        assert_eq!(s.cluster_header, "x-route-to");
        assert_eq!(s.forwarded_header, "x-geomesh-forwarded-by");
        assert_eq!(s.token_cache, TokenCacheSettings { ttl_ms: 5000, slots: 16 });
        assert_eq!(s.replication.unwrap().cluster, "geomesh_agent_proxy");
    }

    #[test]
    fn minimal_config_routes_locally_only() {
        let (_, s) = HttpSettings::parse(
            b"workload_type: http\ndefault_cluster: local_img\nhttp: {service: image, site: A}",
        )
        .unwrap();
        assert_eq!(s.registry.cluster("image", "A").unwrap(), "local_img");
        assert!(s.agent.is_none());
        assert!(s.replication.is_none());
    }

    fn error_of(text: &str) -> ConfigError {
        HttpSettings::parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let base = "workload_type: http\ndefault_cluster: l\n";
        let cases: &[(&str, &str)] = &[
            ("http: {site: A}", "http.service"),
            ("http: {service: s}", "http.site"),
            ("http: {service: s, site: A, bogus: 1}", "http.bogus"),
            ("http: {service: s, site: A, sites: A}", "http.sites"),
            ("http: {service: s, site: A, sites: [1]}", "http.sites[0]"),
            ("http: {service: s, site: A, agent: {tick_ms: 100}}", "http.agent.cluster"),
            ("http: {service: s, site: A, agent: {cluster: a, tick_ms: 0}}", "http.agent.tick_ms"),
            ("http: {service: s, site: A, agent: {cluster: a, tick_ms: 500, stale_after_ms: 400}}", "http.agent.stale_after_ms"),
            ("http: {service: s, site: A, headers: {cluster: X-Big}}", "http.headers.cluster"),
            ("http: {service: s, site: A, headers: {cluster: x-scope}}", "http.headers.cluster"),
            ("http: {service: s, site: A, token_cache: {slots: 0}}", "http.token_cache.slots"),
            ("http: {service: s, site: A, clusters: [{service: s, site: A, cluster: other}]}", "http.clusters[0]"),
            ("http: {service: s, site: A, clusters: [{service: s, site: B}]}", "http.clusters[0].cluster"),
            ("http: {service: s, site: A, cluster_pattern: \"{service}\"}", "http"),
            ("http: 3", "http"),
            ("http: {service: s, site: A, replication: {}}", "http.replication.cluster"),
            ("http: {service: s, site: A, replication: {cluster: \"a b\"}}", "http.replication.cluster"),
            ("http: {service: s, site: A, replication: {cluster: a, x: 1}}", "http.replication.x"),
        ];
        for (section, field) in cases {
            let e = error_of(&format!("{base}{section}"));
            assert_eq!(e.field, *field, "{section}: {e}");
        }
        assert_eq!(error_of(base).field, "http");
        assert_eq!(
            error_of("workload_type: redis\ndefault_cluster: l\n").field,
            "workload_type"
        );
        let e = error_of(&format!("{base}routing_table: {{a: b}}\nhttp: {{service: s, site: A}}"));
        assert_eq!(e.field, "routing_table");
    }
}
