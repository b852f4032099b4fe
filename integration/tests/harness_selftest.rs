//! The harness checked against real Envoy, real servers and real clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use geomesh_integration::envoy::{
    ecds_network_filter, http_listener, static_cluster, tcp_listener, tcp_proxy_filter, write_ecds,
};
use geomesh_integration::{
    free_port, http_get, Dir, Envoy, EnvoyConfig, JsonServer, Redis, Relay, TestDir,
};
use redis::Commands;
use serde_json::json;

fn redis_conn(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

#[test]
fn envoy_tcp_proxy_in_front_of_redis() {
    let dir = TestDir::new("tcp-proxy-redis").unwrap();
    let redis = Redis::start(&dir, "redis").unwrap();
    let listen = free_port().unwrap();
    let cfg = EnvoyConfig::new()
        .unwrap()
        .listener(tcp_listener(
            "redis_in",
            listen,
            vec![tcp_proxy_filter("redis_in", "redis")],
        ))
        .cluster(static_cluster("redis", &[redis.port]));
    let envoy = Envoy::start(&dir, "envoy", &cfg).unwrap();

    let mut via_envoy = redis_conn(listen);
    let _: () = via_envoy.set("harness:k", "v-through-envoy").unwrap();
    let got: String = via_envoy.get("harness:k").unwrap();
    assert_eq!(got, "v-through-envoy");

    // The value is really in that redis-server, and Envoy really carried the connection.
    let mut direct = redis_conn(redis.port);
    let got: String = direct.get("harness:k").unwrap();
    assert_eq!(got, "v-through-envoy");
    envoy
        .wait_stat(
            "cluster.redis.upstream_cx_total",
            Duration::from_secs(5),
            |n| n >= 1,
        )
        .unwrap();
    assert_eq!(
        envoy
            .stat("cluster.no_such_cluster.upstream_cx_total")
            .unwrap(),
        None
    );
}

/// RTT of one PING on an open connection.
fn ping_rtt(con: &mut redis::Connection) -> Duration {
    let t = Instant::now();
    let pong: String = redis::cmd("PING").query(con).unwrap();
    assert_eq!(pong, "PONG");
    t.elapsed()
}

#[test]
fn relay_adds_latency_cuts_and_restores() {
    let dir = TestDir::new("relay").unwrap();
    let redis = Redis::start(&dir, "redis").unwrap();
    let relay = Relay::start(redis.port).unwrap();
    let mut con = redis_conn(relay.port());
    let base = ping_rtt(&mut con);

    relay.set_delay_dir(Dir::Up, Duration::from_millis(40));
    relay.set_delay_dir(Dir::Down, Duration::from_millis(60));
    let slow = ping_rtt(&mut con);
    assert!(
        slow >= Duration::from_millis(100),
        "RTT {slow:?} with 40+60 ms one-way delays"
    );
    assert!(
        slow < Duration::from_millis(100) + base + Duration::from_millis(400),
        "RTT {slow:?}"
    );
    relay.set_delay(Duration::ZERO);

    // Partition: a request gets no answer; once healed the answer arrives on the same
    // connection.
    let mut raw = TcpStream::connect(("127.0.0.1", relay.port())).unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    raw.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 7];
    raw.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"+PONG\r\n");
    relay.cut();
    assert!(relay.is_cut());
    raw.write_all(b"PING\r\n").unwrap();
    let err = raw.read(&mut buf).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    relay.restore();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"+PONG\r\n");
    assert!(relay.bytes(Dir::Up) >= 12 && relay.bytes(Dir::Down) >= 14);

    // Reset: live connections are closed, new ones work.
    assert!(relay.drop_connections() >= 2);
    let mut rest = Vec::new();
    let n = raw.read_to_end(&mut rest);
    assert!(matches!(n, Ok(0)) || n.is_err(), "{n:?}");
    assert!(redis::cmd("PING").query::<String>(&mut con).is_err());
    let mut fresh = redis_conn(relay.port());
    ping_rtt(&mut fresh);
    assert!(relay.connections_accepted() >= 3);
}

fn rbac(action: &str) -> serde_json::Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
        "stat_prefix": "gate",
        "rules": {
            "action": action,
            "policies": { "everyone": { "permissions": [ { "any": true } ], "principals": [ { "any": true } ] } },
        },
    })
}

