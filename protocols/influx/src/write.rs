//! `/write`: the body's points routed by measurement (a `hash` route spreads (db, measurement):
//! [`crate::key`]; a `value` route looks at the rest of the line), split per shard when they
//! span several, and the shards' answers merged.
//!
//! * One shard (or no point): [`Plan::Forward`]: Envoy's router sends the body as received,
//!   gzip included.
//! * Several: the lines go to their shards byte for byte, uncompressed, in their order; the
//!   points without a timestamp first get ` <now>` in the request's `precision`, one time for
//!   the whole request, so that shards cannot store one batch at different times (one InfluxDB
//!   stamps a batch once).
//! * The answers: all 2xx gives 204; a shard that did not answer (or a 5xx) gives 503 naming
//!   the cluster and what was written elsewhere; otherwise a non-partial 4xx (database not
//!   found, authorization) is returned as the shard wrote it; partial writes are merged into one
//!   `partial write: <first error> dropped=<sum>` (400).

use std::borrow::Cow;

use geomesh_core::{ClusterId, RoutingTable};

use crate::gzip::{gunzip, GzipError};
use crate::key::route_point;
use crate::line::{lines, trim_end};
use crate::params::Params;
use crate::plan::{Answer, Call, Merge, Plan, Reply, LINE_PROTOCOL};
use crate::replies;
use crate::settings::Settings;

/// What a merge needs to know of each call (same order as the calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteMerge {
    pub parts: Vec<WritePart>,
}

/// One shard's part of a split write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePart {
    pub cluster: String,
    pub points: usize,
}

