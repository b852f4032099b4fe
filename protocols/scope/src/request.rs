//! The whole request-path decision of the HTTP filter, sans-IO: the
//! request's header values, the site health and the token memory in; what to
//! do with the request out. The Proxy-Wasm filter only reads headers,
//! applies a [`Verdict`] and talks to shared data.
//!
//! Rules, in order:
//!
//! 1. Every carrier is read (`X-Scope`, `X-Auth-Token` piggyback, `baggage`);
//!    a malformed one or a disagreement between them is a 400 with the
//!    parser's message.
//! 2. A request carrying the forwarded-by header was sent by a peer site's
//!    filter: it is served by the local instance, whatever the scope says
//!    (no second hop, no loop). The header is removed before the
//!    application sees it. In production only peer sidecars may set it
//!    (mTLS between sites); a client that sets it only gets the local
//!    instance, which it could reach anyway.
//! 3. Without a scope in any carrier, a plain `X-Auth-Token` is looked up in
//!    the token memory (the scope a filter stripped from the same token
//!    earlier in this Envoy, e.g. in front of the service now calling).
//! 4. No scope, or a scope that does not name this service: the local
//!    instance (`local_cluster`).
//! 5. Otherwise the scope is resolved against the registry and the health:
//!    unknown names are a 400, nothing reachable a 503 naming what was
//!    tried. A remote target gets the forwarded-by header, and when the
//!    scope came with the token, the token goes on with the scope
//!    re-attached (the remote site's filter strips it again). Replication
//!    (`&`) is a 501 unless the service is configured for it (rule 7).
//! 6. When the request is served here and its token carried a scope, the
//!    token is stripped for the application and token -> scope remembered.
//! 7. A service with `http.replication` (docs/replication.md, "Filter ->
//!    agent hand-over"): every request served by this site (rules 2, 4, a
//!    scope choosing this site, and `&`) goes to the local agent's proxy
//!    cluster instead of `local_cluster`, with the hand-over headers
//!    [`X_GEOMESH_SERVICE`] (always), [`X_GEOMESH_REPLICATE`] (the target
//!    sites of `&`), [`X_GEOMESH_SCOPE`] (the canonical scope) and
//!    [`X_GEOMESH_PINNED`] (`1` when the scope chose this site or a peer
//!    filter forwarded the request). A client's own values of these headers
//!    are always removed. A scope choosing another site is forwarded as in
//!    rule 5 (that site's filter hands it to its agent). Never a silent
//!    local fallback: `&` without `http.replication` is a 501.

use crate::ast::Scope;
use crate::carrier::{auth_token_with_scope, Carriers, X_AUTH_TOKEN};
use crate::error::{Carrier, Error};
use crate::health::Health;
use crate::resolve::Decision;
use crate::resolve::Target;
use crate::settings::HttpSettings;
use crate::token::TokenSlot;

/// Hand-over header: the service the request is for (always, to the agent).
pub const X_GEOMESH_SERVICE: &str = "x-geomesh-service";
/// Hand-over header: the target sites of `&`, comma-separated in the
/// scope's order (printable ASCII as is; `%`, `,` and anything else
/// percent-encoded).
pub const X_GEOMESH_REPLICATE: &str = "x-geomesh-replicate";
/// Hand-over header: the canonical scope (for logs and the agent's API).
pub const X_GEOMESH_SCOPE: &str = "x-geomesh-scope";
/// Hand-over header: `1` when the request must be served on this site
/// (the scope chose it, or a peer site's filter forwarded the request).
pub const X_GEOMESH_PINNED: &str = "x-geomesh-pinned";
/// Every hand-over header (a client's own values are removed).
pub const HANDOVER_HEADERS: [&str; 4] = [
    X_GEOMESH_SERVICE,
    X_GEOMESH_REPLICATE,
    X_GEOMESH_SCOPE,
    X_GEOMESH_PINNED,
];

/// The header values of one request (bytes, as the host gives them).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHeaders<'a> {
    /// `x-scope`
    pub x_scope: Option<&'a [u8]>,
    /// `x-auth-token`
    pub x_auth_token: Option<&'a [u8]>,
    /// `baggage`
    pub baggage: Option<&'a [u8]>,
    /// The configured forwarded-by header.
    pub forwarded_by: Option<&'a [u8]>,
}

