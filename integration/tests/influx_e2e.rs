//! InfluxDB sharding end to end: real Envoy running `geomesh_filter_influx.wasm`, real `influxd`
//! 1.6 shards, real clients (reqwest as an HTTP client, the `influx` CLI), and what each shard
//! holds read on the shard directly. A reference `influxd` receiving the same writes directly is
//! the differential oracle: the same queries through the filter and against it answer the same.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Result;
use geomesh_integration::influx::{influx_cli, InfluxMesh, Influxd};
use geomesh_integration::TestDir;
use reqwest::blocking::{Client, Response};
use serde_json::Value;

/// Écharde's shape: cpu (a key route) and disk* (a prefix route) on influx-b, the rest on
/// influx-a (default and local).
const CONFIG: &str = "workload_type: influxdb
default_cluster: influx-a
local_cluster: influx-a
upstream_timeout_ms: 3000
routing_table:
  cpu: influx-b
  disk: { type: prefix, cluster: influx-b }
influxdb:
  max_body_bytes: 65536
";

/// Points with timestamps (so that the reference can hold exactly the same).
const DATA: &str = "cpu,host=a,region=eu value=1 1000000000
cpu,host=b,region=us value=2 2000000000
cpu_load,host=a v=0.5 1000000000
mem,host=a used=3i,free=10i 1000000000
mem,host=b used=4i,free=11i 3000000000
disk_io,dev=sda reads=5i,note=\"a \\\"quoted\\\" b\" 1000000000
my\\ meas,t\\,k=x\\ y f=\"sp ace\" 1000000000
net,if=eth0 rx=7i 2000000000";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn write(url: &str, db: &str, extra: &str, body: impl Into<reqwest::blocking::Body>) -> Response {
    client()
        .post(format!("{url}/write?db={db}{extra}"))
        .body(body)
        .send()
        .unwrap()
}

