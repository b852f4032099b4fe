//! InfluxDB /query: the InfluxQL lexer, classifier and planner on arbitrary text, and the
//! answer readers and merges (query and write) on arbitrary shard answers. Beyond "no panic":
//! a fan-out sends every statement to at least one shard, and a merge of well-formed answers
//! gives one result per statement, numbered as the client's.
#![no_main]

use geomesh_core::{Config, RoutingTable};
use geomesh_influx::merge::{merge_query, parse_answer};
use geomesh_influx::params::Params;
use geomesh_influx::query::plan_query;
use geomesh_influx::write::{merge_write, WriteMerge, WritePart};
use geomesh_influx::{Answer, Merge, Plan, Settings};
use libfuzzer_sys::fuzz_target;

const TABLE: &str = "workload_type: influxdb\ndefault_cluster: a\nrouting_table:\n  c: { type: prefix, cluster: b }\n  eu: { type: value, cluster: d }\n  \"*\": { type: hash, clusters: [a, b, d] }\n";

fuzz_target!(|data: &[u8]| {
    let (q, answer) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let table = RoutingTable::new(&Config::parse(TABLE.as_bytes()).unwrap()).unwrap();
    let mut params = Params::parse(b"db=x");
    params
        .0
        .push(("q".into(), String::from_utf8_lossy(q).into_owned()));
    for csv in [false, true] {
        if let Plan::Fanout {
            calls,
            merge: Merge::Query(m),
        } = plan_query(&table, &Settings::default(), &params, csv)
        {
            assert!(m.statements.iter().all(|s| !s.parts.is_empty()));
            // The same arbitrary answer from every shard.
            let answers: Vec<Answer> = calls
                .iter()
                .map(|_| Answer {
                    status: Some(200),
                    body: answer.to_vec(),
                })
                .collect();
            let r = merge_query(&m, &answers);
            if r.status == 200 && !csv && !m.chunked {
                let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(
                    doc["results"].as_array().map(|a| a.len()),
                    Some(m.statements.len())
                );
            }
        }
    }
    let _ = parse_answer(answer);
    let wm = WriteMerge {
        parts: vec![
            WritePart {
                cluster: "a".into(),
                points: 2,
            },
            WritePart {
                cluster: "b".into(),
                points: 1,
            },
        ],
    };
    let _ = merge_write(
        &wm,
        &[
            Answer {
                status: Some(400),
                body: answer.to_vec(),
            },
            Answer {
                status: Some(204),
                body: vec![],
            },
        ],
    );
});