/// Why the request goes where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No scope on the request.
    NoScope,
    /// The scope does not name this service.
    NotNamed,
    /// The scope chose this site or another one.
    Scoped,
    /// Forwarded by a peer site: served here.
    Forwarded,
}

/// What placed a forwarded request, as the filter counts it (one counter
/// per kind, `http.<stat_prefix>.scope.decision.<kind>`). Exactly one kind
/// per request; when several apply, the first in this order wins:
/// forwarded, local, replicated, around, fallback, shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// Sent by a peer site's filter: served here (the peer counted its own
    /// decision).
    Forwarded,
    /// No scope for this service (none on the request, or one that does not
    /// name the service): the local instance.
    Local,
    /// `&`: replicated on several sites.
    Replicated,
    /// The service's expression has an `around(...)`: its centre or a site
    /// near it.
    Around,
    /// `A ; B` (or `A | B`): a later alternative, the earlier ones being
    /// unavailable.
    Fallback,
    /// The scope's first choice for the service: one site (this one or
    /// another).
    Shared,
}

impl DecisionKind {
    /// Every kind, in the order of precedence.
    pub const ALL: [DecisionKind; 6] = [
        DecisionKind::Forwarded,
        DecisionKind::Local,
        DecisionKind::Replicated,
        DecisionKind::Around,
        DecisionKind::Fallback,
        DecisionKind::Shared,
    ];

    /// The counter's name under the filter's group: `decision.<kind>`.
    pub fn stat_name(self) -> &'static str {
        match self {
            DecisionKind::Forwarded => "decision.forwarded",
            DecisionKind::Local => "decision.local",
            DecisionKind::Replicated => "decision.replicated",
            DecisionKind::Around => "decision.around",
            DecisionKind::Fallback => "decision.fallback",
            DecisionKind::Shared => "decision.shared",
        }
    }

    /// The kind of a decision taken from a scope: alternative `rank` (0 =
    /// the first) of `expr`'s plan, `replicated` for a `&` decision.
    fn scoped(expr: Option<&crate::ast::Expr>, rank: usize, replicated: bool) -> Self {
        if replicated {
            DecisionKind::Replicated
        } else if expr.is_some_and(crate::ast::Expr::uses_around) {
            DecisionKind::Around
        } else if rank > 0 {
            DecisionKind::Fallback
        } else {
            DecisionKind::Shared
        }
    }
}

/// Counter name of a request the filter answered itself with a 4xx.
pub const STAT_REPLY_4XX: &str = "reply.4xx";
/// Counter name of a request the filter answered itself with a 5xx.
pub const STAT_REPLY_5XX: &str = "reply.5xx";

/// Let the request go on, to `cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The Envoy cluster (written into the cluster header).
    pub cluster: String,
    /// The site serving it.
    pub site: String,
    /// Whether that site is another one.
    pub remote: bool,
    /// Why.
    pub reason: Reason,
    /// What placed it, for the filter's counters.
    pub kind: DecisionKind,
    /// Request headers to set (replacing any value), cluster header included.
    pub set: Vec<(String, Vec<u8>)>,
    /// Request headers to remove.
    pub remove: Vec<String>,
    /// Shared-data entry to write: token memory (key, value).
    pub remember: Option<(String, Vec<u8>)>,
    /// Handed to the local agent's proxy (a service with `http.replication`).
    pub agent: bool,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Continue to a cluster.
    Forward(Forward),
    /// Answer locally with this status and text body.
    Reply {
        /// HTTP status.
        status: u16,
        /// Plain-text body (one line).
        body: String,
    },
}

impl Verdict {
    /// The filter's counter for this verdict (its name under the group
    /// `scope`): the decision's kind, or the class of the answer.
    pub fn stat_name(&self) -> &'static str {
        match self {
            Verdict::Forward(f) => f.kind.stat_name(),
            Verdict::Reply { status, .. } if *status < 500 => STAT_REPLY_4XX,
            Verdict::Reply { .. } => STAT_REPLY_5XX,
        }
    }
}

fn reply(status: u16, body: impl Into<String>) -> Verdict {
    Verdict::Reply {
        status,
        body: body.into(),
    }
}

fn error_reply(e: &Error) -> Verdict {
    reply(e.http_status(), e.to_string())
}