fn query(url: &str, db: &str, q: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let mut params = vec![("db", db), ("q", q)];
    params.extend_from_slice(extra);
    let r = client()
        .get(format!("{url}/query"))
        .query(&params)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn post_query(url: &str, q: &str) -> (u16, String) {
    let r = client()
        .post(format!("{url}/query"))
        .form(&[("q", q)])
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn influx_sharded_through_envoy() -> Result<()> {
    let dir = TestDir::new("influx_e2e")?;
    let mesh = InfluxMesh::start(&dir, 2, CONFIG)?;
    let reference = Influxd::start(&dir, "reference")?;
    let (a, b) = (&mesh.shards[0], &mesh.shards[1]);
    let url = mesh.url();

    // CREATE DATABASE is broadcast (POST, as InfluxDB requires).
    for db in ["db", "diff"] {
        let (s, body) = post_query(&url, &format!("CREATE DATABASE {db}"));
        assert_eq!(
            (s, body.trim()),
            (200, "{\"results\":[{\"statement_id\":0}]}")
        );
        assert_eq!(
            post_query(&reference.url(), &format!("CREATE DATABASE {db}")).0,
            200
        );
    }
    for shard in [a, b] {
        let dbs = shard.cli("", "SHOW DATABASES", "csv")?;
        assert!(
            dbs.contains("db") && dbs.contains("diff"),
            "{}: {dbs}",
            shard.name
        );
    }

    // /write spanning both shards: split by measurement, checked on each influxd directly.
    let r = write(&url, "diff", "", DATA);
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text());
    assert_eq!(
        write(&reference.url(), "diff", "", DATA).status().as_u16(),
        204
    );
    // (a key route `cpu` takes cpu and cpu.*, cpu:*, cpu/*, not cpu_load; `disk` is a prefix)
    assert_eq!(
        sorted(a.measurements("diff")?),
        ["cpu_load", "mem", "my meas", "net"]
    );
    assert_eq!(sorted(b.measurements("diff")?), ["cpu", "disk_io"]);
    // Escapes and quoted strings arrived byte for byte.
    let note = b.cli("diff", "SELECT note FROM disk_io", "csv")?;
    assert!(note.contains("a \"\"quoted\"\" b"), "{note}");
    let tags = a.cli("diff", "SHOW TAG KEYS FROM \"my meas\"", "csv")?;
    assert!(tags.contains("\"t,k\""), "{tags}");

    // Points without a timestamp, spanning shards: one time for the whole request.
    let r = write(
        &url,
        "db",
        "&precision=ms",
        "cpu,host=nt value=1\nmem,host=nt used=1i\n",
    );
    assert_eq!(r.status().as_u16(), 204);
    let t_b = b.cli("db", "SELECT value FROM cpu WHERE host='nt'", "csv")?;
    let t_a = a.cli("db", "SELECT used FROM mem WHERE host='nt'", "csv")?;
    let time = |csv: &str| {
        csv.lines()
            .nth(1)
            .and_then(|l| l.split(',').nth(1))
            .map(str::to_owned)
    };
    assert!(time(&t_a).is_some(), "{t_a}");
    assert_eq!(time(&t_a), time(&t_b), "one stamp for both shards");
    assert_eq!(
        time(&t_a).unwrap().parse::<u64>()? % 1_000_000,
        0,
        "stamped in ms precision"
    );

    // gzip body spanning both shards.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"cpu,host=gz value=9 5000000000\nmem,host=gz used=9i 5000000000\n")?;
    let r = client()
        .post(format!("{url}/write?db=db"))
        .header("content-encoding", "gzip")
        .body(gz.finish()?)
        .send()?;
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text());
    assert!(b
        .cli("db", "SELECT * FROM cpu WHERE host='gz'", "csv")?
        .contains("gz"));
    assert!(a
        .cli("db", "SELECT * FROM mem WHERE host='gz'", "csv")?
        .contains("gz"));

    // 413 above max_body_bytes.
    let big = "mem v=1 1\n".repeat(8000);
    let r = write(&url, "db", "", big);
    assert_eq!(r.status().as_u16(), 413);
    assert!(r.text()?.contains("over the limit"));

    // Partial writes merged: dropped summed, first error kept.
    let r = write(
        &url,
        "db",
        "",
        "cpu value= 1\ncpu value=3 1\nmem used= 2\nmem used=2i 2\n",
    );
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text()?;
    assert!(
        text.contains("partial write") && text.contains("dropped=0"),
        "{text}"
    );

    // /query one shard: forwarded by the router, same answer as the shard's own.
    let r = client()
        .get(format!("{url}/query"))
        .query(&[("db", "diff"), ("q", "SELECT * FROM cpu")])
        .send()?;
    assert_eq!(
        r.headers()
            .get("x-geomesh-routed-to")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("influx-b".to_owned())
    );
    let through = r.text()?;
    assert_eq!(
        json(&through),
        json(&query(&b.url(), "diff", "SELECT * FROM cpu", &[]).1)
    );

    // The differential: through the filter and against the reference holding everything.
    let statements = [
        "SELECT * FROM cpu, mem",
        "SELECT * FROM /.*/",
        "SELECT * FROM /^(cpu|net)/ WHERE time > 0",
        "SELECT value FROM cpu GROUP BY host",
        "SELECT max(used) FROM mem, net",
        "SHOW MEASUREMENTS",
        "SHOW MEASUREMENTS LIMIT 2 OFFSET 1",
        "SHOW TAG KEYS",
        "SHOW TAG VALUES WITH KEY = host",
        "SHOW FIELD KEYS",
        "SHOW SERIES",
        "SHOW DATABASES",
        "SHOW RETENTION POLICIES",
        "SELECT * FROM cpu; SHOW MEASUREMENTS; SELECT * FROM mem",
        // Limits: SLIMIT/SOFFSET per measurement, LIMIT/OFFSET per series or after a SHOW's merge.
        "SELECT * FROM cpu, mem GROUP BY host SLIMIT 1 SOFFSET 1",
        "SELECT * FROM /.*/ GROUP BY * SLIMIT 1",
        "SELECT * FROM cpu, mem GROUP BY host LIMIT 1 OFFSET 1",
        "SELECT * FROM cpu, mem GROUP BY host ORDER BY time DESC",
        "SELECT * FROM cpu, mem, net ORDER BY time DESC LIMIT 1",
        "SHOW TAG KEYS LIMIT 1 OFFSET 1",
        "SHOW TAG KEYS SLIMIT 1 SOFFSET 1",
        "SHOW TAG KEYS LIMIT 1 OFFSET 1 SLIMIT 1 SOFFSET 1",
        "SHOW TAG VALUES WITH KEY = host LIMIT 1 OFFSET 1",
        "SHOW SERIES LIMIT 2 OFFSET 1",
        "SHOW FIELD KEYS LIMIT 1 OFFSET 1",
        "SHOW MEASUREMENTS LIMIT 3",
        "SHOW MEASUREMENTS SLIMIT 1",
    ];
    for q in statements {
        let (s1, ours) = query(&url, "diff", q, &[]);
        let (s2, theirs) = query(&reference.url(), "diff", q, &[]);
        assert_eq!(
            (s1, json(&ours)),
            (s2, json(&theirs)),
            "{q}\n ours:   {ours}\n theirs: {theirs}"
        );
        // CSV, with the times as integers.
        let csv = |u: &str| {
            client()
                .get(format!("{u}/query"))
                .header("accept", "application/csv")
                .query(&[("db", "diff"), ("q", q)])
                .send()
                .unwrap()
                .text()
                .unwrap()
        };
        if q == "SHOW RETENTION POLICIES" {
            // InfluxDB 1.6's CSV writer has no case for Go `int` values and prints the column's
            // name instead (`replicaN`); the merge writes the number. Everything else matches.
            let (ours, theirs) = (csv(&url), csv(&reference.url()));
            assert_eq!(
                ours.replace(",1,true", ",replicaN,true"),
                theirs,
                "CSV of {q}"
            );
            continue;
        }
        assert_eq!(csv(&url), csv(&reference.url()), "CSV of {q}");
    }

    // chunked=true: the same documents, in the same order, as one influxd writes them.
    let docs = |text: &str| -> Vec<Value> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(json)
            .collect()
    };
    for q in [
        "SELECT * FROM cpu, mem GROUP BY host; SHOW MEASUREMENTS",
        "SELECT * FROM cpu, mem",
        "SELECT * FROM /.*/ GROUP BY *",
        "SHOW SERIES; SHOW TAG KEYS; SHOW TAG VALUES WITH KEY = host; SHOW FIELD KEYS",
        "SHOW DATABASES; SHOW RETENTION POLICIES; SELECT * FROM nothere",
    ] {
        for size in ["1", "2", ""] {
            let mut extra = vec![("chunked", "true")];
            if !size.is_empty() {
                extra.push(("chunk_size", size));
            }
            let ours = query(&url, "diff", q, &extra).1;
            let theirs = query(&reference.url(), "diff", q, &extra).1;
            assert_eq!(
                docs(&ours),
                docs(&theirs),
                "chunked, chunk_size {size:?}: {q}\n ours:\n{ours}\n theirs:\n{theirs}"
            );
        }
    }

    // The influx CLI through Envoy (it pings /ping first: the local cluster answers).
    for q in [
        "SHOW MEASUREMENTS",
        "SELECT * FROM cpu, mem",
        "SHOW TAG KEYS",
    ] {
        assert_eq!(
            json(&influx_cli(mesh.port, "diff", q, "json")?),
            json(&influx_cli(reference.port, "diff", q, "json")?),
            "influx -execute {q:?}"
        );
    }

    // Refusals: a subquery over two shards, /debug.
    let (s, body) = query(
        &url,
        "diff",
        "SELECT mean(v) FROM (SELECT * FROM cpu, mem)",
        &[],
    );
    assert_eq!(s, 400, "{body}");
    let r = client().get(format!("{url}/debug/vars")).send()?;
    assert_eq!(r.status().as_u16(), 403);
    // DROP DATABASE broadcast.
    assert_eq!(post_query(&url, "DROP DATABASE db").0, 200);
    for shard in [a, b] {
        assert!(
            !shard.cli("", "SHOW DATABASES", "csv")?.contains(",db\n"),
            "{}",
            shard.name
        );
    }
    Ok(())
}

