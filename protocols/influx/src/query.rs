//! `/query`: each InfluxQL statement classified and routed by what it reads, the request
//! forwarded when every statement reads one shard, otherwise fanned out (one call per shard
//! with that shard's statements) and merged per statement ([`crate::merge`]).
//!
//! | statement | where | merge |
//! |---|---|---|
//! | `SELECT ... FROM m1, m2`, `EXPLAIN`, `DELETE`/`DROP SERIES FROM m` | the shards of m1, m2 | series sorted by name and tags |
//! | `SELECT ... FROM /re/` | every shard | same |
//! | `SHOW MEASUREMENTS / SERIES / TAG KEYS / TAG VALUES / FIELD KEYS` | every shard (or FROM's) | union, sorted, deduplicated, LIMIT/OFFSET after the merge |
//! | `SHOW DATABASES / RETENTION POLICIES` | every shard | same |
//! | `CREATE/DROP/ALTER DATABASE, RETENTION POLICY, USER, ...`, `GRANT`, `REVOKE`, `DROP MEASUREMENT` | every shard (a measurement's shards) | first error, else done |
//! | `SHOW ... CARDINALITY` | refused unless one shard | |
//! | anything else (`SHOW USERS/STATS/QUERIES/...`, `KILL QUERY`, unreadable text) | `local_cluster` | |
//!
//! A statement reading a measurement that `value` routes may have spread over several shards
//! is fanned out to all of them; one that applies a function to it (an aggregate whose exact
//! answer needs a cross-shard computation) is refused with 400. Subqueries and `INTO` must read
//! one shard.

use geomesh_core::{ClusterId, RoutingTable};

pub use crate::from::{sources, Source};
use crate::from::FROM_END;
use crate::key::measurement_clusters;
use crate::lex::{statements, Kind, Token};
use crate::limits::{strip, with_limit, Limits, Strip};
use crate::params::{encode_into, Params};
use crate::plan::{Call, Merge, Plan, Reply, FORM};
use crate::replies;
use crate::settings::Settings;

/// How a statement's answers merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// Series from their shards, sorted by name and tags (`wildcard`: `SELECT *`, whose columns
    /// are unified across measurements as one InfluxDB does).
    Select { wildcard: bool },
    /// SHOW: rows unioned, sorted, deduplicated, then OFFSET and LIMIT per series.
    Union { limit: Option<u64>, offset: u64 },
    /// Administrative: no series; the first error wins.
    Ack,
}

/// How InfluxDB 1.6 writes a statement's result with `chunked=true` (checked on `influxd`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Chunk {
    /// One document per series and per `chunk_size` rows, `partial` on a series whose rows go
    /// on and on a result whose statement goes on (SELECT, SHOW SERIES, SHOW FIELD KEYS).
    Rows,
    /// One document per series, whole, no `partial` (SHOW TAG KEYS, SHOW TAG VALUES).
    PerSeries,
    /// One document (SHOW MEASUREMENTS, DATABASES, RETENTION POLICIES, administrative).
    #[default]
    Whole,
}

/// What else a statement's merge needs besides its [`StatementKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub chunk: Chunk,
    /// `ORDER BY time DESC`: series (and a spread series' rows) in descending order.
    pub desc: bool,
    /// A SELECT's LIMIT/OFFSET/SLIMIT/SOFFSET applied after the merge ([`crate::limits`]).
    pub after: Option<Limits>,
    /// `GROUP BY *`: every series carries every tag key of the measurements read (`""` where it
    /// has none), so series from several shards get the union of their tag keys.
    pub group_all: bool,
}

/// One statement, routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The text sent to the shards (clauses applied after the merge removed: [`crate::limits`]).
    pub text: String,
    pub kind: StatementKind,
    pub shape: Shape,
    pub clusters: Vec<ClusterId>,
}

/// Where a statement's answer is in the fan-out: call index, statement index within that call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementMerge {
    pub kind: StatementKind,
    pub shape: Shape,
    pub parts: Vec<(usize, usize)>,
}

