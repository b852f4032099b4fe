//! geomesh's scope-lang HTTP filter (Proxy-Wasm, `envoy.filters.http.wasm`).
//!
//! A thin shell over `geomesh-scope`: every decision is
//! [`geomesh_scope::plan_request`], tested natively there. This crate only
//!
//! * parses the configuration once per root context (`on_configure`; a bad
//!   one is refused with a log line naming the field);
//! * keeps the site table of the local `geomesh-agent` current: every root
//!   context ticks (`http.agent.tick_ms`) and, unless another root context of
//!   the same VM just did, `dispatch_http_call`s the agent's `/v1/sites`
//!   through the Envoy cluster `http.agent.cluster`. The table lives in a
//!   per-VM `thread_local` (one VM per Envoy worker) shared by all root
//!   contexts, so every listener of the worker sees the same one;
//! * per request: reads the carrier headers as bytes, applies the verdict
//!   (request headers set/removed, the cluster header for the route's
//!   `cluster_header`, `clear_route_cache`), or answers with
//!   `send_http_response` (400/501/503, the crate's message as the body);
//! * keeps the piggyback token memory in Proxy-Wasm shared data (the whole
//!   Envoy process: the filter in front of `s` stores, the filter `s` calls
//!   through for `t` reads).
//!
//! For a service with `http.replication`, the verdict routes what this site
//! serves to the local agent's proxy cluster with the hand-over headers
//! (`x-geomesh-replicate` for `&`; docs/replication.md): the filter applies
//! it like any other verdict.
//!
//! Bodies are never touched: the filter implements no body callback, so
//! uploads stream through (a replicated 100 MB create included).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use geomesh_core::{Metric, WorkloadType};
use geomesh_filter_shell::stats::{count_accepted, count_rejected, Stats};
use geomesh_scope::carrier::{BAGGAGE, X_AUTH_TOKEN, X_SCOPE};
use geomesh_scope::health::{Health, MAX_SITES_DOCUMENT};
use geomesh_scope::{
    plan_request, AgentSettings, DecisionKind, HttpSettings, RequestHeaders, Verdict,
    STAT_REPLY_4XX, STAT_REPLY_5XX,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

/// Response header naming the cluster the filter chose (for operators and tests).
pub const ROUTED_TO_HEADER: &str = "x-geomesh-routed-to";
/// Response header marking an answer written by this filter.
pub const ERROR_HEADER: &str = "x-geomesh-error";
/// The group of this filter's counters: `http.<stat_prefix>.scope.decision.local`, ...
pub const STAT_GROUP: &str = "scope";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(ScopeRoot { settings: None, stats: None, plugin: String::new(), fast_since: None })
    });
}}

/// What this VM knows from one agent (keyed by the agent's Envoy cluster).
#[derive(Default)]
struct HealthSlot {
    health: Option<Rc<Health>>,
    /// Last successful fetch (Unix ms).
    fetched_at_ms: u64,
    /// Last dispatch (Unix ms).
    attempt_at_ms: u64,
    /// Token of the call in flight, if any.
    in_flight: Option<u32>,
    failures: u32,
    stale_logged: bool,
}

thread_local! {
    static HEALTH: RefCell<HashMap<String, HealthSlot>> = RefCell::new(HashMap::new());
    static ROUTE_CACHE_WARNED: Cell<bool> = const { Cell::new(false) };
}

