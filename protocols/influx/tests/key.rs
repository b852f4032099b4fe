//! `hash` routes spread (database, measurement): one measurement name in two databases may be on
//! two shards, and writes and queries of each find the same one.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use common::{name, settings, table};
use geomesh_influx::key::{hash_key, measurement_clusters};
use geomesh_influx::params::Params;
use geomesh_influx::query::plan_query;
use geomesh_influx::write::plan_write;
use geomesh_influx::Plan;

const HASHED: &str = "workload_type: influxdb\ndefault_cluster: a\nlocal_cluster: a\nrouting_table:\n  mem: a\n  '*': { type: hash, clusters: [a, b] }\n";

fn forward(p: Plan) -> String {
    let t = table(HASHED);
    match p {
        Plan::Forward(c) => name(&t, c).to_owned(),
        other => panic!("not forwarded: {other:?}"),
    }
}

fn write_to(db: &str, body: &str) -> String {
    let t = table(HASHED);
    let params = Params::parse(format!("db={db}").as_bytes());
    forward(plan_write(
        &t,
        &settings(),
        &params,
        body.as_bytes(),
        false,
        1,
    ))
}

fn query_to(db: &str, q: &str) -> String {
    let t = table(HASHED);
    let mut params = Params::parse(format!("db={db}").as_bytes());
    params.0.push(("q".into(), q.into()));
    forward(plan_query(&t, &settings(), &params, false))
}

#[test]
fn the_key_is_db_then_nul_then_measurement() {
    assert_eq!(hash_key("db", b"cpu"), b"db\0cpu");
    assert_ne!(hash_key("db1", b"cpu"), hash_key("db", b"1cpu"));
}

#[test]
fn one_measurement_in_two_databases_lands_on_two_shards() {
    let t = table(HASHED);
    let dbs: Vec<String> = (0..16).map(|i| format!("db{i}")).collect();
    let shard = |db: &str| write_to(db, "cpu,h=x v=1 1\ncpu v=2 2\n");
    let on: Vec<String> = dbs.iter().map(|d| shard(d)).collect();
    assert!(
        on.contains(&"a".to_owned()) && on.contains(&"b".to_owned()),
        "{on:?}"
    );
    for (db, s) in dbs.iter().zip(&on) {
        // Queries of that database find it there.
        assert_eq!(&query_to(db, "SELECT * FROM cpu"), s, "{db}");
        assert_eq!(&query_to(db, "SELECT * FROM rp.cpu"), s, "{db}");
        // A FROM naming its database routes by that one, whatever the request's `db`.
        assert_eq!(
            &query_to("other", &format!("SELECT * FROM {db}.autogen.cpu")),
            s
        );
        assert_eq!(
            &query_to("other", &format!("SELECT * FROM \"{db}\"..cpu")),
            s
        );
        assert_eq!(
            &query_to("other", &format!("SHOW TAG KEYS ON {db} FROM cpu")),
            s
        );
        assert_eq!(
            measurement_clusters(&t, db, "cpu")
                .iter()
                .map(|c| name(&t, *c))
                .collect::<Vec<_>>(),
            [s.as_str()]
        );
        // A key route naming one cluster keeps every database's measurement there.
        assert_eq!(write_to(db, "mem v=1 1\n"), "a");
    }
}