/// What [`crate::merge::merge_query`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMerge {
    pub statements: Vec<StatementMerge>,
    /// The cluster name of each call (errors name them).
    pub clusters: Vec<String>,
    /// `chunked=true`: the answer as newline-separated JSON documents.
    pub chunked: bool,
    /// `chunk_size` (rows per chunk; InfluxDB's default 10000).
    pub chunk_size: usize,
    /// `Accept: application/csv`.
    pub csv: bool,
}

/// InfluxDB's rows per chunk when `chunk_size` is not given.
pub const DEFAULT_CHUNK_SIZE: usize = 10_000;

/// Reasons a statement is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

fn word(toks: &[Token], i: usize) -> Option<&Token> {
    toks.get(i)
}

fn is_kw(toks: &[Token], i: usize, kw: &str) -> bool {
    word(toks, i).is_some_and(|t| t.is(kw))
}

/// Whether a function is applied (`name(`) before the statement's first FROM.
fn has_function(toks: &[Token]) -> bool {
    toks.windows(2)
        .take_while(|w| !w.first().is_some_and(|t| t.is("from")))
        .any(|w| matches!(w, [a, b] if a.kind == Kind::Word && b.punct("(")))
}

/// `SELECT *` (at the top level, before FROM).
fn has_wildcard(toks: &[Token]) -> bool {
    toks.iter()
        .take_while(|t| !t.is("from"))
        .any(|t| t.punct("*"))
}

/// `GROUP BY ... * ...` at the statement's top level.
fn group_by_all(toks: &[Token]) -> bool {
    let Some(at) = toks
        .windows(2)
        .position(|w| matches!(w, [g, b] if g.is("group") && b.is("by")))
    else {
        return false;
    };
    toks.iter()
        .skip(at + 2)
        .take_while(|t| t.punct(",") || t.punct("*") || matches!(t.kind, Kind::Word | Kind::Quoted | Kind::Regex) && !FROM_END.iter().any(|k| t.is(k)))
        .any(|t| t.punct("*"))
}

/// `ORDER BY time DESC` at the statement's top level.
fn order_desc(toks: &[Token]) -> bool {
    toks.windows(4).any(|w| {
        matches!(w, [o, b, t, d] if o.is("order") && b.is("by") && t.is("time") && d.is("desc"))
    })
}

fn union(into: &mut Vec<ClusterId>, more: impl IntoIterator<Item = ClusterId>) {
    for c in more {
        if !into.contains(&c) {
            into.push(c);
        }
    }
}

/// The clusters a source may be on (`None`: every cluster); `db`: the request's database.
fn clusters_of(table: &RoutingTable, db: &str, s: &Source) -> Option<Vec<ClusterId>> {
    match s {
        Source::Measurement { db: named, name } => Some(measurement_clusters(
            table,
            named.as_deref().unwrap_or(db),
            name,
        )),
        Source::Regex | Source::Subquery => None,
    }
}

/// The clusters the sources read (`None`: every cluster).
fn source_clusters(table: &RoutingTable, db: &str, srcs: &[Source]) -> Option<Vec<ClusterId>> {
    let mut out = Vec::new();
    for s in srcs {
        match s {
            Source::Measurement { .. } => union(&mut out, clusters_of(table, db, s)?),
            Source::Regex | Source::Subquery => return None,
        }
    }
    Some(out)
}

/// Whether any value route can take a measurement away from its key route.
fn has_value_routes(table: &RoutingTable) -> bool {
    table
        .message_clusters(b"\x00geomesh-no-such-measurement")
        .len()
        > 1
}

