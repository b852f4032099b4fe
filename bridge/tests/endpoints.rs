//! Endpoint targets (`CLUSTER@host:port`): a filter opens one server of a cluster by address,
//! and the bridge of the cluster's site allows only what that cluster's configuration allows.
//! Real bridge processes (two sites over gRPC), real redis-servers standing for the servers.

mod common;

use std::time::Duration;

use common::*;
use geomesh_frame::CloseCode;

const FIVE: Duration = Duration::from_secs(5);

/// Which redis answered: each server holds its own name under `who`.
fn named(name: &str) -> Redis {
    let r = Redis::start();
    assert_eq!(r.cmd(&["SET", "who", name]), b"+OK\r\n");
    r
}

#[test]
fn a_cluster_opens_its_own_addresses_and_the_endpoints_it_allows_only() {
    let seed = named("seed");
    let extra = named("extra");
    let outside = named("outside");
    let extra_port = extra.addr().rsplit_once(':').unwrap().1.to_owned();
    let b = BridgeProc::start(&config(
        "dc1",
        &format!(
            "clusters:\n  kafka-a: {{ address: \"{}\", endpoints: [\"127.0.0.1:{extra_port}\"] }}\n  plain: {{ address: \"{}\" }}\n",
            seed.addr(),
            seed.addr()
        ),
    ));
    let mut g = b.client();
    // Its own address, and an endpoint its pattern allows.
    g.open(1, &format!("kafka-a@{}", seed.addr()), 0, 0);
    assert_eq!(
        g.roundtrip(1, &["GET", "who"], b"seed\r\n"),
        b"$4\r\nseed\r\n"
    );
    g.open(2, &format!("kafka-a@{}", extra.addr()), 0, 0);
    assert_eq!(
        g.roundtrip(2, &["GET", "who"], b"extra\r\n"),
        b"$5\r\nextra\r\n"
    );
    // Never an open relay: an address the cluster does not allow, nor another cluster's
    // pattern borrowed by naming that cluster.
    for (chan, target) in [
        (3, format!("kafka-a@{}", outside.addr())),
        (4, format!("plain@{}", extra.addr())),
    ] {
        g.open(chan, &target, 0, 0);
        g.cmd(chan, &["GET", "who"]);
        let (code, msg, _) = g.expect_closed(chan, FIVE);
        assert_eq!(code, CloseCode::UnknownTarget, "{target}: {msg}");
        assert!(msg.contains("is not an endpoint cluster"), "{msg}");
    }
    assert_eq!(outside.cmd(&["GET", "who"]), b"$7\r\noutside\r\n");
    // Malformed endpoints and unknown clusters.
    for (chan, target) in [
        (5, "kafka-a@nohost"),
        (6, "kafka-a@a@b:1"),
        (7, "nosuch@127.0.0.1:1"),
    ] {
        g.open(chan, target, 0, 0);
        let (code, msg, _) = g.expect_closed(chan, FIVE);
        assert_eq!(code, CloseCode::UnknownTarget, "{target}: {msg}");
    }
    // The connection and its other channels go on.
    assert_eq!(g.roundtrip(2, &["PING"], b"\r\n"), b"+PONG\r\n");
}

#[test]
fn the_clusters_site_decides_for_an_endpoint_at_another_site() {
    let far_seed = named("far-seed");
    let far_broker = named("far-broker");
    let near_only = named("near-only");
    let broker_port = far_broker.addr().rsplit_once(':').unwrap().1.to_owned();
    let dc2 = BridgeProc::start(&format!(
        "site: dc2\nlisten: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\nplaintext: true\nclusters:\n  far: {{ address: \"{}\", endpoints: [\"127.0.0.1:{broker_port}\"] }}\n",
        far_seed.addr()
    ));
    // dc1's file says nothing of far's endpoints: dc2 decides.
    let dc1 = BridgeProc::start(&format!(
        "site: dc1\nlisten: 127.0.0.1:0\nplaintext: true\nclusters:\n  far: {{ site: dc2 }}\nsites:\n  dc2: {{ grpc: \"http://{}\" }}\n",
        dc2.grpc.as_ref().unwrap()
    ));
    let mut g = dc1.client();
    g.open(1, &format!("far@{}", far_broker.addr()), 0, 0);
    assert_eq!(
        g.roundtrip(1, &["GET", "who"], b"far-broker\r\n"),
        b"$10\r\nfar-broker\r\n"
    );
    g.open(2, &format!("far@{}", near_only.addr()), 0, 0);
    g.cmd(2, &["GET", "who"]);
    let (code, msg, _) = g.expect_closed(2, FIVE);
    assert_eq!(code, CloseCode::UnknownTarget, "{msg}");
    assert!(
        msg.contains("at dc2"),
        "refused by the cluster's own site: {msg}"
    );
}

#[test]
fn endpoint_patterns_are_checked_with_the_config() {
    let dir = TempDir::new("endpoints-check");
    for (pattern, ok) in [
        ("*.kafka.svc:9092", true),
        ("10.0.0.1:9092-9099", true),
        ("*:0", false),
        ("a*b:1", false),
    ] {
        let path = dir.path("bridge.yaml");
        std::fs::write(
            &path,
            config("dc1", &format!("clusters:\n  k: {{ address: \"127.0.0.1:9092\", endpoints: [\"{pattern}\"] }}\n")),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_geomesh-bridge"))
            .args(["--check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{pattern}: {err}");
        if !ok {
            assert!(err.contains("clusters.k.endpoints"), "{err}");
        }
    }
}
