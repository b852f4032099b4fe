//! A line protocol used only by tests, on the geomesh kit: what a new protocol must supply and
//! nothing more (framing, a planner, merges, how failures read). Its filter (`filters/line`)
//! runs through a real Envoy and bridge in `integration/tests/kit_line_e2e.rs`, against the
//! protocol's server (`geomesh-line-server`).
//!
//! One request or answer per line (`\n`, an optional `\r` before it), words separated by one
//! space, lines of at most [`MAX_LINE`] bytes:
//!
//! | request | answer | through the proxy |
//! |---|---|---|
//! | `SET key value` | `OK` | routed by `key` |
//! | `GET key...` | `VALUES v...` (`-` for a missing key) | split per cluster, merged in key order |
//! | `KEYS` | `KEYS k...` | broadcast, merged (sorted, each once) |
//! | `GETAT host:port key` | `VALUES v` | `GET key` to server `host:port` of `key`'s cluster (an endpoint link) |
//! | anything else | `ERR ...` | refused by the proxy |
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use geomesh_core::{ClusterId, RoutingTable};
use geomesh_kit::{Answer, Ctx, Failure, MergeCx, Part, Plan, Protocol};

/// The longest line accepted, `\n` included.
pub const MAX_LINE: usize = 4096;
pub const ERR_TOO_LONG: &str = "ERR line too long";
pub const ERR_UNKNOWN: &str = "ERR unknown command";
pub const ERR_ARITY: &str = "ERR wrong number of arguments";
pub const ERR_ENDPOINTS: &str = "ERR too many endpoints";
/// Distinct endpoints one session may name with `GETAT`.
pub const MAX_ENDPOINTS: usize = 16;

/// One line, without its end.
#[derive(Debug, Clone)]
pub struct Line(Bytes);

/// The words of a line's text.
fn words(text: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    text.split(|b| *b == b' ').filter(|w| !w.is_empty())
}

impl Answer for Line {
    fn raw(&self) -> &Bytes {
        &self.0
    }
    fn is_error(&self) -> bool {
        self.0.starts_with(b"ERR")
    }
}

/// Cuts the next line off `buf` (its end kept in the raw bytes, so answers are forwarded as
/// they came); `Err` when a line exceeds [`MAX_LINE`].
fn next_line(buf: &mut BytesMut) -> Result<Option<Line>, ()> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) if i < MAX_LINE => Ok(Some(Line(buf.split_to(i + 1).freeze()))),
        Some(_) => Err(()),
        None if buf.len() >= MAX_LINE => Err(()),
        None => Ok(None),
    }
}