#[test]
fn influx_shard_down_is_named() -> Result<()> {
    let dir = TestDir::new("influx_down")?;
    let mut mesh = InfluxMesh::start(&dir, 2, CONFIG)?;
    let url = mesh.url();
    assert_eq!(post_query(&url, "CREATE DATABASE db").0, 200);
    mesh.shards[1].stop()?;
    let r = write(
        &url,
        "db",
        "",
        "cpu value=1 1\nmem used=1i 1\nnet rx=1i 1\n",
    );
    let status = r.status().as_u16();
    let text = r.text()?;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("influx-b") && text.contains("written elsewhere: 2 points to influx-a"),
        "{text}"
    );
    assert_eq!(
        mesh.shards[0].measurements("db")?,
        ["mem", "net"],
        "influx-a kept its part"
    );
    let (s, body) = query(&url, "db", "SELECT * FROM cpu, mem", &[]);
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("influx-b"), "{body}");
    // Reads of the live shard alone still work (forwarded by the router).
    let (s, body) = query(&url, "db", "SELECT * FROM mem", &[]);
    assert_eq!(s, 200, "{body}");
    // One shard down, forwarded: Envoy's own 503, naming the cluster.
    let (s, body) = query(&url, "db", "SELECT * FROM cpu", &[]);
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("influx-b"), "{body}");

    // The kit's metrics, in Envoy's stats (wasmcustom.influxdb.<stat_prefix>.*).
    let stat = |name: &str| -> u64 {
        mesh.envoy
            .stat(&format!("wasmcustom.influxdb.geomesh.{name}"))
            .unwrap()
            .unwrap_or(0)
    };
    // Recorded at the end of each stream, just after the client got its answer.
    let t = std::time::Instant::now();
    while stat("command.query.error") < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        (stat("command.write.total"), stat("command.write.error")),
        (1, 1),
        "the split write the down shard failed"
    );
    assert_eq!(stat("command.query.total"), 4, "CREATE DATABASE and 3 SELECTs");
    assert_eq!(
        (stat("command.query.success"), stat("command.query.error")),
        (2, 2)
    );
    assert!(stat("upstream.influx-a.rq_total") >= 3);
    assert!(stat("upstream.influx-b.rq_total") >= 3);
    assert!(
        stat("upstream.influx-b.cx_refused") >= 2,
        "the write's and the SELECT's calls to the stopped shard"
    );
    assert_eq!(stat("upstream.influx-a.cx_refused"), 0);
    assert_eq!(stat("splitter.split"), 1, "the write");
    assert_eq!(stat("splitter.broadcast"), 2, "CREATE DATABASE, SELECT * FROM cpu, mem");
    let (_, all) = mesh.envoy.admin_get("/stats?filter=influxdb.geomesh.command.write.latency")?;
    assert!(all.contains("command.write.latency"), "{all}");
    Ok(())
}