/// PING on a fresh connection: Some(reply) or None if the connection was closed on us.
fn raw_ping(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"PING\r\n").ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.ends_with(b"\r\n") {
                    break;
                }
            }
        }
    }
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

#[test]
fn ecds_file_update_reaches_new_connections() {
    let dir = TestDir::new("ecds").unwrap();
    let redis = Redis::start(&dir, "redis").unwrap();
    let ecds_dir = dir.join("ecds");
    std::fs::create_dir_all(&ecds_dir).unwrap();
    let ecds_file = ecds_dir.join("gate.yaml");
    let rbac_type = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
    write_ecds(&ecds_file, "gate", &rbac("ALLOW")).unwrap();

    let listen = free_port().unwrap();
    let cfg = EnvoyConfig::new()
        .unwrap()
        .listener(tcp_listener(
            "redis_in",
            listen,
            vec![
                ecds_network_filter("gate", &ecds_file, rbac_type),
                tcp_proxy_filter("redis_in", "redis"),
            ],
        ))
        .cluster(static_cluster("redis", &[redis.port]));
    let envoy = Envoy::start(&dir, "envoy", &cfg).unwrap();
    assert_eq!(raw_ping(listen).as_deref(), Some("+PONG\r\n"));

    // Atomic replace of the watched file: new connections get the new config.
    write_ecds(&ecds_file, "gate", &rbac("DENY")).unwrap();
    geomesh_integration::wait_for(Duration::from_secs(10), "DENY config applied", || {
        Ok(raw_ping(listen).is_none())
    })
    .unwrap();
    envoy
        .wait_stat("gate.rbac.denied", Duration::from_secs(5), |n| n >= 1)
        .unwrap();

    write_ecds(&ecds_file, "gate", &rbac("ALLOW")).unwrap();
    geomesh_integration::wait_for(Duration::from_secs(10), "ALLOW config applied", || {
        Ok(raw_ping(listen).as_deref() == Some("+PONG\r\n"))
    })
    .unwrap();
}

#[test]
fn http_listener_routes_to_json_server() {
    let dir = TestDir::new("http-json-server").unwrap();
    let js = JsonServer::start(
        &dir,
        "json-server",
        r#"{"sites": [{"id": 1, "name": "paris"}]}"#,
    )
    .unwrap();
    let listen = free_port().unwrap();
    let cfg = EnvoyConfig::new()
        .unwrap()
        .listener(http_listener("http_in", listen, vec![], "api"))
        .cluster(static_cluster("api", &[js.port]));
    let _envoy = Envoy::start(&dir, "envoy", &cfg).unwrap();

    let (status, body) = http_get(listen, "/sites/1").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "paris");

    // json-server generates the id of a created resource.
    let (status, body) = geomesh_integration::process::http_request(
        listen,
        "POST",
        "/sites",
        Some(r#"{"name": "rennes"}"#),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], 2);
    let (status, body) = http_get(js.port, "/sites/2").unwrap();
    assert_eq!(
        (
            status,
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["name"].clone()
        ),
        (200, json!("rennes"))
    );
}

#[test]
fn native_binaries_are_found_and_spawned() {
    // Cargo builds this package's binaries for its integration tests, into the same profile
    // dir as the test executable: the place paths::native_bin looks first.
    let found = geomesh_integration::paths::native_bin("geomesh-demo").unwrap();
    assert_eq!(
        found,
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_geomesh-demo"))
    );
    let err = format!(
        "{:#}",
        geomesh_integration::paths::native_bin("geomesh-no-such-bin").unwrap_err()
    );
    assert!(
        err.contains("cargo build --bins -p geomesh-no-such-bin"),
        "{err}"
    );

    // And spawned through the harness (the demo's own run is integration/tests/demo.rs).
    let dir = TestDir::new("demo-help").unwrap();
    let mut demo =
        geomesh_integration::spawn_native(&dir, "geomesh-demo", "demo", &["--help".to_owned()])
            .unwrap();
    let status = demo.wait_exit(Duration::from_secs(30)).unwrap();
    let (out, err) = demo.logs();
    assert!(status.success(), "{status}\n{out}\n{err}");
    assert!(
        format!("{out}{err}").contains("usage: geomesh-demo"),
        "{out}{err}"
    );
}
