//! InfluxQL: statements split and classified, requests forwarded or fanned out.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use common::{name, settings, table, TWO};
use geomesh_influx::lex::statements;
use geomesh_influx::params::Params;
use geomesh_influx::query::{plan_query, route_statement, sources, Source, StatementKind};
use geomesh_influx::{Merge, Plan};

fn clusters(yaml: &str, q: &str) -> Result<(Vec<String>, StatementKind, String), String> {
    let t = table(yaml);
    let st = statements(q).unwrap();
    assert_eq!(st.len(), 1, "{q}");
    let (text, toks) = &st[0];
    route_statement(&t, "db", text, toks)
        .map(|r| {
            (
                r.clusters.iter().map(|c| name(&t, *c).to_owned()).collect(),
                r.kind,
                r.text,
            )
        })
        .map_err(|e| e.0)
}

fn names(q: &str) -> Vec<String> {
    clusters(TWO, q).unwrap().0
}

#[test]
fn statements_split_outside_strings_identifiers_and_regexes() {
    let st = statements(
        "SELECT \"a;b\" FROM cpu WHERE t = 'x;y' AND h =~ /a;b/; SHOW DATABASES;; -- c;\n",
    )
    .unwrap();
    assert_eq!(st.len(), 2);
    assert_eq!(
        st[0].0,
        "SELECT \"a;b\" FROM cpu WHERE t = 'x;y' AND h =~ /a;b/"
    );
    assert_eq!(st[1].0, "SHOW DATABASES");
    assert!(statements("SELECT 'open").is_err());
}

#[test]
fn from_sources() {
    let src = |q: &str| sources(&statements(q).unwrap()[0].1);
    assert_eq!(
        src("SELECT * FROM cpu, \"my meas\", db.rp.mem, db..disk"),
        vec![
            Source::measurement("cpu"),
            Source::measurement("my meas"),
            Source::Measurement {
                db: Some("db".into()),
                name: "mem".into()
            },
            Source::Measurement {
                db: Some("db".into()),
                name: "disk".into()
            },
        ]
    );
    assert_eq!(
        src("SELECT * FROM rp.cpu, \"d\".\"r\".\"m\""),
        vec![
            Source::measurement("cpu"),
            Source::Measurement {
                db: Some("d".into()),
                name: "m".into()
            },
        ]
    );
    assert_eq!(src("SELECT * FROM db.rp./cpu.*/"), vec![Source::Regex]);
    assert_eq!(
        src("SELECT * FROM /cpu.*/ WHERE a = 1"),
        vec![Source::Regex]
    );
    assert_eq!(
        src("SELECT v / 2 FROM cpu"),
        vec![Source::measurement("cpu")]
    );
    assert_eq!(
        src("SELECT mean(v) FROM (SELECT v FROM mem) GROUP BY time(1m)"),
        vec![Source::Subquery, Source::measurement("mem")]
    );
}

#[test]
fn select_routes_by_measurement() {
    assert_eq!(names("SELECT * FROM cpu"), ["b"]);
    assert_eq!(names("select v from mem where time > now() - 1h"), ["a"]);
    assert_eq!(names("SELECT * FROM cpu, mem"), ["b", "a"]);
    assert_eq!(names("SELECT * FROM /c.*/").len(), 2);
    assert_eq!(names("EXPLAIN SELECT * FROM disk"), ["b"]);
    assert_eq!(
        clusters(TWO, "SELECT * FROM cpu, mem").unwrap().1,
        StatementKind::Select { wildcard: true }
    );
    assert_eq!(
        clusters(TWO, "SELECT v FROM cpu").unwrap().1,
        StatementKind::Select { wildcard: false }
    );
}

#[test]
fn show_is_broadcast_with_limit_after_the_merge() {
    let (c, kind, text) = clusters(TWO, "SHOW MEASUREMENTS LIMIT 2 OFFSET 1").unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(
        kind,
        StatementKind::Union {
            limit: Some(2),
            offset: 1
        }
    );
    assert_eq!(text, "SHOW MEASUREMENTS");
    for q in [
        "SHOW SERIES",
        "SHOW TAG KEYS",
        "SHOW TAG VALUES WITH KEY = host",
        "SHOW FIELD KEYS",
        "SHOW DATABASES",
        "SHOW RETENTION POLICIES ON db",
    ] {
        assert_eq!(names(q).len(), 2, "{q}");
    }
    assert_eq!(names("SHOW TAG KEYS FROM cpu"), ["b"]);
    assert_eq!(names("SHOW USERS"), ["a"]);
    assert!(clusters(TWO, "SHOW SERIES CARDINALITY").is_err());
    assert_eq!(names("SHOW SERIES CARDINALITY FROM mem"), ["a"]);
}