fn text(line: &Line) -> &[u8] {
    let b = line.0.strip_suffix(b"\n").unwrap_or(&line.0);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn answer(words: &[&[u8]]) -> Bytes {
    let mut v = words.join(&b' ');
    v.push(b'\n');
    Bytes::from(v)
}

/// How the parts of a request merge.
#[derive(Debug)]
pub enum Merge {
    /// `GET` split per cluster: for each key of the client, (part, word index).
    Values(Vec<(u32, u32)>),
    /// `KEYS` from every cluster: sorted, each once.
    Keys,
}

/// The line protocol on the kit.
#[derive(Debug, Default)]
pub struct LineProtocol {
    /// The (endpoint, cluster) pairs named by `GETAT`, by endpoint link number.
    endpoints: Vec<(Vec<u8>, ClusterId)>,
}

impl Protocol for LineProtocol {
    type Request = Line;
    type Answer = Line;
    type Merge = Merge;
    type Link = ();
    type Expect = ();

    fn decode_request(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, Bytes> {
        next_line(buf).map_err(|()| answer(&[ERR_TOO_LONG.as_bytes()]))
    }

    fn decode_answer(&mut self, _: &mut (), buf: &mut BytesMut, _: Option<&()>) -> Result<Option<Line>, String> {
        next_line(buf).map_err(|()| ERR_TOO_LONG.to_owned())
    }

    fn family(&mut self, line: &Line) -> &'static str {
        match words(text(line)).next() {
            Some(b"SET") => "set",
            Some(b"GET") => "get",
            Some(b"KEYS") => "keys",
            Some(b"GETAT") => "getat",
            _ => "unknown",
        }
    }

    fn plan(&mut self, line: Line, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let words: Vec<&[u8]> = words(text(&line)).collect();
        if let [b"GETAT", endpoint, key] = words.as_slice() {
            let cluster = cx.table().route(key);
            let n = match self
                .endpoints
                .iter()
                .position(|(e, c)| e == endpoint && *c == cluster)
            {
                Some(n) => n,
                None if self.endpoints.len() < MAX_ENDPOINTS => {
                    self.endpoints.push((endpoint.to_vec(), cluster));
                    self.endpoints.len() - 1
                }
                None => return Plan::Refuse(answer(&[ERR_ENDPOINTS.as_bytes()])),
            };
            let link = ClusterId::endpoint(n as u16);
            cx.bind(link, cluster, &String::from_utf8_lossy(endpoint));
            return Plan::Forward {
                cluster: link,
                bytes: answer(&[b"GET", key]),
            };
        }
        plan_words(&line, &words, cx.table())
    }

    fn merge(&mut self, merge: &mut Merge, parts: &[Part<Line>], cx: &mut MergeCx<'_>) -> Bytes {
        if let Some((p, a)) = parts.iter().find_map(|p| p.answer.as_ref().filter(|a| a.is_error()).map(|a| (p, a))) {
            return self.failure_answer(p.cluster, &Failure::Broken(String::from_utf8_lossy(text(a)).into_owned()), cx.table());
        }
        let answers: Vec<Vec<&[u8]>> = parts
            .iter()
            .map(|p| p.answer.as_ref().map(|a| words(text(a)).skip(1).collect()).unwrap_or_default())
            .collect();
        match merge {
            Merge::Values(order) => {
                let mut out: Vec<&[u8]> = vec![b"VALUES"];
                for (p, i) in order.iter() {
                    let w = answers.get(*p as usize).and_then(|a| a.get(*i as usize)).copied();
                    out.push(w.unwrap_or(b"-"));
                }
                answer(&out)
            }
            Merge::Keys => {
                let keys: BTreeSet<&[u8]> = answers.iter().flatten().copied().collect();
                let mut out: Vec<&[u8]> = vec![b"KEYS"];
                out.extend(keys);
                answer(&out)
            }
        }
    }

    fn failure_answer(&mut self, cluster: ClusterId, failure: &Failure, table: &RoutingTable) -> Bytes {
        let what = match failure {
            Failure::Timeout { budget_ms } => format!("no answer within {budget_ms} ms"),
            Failure::Closed { kind, .. } => kind.describe().to_owned(),
            Failure::Broken(m) | Failure::Reset(m) => m.clone(),
        };
        let msg = match self
            .endpoints
            .get(usize::from(cluster.0 & 0x7fff))
            .filter(|_| cluster.is_endpoint())
        {
            Some((e, c)) => format!(
                "ERR cluster {} at {}: {what}",
                table.cluster_name(*c),
                String::from_utf8_lossy(e)
            ),
            None => format!("ERR cluster {}: {what}", table.cluster_name(cluster)),
        };
        answer(&[msg.as_bytes()])
    }

    fn replay_refused(&mut self, cluster: ClusterId, _: usize, _: &Line, table: &RoutingTable) -> String {
        format!("ERR cluster {}: refused the session's state", table.cluster_name(cluster))
    }

    fn state_lost(&mut self, _: &Merge, cluster: ClusterId, table: &RoutingTable) -> String {
        format!("ERR cluster {}: connection reset", table.cluster_name(cluster))
    }

    fn is_error_answer(bytes: &[u8]) -> bool {
        bytes.starts_with(b"ERR")
    }
}

/// The planner, on the words of one request line.
fn plan_words(line: &Line, words: &[&[u8]], table: &RoutingTable) -> Plan<LineProtocol> {
    match words {
        [b"SET", key, _value] => Plan::Forward {
            cluster: table.route(key),
            bytes: line.0.clone(),
        },
        [b"SET", ..] | [b"GET"] | [b"KEYS", _, ..] => Plan::Refuse(answer(&[ERR_ARITY.as_bytes()])),
        [b"GET", keys @ ..] => {
            // Keys per cluster, clusters in order of first use.
            let mut groups: Vec<(ClusterId, Vec<&[u8]>)> = Vec::new();
            let mut order = Vec::with_capacity(keys.len());
            for k in keys {
                let c = table.route(k);
                let g = groups.iter().position(|(gc, _)| *gc == c).unwrap_or_else(|| {
                    groups.push((c, vec![b"GET"]));
                    groups.len() - 1
                });
                if let Some((_, ws)) = groups.get_mut(g) {
                    ws.push(k);
                    order.push((g as u32, (ws.len() - 2) as u32));
                }
            }
            if let [(cluster, _)] = groups.as_slice() {
                return Plan::Forward {
                    cluster: *cluster,
                    bytes: line.0.clone(),
                };
            }
            let parts = groups.into_iter().map(|(c, ws)| (c, answer(&ws).to_vec())).collect();
            Plan::Split {
                parts,
                merge: Merge::Values(order),
            }
        }
        [b"KEYS"] => Plan::Broadcast {
            bytes: Bytes::from_static(b"KEYS\n"),
            merge: Merge::Keys,
        },
        _ => Plan::Refuse(answer(&[ERR_UNKNOWN.as_bytes()])),
    }
}

#[cfg(test)]
mod tests;