/// Nanoseconds per unit of a `precision` value (`None`: unknown).
pub fn precision_ns(precision: Option<&str>) -> Option<u64> {
    Some(match precision.unwrap_or("") {
        "" | "n" | "ns" => 1,
        "u" | "us" | "µ" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Plans a `/write` whose whole body is `body` (`gzip`: `Content-Encoding: gzip`); `now_ns` is
/// the time stamped on points without one when the batch is split.
pub fn plan_write(
    table: &RoutingTable,
    settings: &Settings,
    params: &Params,
    body: &[u8],
    gzip: bool,
    now_ns: u64,
) -> Plan {
    if body.len() > settings.max_body_bytes {
        return Plan::Reply(Reply::error(
            413,
            &format!(
                "{} {} bytes",
                replies::BODY_TOO_LARGE,
                settings.max_body_bytes
            ),
        ));
    }
    let text: Cow<'_, [u8]> = if gzip {
        match gunzip(body, settings.max_decoded_bytes) {
            Ok(t) => Cow::Owned(t),
            Err(GzipError::TooLarge) => {
                return Plan::Reply(Reply::error(
                    413,
                    &format!(
                        "{} {} bytes",
                        replies::DECODED_TOO_LARGE,
                        settings.max_decoded_bytes
                    ),
                ))
            }
            Err(GzipError::Invalid(why)) => {
                return Plan::Reply(Reply::error(400, &format!("{}: {why}", replies::BAD_GZIP)))
            }
        }
    } else {
        Cow::Borrowed(body)
    };
    // Clusters in the order their first point appears, with their lines.
    let mut groups: Vec<(ClusterId, Vec<crate::line::Line<'_>>)> = Vec::new();
    let db = params.get("db").unwrap_or("");
    let mut scratch = Vec::new();
    for line in lines(&text) {
        let cluster = route_point(
            table,
            db,
            &line.measurement,
            line.after_measurement(),
            &mut scratch,
        );
        match groups.iter_mut().find(|(c, _)| *c == cluster) {
            Some((_, g)) => g.push(line),
            None => groups.push((cluster, vec![line])),
        }
    }
    if groups.len() <= 1 {
        return Plan::Forward(groups.first().map_or(table.local_cluster(), |(c, _)| *c));
    }
    let Some(unit) = precision_ns(params.get("precision")) else {
        return Plan::Reply(Reply::error(400, replies::BAD_PRECISION));
    };
    let stamp = (now_ns / unit).to_string();
    let path = format!("/write?{}", params.encode_without(&[]));
    let mut calls = Vec::with_capacity(groups.len());
    let mut parts = Vec::with_capacity(groups.len());
    for (cluster, group) in groups {
        let out = stamped(&group, &stamp);
        parts.push(WritePart {
            cluster: table.cluster_name(cluster).to_owned(),
            points: group.len(),
        });
        calls.push(Call {
            cluster,
            path: path.clone(),
            content_type: LINE_PROTOCOL,
            body: out,
        });
    }
    Plan::Fanout {
        calls,
        merge: Merge::Write(WriteMerge { parts }),
    }
}

/// The lines of a shard's part, byte for byte, each ending in `\n`, those without a time
/// followed by ` <stamp>`.
fn stamped(group: &[crate::line::Line<'_>], stamp: &str) -> Vec<u8> {
    let size: usize = group.iter().map(|l| l.raw.len() + stamp.len() + 2).sum();
    let mut out = Vec::with_capacity(size);
    for line in group {
        if line.has_time {
            out.extend_from_slice(line.raw);
        } else {
            out.extend_from_slice(trim_end(line.raw));
            out.push(b' ');
            out.extend_from_slice(stamp.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// A one-shard write (forwarded as received) whose shard failed, as a one-part split write for
/// the replay queue: its lines inflated when gzip and stamped with `now_ns` (the request's time,
/// in its `precision`) where they had no time, so that replayed points keep the time the
/// client's write had. `None` when the body cannot be read that way (bad gzip, unknown
/// precision: the shard would have refused it, not failed).
pub fn forwarded_as_part(
    settings: &Settings,
    params: &Params,
    cluster: ClusterId,
    cluster_name: &str,
    body: &[u8],
    gzip: bool,
    now_ns: u64,
) -> Option<(Call, WriteMerge)> {
    let text: Cow<'_, [u8]> = if gzip {
        Cow::Owned(gunzip(body, settings.max_decoded_bytes).ok()?)
    } else {
        Cow::Borrowed(body)
    };
    let unit = precision_ns(params.get("precision"))?;
    let group: Vec<crate::line::Line<'_>> = lines(&text).collect();
    let call = Call {
        cluster,
        path: format!("/write?{}", params.encode_without(&[])),
        content_type: LINE_PROTOCOL,
        body: stamped(&group, &(now_ns / unit).to_string()),
    };
    let merge = WriteMerge {
        parts: vec![WritePart {
            cluster: cluster_name.to_owned(),
            points: group.len(),
        }],
    };
    Some((call, merge))
}

/// The `error` text of an InfluxDB JSON error body (the body itself when it is not one).
pub fn error_text(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        error: String,
    }
    match serde_json::from_slice::<E>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(body.get(..body.len().min(512)).unwrap_or_default())
            .trim()
            .to_owned(),
    }
}

/// `(the text before " dropped=N", N)` of a partial-write error.
fn partial(text: &str) -> Option<(&str, u64)> {
    let rest = text.strip_prefix("partial write:")?;
    let at = rest.rfind(" dropped=")?;
    let n = rest.get(at + " dropped=".len()..)?.trim().parse().ok()?;
    Some((rest.get(..at)?.trim(), n))
}

/// What the replay queue (the agent's, `replay_cluster`) did with a failed part of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// Not handed to a queue (none configured, or the part did not fail).
    No,
    /// Stored durably: the points will reach the shard when it answers again.
    Stored,
    /// The queue refused it: full (507), with the agent's words.
    Full(String),
    /// The queue did not take it (no answer, or another refusal), with what is known.
    Unavailable(String),
}

/// Whether a shard's answer means its part was not written and may be replayed (no answer, 5xx).
pub fn part_failed(answer: &Answer) -> bool {
    answer.status.is_none_or(|s| s >= 500)
}

/// The agent's queue path for a part whose call went to `call_path` (`/write?<params>`).
pub fn queue_path(cluster: &str, call_path: &str) -> String {
    let params = call_path.split_once('?').map_or("", |(_, q)| q);
    let mut p = format!(
        "{}?cluster={}",
        replies::QUEUE_PATH,
        encode_cluster(cluster)
    );
    if !params.is_empty() {
        p.push('&');
        p.push_str(params);
    }
    p
}

/// Percent-encodes what a query value cannot hold as is.
fn encode_cluster(c: &str) -> String {
    let mut out = String::with_capacity(c.len());
    for b in c.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The queue's verdict from the agent's answer (`None`: no answer).
pub fn queued_from(status: Option<u16>, body: &[u8]) -> Queued {
    let text = || {
        String::from_utf8_lossy(body.get(..body.len().min(512)).unwrap_or_default())
            .trim()
            .to_owned()
    };
    match status {
        Some(s) if (200..300).contains(&s) => Queued::Stored,
        Some(507) => Queued::Full(text()),
        Some(s) => Queued::Unavailable(format!("agent answered {s}: {}", text())),
        None => Queued::Unavailable("agent did not answer".to_owned()),
    }
}

/// Merges the shards' answers to a split write (`answers` in the order of the calls).
pub fn merge_write(m: &WriteMerge, answers: &[Answer]) -> Reply {
    merge_write_queued(m, answers, &[])
}

/// [`merge_write`] where `queued[i]` says what the replay queue did with part i (missing: not
/// tried): a stored part counts as written (the client gets 204); a refused one is said.
pub fn merge_write_queued(m: &WriteMerge, answers: &[Answer], queued: &[Queued]) -> Reply {
    let mut down: Vec<String> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    let mut refused: Option<(u16, &[u8])> = None;
    let mut first_partial: Option<String> = None;
    let mut dropped = 0u64;
    for (i, (part, answer)) in m.parts.iter().zip(answers).enumerate() {
        let q = queued.get(i).unwrap_or(&Queued::No);
        if part_failed(answer) {
            let why = match q {
                Queued::No => String::new(),
                Queued::Stored => {
                    written.push(format!(
                        "{} points queued for {}",
                        part.points, part.cluster
                    ));
                    continue;
                }
                Queued::Full(t) if t.contains(replies::REPLAY_FULL) => format!(" ({t})"),
                Queued::Full(t) => format!(" ({}: {t})", replies::REPLAY_FULL),
                Queued::Unavailable(t) => format!(" ({}: {t})", replies::REPLAY_UNAVAILABLE),
            };
            down.push(match answer.status {
                None => format!(
                    "cluster {} did not answer (connection failure or timeout): its {} points were not written{why}",
                    part.cluster, part.points
                ),
                Some(s) => format!(
                    "cluster {} answered {s} ({}): its {} points were not written{why}",
                    part.cluster,
                    error_text(&answer.body),
                    part.points
                ),
            });
            continue;
        }
        match answer.status {
            Some(s) if (200..300).contains(&s) => {
                written.push(format!("{} points to {}", part.points, part.cluster))
            }
            s => {
                let s = s.unwrap_or(502);
                let text = error_text(&answer.body);
                match partial(&text) {
                    Some((what, n)) => {
                        dropped = dropped.saturating_add(n);
                        if first_partial.is_none() {
                            first_partial = Some(what.to_owned());
                        }
                        written.push(format!(
                            "{} of {} points to {}",
                            part.points.saturating_sub(n as usize),
                            part.points,
                            part.cluster
                        ));
                    }
                    None => {
                        if refused.is_none() {
                            refused = Some((s, &answer.body));
                        }
                    }
                }
            }
        }
    }
    if !down.is_empty() {
        let elsewhere = if written.is_empty() {
            "nothing".to_owned()
        } else {
            written.join(", ")
        };
        return Reply::error(
            503,
            &format!(
                "{}: {}; written elsewhere: {elsewhere}",
                replies::WRITE_SHARD_DOWN,
                down.join("; ")
            ),
        );
    }
    if let Some((status, body)) = refused {
        return Reply {
            status,
            content_type: crate::plan::JSON,
            body: body.to_vec(),
        };
    }
    if let Some(what) = first_partial {
        return Reply::error(400, &format!("partial write: {what} dropped={dropped}"));
    }
    Reply {
        status: 204,
        content_type: crate::plan::JSON,
        body: Vec::new(),
    }
}
