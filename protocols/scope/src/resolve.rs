//! Resolution (sans-IO): a scope, the service a request is for, a registry
//! (service, site) -> Envoy cluster and a site table (up/down, RTT) in; a
//! plan and then a decision out. No clock, no IO: the caller keeps the site
//! table current (heartbeats, static overrides) and passes it in.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::ast::{Expr, Scope};
use crate::error::{ConfigError, ResolveError};
use crate::parse::{check_service, check_site};
use crate::MAX_ALTERNATIVES;

/// Longest cluster name the registry accepts or produces.
pub const MAX_CLUSTER_NAME: usize = 255;

/// What the caller knows about sites: up or down, and round-trip times
/// between pairs of sites. Sites never reported are treated as available
/// (a static configuration with no heartbeat still routes); an unknown RTT
/// keeps a site out of every `around(...)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteTable {
    up: BTreeMap<String, bool>,
    rtt: BTreeMap<String, BTreeMap<String, Duration>>,
}

impl SiteTable {
    /// An empty table: every site available, no RTT known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records whether `site` is up (a heartbeat answered or not).
    pub fn set_up(&mut self, site: &str, up: bool) {
        self.up.insert(site.to_string(), up);
    }

    /// `Some(up)` if reported, `None` if never reported.
    pub fn is_up(&self, site: &str) -> Option<bool> {
        self.up.get(site).copied()
    }

    /// True unless `site` was reported down.
    pub fn available(&self, site: &str) -> bool {
        self.is_up(site) != Some(false)
    }

    /// Records the round-trip time between `a` and `b` (both directions).
    pub fn set_rtt(&mut self, a: &str, b: &str, rtt: Duration) {
        self.rtt
            .entry(a.to_string())
            .or_default()
            .insert(b.to_string(), rtt);
        self.rtt
            .entry(b.to_string())
            .or_default()
            .insert(a.to_string(), rtt);
    }

    /// Forgets the round-trip time between `a` and `b`.
    pub fn clear_rtt(&mut self, a: &str, b: &str) {
        if let Some(m) = self.rtt.get_mut(a) {
            m.remove(b);
        }
        if let Some(m) = self.rtt.get_mut(b) {
            m.remove(a);
        }
    }

    /// Round-trip time between `a` and `b`; zero from a site to itself.
    pub fn rtt(&self, a: &str, b: &str) -> Option<Duration> {
        if a == b {
            return Some(Duration::ZERO);
        }
        self.rtt.get(a).and_then(|m| m.get(b)).copied()
    }
}

/// How a site or service name appears in a pattern-made cluster name:
/// ASCII letters lowercased, ASCII digits kept, every other character
/// (space, `-`, `.`, `_`, any non-ASCII character) becomes one `_`.
/// `DC 1` -> `dc_1`, `Lyon-2` -> `lyon_2`, `Nantes` -> `nantes`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Site,
    Service,
}

/// A cluster naming pattern such as `{site}_{service}` or
/// `outbound|8080||{service}.{site}.svc`. Placeholders: `{site}` and
/// `{service}`, each replaced by [`sanitize`]d name; `{{` and `}}` write a
/// literal brace. `{site}` is required; literal text must be printable ASCII
/// without spaces (so the result is a valid header value and cluster name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPattern {
    parts: Vec<Part>,
    text: String,
}