/// Every measurement hashed over both shards, keyed by (database, measurement).
const HASHED: &str = "workload_type: influxdb
default_cluster: influx-a
local_cluster: influx-a
upstream_timeout_ms: 3000
routing_table:
  '*': { type: hash, clusters: [influx-a, influx-b] }
";

#[test]
fn influx_hash_spreads_database_and_measurement() -> Result<()> {
    let dir = TestDir::new("influx_hash")?;
    let mesh = InfluxMesh::start(&dir, 2, HASHED)?;
    let url = mesh.url();
    let dbs: Vec<String> = (0..8).map(|i| format!("d{i}")).collect();
    for db in &dbs {
        assert_eq!(post_query(&url, &format!("CREATE DATABASE {db}")).0, 200);
        // curl writes one point of measurement `cpu` per database (value = its index).
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-XPOST"])
            .arg(format!("{url}/write?db={db}"))
            .args(["--data-binary", &format!("cpu,h=x v={} 1000000000", &db[1..])])
            .output()?;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "204", "curl write {db}");
    }
    // Where each database's cpu landed, read on each influxd.
    let mut on = Vec::new();
    for db in &dbs {
        let holders: Vec<&str> = mesh
            .shards
            .iter()
            .filter(|s| s.measurements(db).unwrap() == ["cpu"])
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(holders.len(), 1, "{db}: exactly one shard holds it: {holders:?}");
        on.push(holders[0].to_owned());
    }
    assert!(
        on.contains(&"influx-a".to_owned()) && on.contains(&"influx-b".to_owned()),
        "one measurement name over several databases spreads: {on:?}"
    );
    for (i, db) in dbs.iter().enumerate() {
        // A query of each database finds its own point, routed to where it is.
        let r = client()
            .get(format!("{url}/query"))
            .query(&[("db", db.as_str()), ("q", "SELECT v FROM cpu")])
            .send()?;
        let routed = r.headers()["x-geomesh-routed-to"].to_str()?.to_owned();
        assert_eq!(routed, on[i], "{db}");
        let doc = json(&r.text()?);
        assert_eq!(doc["results"][0]["series"][0]["values"][0][1], i as u64, "{db}: {doc}");
        // FROM naming the database, from another database's request; the influx CLI.
        let q = format!("SELECT v FROM \"{db}\".\"autogen\".\"cpu\"");
        let (s, body) = query(&url, "d0", &q, &[]);
        assert_eq!(s, 200, "{body}");
        assert_eq!(json(&body)["results"][0]["series"][0]["values"][0][1], i as u64);
        let cli = json(&influx_cli(mesh.port, db, "SELECT v FROM cpu", "json")?);
        assert_eq!(cli["results"][0]["series"][0]["values"][0][1], i as u64);
    }
    Ok(())
}

