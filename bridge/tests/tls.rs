//! TLS between sites: two bridges with certificates from one CA pass traffic through their gRPC
//! tunnel; a bridge whose client certificate another CA signed, and a bridge that speaks
//! plaintext, are refused by the TLS server; after its files are rotated to another CA, a reload
//! (SIGHUP) makes the server's new connections use them. Certificates are made here, at test
//! time (rcgen, through geomesh-tls's `testing`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use geomesh_frame::CloseCode;
use geomesh_tls::testing::Ca;

const FIVE: Duration = Duration::from_secs(5);

/// dc2: a TLS gRPC server for redis `far`, requiring client certificates of `ca`.
fn dc2(dir: &Path, ca: &Ca, far: &Redis) -> BridgeProc {
    BridgeProc::start(&format!(
        "site: dc2\nlisten: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n{}clusters:\n  far: {{ address: \"{}\" }}\n",
        ca.leaf(dir, "dc2", ca).yaml(),
        far.addr()
    ))
}

/// dc1 reaching dc2 at `url` with the given `tls:` section (or `plaintext: true`).
fn dc1(transport: &str, url: &str) -> BridgeProc {
    BridgeProc::start(&format!(
        "site: dc1\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndefaults: {{ ping_interval_ms: 100, connect_timeout_ms: 2000 }}\n{transport}clusters:\n  far: {{ site: dc2 }}\nsites:\n  dc2: {{ grpc: \"{url}\" }}\n"
    ))
}

#[test]
fn two_bridges_with_certificates_pass_traffic() {
    let tmp = TempDir::new("tls-ok");
    let ca = Ca::new("geomesh test CA");
    let far = Redis::start();
    let b2 = dc2(&tmp.0, &ca, &far);
    let url = format!("https://{}", b2.grpc.as_ref().unwrap());
    let b1 = dc1(&ca.leaf(&tmp.0, "dc1", &ca).yaml(), &url);
    let mut g = b1.client();
    g.open(1, "far", 2000, 0);
    g.cmd(1, &["SET", "over", "tls"]);
    assert_eq!(g.read_until(1, b"\r\n", 0, FIVE), b"+OK\r\n");
    assert_eq!(far.cmd(&["GET", "over"]), b"$3\r\ntls\r\n");
    // Pipelined, through the same TLS connection.
    let mut batch = Vec::new();
    for _ in 0..500 {
        batch.extend_from_slice(&resp(&["INCR", "n"]));
    }
    g.send(1, &batch);
    g.read_until(1, b":500\r\n", 0, FIVE);
}

#[test]
fn a_bridge_without_a_valid_client_certificate_is_refused() {
    let tmp = TempDir::new("tls-refused");
    let ca = Ca::new("geomesh test CA");
    let rogue = Ca::new("another CA");
    let far = Redis::start();
    let b2 = dc2(&tmp.0, &ca, &far);
    let grpc = b2.grpc.clone().unwrap();

    // A certificate another CA signed (it trusts dc2's CA, so only dc2's check can refuse it).
    let b1 = dc1(&rogue.leaf(&tmp.0, "intruder", &ca).yaml(), &format!("https://{grpc}"));
    let mut g = b1.client();
    g.open(1, "far", 0, 0);
    let (code, msg, _) = g.expect_closed(1, FIVE);
    assert_eq!(code, CloseCode::SiteUnreachable, "{msg}");
    // No certificate at all: plaintext HTTP/2 to the TLS port.
    let b3 = dc1("plaintext: true\n", &format!("http://{grpc}"));
    let mut g = b3.client();
    g.open(1, "far", 0, 0);
    let (code, msg, _) = g.expect_closed(1, FIVE);
    assert_eq!(code, CloseCode::SiteUnreachable, "{msg}");
    // Nothing reached the shard, and the good path still works next to them.
    assert_eq!(far.cmd(&["DBSIZE"]), b":0\r\n");
    let ok = dc1(&ca.leaf(&tmp.0, "dc1", &ca).yaml(), &format!("https://{grpc}"));
    let mut g = ok.client();
    g.open(1, "far", 2000, 0);
    g.cmd(1, &["PING"]);
    assert_eq!(g.read_until(1, b"\r\n", 0, FIVE), b"+PONG\r\n");
}

#[test]
fn tls_between_sites_is_required_or_explicitly_off() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_geomesh-bridge"))
        .args(["--check", "--config"])
        .arg({
            let tmp = std::env::temp_dir().join(format!("geomesh-tls-check-{}.yaml", std::process::id()));
            std::fs::write(&tmp, "site: a\nlisten: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\n").unwrap();
            tmp
        })
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls: missing") && err.contains("plaintext: true"), "{err}");
}

#[test]
fn the_grpc_server_reads_its_certificates_again_on_reload() {
    let tmp = TempDir::new("tls-reload");
    let (old, new) = (Ca::new("old CA"), Ca::new("new CA"));
    let far = Redis::start();
    let b2 = dc2(&tmp.0, &old, &far);
    let url = format!("https://{}", b2.grpc.as_ref().unwrap());
    let ping = |b: &BridgeProc| {
        let mut g = b.client();
        g.open(1, "far", 2000, 0);
        g.cmd(1, &["PING"]);
        g.read_until(1, b"\r\n", 0, FIVE)
    };
    assert_eq!(ping(&dc1(&old.leaf(&tmp.0, "dc1-old", &old).yaml(), &url)), b"+PONG\r\n");

    // dc2's Secret is renewed by another CA (same paths) and dc2 reloads.
    new.leaf(&tmp.0, "dc2", &new);
    b2.sighup();
    let deadline = std::time::Instant::now() + FIVE;
    while !b2.log_text().contains("configuration reloaded") {
        assert!(std::time::Instant::now() < deadline, "no reload: {}", b2.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The server presents the new CA's certificate and accepts the new CA's clients.
    assert_eq!(ping(&dc1(&new.leaf(&tmp.0, "dc1-new", &new).yaml(), &url)), b"+PONG\r\n");
    // A new bridge with the old CA's certificate is refused now.
    let stale = dc1(&old.leaf(&tmp.0, "dc1-stale", &old).yaml(), &url);
    let mut g = stale.client();
    g.open(1, "far", 0, 0);
    let (code, msg, _) = g.expect_closed(1, FIVE);
    assert_eq!(code, CloseCode::SiteUnreachable, "{msg}");
}
