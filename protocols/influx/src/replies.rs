//! The texts clients see in answers the filter writes (InfluxDB's `{"error":"..."}` shape).

/// Prefix of every error the filter writes itself.
pub const PREFIX: &str = "geomesh";
/// A body over `max_body_bytes` (413).
pub const BODY_TOO_LARGE: &str = "geomesh: request body is over the limit of";
/// A gzip body inflating over `max_decoded_bytes` (413).
pub const DECODED_TOO_LARGE: &str = "geomesh: gzip body inflates over the limit of";
/// A gzip body that cannot be inflated (400).
pub const BAD_GZIP: &str = "geomesh: cannot inflate the gzip body";
/// An unknown `precision` on a write spanning shards (400).
pub const BAD_PRECISION: &str = "geomesh: unknown precision (expected n, ns, u, ms, s, m or h)";
/// No `q` in a /query (400, InfluxDB's own words).
pub const MISSING_QUERY: &str = "missing required parameter \"q\"";
/// Too many statements in one q (400).
pub const TOO_MANY_STATEMENTS: &str = "geomesh: too many statements in q; the limit is";
/// A statement whose exact answer needs a cross-shard aggregate (400).
pub const CROSS_SHARD_AGGREGATE: &str =
    "geomesh: this statement aggregates a measurement that value routes spread over several shards; an exact answer needs a cross-shard aggregate, which is not merged: query each measurement's shards without functions, or route the measurement by key";
/// A subquery or INTO whose sources span shards (400).
pub const CROSS_SHARD_STATEMENT: &str =
    "geomesh: subqueries and SELECT ... INTO must read measurements of one shard; these span";
/// `/debug/*` refused (403).
pub const DEBUG_REFUSED: &str = "geomesh: /debug/* is not served through the proxy";
/// A shard that did not answer a split write (503): followed by the cluster and what happened.
pub const WRITE_SHARD_DOWN: &str = "geomesh: write incomplete";
/// A shard that did not answer a query (503).
pub const QUERY_SHARD_DOWN: &str = "geomesh: query incomplete";
/// A shard answer that is not the JSON InfluxDB writes (502).
pub const BAD_ANSWER: &str = "geomesh: unreadable answer from cluster";
/// A method InfluxDB does not accept on that path (405).
pub const METHOD: &str = "geomesh: method not allowed";
/// A failed part the replay queue refused because it is full (in the 503's text).
pub const REPLAY_FULL: &str = "replay queue full";
/// A failed part the replay queue did not take (agent down, or another refusal).
pub const REPLAY_UNAVAILABLE: &str = "replay queue unavailable";
/// The agent's endpoint for a down shard's lines (`geomesh-agent`'s `influx_replay`).
pub const QUEUE_PATH: &str = "/v1/influx/queue";