impl ClusterPattern {
    /// Parses a pattern; errors name the problem.
    pub fn parse(pattern: &str) -> Result<Self, ConfigError> {
        let err = |m: String| Err(ConfigError(format!("cluster pattern {pattern:?}: {m}")));
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = pattern;
        while let Some(c) = rest.chars().next() {
            let after = rest.get(c.len_utf8()..).unwrap_or("");
            match c {
                '{' if after.starts_with('{') => {
                    lit.push('{');
                    rest = after.get(1..).unwrap_or("");
                }
                '}' if after.starts_with('}') => {
                    lit.push('}');
                    rest = after.get(1..).unwrap_or("");
                }
                '{' => {
                    let Some(end) = after.find('}') else {
                        return err("'{' without '}'".into());
                    };
                    let name = after.get(..end).unwrap_or("");
                    let part = match name {
                        "site" => Part::Site,
                        "service" => Part::Service,
                        other => {
                            return err(format!(
                                "unknown placeholder {{{other}}} (use {{site}} or {{service}})"
                            ))
                        }
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(part);
                    rest = after.get(end + 1..).unwrap_or("");
                }
                '}' => return err("'}' without '{' (write '}}' for a literal brace)".into()),
                c if c.is_ascii_graphic() => {
                    lit.push(c);
                    rest = after;
                }
                c => {
                    return err(format!(
                        "character {c:?} not allowed (printable ASCII only)"
                    ))
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        if !parts.contains(&Part::Site) {
            return err("must contain {site}".into());
        }
        Ok(ClusterPattern {
            parts,
            text: pattern.to_string(),
        })
    }

    /// The cluster name for `service` at `site`.
    pub fn render(&self, service: &str, site: &str) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Site => out.push_str(&sanitize(site)),
                Part::Service => out.push_str(&sanitize(service)),
            }
        }
        out
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for ClusterPattern {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClusterPattern::parse(s)
    }
}

impl fmt::Display for ClusterPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One destination: a site and the Envoy cluster of the service there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The site name as the registry spells it.
    pub site: String,
    /// The Envoy cluster serving the service at that site.
    pub cluster: String,
    /// Whether `site` is the registry's local site.
    pub local: bool,
}

/// What a scope says about one service, before availability is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The scope does not name the service: serve it locally, unchanged.
    Local,
    /// Sharing: one site serves it (possibly the local one).
    Share(Target),
    /// Replication: every target must get it (issue 5), in the order written.
    Replicate(Vec<Target>),
    /// Otherwise: the first alternative whose targets are all available.
    /// Each alternative has one target (sharing) or several (replication).
    Otherwise(Vec<Vec<Target>>),
}

/// The plan for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The service the request is for.
    pub service: String,
    /// What the scope says for it.
    pub plan: Plan,
}

/// What to do with a request, once availability is taken into account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not scoped: let the request through unchanged.
    Local,
    /// Send it to this target's cluster.
    Route(Target),
    /// Replicate it on these targets (issue 5).
    Replicate(Vec<Target>),
}

impl Resolution {
    /// The alternatives in order (empty for [`Plan::Local`]).
    pub fn alternatives(&self) -> Vec<&[Target]> {
        match &self.plan {
            Plan::Local => Vec::new(),
            Plan::Share(t) => vec![std::slice::from_ref(t)],
            Plan::Replicate(ts) => vec![ts.as_slice()],
            Plan::Otherwise(alts) => alts.iter().map(Vec::as_slice).collect(),
        }
    }

    /// Picks the first alternative whose every target is `available`; an
    /// error naming every site tried (and which were down) if none is.
    pub fn select_with(
        &self,
        available: impl FnMut(&Target) -> bool,
    ) -> Result<Decision, ResolveError> {
        self.select_ranked(available).map(|(_, d)| d)
    }

    /// [`Resolution::select_with`], with the position of the alternative
    /// chosen: 0 for the first (or for [`Decision::Local`]), more when the
    /// earlier ones were unavailable.
    pub fn select_ranked(
        &self,
        mut available: impl FnMut(&Target) -> bool,
    ) -> Result<(usize, Decision), ResolveError> {
        if matches!(self.plan, Plan::Local) {
            return Ok((0, Decision::Local));
        }
        let mut tried = Vec::new();
        for (rank, alt) in self.alternatives().into_iter().enumerate() {
            let marks: Vec<(String, bool)> =
                alt.iter().map(|t| (t.site.clone(), available(t))).collect();
            if marks.iter().all(|(_, up)| *up) {
                let decision = match alt {
                    [one] => Decision::Route(one.clone()),
                    many => Decision::Replicate(many.to_vec()),
                };
                return Ok((rank, decision));
            }
            tried.push(marks);
        }
        Err(ResolveError::Unavailable {
            service: self.service.clone(),
            tried,
        })
    }

