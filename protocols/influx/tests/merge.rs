//! /query answers merged as one InfluxDB would answer.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use geomesh_influx::merge::{merge_query, parse_answer};
use geomesh_influx::query::{Chunk, QueryMerge, Shape, StatementKind, StatementMerge};
use geomesh_influx::Answer;

fn ok(body: &str) -> Answer {
    Answer {
        status: Some(200),
        body: body.as_bytes().to_vec(),
    }
}

fn qm(kinds: &[(StatementKind, Vec<(usize, usize)>)], csv: bool, chunked: bool) -> QueryMerge {
    QueryMerge {
        statements: kinds
            .iter()
            .map(|(k, p)| StatementMerge {
                kind: *k,
                shape: Shape {
                    chunk: match k {
                        StatementKind::Select { .. } => Chunk::Rows,
                        _ => Chunk::Whole,
                    },
                    ..Shape::default()
                },
                parts: p.clone(),
            })
            .collect(),
        clusters: vec!["a".into(), "b".into()],
        chunked,
        chunk_size: 10_000,
        csv,
    }
}

fn text(r: geomesh_influx::Reply) -> String {
    String::from_utf8(r.body).unwrap()
}

const SHOW_A: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["mem"],["zz"]]}]}]}"#;
const SHOW_B: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["mem"]]}]}]}"#;

#[test]
fn show_union_sorted_deduplicated_limited() {
    let u = |limit, offset| StatementKind::Union { limit, offset };
    let r = merge_query(
        &qm(&[(u(None, 0), vec![(0, 0), (1, 0)])], false, false),
        &[ok(SHOW_A), ok(SHOW_B)],
    );
    assert_eq!(text(r), "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"measurements\",\"columns\":[\"name\"],\"values\":[[\"cpu\"],[\"mem\"],[\"zz\"]]}]}]}\n");
    let r = merge_query(
        &qm(&[(u(Some(1), 1), vec![(0, 0), (1, 0)])], false, false),
        &[ok(SHOW_A), ok(SHOW_B)],
    );
    assert!(text(r).contains("\"values\":[[\"mem\"]]"));
}

#[test]
fn select_series_sorted_columns_unified_ids_kept() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"mem","columns":["time","host","used"],"values":[[1,"a",3]]}]},{"statement_id":1}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","host","value"],"values":[[1,"a",1],[2,"b",2]]}]}]}"#;
    let m = qm(
        &[
            (
                StatementKind::Select { wildcard: true },
                vec![(0, 0), (1, 0)],
            ),
            (StatementKind::Ack, vec![(0, 1)]),
        ],
        false,
        false,
    );
    let r = text(merge_query(&m, &[ok(a), ok(b)]));
    assert_eq!(
        r,
        "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"cpu\",\"columns\":[\"time\",\"host\",\"used\",\"value\"],\"values\":[[1,\"a\",null,1],[2,\"b\",null,2]]},{\"name\":\"mem\",\"columns\":[\"time\",\"host\",\"used\",\"value\"],\"values\":[[1,\"a\",3,null]]}]},{\"statement_id\":1}]}\n"
    );
    let csv = text(merge_query(
        &qm(
            &m.statements
                .iter()
                .map(|s| (s.kind, s.parts.clone()))
                .collect::<Vec<_>>(),
            true,
            false,
        ),
        &[ok(a), ok(b)],
    ));
    assert_eq!(
        csv,
        "name,tags,time,host,used,value\ncpu,,1,a,,1\ncpu,,2,b,,2\nmem,,1,a,3,\n"
    );
    let chunked = text(merge_query(
        &qm(
            &m.statements
                .iter()
                .map(|s| (s.kind, s.parts.clone()))
                .collect::<Vec<_>>(),
            false,
            true,
        ),
        &[ok(a), ok(b)],
    ));
    // One document per series, `partial` until the statement's last one; then statement 1.
    let docs: Vec<&str> = chunked.lines().collect();
    assert_eq!(docs.len(), 3, "{chunked}");
    assert!(
        docs[0].contains("\"name\":\"cpu\"") && docs[0].ends_with(",\"partial\":true}]}"),
        "{}",
        docs[0]
    );
    assert!(
        docs[1].contains("\"name\":\"mem\"") && !docs[1].contains("partial"),
        "{}",
        docs[1]
    );
}

#[test]
fn errors_shards_down_and_client_errors() {
    let m = qm(&[(StatementKind::Ack, vec![(0, 0), (1, 0)])], false, false);
    let e = r#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#;
    assert!(text(merge_query(
        &m,
        &[ok(r#"{"results":[{"statement_id":0}]}"#), ok(e)]
    ))
    .contains("\"error\":\"database not found: x\""));
    let down = merge_query(
        &m,
        &[
            ok(e),
            Answer {
                status: None,
                body: vec![],
            },
        ],
    );
    assert_eq!(down.status, 503);
    assert!(text(down).contains("cluster b did not answer"));
    let bad = merge_query(
        &m,
        &[
            ok(e),
            Answer {
                status: Some(400),
                body: b"{\"error\":\"parse\"}".to_vec(),
            },
        ],
    );
    assert_eq!(bad.status, 400);
    assert_eq!(merge_query(&m, &[ok("nonsense"), ok(e)]).status, 502);
}

#[test]
fn chunked_answers_are_joined() {
    let body = "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"cpu\",\"columns\":[\"time\"],\"values\":[[1]],\"partial\":true}],\"partial\":true}]}\n{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"cpu\",\"columns\":[\"time\"],\"values\":[[2]]}]}]}\n";
    let r = parse_answer(body.as_bytes()).unwrap();
    assert_eq!(r.results[0].series[0].values.len(), 2);
    assert_eq!(r.results[0].partial, None);
}