#[test]
fn administration_is_broadcast() {
    for q in [
        "CREATE DATABASE x",
        "DROP DATABASE x",
        "CREATE RETENTION POLICY r ON x DURATION 1d REPLICATION 1",
        "DROP RETENTION POLICY r ON x",
        "CREATE USER u WITH PASSWORD 'p'",
    ] {
        let (c, kind, _) = clusters(TWO, q).unwrap();
        assert_eq!((c.len(), kind), (2, StatementKind::Ack), "{q}");
    }
    assert_eq!(names("DROP MEASUREMENT cpu"), ["b"]);
    assert_eq!(names("DELETE FROM mem WHERE time < 5"), ["a"]);
    assert_eq!(names("KILL QUERY 3"), ["a"]);
}

const VALUE: &str = "workload_type: influxdb\ndefault_cluster: a\nrouting_table:\n  cpu: b\n  alert: { type: value, cluster: c }\n";

#[test]
fn measurements_spread_by_value_routes_refuse_aggregates() {
    assert_eq!(clusters(VALUE, "SELECT * FROM cpu").unwrap().0, ["b", "c"]);
    let e = clusters(VALUE, "SELECT mean(v) FROM cpu").unwrap_err();
    assert!(e.contains("cross-shard aggregate"), "{e}");
    assert!(
        clusters(TWO, "SELECT mean(v) FROM cpu, mem").is_ok(),
        "key routes keep a measurement whole"
    );
    assert!(clusters(TWO, "SELECT mean(v) FROM (SELECT v FROM cpu, mem)").is_err());
    assert!(clusters(TWO, "SELECT * INTO x FROM cpu, mem").is_err());
}

#[test]
fn requests_forwarded_or_fanned_out() {
    let t = table(TWO);
    let s = settings();
    let p = plan_query(
        &t,
        &s,
        &Params::parse(b"db=x&q=SELECT+*+FROM+cpu%3B+SHOW+TAG+KEYS+FROM+disk"),
        false,
    );
    assert_eq!(p, Plan::Forward(t.cluster_id("b").unwrap()));
    let p = plan_query(&t, &s, &Params::parse(b"db=x&epoch=ms&chunked=true&q=SELECT+*+FROM+cpu%3BSHOW+MEASUREMENTS%3BSELECT+*+FROM+mem"), false);
    let Plan::Fanout {
        calls,
        merge: Merge::Query(m),
    } = p
    else {
        panic!("{p:?}")
    };
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].path, "/query?db=x&epoch=ms");
    assert_eq!(
        String::from_utf8(calls[0].body.clone()).unwrap(),
        "q=SELECT%20%2A%20FROM%20cpu%3B%0ASHOW%20MEASUREMENTS"
    );
    assert_eq!(
        String::from_utf8(calls[1].body.clone()).unwrap(),
        "q=SHOW%20MEASUREMENTS%3B%0ASELECT%20%2A%20FROM%20mem"
    );
    assert_eq!(m.statements[0].parts, vec![(0, 0)]);
    assert_eq!(m.statements[1].parts, vec![(0, 1), (1, 0)]);
    assert_eq!(m.statements[2].parts, vec![(1, 1)]);
    assert!(m.chunked && !m.csv);
    let p = plan_query(&t, &s, &Params::parse(b"db=x&q=SHOW+DATABASES"), true);
    let Plan::Fanout { calls, .. } = p else {
        panic!()
    };
    assert_eq!(
        calls[0].path, "/query?db=x&epoch=ns",
        "CSV asks shards for integer times"
    );
    assert!(
        matches!(plan_query(&t, &s, &Params::parse(b"db=x"), false), Plan::Reply(r) if r.status == 400)
    );
}
