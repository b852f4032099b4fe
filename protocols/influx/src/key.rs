//! The shard key of a point: its measurement, matched against the routing table's NAMEs, and
//! (database, measurement) for `hash` routes, so that one measurement name in two databases is
//! spread over a hash route's clusters independently (influx-proxy's key).
//!
//! The bytes a hash route hashes are `<db>\0<measurement>` ([`hash_key`]): a NUL cannot be
//! part of a database name that InfluxDB accepts in a URL or in InfluxQL, so two (database,
//! measurement) pairs never give the same bytes.

use geomesh_core::{ClusterId, RoutingTable};

/// The byte between the database and the measurement in a hash key.
pub const SEPARATOR: u8 = 0;

/// Writes the hash key of measurement `m` in database `db` into `out` (cleared first; kept
/// between points of one write to avoid an allocation per point).
pub fn hash_key_into(db: &str, m: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(db.as_bytes());
    out.push(SEPARATOR);
    out.extend_from_slice(m);
}

/// The hash key of measurement `m` in database `db`.
pub fn hash_key(db: &str, m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(db.len() + 1 + m.len());
    hash_key_into(db, m, &mut out);
    out
}

/// The cluster of a point of measurement `m` in `db` whose tags, fields and time are `rest`.
pub fn route_point(
    table: &RoutingTable,
    db: &str,
    m: &[u8],
    rest: &[u8],
    scratch: &mut Vec<u8>,
) -> ClusterId {
    hash_key_into(db, m, scratch);
    table
        .decide_hashed(Some(m), Some(scratch), Some(rest))
        .cluster
}

/// Every cluster that may hold measurement `m` of `db`: its route's (hashed by (db, m)), plus
/// those of the `value` routes that can take its points away.
pub fn measurement_clusters(table: &RoutingTable, db: &str, m: &str) -> Vec<ClusterId> {
    table.message_clusters_hashed(m.as_bytes(), Some(&hash_key(db, m.as_bytes())))
}
