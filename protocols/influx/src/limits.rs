//! `LIMIT`/`OFFSET`/`SLIMIT`/`SOFFSET` of a statement fanned out to several shards: taken out of
//! the text the shards get where applying them per shard would differ from one InfluxDB holding
//! everything, and applied after the merge.
//!
//! What InfluxDB 1.6 does (checked against a real `influxd`; the differential test in
//! `integration/tests/influx_e2e.rs` keeps checking it):
//!
//! | statement | LIMIT / OFFSET | SLIMIT / SOFFSET |
//! |---|---|---|
//! | `SELECT` | rows per series | series per measurement |
//! | `SHOW MEASUREMENTS`, `SHOW SERIES` | rows of the one series | parse error |
//! | `SHOW TAG KEYS` | rows per measurement | accepted and ignored |
//! | `SHOW TAG VALUES`, `SHOW FIELD KEYS` | rows per measurement | parse error |
//!
//! So a SHOW's LIMIT/OFFSET always go after the merge (a union's first rows may come from any
//! shard), and SHOW TAG KEYS's SLIMIT/SOFFSET are dropped. A SELECT over several shards keeps
//! its clauses when each measurement it reads lives on one shard (the shard's answer for that
//! measurement is already the right one); when value routes spread a measurement over several,
//! the shards get `LIMIT <limit + offset>` and nothing else, and the merge applies OFFSET and
//! LIMIT per series (rows by time) and SOFFSET and SLIMIT per measurement.

use crate::lex::{Kind, Token};

/// The clauses found at a statement's top level (outside parentheses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub limit: Option<u64>,
    pub offset: u64,
    pub slimit: Option<u64>,
    pub soffset: u64,
}

impl Limits {
    /// Whether any clause was given.
    pub fn any(&self) -> bool {
        self.limit.is_some() || self.offset > 0 || self.slimit.is_some() || self.soffset > 0
    }
}

/// Which clauses [`strip`] takes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strip {
    /// LIMIT and OFFSET.
    Rows,
    /// LIMIT, OFFSET, SLIMIT and SOFFSET.
    All,
}

/// The statement's text without the clauses `which` names, the values found, and the byte
/// offset in the returned text where the first removed clause stood (where a clause can be put
/// back: before a `tz()`).
pub fn strip(text: &str, toks: &[Token], which: Strip) -> (String, Limits, Option<usize>) {
    let mut found = Limits::default();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(t) = toks.get(i) {
        i += 1;
        if t.punct("(") {
            depth += 1;
            continue;
        }
        if t.punct(")") {
            depth = depth.saturating_sub(1);
            continue;
        }
        if depth > 0 || t.kind != Kind::Word {
            continue;
        }
        let Some(n) = toks.get(i).filter(|n| n.kind == Kind::Number) else {
            continue;
        };
        let Ok(v) = n.text.parse::<u64>() else {
            continue;
        };
        let rows = t.is("limit") || t.is("offset");
        let series = which == Strip::All && (t.is("slimit") || t.is("soffset"));
        if !rows && !series {
            continue;
        }
        if t.is("limit") {
            found.limit = Some(v);
        } else if t.is("offset") {
            found.offset = v;
        } else if t.is("slimit") {
            found.slimit = Some(v);
        } else {
            found.soffset = v;
        }
        cuts.push((t.start, n.end));
        i += 1;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut first = None;
    for (start, end) in cuts {
        out.push_str(text.get(at..start).unwrap_or_default().trim_end());
        first.get_or_insert(out.len());
        at = end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    (out, found, first)
}

/// `text` with ` LIMIT n` put at `at` (from [`strip`]; the end when `None`).
pub fn with_limit(text: &str, at: Option<usize>, n: u64) -> String {
    let at = at
        .filter(|a| text.is_char_boundary(*a))
        .unwrap_or(text.len());
    let (head, tail) = text.split_at(at);
    format!("{head} LIMIT {n}{tail}")
}

/// Skips `offset` then keeps at most `limit` of `items`.
pub fn window<T>(items: &mut Vec<T>, offset: u64, limit: Option<u64>) {
    let skip = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(items.len());
    items.drain(..skip);
    if let Some(l) = limit {
        items.truncate(usize::try_from(l).unwrap_or(usize::MAX));
    }
}
