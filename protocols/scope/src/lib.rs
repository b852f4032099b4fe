//! scope-lang, after Cheops (Delavergne, Cherrueau, Lebre): a client says,
//! per request and per service, which site's instance of the application
//! serves it.
//!
//! ```text
//! { compute: DC 1, image: DC1 & DC2 }        sharing, replication
//! { image: DC1 ; DC2 }   { image: DC1 | DC2 } otherwise (both spellings)
//! { compute: around(DC 1, 10ms) }             DC 1, then sites within 10 ms
//! {"compute": "InstanceOne"}                  openstackoid's JSON form
//! ```
//!
//! Sans-IO: bytes in, decisions out; no clock, no IO, no threads. The
//! pieces, in the order a filter uses them:
//!
//! 1. [`Carriers::extract`] finds the scope in `X-Scope`, `X-Auth-Token`
//!    (`<token>!SCOPE!<scope>`) or `baggage` (`scope=<percent-encoded>`);
//! 2. [`Registry::resolve`] turns it into a [`Resolution`] for the service
//!    the filter serves ([`Plan::Local`], `Share`, `Replicate`, `Otherwise`);
//! 3. [`Resolution::select`] picks the first alternative that is up in the
//!    caller's [`SiteTable`], giving a [`Decision`].
//!
//! [`decide`] does all three. Errors carry the message to answer with and
//! [`Error::http_status`] (400, or 503 when nothing is reachable).
//!
//! The HTTP filter's whole decision path is here too, natively testable:
//! [`settings`] (the `workload_type: http` configuration), [`health`] (the
//! agent's site table, shared wire types), [`token`] (the bounded token ->
//! scope memory of the piggyback) and [`request::plan_request`] (headers in,
//! a [`Verdict`] out).
//!
//! Parsing is bounded (input length, nesting depth checked before
//! recursing, counts of services and sites); printing, checking and
//! expanding trees are iterative. The grammar is in GRAMMAR.md.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

use std::time::Duration;

mod ast;
pub mod carrier;
mod error;
pub mod health;
mod parse;
pub mod request;
mod resolve;
pub mod settings;
pub mod token;

pub use ast::{Entry, Expr, Scope};
pub use carrier::{Carriers, Extracted};
pub use error::{
    Carrier, CarrierError, ConfigError, Error, Found, InvalidScope, ParseError, ParseErrorKind,
    ResolveError,
};
pub use parse::{parse, parse_bytes, parse_expr};
pub use health::{Health, HeartbeatReply, SitesDocument};
pub use request::{
    plan_request, site_list_value, DecisionKind, Forward, Reason, RequestHeaders, Verdict,
    HANDOVER_HEADERS, STAT_REPLY_4XX, STAT_REPLY_5XX, X_GEOMESH_PINNED, X_GEOMESH_REPLICATE,
    X_GEOMESH_SCOPE, X_GEOMESH_SERVICE,
};
pub use resolve::{
    sanitize, ClusterPattern, Decision, Plan, Registry, RegistryBuilder, Resolution, SiteTable,
    Target, MAX_CLUSTER_NAME,
};
pub use settings::{AgentSettings, HttpSettings, ReplicationSettings, TokenCacheSettings};
pub use token::TokenSlot;

/// Longest scope text accepted, in bytes (and longest canonical form).
pub const MAX_INPUT: usize = 8192;
/// Deepest nesting of parentheses accepted.
pub const MAX_DEPTH: usize = 32;
/// Most services in one scope.
pub const MAX_SERVICES: usize = 64;
/// Most site names (including `around` centres) in one scope.
pub const MAX_SITE_REFS: usize = 256;
/// Longest site name, in bytes (after unescaping).
pub const MAX_SITE_NAME: usize = 128;
/// Longest service name, in bytes.
pub const MAX_SERVICE_NAME: usize = 64;
/// Largest `around` radius.
pub const MAX_RADIUS: Duration = Duration::from_secs(3600);
/// Most alternatives one service's expression may expand to.
pub const MAX_ALTERNATIVES: usize = 64;

/// What [`decide`] found and decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What to do with the request.
    pub decision: Decision,
    /// The scope found, with its carriers and the stripped token (`None`
    /// when the request carries no scope: then the decision is `Local`).
    pub extracted: Option<Extracted>,
}

/// Extract, resolve, select: the whole request-path decision for a request
/// to `service`. A request without a scope, or whose scope does not name
/// `service`, is [`Decision::Local`]; every failure is an [`Error`] whose
/// message and [`Error::http_status`] make the answer (never a silent local
/// fallback).
pub fn decide(
    carriers: &Carriers<'_>,
    service: &str,
    registry: &Registry,
    sites: &SiteTable,
) -> Result<Outcome, Error> {
    let Some(extracted) = carriers.extract()? else {
        return Ok(Outcome {
            decision: Decision::Local,
            extracted: None,
        });
    };
    let resolution = registry.resolve(&extracted.scope, service, sites)?;
    let decision = resolution.select(sites)?;
    Ok(Outcome {
        decision,
        extracted: Some(extracted),
    })
}
