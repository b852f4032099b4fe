//! The shards' `/query` answers merged into the one a single InfluxDB would give: per
//! statement, series from every shard, grouped by (name, tags, columns), sorted by name and
//! tags; SHOW rows unioned, sorted, deduplicated, then OFFSET/LIMIT; `statement_id`s those of
//! the client's statements; the first error of a statement kept. Rendered as JSON, as
//! newline-separated JSON documents (`chunked=true`, one per statement), or as InfluxDB's CSV.
//!
//! JSON is read with serde_json (its recursion is bounded at 128 levels; an InfluxDB answer is
//! four deep) after the size check the filter applies to every answer.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::csv::{csv_error, render_csv};
use crate::plan::{Answer, Reply, CSV_OUT, JSON};
use crate::limits::{window, Limits};
use crate::query::{Chunk, QueryMerge, Shape, StatementKind};
use crate::replies;
use crate::write::error_text;

/// An InfluxDB `/query` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(default)]
    pub results: Vec<StatementResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One statement's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementResult {
    #[serde(default)]
    pub statement_id: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Series>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<bool>,
}

/// Reads one answer body: a JSON document, or newline-separated ones (a chunked answer, whose
/// partial results are joined).
pub fn parse_answer(body: &[u8]) -> Result<Response, String> {
    let mut out = Response::default();
    for doc in serde_json::Deserializer::from_slice(body).into_iter::<Response>() {
        let doc = doc.map_err(|e| e.to_string())?;
        if out.error.is_none() {
            out.error = doc.error;
        }
        for r in doc.results {
            match out
                .results
                .iter_mut()
                .find(|x| x.statement_id == r.statement_id)
            {
                Some(x) => {
                    for s in r.series {
                        match x.series.iter_mut().find(|y| same_series(y, &s)) {
                            Some(y) => y.values.extend(s.values),
                            None => x.series.push(s),
                        }
                    }
                    x.messages.extend(r.messages);
                    if x.error.is_none() {
                        x.error = r.error;
                    }
                }
                None => out.results.push(r),
            }
        }
    }
    for r in &mut out.results {
        r.partial = None;
        for s in &mut r.series {
            s.partial = None;
        }
    }
    Ok(out)
}

fn same_series(a: &Series, b: &Series) -> bool {
    a.name == b.name && a.tags == b.tags && a.columns == b.columns
}

