//! The protocol kit's end-to-end proof: the test line protocol (protocols/line: framing, a
//! planner and merges, nothing else) through a real Envoy running `geomesh_filter_line.wasm`
//! (V8), a real `geomesh-bridge` and two real `geomesh-line-server`s. The pipeline, the mux,
//! the shell and the bridge are the ones every protocol uses, unchanged.
//!
//! Placement is checked on each server directly.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result};
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::{spawn_native, Proc, TestDir};

const TABLE: &str = "\
workload_type: line
default_cluster: a
upstream_timeout_ms: 2000
routing_table:
  user: b
";

/// A line client: one line out, one line back.
struct Client {
    out: TcpStream,
    inp: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            out: s.try_clone()?,
            inp: BufReader::new(s),
        })
    }

    fn ask(&mut self, line: &str) -> Result<String> {
        self.out.write_all(format!("{line}\n").as_bytes())?;
        let mut a = String::new();
        self.inp.read_line(&mut a).context("read answer")?;
        Ok(a.trim_end().to_owned())
    }
}

fn server(dir: &TestDir, name: &str) -> Result<(Proc, u16)> {
    let mut p = spawn_native(dir, "geomesh-line-server", name, &["--listen".into(), "127.0.0.1:0".into()])?;
    let out = p.stdout_path().to_path_buf();
    let mut port = 0;
    p.wait_until(Duration::from_secs(10), &format!("{name} ready"), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("geomesh-line-server ready listen=")) {
            port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
            return Ok(port != 0);
        }
        Ok(false)
    })?;
    Ok((p, port))
}

#[test]
fn a_protocol_on_the_kit_is_routed_split_and_merged_through_envoy() -> Result<()> {
    let dir = TestDir::new("kit-line")?;
    let (mut pa, a) = server(&dir, "line-a")?;
    let (_pb, b) = server(&dir, "line-b")?;
    let opts = FilterMeshOptions::new("geomesh_filter_line", "geomesh_line", TABLE);
    let mesh = FilterMesh::start(&dir, &opts, &[("a", a), ("b", b)])?;

    let mut c = Client::connect(mesh.port)?;
    assert_eq!(c.ask("SET user:1 alice")?, "OK");
    assert_eq!(c.ask("SET other 2")?, "OK");
    // Placement, on each server directly.
    assert_eq!(Client::connect(b)?.ask("KEYS")?, "KEYS user:1");
    assert_eq!(Client::connect(a)?.ask("KEYS")?, "KEYS other");
    // Split per cluster, merged in key order; broadcast merged; refused locally.
    assert_eq!(c.ask("GET other user:1 nope")?, "VALUES 2 alice -");
    assert_eq!(c.ask("KEYS")?, "KEYS other user:1");
    assert_eq!(c.ask("FLY away")?, geomesh_line::ERR_UNKNOWN);
    // Pipelined: answers in request order across both servers.
    let mut burst = String::new();
    for i in 0..200 {
        burst.push_str(&format!("SET user:{i} v{i}\nGET user:{i} other\n"));
    }
    c.out.write_all(burst.as_bytes())?;
    for i in 0..200 {
        let mut l = String::new();
        c.inp.read_line(&mut l)?;
        assert_eq!(l.trim_end(), "OK");
        l.clear();
        c.inp.read_line(&mut l)?;
        assert_eq!(l.trim_end(), format!("VALUES v{i} 2"));
    }
    // A server gone: its part fails with an answer naming its cluster, the other keeps going.
    pa.stop()?;
    let answer = c.ask("GET other user:1")?;
    assert!(answer.starts_with("ERR cluster a: "), "{answer}");
    assert_eq!(c.ask("GET user:1")?, "VALUES v1", "the burst rewrote user:1");
    assert!(mesh.envoy.wasm_failure().is_none(), "{:?}", mesh.envoy.wasm_failure());
    Ok(())
}

#[test]
fn endpoint_links_reach_only_the_endpoints_a_cluster_allows() -> Result<()> {
    let dir = TestDir::new("kit-line-endpoints")?;
    let (_pa, a) = server(&dir, "line-a")?;
    let (_pb, b) = server(&dir, "line-b")?;
    // b2: a server of cluster b that the routing table does not list, learned at run time.
    let (_pb2, b2) = server(&dir, "line-b2")?;
    // outside: a server no cluster allows.
    let (_po, outside) = server(&dir, "line-outside")?;
    assert_eq!(Client::connect(b2)?.ask("SET user:9 from-b2")?, "OK");
    assert_eq!(Client::connect(outside)?.ask("SET user:9 secret")?, "OK");
    let mut opts = FilterMeshOptions::new("geomesh_filter_line", "geomesh_line", TABLE);
    opts.endpoints.push(("b".into(), format!("127.0.0.1:{b2}")));
    let mesh = FilterMesh::start(&dir, &opts, &[("a", a), ("b", b)])?;

    let mut c = Client::connect(mesh.port)?;
    assert_eq!(
        c.ask(&format!("GETAT 127.0.0.1:{b2} user:9"))?,
        "VALUES from-b2"
    );
    // Never an open relay: not b's, and a's configuration does not borrow b's pattern.
    let refused = c.ask(&format!("GETAT 127.0.0.1:{outside} user:9"))?;
    assert_eq!(
        refused,
        format!("ERR cluster b at 127.0.0.1:{outside}: unknown cluster")
    );
    let refused = c.ask(&format!("GETAT 127.0.0.1:{b2} other"))?;
    assert_eq!(
        refused,
        format!("ERR cluster a at 127.0.0.1:{b2}: unknown cluster")
    );
    // Malformed endpoints are refused before anything opens; the session goes on.
    let refused = c.ask("GETAT nohost user:9")?;
    assert_eq!(refused, "ERR cluster b at nohost: unknown cluster");
    assert_eq!(c.ask("SET user:9 routed")?, "OK");
    assert_eq!(Client::connect(b)?.ask("GET user:9")?, "VALUES routed");
    assert_eq!(
        c.ask(&format!("GETAT 127.0.0.1:{b2} user:9"))?,
        "VALUES from-b2"
    );
    assert!(
        mesh.envoy.wasm_failure().is_none(),
        "{:?}",
        mesh.envoy.wasm_failure()
    );
    Ok(())
}
