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

use crate::plan::{Answer, Reply, CSV_OUT, JSON};
use crate::query::{QueryMerge, StatementKind};
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
fn merge_statement(kind: StatementKind, id: u64, parts: Vec<StatementResult>) -> StatementResult {
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
            for (s, several) in out.series.iter_mut().zip(&from_several) {
                if *several {
                    // The same series from several shards (value routes): rows by time.
                    s.values.sort_by(|a, b| {
                        cmp_value(
                            a.first().unwrap_or(&Value::Null),
                            b.first().unwrap_or(&Value::Null),
                        )
                    });
                }
            }
            if wildcard && shards > 1 {
                unify_columns(&mut out.series);
            }
        }
        StatementKind::Ack => {}
    }
    out.series.sort_by(cmp_series);
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
        results.push(merge_statement(st.kind, id as u64, parts));
    }
    if m.csv {
        return Reply {
            status: 200,
            content_type: CSV_OUT,
            body: render_csv(&results),
        };
    }
    let body = if m.chunked {
        render_chunked(results, m.chunk_size)
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

/// As InfluxDB writes `chunked=true`: one document per series and per `chunk_size` rows,
/// `partial` on a series when more of its rows follow and on a result when more of the
/// statement follows.
pub fn render_chunked(results: Vec<StatementResult>, chunk_size: usize) -> Vec<u8> {
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
    for r in results {
        if r.series.is_empty() {
            doc(r);
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

/// InfluxDB 1.x's CSV: per statement with series, a header `name,tags,<columns>` (a blank line
/// before every statement but the first), then one record per row; tags as `k=v,k2=v2`;
/// numbers as plain decimals.
pub fn render_csv(results: &[StatementResult]) -> Vec<u8> {
    let mut out = String::new();
    let mut first = true;
    for r in results {
        let Some(head) = r.series.first() else {
            continue;
        };
        if !first {
            out.push('\n');
        }
        first = false;
        let mut header = vec!["name".to_owned(), "tags".to_owned()];
        header.extend(head.columns.iter().cloned());
        record(&header, &mut out);
        for s in &r.series {
            let tags = s
                .tags
                .iter()
                .map(|(k, v)| format!("{}={}", escape_tag(k), escape_tag(v)))
                .collect::<Vec<_>>()
                .join(",");
            for row in &s.values {
                let mut fields = vec![s.name.clone().unwrap_or_default(), tags.clone()];
                fields.extend(row.iter().map(csv_value));
                record(&fields, &mut out);
            }
        }
    }
    out.into_bytes()
}

fn escape_tag(s: &str) -> String {
    s.replace(',', "\\,")
        .replace(' ', "\\ ")
        .replace('=', "\\=")
}

fn csv_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => format!("{f}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// One CSV record as Go's encoding/csv writes it.
fn record(fields: &[String], out: &mut String) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let quote = f.contains([',', '"', '\n', '\r']) || f.starts_with(' ') || f.starts_with('\t');
        if quote {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push('\n');
}