fn now_ms(ctx: &dyn Context) -> u64 {
    ctx.get_current_time()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The health to resolve against: the agent's last table while it is fresh,
/// else nothing known (every site available; a dead site then shows as
/// Envoy's 503 naming the cluster).
fn current_health(agent: Option<&AgentSettings>, now: u64) -> Rc<Health> {
    let Some(agent) = agent else {
        return Rc::new(Health::empty());
    };
    HEALTH.with(|h| {
        let mut map = h.borrow_mut();
        let Some(slot) = map.get_mut(&agent.cluster) else {
            return Rc::new(Health::empty());
        };
        match &slot.health {
            Some(health) if now.saturating_sub(slot.fetched_at_ms) <= agent.stale_after_ms => {
                health.clone()
            }
            Some(_) => {
                if !slot.stale_logged {
                    slot.stale_logged = true;
                    log::warn!(
                        "geomesh scope: no site table from cluster {} for {} ms: resolving without health",
                        agent.cluster,
                        now.saturating_sub(slot.fetched_at_ms)
                    );
                }
                Rc::new(Health::empty())
            }
            None => Rc::new(Health::empty()),
        }
    })
}

/// Tick period (ms) until the first site table arrived, for at most [`STARTUP_MS`]; then
/// `http.agent.tick_ms`.
const STARTUP_TICK_MS: u64 = 50;
/// How long a root context ticks fast waiting for its first table.
const STARTUP_MS: u64 = 3000;

struct ScopeRoot {
    settings: Option<Rc<HttpSettings>>,
    /// Where decisions are counted (also set for a rejected configuration: its 500s count).
    stats: Option<Rc<Stats>>,
    plugin: String,
    /// Still ticking every [`STARTUP_TICK_MS`]; since when (Unix ms).
    fast_since: Option<u64>,
}

impl ScopeRoot {
    /// Asks the agent for `/v1/sites` unless a call is in flight or another
    /// root context of this VM asked less than 0.9 tick ago.
    fn fetch(&self) {
        let Some(agent) = self.settings.as_ref().and_then(|s| s.agent.as_ref()) else {
            return;
        };
        let now = now_ms(self);
        let due = HEALTH.with(|h| {
            let mut map = h.borrow_mut();
            let slot = map.entry(agent.cluster.clone()).or_default();
            let since = now.saturating_sub(slot.attempt_at_ms);
            if slot.in_flight.is_some() && since < agent.timeout_ms.saturating_mul(2) {
                return false;
            }
            let period = if slot.health.is_none() {
                STARTUP_TICK_MS.min(agent.tick_ms)
            } else {
                agent.tick_ms
            };
            since >= period.saturating_mul(9) / 10
        });
        if !due {
            return;
        }
        let result = self.dispatch_http_call(
            &agent.cluster,
            vec![
                (":method", "GET"),
                (":path", &agent.path),
                (":authority", &agent.authority),
                ("accept", "application/json"),
            ],
            None,
            vec![],
            Duration::from_millis(agent.timeout_ms),
        );
        HEALTH.with(|h| {
            let mut map = h.borrow_mut();
            let slot = map.entry(agent.cluster.clone()).or_default();
            slot.attempt_at_ms = now;
            match result {
                Ok(token) => slot.in_flight = Some(token),
                Err(status) => {
                    slot.in_flight = None;
                    slot.failures = slot.failures.saturating_add(1);
                    // While Envoy starts, the cluster may not be usable yet: quiet for a while.
                    if slot.failures == 20 || slot.failures % 200 == 0 {
                        log::warn!(
                            "geomesh scope {}: cannot call the agent through cluster {}: {:?} ({} failures in a row)",
                            self.plugin,
                            agent.cluster,
                            status,
                            slot.failures
                        );
                    }
                }
            }
        });
    }
}

impl Context for ScopeRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(agent) = self.settings.as_ref().and_then(|s| s.agent.clone()) else {
            return;
        };
        let now = now_ms(self);
        let status = self
            .get_http_call_response_header_bytes(":status")
            .unwrap_or_default();
        let parsed = if status != b"200" {
            Err(format!(
                "status {}",
                if status.is_empty() {
                    "none (timeout or connection failure)".to_owned()
                } else {
                    String::from_utf8_lossy(&status).into_owned()
                }
            ))
        } else if body_size > MAX_SITES_DOCUMENT {
            Err(format!("{body_size} bytes is over the limit of {MAX_SITES_DOCUMENT}"))
        } else {
            let body = self
                .get_http_call_response_body(0, body_size)
                .unwrap_or_default();
            Health::from_json(&body).map_err(|e| e.to_string())
        };
        HEALTH.with(|h| {
            let mut map = h.borrow_mut();
            let slot = map.entry(agent.cluster.clone()).or_default();
            if slot.in_flight == Some(token_id) {
                slot.in_flight = None;
            }
            match parsed {
                Ok(health) => {
                    if slot.failures > 0 || slot.health.is_none() {
                        log::info!(
                            "geomesh scope {}: site table from {} ({} sites known)",
                            self.plugin,
                            agent.cluster,
                            health.sites().count()
                        );
                    }
                    slot.health = Some(Rc::new(health));
                    slot.fetched_at_ms = now;
                    slot.failures = 0;
                    slot.stale_logged = false;
                }
                Err(e) => {
                    slot.failures = slot.failures.saturating_add(1);
                    if slot.failures == 3 || slot.failures % 100 == 0 {
                        log::warn!(
                            "geomesh scope {}: agent call through {} failed: {e} ({} failures in a row)",
                            self.plugin,
                            agent.cluster,
                            slot.failures
                        );
                    }
                }
            }
        });
    }
}