/// Routes one statement; `db`: the request's `db` parameter (a `hash` route spreads (database,
/// measurement); `SHOW ... ON db` and `FROM db.rp.m` name their own).
pub fn route_statement(
    table: &RoutingTable,
    db: &str,
    text: &str,
    toks: &[Token],
) -> Result<Routed, Refusal> {
    let all = || table.active_clusters().to_vec();
    let local = || vec![table.local_cluster()];
    let mut first = 0;
    if is_kw(toks, 0, "explain") {
        first = if is_kw(toks, 1, "analyze") { 2 } else { 1 };
    }
    let verb = word(toks, first)
        .map(|t| t.text.to_ascii_lowercase())
        .unwrap_or_default();
    // `SHOW ... ON <db>` names its database.
    let on_db = toks
        .windows(2)
        .take_while(|w| !w.first().is_some_and(|t| t.is("from")))
        .find(|w| w.first().is_some_and(|t| t.is("on")))
        .and_then(|w| w.get(1))
        .filter(|t| matches!(t.kind, Kind::Word | Kind::Quoted));
    let db = match on_db {
        Some(t) if verb == "show" => t.text.as_str(),
        _ => db,
    };
    let routed = |clusters: Vec<ClusterId>, kind| Routed {
        text: text.to_owned(),
        kind,
        shape: Shape::default(),
        clusters,
    };
    match verb.as_str() {
        "select" => {
            let srcs = sources(toks);
            let spread = srcs.iter().any(|s| match s {
                Source::Measurement { .. } => {
                    clusters_of(table, db, s).is_some_and(|c| c.len() > 1)
                }
                Source::Regex | Source::Subquery => has_value_routes(table),
            });
            let clusters = source_clusters(table, db, &srcs).unwrap_or_else(all);
            let kind = StatementKind::Select {
                wildcard: has_wildcard(toks),
            };
            if clusters.len() > 1 {
                let into = toks.iter().any(|t| t.is("into"));
                if srcs.contains(&Source::Subquery) || into {
                    let names: Vec<&str> =
                        clusters.iter().map(|c| table.cluster_name(*c)).collect();
                    return Err(Refusal(format!(
                        "{} {}",
                        replies::CROSS_SHARD_STATEMENT,
                        names.join(", ")
                    )));
                }
                if spread && has_function(toks) {
                    return Err(Refusal(replies::CROSS_SHARD_AGGREGATE.to_owned()));
                }
            }
            let mut shape = Shape {
                chunk: Chunk::Rows,
                desc: order_desc(toks),
                after: None,
                group_all: group_by_all(toks),
            };
            let mut sent = text.to_owned();
            if clusters.len() > 1 && spread {
                // A measurement over several shards: its limits after the merge.
                let (stripped, limits, at) = strip(text, toks, Strip::All);
                if limits.any() {
                    sent = match limits.limit {
                        Some(n) => with_limit(&stripped, at, n.saturating_add(limits.offset)),
                        None => stripped,
                    };
                    shape.after = Some(limits);
                }
            }
            Ok(Routed {
                text: sent,
                kind,
                shape,
                clusters: if clusters.is_empty() {
                    local()
                } else {
                    clusters
                },
            })
        }
        "show" => {
            let rest: Vec<String> = toks
                .iter()
                .skip(first + 1)
                .take(4)
                .map(|t| t.text.to_ascii_lowercase())
                .collect();
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            let union_show = matches!(
                rest.as_slice(),
                ["measurements", ..]
                    | ["series", ..]
                    | ["tag", "keys", ..]
                    | ["tag", "values", ..]
                    | ["field", "keys", ..]
                    | ["databases", ..]
                    | ["retention", "policies", ..]
            );
            let cardinality = toks.iter().any(|t| t.is("cardinality"));
            if cardinality {
                let clusters = source_clusters(table, db, &sources(toks))
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(all);
                if clusters.len() > 1 {
                    return Err(Refusal(
                        "geomesh: SHOW ... CARDINALITY over several shards is not merged; name one shard's measurements in FROM".to_owned(),
                    ));
                }
                return Ok(routed(
                    if clusters.is_empty() {
                        local()
                    } else {
                        clusters
                    },
                    StatementKind::Ack,
                ));
            }
            if !union_show {
                return Ok(routed(local(), StatementKind::Ack));
            }
            let clusters = source_clusters(table, db, &sources(toks)).unwrap_or_else(all);
            let (which, chunk) = match rest.as_slice() {
                ["tag", "keys", ..] => (Strip::All, Chunk::PerSeries),
                ["tag", "values", ..] => (Strip::Rows, Chunk::PerSeries),
                ["series", ..] | ["field", "keys", ..] => (Strip::Rows, Chunk::Rows),
                _ => (Strip::Rows, Chunk::Whole),
            };
            let (stripped, limits, _) = strip(text, toks, which);
            Ok(Routed {
                text: stripped,
                kind: StatementKind::Union {
                    limit: limits.limit,
                    offset: limits.offset,
                },
                shape: Shape {
                    chunk,
                    ..Shape::default()
                },
                clusters: if clusters.is_empty() { all() } else { clusters },
            })
        }
        "delete" | "drop" if toks.iter().any(|t| t.is("from")) || is_kw(toks, 1, "measurement") => {
            let clusters = if is_kw(toks, 1, "measurement") {
                match toks.get(2) {
                    Some(t) if matches!(t.kind, Kind::Word | Kind::Quoted) => {
                        measurement_clusters(table, db, &t.text)
                    }
                    _ => all(),
                }
            } else {
                source_clusters(table, db, &sources(toks)).unwrap_or_else(all)
            };
            Ok(routed(
                if clusters.is_empty() { all() } else { clusters },
                StatementKind::Ack,
            ))
        }
        "create" | "drop" | "alter" | "grant" | "revoke" | "set" | "delete" => {
            Ok(routed(all(), StatementKind::Ack))
        }
        _ => Ok(routed(local(), StatementKind::Ack)),
    }
}

