//! LIMIT/OFFSET/SLIMIT/SOFFSET taken out of what shards get and applied after the merge.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use common::{name, table};
use geomesh_influx::lex::statements;
use geomesh_influx::limits::{strip, window, with_limit, Limits, Strip};
use geomesh_influx::query::{route_statement, Chunk};

fn stripped(q: &str, which: Strip) -> (String, Limits, Option<usize>) {
    let st = statements(q).unwrap();
    strip(&st[0].0, &st[0].1, which)
}

#[test]
fn clauses_out_wherever_at_top_level() {
    let (t, l, at) = stripped(
        "SELECT v FROM cpu LIMIT 3 OFFSET 1 SLIMIT 2 SOFFSET 4 tz('Europe/Paris')",
        Strip::All,
    );
    assert_eq!(t, "SELECT v FROM cpu tz('Europe/Paris')");
    assert_eq!(
        l,
        Limits {
            limit: Some(3),
            offset: 1,
            slimit: Some(2),
            soffset: 4
        }
    );
    assert_eq!(
        with_limit(&t, at, 4),
        "SELECT v FROM cpu LIMIT 4 tz('Europe/Paris')"
    );
    // Rows only: SLIMIT stays for the shard to judge; a subquery's clauses are its own.
    let (t, l, _) = stripped("SHOW TAG VALUES WITH KEY = h LIMIT 1 SLIMIT 1", Strip::Rows);
    assert_eq!(
        (t.as_str(), l.limit, l.slimit),
        ("SHOW TAG VALUES WITH KEY = h SLIMIT 1", Some(1), None)
    );
    let (t, l, _) = stripped("SELECT * FROM (SELECT v FROM cpu LIMIT 2)", Strip::All);
    assert_eq!(
        (t.as_str(), l.any()),
        ("SELECT * FROM (SELECT v FROM cpu LIMIT 2)", false)
    );
    let (t, _, at) = stripped("SHOW MEASUREMENTS", Strip::All);
    assert_eq!((t.as_str(), at), ("SHOW MEASUREMENTS", None));
    assert_eq!(
        with_limit("SELECT v FROM m", None, 2),
        "SELECT v FROM m LIMIT 2"
    );
}

#[test]
fn window_skips_then_keeps() {
    let mut v = vec![1, 2, 3, 4];
    window(&mut v, 1, Some(2));
    assert_eq!(v, [2, 3]);
    window(&mut v, 5, None);
    assert!(v.is_empty());
}

/// cpu's points may be on a or b (a value route), mem only on a.
const SPREAD: &str = "workload_type: influxdb\ndefault_cluster: a\nlocal_cluster: a\nrouting_table:\n  eu: { type: value, cluster: b }\n";

#[test]
fn a_spread_select_sends_limit_plus_offset_and_keeps_the_rest() {
    let t = table(SPREAD);
    let route = |q: &str| {
        let st = statements(q).unwrap();
        route_statement(&t, "db", &st[0].0, &st[0].1).unwrap()
    };
    let r = route(
        "SELECT v FROM cpu GROUP BY h ORDER BY time DESC LIMIT 2 OFFSET 1 SLIMIT 1 SOFFSET 1",
    );
    assert_eq!(
        r.clusters.iter().map(|c| name(&t, *c)).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(
        r.text,
        "SELECT v FROM cpu GROUP BY h ORDER BY time DESC LIMIT 3"
    );
    assert!(r.shape.desc);
    assert_eq!(r.shape.chunk, Chunk::Rows);
    assert_eq!(
        r.shape.after,
        Some(Limits {
            limit: Some(2),
            offset: 1,
            slimit: Some(1),
            soffset: 1
        })
    );
    // Without a spread measurement the shards apply them (per measurement, as one InfluxDB).
    let two = table(common::TWO);
    let st = statements("SELECT * FROM cpu, mem SLIMIT 1").unwrap();
    let r = route_statement(&two, "db", &st[0].0, &st[0].1).unwrap();
    assert_eq!(
        (r.text.as_str(), r.shape.after),
        ("SELECT * FROM cpu, mem SLIMIT 1", None)
    );
    // SHOW TAG KEYS: SLIMIT/SOFFSET dropped (InfluxDB 1.6 ignores them), rows after the merge.
    let st = statements("SHOW TAG KEYS LIMIT 1 OFFSET 1 SLIMIT 1 SOFFSET 1").unwrap();
    let r = route_statement(&two, "db", &st[0].0, &st[0].1).unwrap();
    assert_eq!(
        (r.text.as_str(), r.shape.chunk),
        ("SHOW TAG KEYS", Chunk::PerSeries)
    );
}