/// A `value` route spreads measurement cpu over both shards (points whose tags or fields hold
/// `eu` go to influx-b).
const SPREAD: &str = "workload_type: influxdb
default_cluster: influx-a
local_cluster: influx-a
upstream_timeout_ms: 3000
routing_table:
  eu: { type: value, cluster: influx-b }
";

const SPREAD_DATA: &str = "cpu,host=a value=1 1000000000
cpu,host=a value=5,n=\"eu\" 5000000000
cpu,host=a value=3 3000000000
cpu,host=b value=2,n=\"eu\" 2000000000
cpu,host=b value=4 4000000000
cpu,host=c value=6,n=\"eu\" 6000000000
cpu,host=d value=7 7000000000
mem,host=a used=1i 1000000000";

#[test]
fn influx_spread_measurement_limits_after_the_merge() -> Result<()> {
    let dir = TestDir::new("influx_spread")?;
    let mesh = InfluxMesh::start(&dir, 2, SPREAD)?;
    let reference = Influxd::start(&dir, "reference")?;
    let url = mesh.url();
    for u in [url.as_str(), &reference.url()] {
        assert_eq!(post_query(u, "CREATE DATABASE s").0, 200);
        let r = write(u, "s", "", SPREAD_DATA);
        assert_eq!(r.status().as_u16(), 204, "{:?}", r.text());
    }
    for shard in &mesh.shards {
        assert!(shard.measurements("s")?.contains(&"cpu".to_owned()), "cpu spread: {}", shard.name);
    }
    for q in [
        "SELECT value FROM cpu GROUP BY host",
        "SELECT value FROM cpu GROUP BY host LIMIT 1 OFFSET 1",
        "SELECT value FROM cpu GROUP BY host SLIMIT 2 SOFFSET 1",
        "SELECT value FROM cpu GROUP BY host ORDER BY time DESC LIMIT 2",
        "SELECT * FROM cpu LIMIT 3 OFFSET 2",
        "SELECT * FROM cpu ORDER BY time DESC LIMIT 2 OFFSET 1",
        "SELECT value FROM cpu, mem GROUP BY host SLIMIT 1 SOFFSET 1",
        "SELECT value FROM cpu WHERE time > 2s GROUP BY host LIMIT 2 SLIMIT 3",
    ] {
        let (s1, ours) = query(&url, "s", q, &[]);
        let (s2, theirs) = query(&reference.url(), "s", q, &[]);
        assert_eq!(
            (s1, json(&ours)),
            (s2, json(&theirs)),
            "{q}\n ours:   {ours}\n theirs: {theirs}"
        );
        let extra = [("chunked", "true"), ("chunk_size", "1")];
        let (ours, theirs) = (query(&url, "s", q, &extra).1, query(&reference.url(), "s", q, &extra).1);
        let docs = |t: &str| t.lines().filter(|l| !l.trim().is_empty()).map(json).collect::<Vec<_>>();
        assert_eq!(docs(&ours), docs(&theirs), "chunked {q}\n ours:\n{ours}\n theirs:\n{theirs}");
    }
    // An aggregate over the spread measurement would need a cross-shard computation: refused.
    let (s, body) = query(&url, "s", "SELECT max(value) FROM cpu", &[]);
    assert_eq!(s, 400, "{body}");
    Ok(())
}