/// Plans a `/query` whose parameters (URL and form body) are `params`.
pub fn plan_query(table: &RoutingTable, settings: &Settings, params: &Params, csv: bool) -> Plan {
    let Some(q) = params.get("q") else {
        return Plan::Reply(Reply::error(400, replies::MISSING_QUERY));
    };
    let local = table.local_cluster();
    // Text our lexer cannot read goes whole to the local shard, whose parser words the error.
    let Ok(stmts) = statements(q) else {
        return Plan::Forward(local);
    };
    if stmts.len() > settings.max_statements {
        return Plan::Reply(Reply::error(
            400,
            &format!(
                "{} {}",
                replies::TOO_MANY_STATEMENTS,
                settings.max_statements
            ),
        ));
    }
    let mut routed = Vec::with_capacity(stmts.len());
    let db = params.get("db").unwrap_or("");
    for (text, toks) in &stmts {
        match route_statement(table, db, text, toks) {
            Ok(r) => routed.push(r),
            Err(Refusal(why)) => return Plan::Reply(Reply::error(400, &why)),
        }
    }
    let mut clusters: Vec<ClusterId> = Vec::new();
    for r in &routed {
        union(&mut clusters, r.clusters.iter().copied());
    }
    if clusters.len() <= 1 {
        return Plan::Forward(clusters.first().copied().unwrap_or(local));
    }
    // One call per cluster with its statements, in request order.
    let drop = ["q", "chunked", "chunk_size"];
    let mut extra = String::new();
    if csv && params.get("epoch").is_none() {
        // CSV shows times as integers (nanoseconds): ask the shards for that.
        extra.push_str("&epoch=ns");
    }
    let base = params.encode_without(&drop);
    let mut calls = Vec::with_capacity(clusters.len());
    let mut merges: Vec<StatementMerge> = routed
        .iter()
        .map(|r| StatementMerge {
            kind: r.kind,
            shape: r.shape,
            parts: Vec::new(),
        })
        .collect();
    for (ci, c) in clusters.iter().enumerate() {
        let mut q_text = String::new();
        let mut n = 0usize;
        for (si, r) in routed.iter().enumerate() {
            if !r.clusters.contains(c) {
                continue;
            }
            if n > 0 {
                q_text.push_str(";\n");
            }
            q_text.push_str(&r.text);
            if let Some(m) = merges.get_mut(si) {
                m.parts.push((ci, n));
            }
            n += 1;
        }
        let mut body = String::from("q=");
        encode_into(&q_text, &mut body);
        calls.push(Call {
            cluster: *c,
            path: format!("/query?{base}{extra}"),
            content_type: FORM,
            body: body.into_bytes(),
        });
    }
    let chunked = matches!(params.get("chunked"), Some("true" | "1"));
    let chunk_size = params
        .get("chunk_size")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_CHUNK_SIZE);
    Plan::Fanout {
        merge: Merge::Query(QueryMerge {
            statements: merges,
            clusters: clusters
                .iter()
                .map(|c| table.cluster_name(*c).to_owned())
                .collect(),
            chunked,
            chunk_size,
            csv,
        }),
        calls,
    }
}