    /// [`Resolution::select_with`] using the table's up/down state.
    pub fn select(&self, sites: &SiteTable) -> Result<Decision, ResolveError> {
        self.select_with(|t| sites.available(&t.site))
    }
}

/// The set of known sites and services and their clusters: explicit
/// entries first, else the pattern. Build it with [`Registry::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    local_site: String,
    sites: Vec<String>,
    services: Vec<String>,
    pattern: Option<ClusterPattern>,
    explicit: BTreeMap<String, BTreeMap<String, String>>,
}

/// Builder for [`Registry`]; every check happens in [`RegistryBuilder::build`].
#[derive(Debug, Clone)]
pub struct RegistryBuilder {
    local_site: String,
    sites: Vec<String>,
    services: Vec<String>,
    pattern: Option<String>,
    explicit: Vec<(String, String, String)>,
}

impl RegistryBuilder {
    /// Adds a known site.
    pub fn site(mut self, name: impl Into<String>) -> Self {
        self.sites.push(name.into());
        self
    }

    /// Adds a known service.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.services.push(name.into());
        self
    }

    /// Sets the naming pattern, e.g. `{site}_{service}`.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// An explicit cluster for (service, site); overrides the pattern and
    /// makes both names known.
    pub fn cluster(
        mut self,
        service: impl Into<String>,
        site: impl Into<String>,
        cluster: impl Into<String>,
    ) -> Self {
        self.explicit
            .push((service.into(), site.into(), cluster.into()));
        self
    }

    /// Checks names (same rules as the language), cluster names, the
    /// pattern, and that no two sites (or services) give the same pattern
    /// name.
    pub fn build(self) -> Result<Registry, ConfigError> {
        let mut sites: Vec<String> = Vec::new();
        let mut services: Vec<String> = Vec::new();
        let add = |list: &mut Vec<String>, name: &str| {
            if !list.iter().any(|s| s == name) {
                list.push(name.to_string());
            }
        };
        add(&mut sites, &self.local_site);
        for s in &self.sites {
            add(&mut sites, s);
        }
        for s in &self.services {
            add(&mut services, s);
        }
        for (svc, site, _) in &self.explicit {
            add(&mut services, svc);
            add(&mut sites, site);
        }
        for s in &sites {
            check_site(s).map_err(|r| ConfigError(format!("site {s:?}: {r}")))?;
        }
        for s in &services {
            check_service(s).map_err(|r| ConfigError(format!("service {s:?}: {r}")))?;
        }
        let pattern = match &self.pattern {
            Some(p) => Some(ClusterPattern::parse(p)?),
            None => None,
        };
        if pattern.is_some() {
            for (what, list) in [("sites", &sites), ("services", &services)] {
                for (i, a) in list.iter().enumerate() {
                    if let Some(b) = list.iter().skip(i + 1).find(|b| sanitize(b) == sanitize(a)) {
                        return Err(ConfigError(format!(
                            "{what} {a:?} and {b:?} both become {:?} in cluster names",
                            sanitize(a)
                        )));
                    }
                }
            }
        }
        let mut explicit: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (svc, site, cluster) in self.explicit {
            if cluster.is_empty()
                || cluster.len() > MAX_CLUSTER_NAME
                || !cluster.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(ConfigError(format!(
                    "cluster {cluster:?} for ({svc}, {site}): 1 to {MAX_CLUSTER_NAME} printable ASCII characters, no spaces"
                )));
            }
            let slot = explicit.entry(svc.clone()).or_default();
            if slot.insert(site.clone(), cluster).is_some() {
                return Err(ConfigError(format!("two clusters for ({svc}, {site})")));
            }
        }
        Ok(Registry {
            local_site: self.local_site,
            sites,
            services,
            pattern,
            explicit,
        })
    }
}

