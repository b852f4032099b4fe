//! InfluxDB /write: the line scanner, the gzip reader and the write planner on arbitrary bytes.
//! Beyond "no panic": lines are ordered, disjoint slices of the body; a split write sends every
//! point exactly once, each as its bytes (plus a timestamp when it had none).
#![no_main]

use geomesh_core::{Config, RoutingTable};
use geomesh_influx::line::lines;
use geomesh_influx::params::Params;
use geomesh_influx::write::plan_write;
use geomesh_influx::{Plan, Settings};
use libfuzzer_sys::fuzz_target;

const TABLE: &str = "workload_type: influxdb\ndefault_cluster: a\nrouting_table:\n  c: { type: prefix, cluster: b }\n  x: { type: value, cluster: c }\n";

fuzz_target!(|data: &[u8]| {
    let mut end = 0;
    let mut count = 0usize;
    for l in lines(data) {
        assert!(l.offset >= end);
        assert_eq!(data.get(l.offset..l.offset + l.raw.len()), Some(l.raw));
        end = l.offset + l.raw.len();
        count += 1;
    }
    let table = RoutingTable::new(&Config::parse(TABLE.as_bytes()).unwrap()).unwrap();
    let settings = Settings {
        max_decoded_bytes: 1 << 16,
        ..Settings::default()
    };
    let _ = plan_write(&table, &settings, &Params::default(), data, true, 7);
    let originals: Vec<&[u8]> = lines(data).map(|l| l.raw.trim_ascii_end()).collect();
    let plan = plan_write(
        &table,
        &settings,
        &Params::parse(b"precision=ms"),
        data,
        false,
        7_000_000,
    );
    if let Plan::Fanout { calls, .. } = plan {
        let mut sent = 0usize;
        for c in &calls {
            for l in lines(&c.body) {
                sent += 1;
                // As sent, or with ` <time>` (7 ms) appended to a point without one. (A malformed
                // point without fields may still read as having no time: its shard refuses it
                // either way.)
                let raw = l.raw.trim_ascii_end();
                let unstamped = raw.strip_suffix(b" 7").map(<[u8]>::trim_ascii_end);
                assert!(
                    originals.contains(&raw) || unstamped.is_some_and(|u| originals.contains(&u)),
                    "{:?} was not in the body",
                    String::from_utf8_lossy(raw)
                );
            }
        }
        assert_eq!(sent, count, "every point once");
    }
});