impl RootContext for ScopeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let plugin = self
            .get_property(vec!["plugin_name"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| "geomesh_scope".to_owned());
        let text = self.get_plugin_configuration().unwrap_or_default();
        match HttpSettings::parse(&text) {
            Ok((config, settings)) => {
                let stats = Stats::new(WorkloadType::Http, &config.stat_prefix, None);
                count_accepted(&stats, &plugin, &text);
                // The whole (fixed) set at 0, so that a kind never taken shows as 0, not absent.
                let names = DecisionKind::ALL.map(DecisionKind::stat_name);
                for name in names.into_iter().chain([STAT_REPLY_4XX, STAT_REPLY_5XX]) {
                    stats.define(Metric::Event { group: STAT_GROUP, name });
                }
                self.stats = Some(Rc::new(stats));
                log::info!(
                    "geomesh scope {plugin}: service `{}` at site `{}`, local cluster {}, {} sites, {}",
                    settings.service,
                    settings.site,
                    settings.local_cluster,
                    settings.registry.sites().len(),
                    match &settings.agent {
                        Some(a) => format!("site health from cluster {} every {} ms", a.cluster, a.tick_ms),
                        None => "no site health (every site counts as available)".to_owned(),
                    }
                );
                if settings.agent.is_some() {
                    // Fast ticks until the first table arrives, then the configured period.
                    self.set_tick_period(Duration::from_millis(STARTUP_TICK_MS));
                    self.fast_since = Some(now_ms(self));
                }
                self.settings = Some(Rc::new(settings));
                self.plugin = plugin;
                true
            }
            Err(e) => {
                log::error!("geomesh scope {plugin}: {e}");
                self.stats = Some(Rc::new(count_rejected(WorkloadType::Http, &plugin, &text)));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.fetch();
        if let Some(since) = self.fast_since {
            if let Some(agent) = self.settings.as_ref().and_then(|s| s.agent.as_ref()) {
                let ready = HEALTH.with(|h| {
                    h.borrow()
                        .get(&agent.cluster)
                        .is_some_and(|slot| slot.health.is_some())
                });
                if ready || now_ms(self).saturating_sub(since) > STARTUP_MS {
                    self.fast_since = None;
                    self.set_tick_period(Duration::from_millis(agent.tick_ms));
                }
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // `None` would make the SDK panic: an unconfigured root gets streams that refuse.
        Some(Box::new(ScopeHttp {
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            routed_to: None,
        }))
    }
}

struct ScopeHttp {
    settings: Option<Rc<HttpSettings>>,
    stats: Option<Rc<Stats>>,
    routed_to: Option<String>,
}

impl ScopeHttp {
    /// Counts one request under `name` (`decision.<kind>`, `reply.4xx|5xx`): one host call.
    fn count(&self, name: &'static str) {
        if let Some(stats) = &self.stats {
            stats.record(Metric::Event { group: STAT_GROUP, name }, 1);
        }
    }

    fn clear_route_cache(&self) {
        if let Err(status) = proxy_wasm::hostcalls::call_foreign_function("clear_route_cache", None) {
            if !ROUTE_CACHE_WARNED.with(|w| w.replace(true)) {
                log::error!(
                    "geomesh scope: Envoy has no clear_route_cache foreign function ({status:?}): the route may ignore the cluster header"
                );
            }
        }
    }

    fn reply(&self, status: u16, body: &str) {
        let mut text = body.to_owned();
        text.push('\n');
        self.send_http_response(
            u32::from(status),
            vec![
                ("content-type", "text/plain; charset=utf-8"),
                (ERROR_HEADER, "scope"),
            ],
            Some(text.as_bytes()),
        );
    }
}

impl Context for ScopeHttp {}

impl HttpContext for ScopeHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(settings) = self.settings.clone() else {
            self.count(STAT_REPLY_5XX);
            self.reply(500, "geomesh scope filter: no valid configuration");
            return Action::Pause;
        };
        let x_scope = self.get_http_request_header_bytes(X_SCOPE);
        let x_auth_token = self.get_http_request_header_bytes(X_AUTH_TOKEN);
        let baggage = self.get_http_request_header_bytes(BAGGAGE);
        let forwarded_by = self.get_http_request_header_bytes(&settings.forwarded_header);
        let now = now_ms(self);
        let health = current_health(settings.agent.as_ref(), now);
        let headers = RequestHeaders {
            x_scope: x_scope.as_deref(),
            x_auth_token: x_auth_token.as_deref(),
            baggage: baggage.as_deref(),
            forwarded_by: forwarded_by.as_deref(),
        };
        let verdict = plan_request(
            &settings,
            &health,
            &headers,
            |slot| {
                let (value, _cas) = self.get_shared_data(&slot.key);
                value.and_then(|v| slot.decode(&v, now))
            },
            now,
        );
        self.count(verdict.stat_name());
        match verdict {
            Verdict::Reply { status, body } => {
                log::debug!("geomesh scope: {status} {body}");
                self.reply(status, &body);
                Action::Pause
            }
            Verdict::Forward(f) => {
                for name in &f.remove {
                    self.remove_http_request_header(name);
                }
                for (name, value) in &f.set {
                    self.set_http_request_header_bytes(name, Some(value));
                }
                if let Some((key, value)) = &f.remember {
                    // A failed write (CAS race with another worker) only loses the memory of
                    // one token; the request itself is unaffected.
                    let _ = self.set_shared_data(key, Some(value), None);
                }
                self.clear_route_cache();
                self.routed_to = Some(f.cluster);
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(c) = &self.routed_to {
            self.set_http_response_header(ROUTED_TO_HEADER, Some(c));
        }
        Action::Continue
    }
}