impl Registry {
    /// Starts a registry whose local site (the site this proxy runs in) is
    /// `local_site`.
    pub fn builder(local_site: impl Into<String>) -> RegistryBuilder {
        RegistryBuilder {
            local_site: local_site.into(),
            sites: Vec::new(),
            services: Vec::new(),
            pattern: None,
            explicit: Vec::new(),
        }
    }

    /// The site this proxy runs in.
    pub fn local_site(&self) -> &str {
        &self.local_site
    }

    /// Known sites, in the order given (local site first).
    pub fn sites(&self) -> &[String] {
        &self.sites
    }

    /// Known services, in the order given.
    pub fn services(&self) -> &[String] {
        &self.services
    }

    /// The naming pattern, if any.
    pub fn pattern(&self) -> Option<&ClusterPattern> {
        self.pattern.as_ref()
    }

    fn site_index(&self, site: &str) -> Result<usize, ResolveError> {
        self.sites
            .iter()
            .position(|s| s == site)
            .ok_or_else(|| ResolveError::UnknownSite(site.to_string()))
    }

    fn check_service(&self, service: &str) -> Result<(), ResolveError> {
        if self.services.iter().any(|s| s == service) {
            Ok(())
        } else {
            Err(ResolveError::UnknownService(service.to_string()))
        }
    }

    /// The cluster of `service` at `site`: explicit entry, else pattern.
    pub fn cluster(&self, service: &str, site: &str) -> Result<String, ResolveError> {
        self.check_service(service)?;
        self.site_index(site)?;
        if let Some(c) = self.explicit.get(service).and_then(|m| m.get(site)) {
            return Ok(c.clone());
        }
        match &self.pattern {
            Some(p) => Ok(p.render(service, site)),
            None => Err(ResolveError::NoCluster {
                service: service.to_string(),
                site: site.to_string(),
            }),
        }
    }

    fn target(&self, service: &str, idx: usize) -> Result<Target, ResolveError> {
        let site = self.sites.get(idx).cloned().unwrap_or_default();
        let cluster = self.cluster(service, &site)?;
        let local = site == self.local_site;
        Ok(Target {
            site,
            cluster,
            local,
        })
    }

    /// Every service and site the scope names must be known; the first
    /// unknown one, in reading order, is the error.
    pub fn check(&self, scope: &Scope) -> Result<(), ResolveError> {
        for e in scope.entries() {
            self.check_service(&e.service)?;
            let mut stack = vec![&e.expr];
            while let Some(x) = stack.pop() {
                match x {
                    Expr::Site(s) | Expr::Around { site: s, .. } => {
                        self.site_index(s)?;
                    }
                    Expr::Replicate(ops) | Expr::Otherwise(ops) => stack.extend(ops.iter().rev()),
                }
            }
        }
        Ok(())
    }

    /// What `scope` says for requests to `service`: checks the whole scope
    /// ([`Registry::check`]), then expands the service's expression into
    /// alternatives of site sets: `&` distributes over `;`
    /// (`(A ; B) & C` = `(A & C) ; (B & C)`), `around(A, r)` becomes
    /// `A ; S2 ; S3 ...` (sites within `r` of A, nearest first, ties by
    /// registry order), duplicate sites in a set and duplicate alternatives
    /// are dropped (first kept).
    pub fn resolve(
        &self,
        scope: &Scope,
        service: &str,
        sites: &SiteTable,
    ) -> Result<Resolution, ResolveError> {
        self.check_service(service)?;
        self.check(scope)?;
        let Some(expr) = scope.get(service) else {
            return Ok(Resolution {
                service: service.to_string(),
                plan: Plan::Local,
            });
        };
        let alts = self.expand(expr, service, sites)?;
        let mut targets: Vec<Vec<Target>> = Vec::with_capacity(alts.len());
        for alt in &alts {
            let mut ts = Vec::with_capacity(alt.len());
            for &i in alt {
                ts.push(self.target(service, i)?);
            }
            targets.push(ts);
        }
        let plan = if targets.len() == 1 {
            let mut only = targets.pop().unwrap_or_default();
            if only.len() == 1 {
                match only.pop() {
                    Some(t) => Plan::Share(t),
                    None => Plan::Replicate(Vec::new()),
                }
            } else {
                Plan::Replicate(only)
            }
        } else {
            Plan::Otherwise(targets)
        };
        Ok(Resolution {
            service: service.to_string(),
            plan,
        })
    }