/// A site name as a header value: as is when printable ASCII (spaces
/// included), else percent-encoded.
fn site_header_value(site: &str) -> Vec<u8> {
    if site.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        site.as_bytes().to_vec()
    } else {
        crate::carrier::percent_encode(site).into_bytes()
    }
}

/// A list of sites as the value of [`X_GEOMESH_REPLICATE`]: `, `-separated;
/// printable ASCII other than `%` and `,` as is, every other byte `%XX`.
pub fn site_list_value(sites: &[&str]) -> Vec<u8> {
    let hex = |n: u8| char::from_digit(u32::from(n), 16).map_or(b'0', |c| c.to_ascii_uppercase() as u8);
    let mut out = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        for b in site.bytes() {
            if (b == b' ' || b.is_ascii_graphic()) && b != b'%' && b != b',' {
                out.push(b);
            } else {
                out.push(b'%');
                out.push(hex(b >> 4));
                out.push(hex(b & 15));
            }
        }
    }
    out
}

/// Decides what to do with one request to `settings.service`. `lookup` is
/// called at most once, with the slot of a plain `X-Auth-Token`, when no
/// carrier has a scope; it returns the remembered scope (see
/// [`TokenSlot::decode`]).
pub fn plan_request(
    settings: &HttpSettings,
    health: &Health,
    headers: &RequestHeaders<'_>,
    lookup: impl FnOnce(&TokenSlot) -> Option<Scope>,
    now_ms: u64,
) -> Verdict {
    let carriers = Carriers {
        x_scope: headers.x_scope,
        x_auth_token: headers.x_auth_token,
        baggage: headers.baggage,
    };
    let extracted = match carriers.extract() {
        Ok(x) => x,
        Err(e) => return error_reply(&Error::Carrier(e)),
    };
    let forwarded = headers.forwarded_by.is_some();

    // The token without any scope suffix, and the scope it carried if it did.
    let mut piggyback: Option<(Vec<u8>, Scope)> = None;
    let mut scope: Option<Scope> = None;
    let mut via_token = false;
    match extracted {
        Some(ex) => {
            via_token = ex.carriers.contains(&Carrier::AuthToken);
            if let Some(t) = ex.stripped_auth_token {
                piggyback = Some((t, ex.scope.clone()));
            }
            scope = Some(ex.scope);
        }
        None if !forwarded => {
            if let Some(tok) = headers.x_auth_token.filter(|t| !t.is_empty()) {
                let slot = TokenSlot::of(tok, settings.token_cache.slots);
                if let Some(s) = lookup(&slot) {
                    scope = Some(s);
                    via_token = true;
                }
            }
        }
        None => {}
    }

    let local = |reason: Reason, kind: DecisionKind| Forward {
        cluster: settings.local_cluster.clone(),
        site: settings.site.clone(),
        remote: false,
        reason,
        kind,
        set: Vec::new(),
        remove: Vec::new(),
        remember: None,
        agent: false,
    };

    // Served here: pinned to this site (scope chose it, or a peer forwarded it).
    let mut pinned = false;
    // `&`: the target sites.
    let mut replicate: Option<Vec<Target>> = None;
    let mut fwd = if forwarded {
        pinned = true;
        let mut f = local(Reason::Forwarded, DecisionKind::Forwarded);
        f.remove.push(settings.forwarded_header.clone());
        f
    } else if let Some(scope) = &scope {
        let decision = settings
            .registry
            .resolve(scope, &settings.service, health.table())
            .and_then(|r| r.select_ranked(|t| health.available(&t.site, &settings.service)));
        let (rank, decision) = match decision {
            Err(e) => return error_reply(&Error::Resolve(e)),
            Ok(d) => d,
        };
        let expr = scope.get(&settings.service);
        let kind = DecisionKind::scoped(expr, rank, matches!(decision, Decision::Replicate(_)));
        match decision {
            Decision::Local => local(Reason::NotNamed, DecisionKind::Local),
            Decision::Route(t) if t.local => {
                pinned = true;
                local(Reason::Scoped, kind)
            }
            Decision::Route(t) => {
                let mut set = vec![(
                    settings.forwarded_header.clone(),
                    site_header_value(&settings.site),
                )];
                if via_token {
                    let token = piggyback
                        .as_ref()
                        .map(|(t, _)| t.as_slice())
                        .or(headers.x_auth_token)
                        .unwrap_or_default();
                    set.push((X_AUTH_TOKEN.to_owned(), auth_token_with_scope(token, scope)));
                }
                Forward {
                    cluster: t.cluster,
                    site: t.site,
                    remote: true,
                    reason: Reason::Scoped,
                    kind,
                    set,
                    remove: Vec::new(),
                    remember: None,
                    agent: false,
                }
            }
            Decision::Replicate(ts) => {
                if settings.replication.is_none() {
                    let sites: Vec<&str> = ts.iter().map(|t| t.site.as_str()).collect();
                    return reply(
                        501,
                        format!(
                            "scope: replication is not configured for service '{}' (no http.replication in the filter configuration): {}",
                            settings.service,
                            sites.join(" & ")
                        ),
                    );
                }
                replicate = Some(ts);
                local(Reason::Scoped, kind)
            }
        }
    } else {
        local(Reason::NoScope, DecisionKind::Local)
    };

    if let Some(rep) = &settings.replication {
        fwd.remove.extend(HANDOVER_HEADERS.iter().map(|h| (*h).to_owned()));
        if !fwd.remote {
            fwd.cluster = rep.cluster.clone();
            fwd.agent = true;
            fwd.set.push((
                X_GEOMESH_SERVICE.to_owned(),
                site_header_value(&settings.service),
            ));
            if let Some(scope) = &scope {
                fwd.set.push((
                    X_GEOMESH_SCOPE.to_owned(),
                    crate::carrier::x_scope_value(scope).into_bytes(),
                ));
            }
            if pinned {
                fwd.set.push((X_GEOMESH_PINNED.to_owned(), b"1".to_vec()));
            }
            if let Some(ts) = &replicate {
                let sites: Vec<&str> = ts.iter().map(|t| t.site.as_str()).collect();
                fwd.set
                    .push((X_GEOMESH_REPLICATE.to_owned(), site_list_value(&sites)));
            }
        }
    }

    if !fwd.remote {
        if let Some((token, scope)) = &piggyback {
            let slot = TokenSlot::of(token, settings.token_cache.slots);
            let expires = now_ms.saturating_add(settings.token_cache.ttl_ms);
            fwd.remember = Some((slot.key.clone(), slot.encode(scope, expires)));
            fwd.set.push((X_AUTH_TOKEN.to_owned(), token.clone()));
        }
    }
    fwd.set
        .push((settings.cluster_header.clone(), fwd.cluster.clone().into_bytes()));
    Verdict::Forward(fwd)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::health::SitesDocument;
    use crate::parse::parse;

    fn settings(service: &str) -> HttpSettings {
        let text = format!(
            "workload_type: http\ndefault_cluster: dc_1_{service}\nhttp:\n  service: {service}\n  site: DC 1\n  sites: [DC 1, DC 2, DC 3]\n  services: [compute, image]\n  cluster_pattern: \"{{site}}_{{service}}\"\n"
        );
        HttpSettings::parse(text.as_bytes()).unwrap().1
    }

    fn health(json: &str) -> Health {
        let doc: SitesDocument = serde_json::from_str(json).unwrap();
        Health::from_document(&doc)
    }

    fn plan(s: &HttpSettings, h: &Health, hd: RequestHeaders<'_>) -> Verdict {
        plan_request(s, h, &hd, |_| None, 1000)
    }

    fn forward(v: Verdict) -> Forward {
        match v {
            Verdict::Forward(f) => f,
            Verdict::Reply { status, body } => panic!("reply {status} {body}"),
        }
    }

    fn header<'a>(f: &'a Forward, name: &str) -> Option<&'a [u8]> {
        f.set.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    #[test]
    fn paper_commands() {
        let s = settings("image");
        let h = Health::empty();
        let cmd2 = forward(plan(&s, &h, RequestHeaders {
            x_scope: Some(b"{ compute: DC 1, image: DC 1 }"),
            ..Default::default()
        }));
        assert_eq!((cmd2.cluster.as_str(), cmd2.remote), ("dc_1_image", false));
        assert_eq!(header(&cmd2, "x-geomesh-cluster"), Some(&b"dc_1_image"[..]));
        assert_eq!(header(&cmd2, "x-geomesh-forwarded-by"), None);

        let cmd3 = forward(plan(&s, &h, RequestHeaders {
            x_scope: Some(b"{ compute: DC 1, image: DC 2 }"),
            ..Default::default()
        }));
        assert_eq!((cmd3.cluster.as_str(), cmd3.remote), ("dc_2_image", true));
        assert_eq!(header(&cmd3, "x-geomesh-forwarded-by"), Some(&b"DC 1"[..]));
        assert_eq!(header(&cmd3, "x-geomesh-cluster"), Some(&b"dc_2_image"[..]));

        let none = forward(plan(&s, &h, RequestHeaders::default()));
        assert_eq!((none.cluster.as_str(), none.reason), ("dc_1_image", Reason::NoScope));
        let other = forward(plan(&s, &h, RequestHeaders {
            x_scope: Some(b"{ compute: DC 2 }"),
            ..Default::default()
        }));
        assert_eq!((other.cluster.as_str(), other.reason), ("dc_1_image", Reason::NotNamed));
    }

    #[test]
    fn forwarded_requests_are_served_here() {
        let s = settings("image");
        let f = forward(plan(&s, &Health::empty(), RequestHeaders {
            x_scope: Some(b"{ image: DC 2 }"),
            forwarded_by: Some(b"DC 2"),
            ..Default::default()
        }));
        assert_eq!((f.cluster.as_str(), f.reason), ("dc_1_image", Reason::Forwarded));
        assert_eq!(f.remove, vec!["x-geomesh-forwarded-by".to_string()]);
    }

    #[test]
    fn otherwise_uses_per_service_health() {
        let s = settings("image");
        let h = health(
            r#"{"site":"DC 1","generated_at_ms":0,"sites":[
                {"name":"DC 1","up":true,"services":{"image":true}},
                {"name":"DC 2","up":true,"services":{"image":false,"compute":true}},
                {"name":"DC 3","up":true,"services":{"image":true}}]}"#,
        );
        let f = forward(plan(&s, &h, RequestHeaders {
            x_scope: Some(b"{ image: DC 2 ; DC 3 }"),
            ..Default::default()
        }));
        assert_eq!(f.cluster, "dc_3_image");
        let all_down = health(
            r#"{"site":"DC 1","generated_at_ms":0,"sites":[
                {"name":"DC 2","up":true,"services":{"image":false}},
                {"name":"DC 3","up":false}]}"#,
        );
        assert_eq!(
            plan(&s, &all_down, RequestHeaders { x_scope: Some(b"{ image: DC 2 | DC 3 }"), ..Default::default() }),
            Verdict::Reply {
                status: 503,
                body: "scope: no location reachable for service 'image'; tried DC 2 (down) ; DC 3 (down)".into()
            }
        );
    }

    #[test]
    fn around_picks_the_nearest_first() {
        let s = settings("image");
        let h = health(
            r#"{"site":"DC 1","generated_at_ms":0,"sites":[
                {"name":"DC 1","up":true,"services":{"image":false}},
                {"name":"DC 2","up":true,"rtt_ms":20,"services":{"image":true}},
                {"name":"DC 3","up":true,"rtt_ms":5,"services":{"image":true}}]}"#,
        );
        let go = |text: &'static [u8]| plan(&s, &h, RequestHeaders { x_scope: Some(text), ..Default::default() });
        assert_eq!(forward(go(b"{ image: around(DC 1, 30ms) }")).cluster, "dc_3_image");
        assert_eq!(forward(go(b"{ image: around(DC 1, 4ms) ; DC 2 }")).cluster, "dc_2_image");
        assert_eq!(forward(go(b"{ image: around(DC 1, 10ms) }")).cluster, "dc_3_image");
        let h3 = health(
            r#"{"site":"DC 1","generated_at_ms":0,"sites":[
                {"name":"DC 1","up":true,"services":{"image":false}},
                {"name":"DC 2","up":true,"rtt_ms":20,"services":{"image":true}},
                {"name":"DC 3","up":true,"rtt_ms":5,"services":{"image":false}}]}"#,
        );
        assert_eq!(
            plan(&s, &h3, RequestHeaders { x_scope: Some(b"{ image: around(DC 1, 10ms) }"), ..Default::default() }),
            reply(503, "scope: no location reachable for service 'image'; tried DC 1 (down) ; DC 3 (down)")
        );
    }

    #[test]
    fn errors_are_replies_never_local() {
        let s = settings("image");
        let h = Health::empty();
        let go = |x: &'static [u8]| plan(&s, &h, RequestHeaders { x_scope: Some(x), ..Default::default() });
        match go(b"{ image: DC 2 ") {
            Verdict::Reply { status: 400, body } => {
                assert!(body.starts_with("x-scope: "), "{body}");
                assert!(body.contains(":1:15: expected"), "{body}");
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(go(b"{ image: DC 9 }"), reply(400, "scope: unknown site 'DC 9'"));
        assert_eq!(go(b"{ video: DC 2 }"), reply(400, "scope: unknown service 'video'"));
        assert_eq!(
            go(b"{ image: DC 1 & DC 2 }"),
            reply(
                501,
                "scope: replication is not configured for service 'image' (no http.replication in the filter configuration): DC 1 & DC 2"
            )
        );
        match plan(&s, &h, RequestHeaders {
            x_scope: Some(b"{ image: DC 2 }"),
            baggage: Some(b"scope=%7Bimage%3ADC%203%7D"),
            ..Default::default()
        }) {
            Verdict::Reply { status: 400, body } => assert!(body.contains("different"), "{body}"),
            v => panic!("{v:?}"),
        }
    }

    fn replicated(service: &str) -> HttpSettings {
        let text = format!(
            "workload_type: http\ndefault_cluster: dc_1_{service}\nhttp:\n  service: {service}\n  site: DC 1\n  sites: [DC 1, DC 2, DC 3, \"Zürich,1\"]\n  services: [compute, image]\n  cluster_pattern: \"{{site}}_{{service}}\"\n  replication: {{cluster: geomesh_agent_proxy}}\n"
        );
        HttpSettings::parse(text.as_bytes()).unwrap().1
    }

    #[test]
    fn replicated_services_are_handed_to_the_agent() {
        let s = replicated("image");
        let h = Health::empty();
        let go = |hd: RequestHeaders<'_>| forward(plan(&s, &h, hd));
        let handover_removed = |f: &Forward| {
            HANDOVER_HEADERS.iter().all(|n| f.remove.iter().any(|r| r == n))
        };

        // `&`: the agent, with the target sites in the scope's order.
        let f = go(RequestHeaders { x_scope: Some(b"{ image: DC 2 & DC 1 }"), ..Default::default() });
        assert_eq!((f.cluster.as_str(), f.agent, f.remote), ("geomesh_agent_proxy", true, false));
        assert_eq!(header(&f, X_GEOMESH_REPLICATE), Some(&b"DC 2, DC 1"[..]));
        assert_eq!(header(&f, X_GEOMESH_SERVICE), Some(&b"image"[..]));
        assert_eq!(header(&f, X_GEOMESH_SCOPE), Some(&b"{ image: DC 2 & DC 1 }"[..]));
        assert_eq!(header(&f, X_GEOMESH_PINNED), None);
        assert_eq!(header(&f, "x-geomesh-cluster"), Some(&b"geomesh_agent_proxy"[..]));
        assert!(handover_removed(&f));
        // Names that need it are percent-encoded (`,` and non-ASCII).
        let f = go(RequestHeaders { x_scope: Some("{ image: \"Zürich,1\" & DC 3 }".as_bytes()), ..Default::default() });
        assert_eq!(header(&f, X_GEOMESH_REPLICATE), Some(&b"Z%C3%BCrich%2C1, DC 3"[..]));

        // No scope, or one not naming the service: the agent, not pinned (it may read elsewhere).
        for hd in [
            RequestHeaders::default(),
            RequestHeaders { x_scope: Some(b"{ compute: DC 2 }"), ..Default::default() },
        ] {
            let f = go(hd);
            assert_eq!((f.cluster.as_str(), f.agent), ("geomesh_agent_proxy", true));
            assert_eq!(header(&f, X_GEOMESH_PINNED), None);
            assert_eq!(header(&f, X_GEOMESH_REPLICATE), None);
        }
        // This site chosen by the scope, or forwarded by a peer's filter: pinned.
        let f = go(RequestHeaders { x_scope: Some(b"{ image: DC 1 }"), ..Default::default() });
        assert_eq!((f.cluster.as_str(), f.reason), ("geomesh_agent_proxy", Reason::Scoped));
        assert_eq!(header(&f, X_GEOMESH_PINNED), Some(&b"1"[..]));
        let f = go(RequestHeaders { x_scope: Some(b"{ image: DC 3 }"), forwarded_by: Some(b"DC 3"), ..Default::default() });
        assert_eq!((f.cluster.as_str(), f.reason), ("geomesh_agent_proxy", Reason::Forwarded));
        assert_eq!(header(&f, X_GEOMESH_PINNED), Some(&b"1"[..]));
        assert!(f.remove.iter().any(|r| r == "x-geomesh-forwarded-by"));

        // Another site: forwarded to that site's Envoy as before (its filter hands it over),
        // a client's hand-over headers removed.
        let f = go(RequestHeaders { x_scope: Some(b"{ image: DC 2 }"), ..Default::default() });
        assert_eq!((f.cluster.as_str(), f.agent, f.remote), ("dc_2_image", false, true));
        assert_eq!(header(&f, X_GEOMESH_SERVICE), None);
        assert!(handover_removed(&f));

        // Errors stay errors, never the agent nor the local instance.
        assert_eq!(
            plan(&s, &h, RequestHeaders { x_scope: Some(b"{ image: DC 9 & DC 1 }"), ..Default::default() }),
            reply(400, "scope: unknown site 'DC 9'")
        );
        let down = health(
            r#"{"site":"DC 1","generated_at_ms":0,"sites":[{"name":"DC 2","up":false}]}"#,
        );
        match plan(&s, &down, RequestHeaders { x_scope: Some(b"{ image: DC 1 & DC 2 }"), ..Default::default() }) {
            Verdict::Reply { status: 503, body } => assert!(body.contains("DC 2 (down)"), "{body}"),
            v => panic!("{v:?}"),
        }
        // A service without `http.replication` is unchanged.
        let plain = forward(plan(&settings("image"), &h, RequestHeaders::default()));
        assert_eq!((plain.cluster.as_str(), plain.agent), ("dc_1_image", false));
        assert!(plain.remove.is_empty());
    }

    #[test]
    fn each_request_counts_under_one_decision_kind() {
        let s = settings("image");
        let h = health(
            r#"{"site":"DC 1","generated_at_ms":0,"sites":[
                {"name":"DC 1","up":true,"services":{"image":true}},
                {"name":"DC 2","up":true,"rtt_ms":20,"services":{"image":false}},
                {"name":"DC 3","up":true,"rtt_ms":5,"services":{"image":true}}]}"#,
        );
        let kind = |hd: RequestHeaders<'_>| forward(plan(&s, &h, hd)).kind;
        let scoped = |x: &'static [u8]| kind(RequestHeaders { x_scope: Some(x), ..Default::default() });
        assert_eq!(kind(RequestHeaders::default()), DecisionKind::Local);
        assert_eq!(scoped(b"{ compute: DC 2 }"), DecisionKind::Local);
        assert_eq!(scoped(b"{ image: DC 1 }"), DecisionKind::Shared);
        assert_eq!(scoped(b"{ image: DC 3 }"), DecisionKind::Shared);
        assert_eq!(scoped(b"{ image: DC 3 ; DC 2 }"), DecisionKind::Shared);
        assert_eq!(scoped(b"{ image: DC 2 ; DC 3 }"), DecisionKind::Fallback);
        assert_eq!(scoped(b"{ image: DC 2 | DC 1 }"), DecisionKind::Fallback);
        assert_eq!(scoped(b"{ image: around(DC 3, 10ms) }"), DecisionKind::Around);
        assert_eq!(scoped(b"{ image: around(DC 2, 30ms) }"), DecisionKind::Around);
        assert_eq!(scoped(b"{ image: DC 2 ; around(DC 1, 1ms) }"), DecisionKind::Around);
        assert_eq!(
            kind(RequestHeaders { x_scope: Some(b"{ image: DC 3 }"), forwarded_by: Some(b"DC 3"), ..Default::default() }),
            DecisionKind::Forwarded
        );
        let r = replicated("image");
        let rep = forward(plan(&r, &h, RequestHeaders { x_scope: Some(b"{ image: DC 1 & DC 3 }"), ..Default::default() }));
        assert_eq!(rep.kind, DecisionKind::Replicated);
        // `&` inside `;`, its first alternative down: still a replication.
        let rep = forward(plan(&r, &h, RequestHeaders { x_scope: Some(b"{ image: (DC 2 & DC 1) ; (DC 1 & DC 3) }"), ..Default::default() }));
        assert_eq!(rep.kind, DecisionKind::Replicated);

        // The counters' names.
        assert_eq!(Verdict::Forward(rep).stat_name(), "decision.replicated");
        let names: Vec<&str> = DecisionKind::ALL.iter().map(|k| k.stat_name()).collect();
        assert_eq!(
            names,
            ["decision.forwarded", "decision.local", "decision.replicated", "decision.around", "decision.fallback", "decision.shared"]
        );
        let answered = |x: &'static [u8]| plan(&s, &h, RequestHeaders { x_scope: Some(x), ..Default::default() }).stat_name();
        assert_eq!(answered(b"{ image: DC 9 }"), STAT_REPLY_4XX);
        assert_eq!(answered(b"{ image: DC 2 }"), STAT_REPLY_5XX);
        assert_eq!(answered(b"{ image: DC 1 & DC 3 }"), STAT_REPLY_5XX);
    }

    #[test]
    fn site_lists_encode_what_a_list_cannot_hold() {
        assert_eq!(site_list_value(&["DC 1", "DC 2"]), b"DC 1, DC 2");
        assert_eq!(site_list_value(&["a,b", "100%"]), b"a%2Cb, 100%25");
        assert_eq!(site_list_value(&[]), b"");
    }

    #[test]
    fn piggyback_is_stripped_remembered_and_found_again() {
        let compute = settings("compute");
        let image = settings("image");
        let h = Health::empty();
        // Client -> s's listener: `{compute: DC 1, image: DC 2}` rides on the token.
        let f = forward(plan(&compute, &h, RequestHeaders {
            x_auth_token: Some(b"tok123!SCOPE!{\"compute\": \"DC 1\", \"image\": \"DC 2\"}"),
            ..Default::default()
        }));
        assert_eq!(f.cluster, "dc_1_compute");
        assert_eq!(header(&f, "x-auth-token"), Some(&b"tok123"[..]));
        let (key, value) = f.remember.clone().unwrap();

        // s -> t's listener with the plain token: the memory gives the scope back.
        let mut asked = None;
        let g = match plan_request(&image, &h, &RequestHeaders {
            x_auth_token: Some(b"tok123"),
            ..Default::default()
        }, |slot| {
            asked = Some(slot.key.clone());
            slot.decode(&value, 1500)
        }, 1500) {
            Verdict::Forward(g) => g,
            v => panic!("{v:?}"),
        };
        assert_eq!(asked.as_deref(), Some(key.as_str()));
        assert_eq!((g.cluster.as_str(), g.remote), ("dc_2_image", true));
        // Crossing sites: the scope is re-attached for the next filter.
        let tok = header(&g, "x-auth-token").unwrap();
        assert!(tok.starts_with(b"tok123!SCOPE!"), "{}", String::from_utf8_lossy(tok));
        let again = crate::carrier::scope_from_auth_token(tok).unwrap().unwrap().1;
        assert!(again.equivalent(&parse("{compute: DC 1, image: DC 2}").unwrap()));

        // Expired memory: local.
        let late = forward(plan_request(&image, &h, &RequestHeaders {
            x_auth_token: Some(b"tok123"),
            ..Default::default()
        }, |slot| slot.decode(&value, 1000 + 60_000), 0));
        assert_eq!(late.cluster, "dc_1_image");
    }

    #[test]
    fn piggyback_on_a_forwarded_request_is_stripped_and_remembered() {
        let image = settings("image");
        let f = forward(plan(&image, &Health::empty(), RequestHeaders {
            x_auth_token: Some(b"t!SCOPE!{\"image\": \"DC 1\"}"),
            forwarded_by: Some(b"DC 2"),
            ..Default::default()
        }));
        assert_eq!(f.reason, Reason::Forwarded);
        assert_eq!(header(&f, "x-auth-token"), Some(&b"t"[..]));
        assert!(f.remember.is_some());
    }
}
