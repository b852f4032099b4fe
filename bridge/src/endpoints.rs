//! Endpoint targets: `CLUSTER@host:port`, one server of a cluster that a filter learned at run
//! time (a Kafka broker from Metadata). The bridge opens one only if the cluster's
//! configuration allows that endpoint, so a filter can never use the bridge as an open relay.
//!
//! What a cluster allows: `clusters.NAME.endpoints`, a list of patterns `HOST:PORT` where
//! `HOST` is a name or address compared as text (case-insensitive), `*` (any host) or
//! `*.suffix` (any name ending in `.suffix`), and `PORT` is a number, `*` or a range `LO-HI`.
//! A cluster always allows its own `address`/`addresses`, and `endpoints` allows more. A
//! cluster known only from Envoy's admin allows the hosts Envoy lists for it.

use std::fmt;

use crate::config::check_host_port;

/// The separator between a cluster name and an endpoint in an `OPEN` target.
pub const SEPARATOR: char = '@';

/// Splits an `OPEN` target into (cluster, endpoint); `None` for a plain cluster name.
pub fn split_target(target: &str) -> Option<(&str, &str)> {
    target.split_once(SEPARATOR)
}

/// One allowed-endpoint pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    host: HostPattern,
    ports: (u16, u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Suffix(String),
    Exact(String),
}

impl Pattern {
    /// Parses `HOST:PORT` (see the module documentation); the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` is not HOST:PORT"))?;
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(format!(
                    "`{s}`: a host pattern is `*`, `*.suffix` or a name"
                ));
            }
            HostPattern::Suffix(format!(".{}", suffix.to_ascii_lowercase()))
        } else if host.is_empty() || host.contains('*') {
            return Err(format!(
                "`{s}`: a host pattern is `*`, `*.suffix` or a name"
            ));
        } else {
            HostPattern::Exact(host.to_ascii_lowercase())
        };
        let ports = if port == "*" {
            (1, u16::MAX)
        } else if let Some((lo, hi)) = port.split_once('-') {
            let lo = parse_port(s, lo)?;
            let hi = parse_port(s, hi)?;
            if lo > hi {
                return Err(format!("`{s}`: the port range is empty"));
            }
            (lo, hi)
        } else {
            let p = parse_port(s, port)?;
            (p, p)
        };
        Ok(Pattern { host, ports })
    }

    /// True when `endpoint` (`host:port`) is one this pattern allows.
    pub fn allows(&self, endpoint: &str) -> bool {
        let Some((host, port)) = endpoint.rsplit_once(':') else {
            return false;
        };
        let Ok(port) = port.parse::<u16>() else {
            return false;
        };
        if port < self.ports.0 || port > self.ports.1 {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Suffix(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
            HostPattern::Exact(h) => &host == h,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Suffix(s) => write!(f, "*{s}")?,
            HostPattern::Exact(h) => f.write_str(h)?,
        }
        match self.ports {
            (1, u16::MAX) => f.write_str(":*"),
            (lo, hi) if lo == hi => write!(f, ":{lo}"),
            (lo, hi) => write!(f, ":{lo}-{hi}"),
        }
    }
}

fn parse_port(s: &str, p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{s}`: `{p}` is not a port (1-65535)")),
        Ok(n) => Ok(n),
    }
}

/// Checks that `endpoint` is a `host:port` a filter may name at all.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.contains(SEPARATOR) {
        return Err(format!("endpoint `{endpoint}` has a second `{SEPARATOR}`"));
    }
    check_host_port(endpoint)
}

/// True when a cluster whose configuration is `patterns` (`None`: none given) and `addresses`
/// allows `endpoint`: one of its addresses, or one its patterns allow.
pub fn allowed(patterns: Option<&[Pattern]>, addresses: &[String], endpoint: &str) -> bool {
    addresses.iter().any(|a| a.eq_ignore_ascii_case(endpoint))
        || patterns.is_some_and(|p| p.iter().any(|p| p.allows(endpoint)))
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