    /// `around(center, within)` as site indices, center first.
    fn around(&self, center: usize, within: Duration, sites: &SiteTable) -> Vec<Vec<usize>> {
        let c = self.sites.get(center).map(String::as_str).unwrap_or("");
        let mut near: Vec<(Duration, usize)> = self
            .sites
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != center)
            .filter_map(|(i, s)| sites.rtt(c, s).filter(|d| *d <= within).map(|d| (d, i)))
            .collect();
        near.sort();
        let mut out = vec![vec![center]];
        out.extend(near.into_iter().map(|(_, i)| vec![i]));
        out
    }

    /// Post-order over the tree with an explicit stack.
    fn expand(
        &self,
        root: &Expr,
        service: &str,
        sites: &SiteTable,
    ) -> Result<Vec<Vec<usize>>, ResolveError> {
        enum Step<'e> {
            Visit(&'e Expr),
            Combine(&'e Expr),
        }
        let too_large = || ResolveError::PlanTooLarge {
            service: service.to_string(),
            limit: MAX_ALTERNATIVES,
        };
        let mut work = vec![Step::Visit(root)];
        let mut vals: Vec<Vec<Vec<usize>>> = Vec::new();
        while let Some(step) = work.pop() {
            match step {
                Step::Visit(e) => match e {
                    Expr::Site(s) => vals.push(vec![vec![self.site_index(s)?]]),
                    Expr::Around { site, within } => {
                        let alts = self.around(self.site_index(site)?, *within, sites);
                        if alts.len() > MAX_ALTERNATIVES {
                            return Err(too_large());
                        }
                        vals.push(alts);
                    }
                    Expr::Replicate(ops) | Expr::Otherwise(ops) => {
                        work.push(Step::Combine(e));
                        work.extend(ops.iter().rev().map(Step::Visit));
                    }
                },
                Step::Combine(e) => {
                    let (ops, is_rep) = match e {
                        Expr::Replicate(ops) => (ops, true),
                        Expr::Otherwise(ops) => (ops, false),
                        _ => continue,
                    };
                    let args = vals.split_off(vals.len().saturating_sub(ops.len()));
                    let mut out: Vec<Vec<usize>> = Vec::new();
                    if is_rep {
                        out.push(Vec::new());
                        for arg in args {
                            if out.len().saturating_mul(arg.len()) > MAX_ALTERNATIVES {
                                return Err(too_large());
                            }
                            let mut next = Vec::with_capacity(out.len() * arg.len());
                            for a in &out {
                                for b in &arg {
                                    let mut set = a.clone();
                                    for &s in b {
                                        if !set.contains(&s) {
                                            set.push(s);
                                        }
                                    }
                                    push_unique(&mut next, set);
                                }
                            }
                            out = next;
                        }
                    } else {
                        for arg in args {
                            for set in arg {
                                push_unique(&mut out, set);
                            }
                        }
                        if out.len() > MAX_ALTERNATIVES {
                            return Err(too_large());
                        }
                    }
                    vals.push(out);
                }
            }
        }
        Ok(vals.pop().unwrap_or_default())
    }
}

/// Adds `set` unless an alternative with the same sites (any order) is there.
fn push_unique(list: &mut Vec<Vec<usize>>, set: Vec<usize>) {
    let same = |a: &Vec<usize>| a.len() == set.len() && a.iter().all(|x| set.contains(x));
    if !list.iter().any(same) {
        list.push(set);
    }
}