/// Orders JSON values as InfluxDB sorts SHOW rows: strings by bytes, numbers numerically, null
/// first.
fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn cmp_row(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match cmp_value(x, y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

fn cmp_series(a: &Series, b: &Series) -> Ordering {
    a.name.cmp(&b.name).then_with(|| a.tags.cmp(&b.tags))
}

/// Joins the series that are the same (name, tags, columns), marking them as from several
/// shards.
fn coalesce(series: &mut Vec<Series>, several: &mut Vec<bool>) {
    let mut out: Vec<Series> = Vec::with_capacity(series.len());
    let mut flags: Vec<bool> = Vec::with_capacity(series.len());
    for (s, f) in series.drain(..).zip(several.iter().copied()) {
        match out.iter().position(|y| same_series(y, &s)) {
            Some(i) => {
                if let Some(y) = out.get_mut(i) {
                    y.values.extend(s.values);
                }
                if let Some(g) = flags.get_mut(i) {
                    *g = true;
                }
            }
            None => {
                out.push(s);
                flags.push(f);
            }
        }
    }
    *series = out;
    *several = flags;
}

/// Gives every series every tag key of the others (`""` where it has none), as one InfluxDB
/// answers `GROUP BY *` over several measurements.
fn unify_tags(series: &mut [Series]) {
    let mut keys: Vec<String> = Vec::new();
    for s in series.iter() {
        for k in s.tags.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    for s in series.iter_mut() {
        for k in &keys {
            s.tags.entry(k.clone()).or_default();
        }
    }
}

/// A SELECT's limits applied after the merge: OFFSET/LIMIT per series, then SOFFSET/SLIMIT per
/// measurement (series sorted); series left without rows dropped.
fn apply_after(series: &mut Vec<Series>, l: &Limits) {
    for s in series.iter_mut() {
        window(&mut s.values, l.offset, l.limit);
    }
    series.retain(|s| !s.values.is_empty());
    if l.slimit.is_none() && l.soffset == 0 {
        return;
    }
    let mut kept = Vec::with_capacity(series.len());
    let mut group: Vec<Series> = Vec::new();
    for s in series.drain(..) {
        if group.first().is_some_and(|g| g.name != s.name) {
            window(&mut group, l.soffset, l.slimit);
            kept.append(&mut group);
        }
        group.push(s);
    }
    window(&mut group, l.soffset, l.slimit);
    kept.append(&mut group);
    *series = kept;
}

/// Gives every series the union of their columns (`time` first, the others sorted), as one
/// InfluxDB answers `SELECT *` over several measurements.
fn unify_columns(series: &mut [Series]) {
    let mut cols: Vec<String> = Vec::new();
    for s in series.iter() {
        for c in &s.columns {
            if !cols.contains(c) {
                cols.push(c.clone());
            }
        }
    }
    let has_time = cols.iter().any(|c| c == "time");
    cols.retain(|c| c != "time");
    cols.sort();
    if has_time {
        cols.insert(0, "time".to_owned());
    }
    for s in series.iter_mut() {
        if s.columns == cols {
            continue;
        }
        let map: Vec<Option<usize>> = cols
            .iter()
            .map(|c| s.columns.iter().position(|x| x == c))
            .collect();
        for row in &mut s.values {
            *row = map
                .iter()
                .map(|i| i.and_then(|i| row.get(i).cloned()).unwrap_or(Value::Null))
                .collect();
        }
        s.columns = cols.clone();
    }
}

/// Merges one statement's results (one per shard that ran it).
fn merge_statement(
    kind: StatementKind,
    shape: Shape,
    id: u64,
    parts: Vec<StatementResult>,
) -> StatementResult {
    let mut out = StatementResult {
        statement_id: id,
        ..Default::default()
    };
    let shards = parts.len();
    let mut from_several: Vec<bool> = Vec::new();
    for p in parts {
        if out.error.is_none() {
            out.error = p.error;
        }
        for m in p.messages {
            if !out.messages.contains(&m) {
                out.messages.push(m);
            }
        }
        for s in p.series {
            match out.series.iter().position(|y| same_series(y, &s)) {
                Some(i) => {
                    if let Some(y) = out.series.get_mut(i) {
                        y.values.extend(s.values);
                    }
                    if let Some(f) = from_several.get_mut(i) {
                        *f = true;
                    }
                }
                None => {
                    out.series.push(s);
                    from_several.push(false);
                }
            }
        }
    }
    if out.error.is_some() {
        out.series.clear();
        return out;
    }
    match kind {
        StatementKind::Union { limit, offset } => {
            for s in &mut out.series {
                s.values.sort_by(|a, b| cmp_row(a, b));
                s.values.dedup();
                let skip = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(s.values.len());
                s.values.drain(..skip);
                if let Some(l) = limit {
                    s.values.truncate(usize::try_from(l).unwrap_or(usize::MAX));
                }
            }
            out.series.retain(|s| !s.values.is_empty());
        }
        StatementKind::Select { wildcard } => {
            if wildcard && shards > 1 {
                // One measurement's series from several shards may differ only by columns.
                unify_columns(&mut out.series);
                coalesce(&mut out.series, &mut from_several);
            }
            for (s, several) in out.series.iter_mut().zip(&from_several) {
                if *several {
                    // The same series from several shards (value routes): rows by time.
                    s.values.sort_by(|a, b| {
                        let o = cmp_value(
                            a.first().unwrap_or(&Value::Null),
                            b.first().unwrap_or(&Value::Null),
                        );
                        if shape.desc {
                            o.reverse()
                        } else {
                            o
                        }
                    });
                }
            }
            if shape.group_all && shards > 1 {
                unify_tags(&mut out.series);
            }
        }
        StatementKind::Ack => {}
    }
    if shape.desc {
        out.series.sort_by(|a, b| cmp_series(b, a));
    } else {
        out.series.sort_by(cmp_series);
    }
    if let Some(l) = &shape.after {
        apply_after(&mut out.series, l);
    }
    out
}

/// Merges the shards' answers (`answers` in the order of the calls).
pub fn merge_query(m: &QueryMerge, answers: &[Answer]) -> Reply {
    let mut parsed: Vec<Response> = Vec::with_capacity(answers.len());
    let mut down = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        let cluster = m.clusters.get(i).map_or("?", String::as_str);
        match a.status {
            None => down.push(format!("cluster {cluster} did not answer (connection failure, timeout or answer too large)")),
            Some(s) if s >= 500 => down.push(format!("cluster {cluster} answered {s} ({})", error_text(&a.body))),
            Some(200) => match parse_answer(&a.body) {
                Ok(r) => parsed.push(r),
                Err(e) => return Reply::error(502, &format!("{} {cluster}: {e}", replies::BAD_ANSWER)),
            },
            // A client error (parse error, authorization, database missing): as the shard said.
            Some(s) if m.csv => return csv_error(s, &error_text(&a.body)),
            Some(s) => return Reply { status: s, content_type: JSON, body: a.body.clone() },
        }
    }
    if !down.is_empty() {
        return Reply::error(
            503,
            &format!("{}: {}", replies::QUERY_SHARD_DOWN, down.join("; ")),
        );
    }
    if let Some(e) = parsed.iter().find_map(|r| r.error.clone()) {
        if m.csv {
            return csv_error(400, &e);
        }
        return Reply::error(400, &e);
    }
    let mut results = Vec::with_capacity(m.statements.len());
    for (id, st) in m.statements.iter().enumerate() {
        let mut parts = Vec::with_capacity(st.parts.len());
        for &(call, sub) in &st.parts {
            let r = parsed.get_mut(call).and_then(|resp| {
                let pos = resp
                    .results
                    .iter()
                    .position(|r| r.statement_id == sub as u64)?;
                Some(resp.results.swap_remove(pos))
            });
            // A statement a shard did not run (an earlier one failed there).
            parts.push(r.unwrap_or_else(|| {
                StatementResult {
                    error: Some(
                        "geomesh: statement not run by every shard (an earlier statement failed)"
                            .to_owned(),
                    ),
                    ..Default::default()
                }
            }));
        }
        results.push(merge_statement(st.kind, st.shape, id as u64, parts));
    }
    if m.csv {
        return Reply {
            status: 200,
            content_type: CSV_OUT,
            body: render_csv(&results),
        };
    }
    let body = if m.chunked {
        let chunks: Vec<Chunk> = m.statements.iter().map(|s| s.shape.chunk).collect();
        render_chunked(results, &chunks, m.chunk_size)
    } else {
        let mut out = serde_json::to_vec(&Response {
            results,
            error: None,
        })
        .unwrap_or_default();
        out.push(b'\n');
        out
    };
    Reply {
        status: 200,
        content_type: JSON,
        body,
    }
}

/// As InfluxDB 1.6 writes `chunked=true`, per statement as `chunks` says ([`Chunk`]): with
/// [`Chunk::Rows`] one document per series and per `chunk_size` rows, `partial` on a series when
/// more of its rows follow and on a result when more of the statement follows; with
/// [`Chunk::PerSeries`] one document per series, no `partial`; with [`Chunk::Whole`] one
/// document.
pub fn render_chunked(
    results: Vec<StatementResult>,
    chunks: &[Chunk],
    chunk_size: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut doc = |r: StatementResult| {
        out.extend(
            serde_json::to_vec(&Response {
                results: vec![r],
                error: None,
            })
            .unwrap_or_default(),
        );
        out.push(b'\n');
    };
    for (k, r) in results.into_iter().enumerate() {
        let style = chunks.get(k).copied().unwrap_or_default();
        if r.series.is_empty() || style == Chunk::Whole {
            doc(r);
            continue;
        }
        if style == Chunk::PerSeries {
            let n = r.series.len();
            for (i, s) in r.series.into_iter().enumerate() {
                doc(StatementResult {
                    statement_id: r.statement_id,
                    series: vec![s],
                    messages: if i + 1 == n {
                        r.messages.clone()
                    } else {
                        Vec::new()
                    },
                    partial: None,
                    error: None,
                });
            }
            continue;
        }
        let n_series = r.series.len();
        for (i, s) in r.series.into_iter().enumerate() {
            let chunks: Vec<Vec<Vec<Value>>> = if s.values.is_empty() {
                vec![Vec::new()]
            } else {
                s.values
                    .chunks(chunk_size.max(1))
                    .map(<[Vec<Value>]>::to_vec)
                    .collect()
            };
            let n_chunks = chunks.len();
            for (j, values) in chunks.into_iter().enumerate() {
                let last = i + 1 == n_series && j + 1 == n_chunks;
                doc(StatementResult {
                    statement_id: r.statement_id,
                    series: vec![Series {
                        values,
                        partial: (j + 1 < n_chunks).then_some(true),
                        ..Series {
                            name: s.name.clone(),
                            tags: s.tags.clone(),
                            columns: s.columns.clone(),
                            ..Default::default()
                        }
                    }],
                    messages: if last { r.messages.clone() } else { Vec::new() },
                    partial: (!last).then_some(true),
                    error: None,
                });
            }
        }
    }
    out
}
