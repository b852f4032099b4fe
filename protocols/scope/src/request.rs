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
//!    tried, replication (`&`, issue 5) a 501. A remote target gets the
//!    forwarded-by header, and when the scope came with the token, the token
//!    goes on with the scope re-attached (the remote site's filter strips it
//!    again).
//! 6. When the request is served here and its token carried a scope, the
//!    token is stripped for the application and token -> scope remembered.

use crate::ast::Scope;
use crate::carrier::{auth_token_with_scope, Carriers, X_AUTH_TOKEN};
use crate::error::{Carrier, Error};
use crate::health::Health;
use crate::resolve::Decision;
use crate::settings::HttpSettings;
use crate::token::TokenSlot;

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
    /// Request headers to set (replacing any value), cluster header included.
    pub set: Vec<(String, Vec<u8>)>,
    /// Request headers to remove.
    pub remove: Vec<String>,
    /// Shared-data entry to write: token memory (key, value).
    pub remember: Option<(String, Vec<u8>)>,
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

    let local = |reason: Reason| Forward {
        cluster: settings.local_cluster.clone(),
        site: settings.site.clone(),
        remote: false,
        reason,
        set: Vec::new(),
        remove: Vec::new(),
        remember: None,
    };

    let mut fwd = if forwarded {
        let mut f = local(Reason::Forwarded);
        f.remove.push(settings.forwarded_header.clone());
        f
    } else if let Some(scope) = &scope {
        let decision = settings
            .registry
            .resolve(scope, &settings.service, health.table())
            .and_then(|r| r.select_with(|t| health.available(&t.site, &settings.service)));
        match decision {
            Err(e) => return error_reply(&Error::Resolve(e)),
            Ok(Decision::Local) => local(Reason::NotNamed),
            Ok(Decision::Route(t)) if t.local => local(Reason::Scoped),
            Ok(Decision::Route(t)) => {
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
                    set,
                    remove: Vec::new(),
                    remember: None,
                }
            }
            Ok(Decision::Replicate(ts)) => {
                let sites: Vec<&str> = ts.iter().map(|t| t.site.as_str()).collect();
                return reply(
                    501,
                    format!(
                        "scope: replication is not available yet: service '{}' at {}",
                        settings.service,
                        sites.join(" & ")
                    ),
                );
            }
        }
    } else {
        local(Reason::NoScope)
    };

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
            reply(501, "scope: replication is not available yet: service 'image' at DC 1 & DC 2")
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
