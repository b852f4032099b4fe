//! Shared, pipelined backend connections (docs/bridge-protocol.md "Shared channels"), end to end
//! through real Envoy, real redis-servers and either shell: the Redis filter in V8 with a real
//! geomesh-bridge process, or (`native_shell::`) the native shell (`native/`, a dynamic module)
//! with the bridge in-process:
//!
//! * 200 clients at once mix stateless commands with SELECT, MULTI/EXEC, SUBSCRIBE and BLPOP
//!   on the same shards; every client's answers are checked for order (a per-client INCR
//!   sequence) and content, and a marker key that holds `db0` in database 0 and `db1` in
//!   database 1 shows that no client's state leaked onto a connection another client uses;
//! * a pooled connection killed mid-flight (`CLIENT KILL` on the server): only the requests in
//!   flight on it fail, with the cluster named; the others are untouched;
//! * a shard restarted: nothing hangs, errors name the cluster, and the pool reconnects.

use std::io::Write;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use geomesh_integration::redis_mesh::RedisMesh;
use geomesh_integration::resp_client::RespClient as Client;
use geomesh_redis::Frame;

const TABLE: &str = "\
workload_type: redis
default_cluster: redis1
upstream_timeout_ms: 10000
routing_table:
  user1: redis2
";

fn bulk(s: &str) -> Frame {
    Frame::bulk(s.to_owned())
}

fn text(f: &Frame) -> String {
    match f {
        Frame::SimpleError(e) | Frame::SimpleString(e) | Frame::BulkString(e) => {
            String::from_utf8_lossy(e).into_owned()
        }
        other => format!("{other:?}"),
    }
}

/// `marker` (redis1) and `user1:marker` (redis2) hold `db0` in database 0 and `db1` in database 1.
fn seed_markers(mesh: &RedisMesh) {
    for shard in ["redis1", "redis2"] {
        let mut d = mesh.direct(shard).unwrap();
        for db in [0, 1] {
            let _: () = redis::cmd("SELECT").arg(db).query(&mut d).unwrap();
            let v = format!("db{db}");
            let _: () = redis::cmd("SET")
                .arg("marker")
                .arg(&v)
                .query(&mut d)
                .unwrap();
            let _: () = redis::cmd("SET")
                .arg("user1:marker")
                .arg(&v)
                .query(&mut d)
                .unwrap();
        }
    }
}

/// Stateless traffic of client `i` with its checks: the INCR sequence continues in order, the
/// markers read `db`, a pipelined MGET/MSET across both shards comes back whole.
fn stateless(c: &mut Client, i: usize, seq: &mut i64, db: u8) {
    let ctr = format!("ctr:{i}");
    let ctr2 = format!("user1:ctr:{i}");
    let (a, b) = (format!("a:{i}"), format!("user1:b:{i}"));
    let val = format!("v{i}-{seq}");
    c.send(&[
        &["INCR", &ctr],
        &["GET", "marker"],
        &["MSET", &a, &val, &b, &val],
        &["INCR", &ctr2],
        &["MGET", &a, &b, "user1:marker"],
        &["PING"],
    ]);
    let r = c.read(6);
    *seq += 1;
    let want = format!("db{db}");
    assert_eq!(r[0], Frame::Integer(*seq), "client {i}: INCR order: {r:?}");
    assert_eq!(r[1], bulk(&want), "client {i}: marker: {r:?}");
    assert_eq!(r[2], Frame::ok(), "client {i}: MSET: {r:?}");
    assert_eq!(
        r[3],
        Frame::Integer(*seq),
        "client {i}: INCR order on redis2: {r:?}"
    );
    assert_eq!(
        r[4],
        Frame::Array(vec![bulk(&val), bulk(&val), bulk(&want)]),
        "client {i}: MGET: {r:?}"
    );
    assert_eq!(r[5], Frame::SimpleString("PONG".into()), "client {i}");
}

#[test]
fn two_hundred_clients_mix_stateless_and_stateful_commands() {
    let mesh = RedisMesh::start("redis-pool-mix", &["redis1", "redis2"], TABLE).unwrap();
    seed_markers(&mesh);
    let port = mesh.port;
    let n = 200;
    let barrier = Arc::new(Barrier::new(n));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut seq = 0i64;
                barrier.wait();
                for _ in 0..3 {
                    stateless(&mut c, i, &mut seq, 0);
                }
                let mut db = 0;
                match i % 5 {
                    0 => {}
                    1 => {
                        assert_eq!(c.call(&["SELECT", "1"]), Frame::ok(), "client {i}");
                        db = 1;
                        // The counters are per database: db 1 starts its own sequence.
                        seq = 0;
                    }
                    2 => {
                        let k = format!("tx:{i}");
                        c.send(&[
                            &["MULTI"],
                            &["SET", &k, "1"],
                            &["INCR", &k],
                            &["GET", "marker"],
                            &["EXEC"],
                        ]);
                        let r = c.read(5);
                        assert_eq!(r[0], Frame::ok(), "client {i}: {r:?}");
                        assert_eq!(
                            r[4],
                            Frame::Array(vec![Frame::ok(), Frame::Integer(2), bulk("db0")]),
                            "client {i}: EXEC: {r:?}"
                        );
                    }
                    3 => {
                        let ch = format!("chan:{i}");
                        let mut p = Client::connect(port);
                        let r = c.call(&["SUBSCRIBE", &ch]);
                        assert_eq!(
                            r,
                            Frame::Array(vec![bulk("subscribe"), bulk(&ch), Frame::Integer(1)]),
                            "client {i}"
                        );
                        assert_eq!(
                            p.call(&["PUBLISH", &ch, "hello"]),
                            Frame::Integer(1),
                            "client {i}"
                        );
                        let m = c.read(1).remove(0);
                        assert_eq!(
                            m,
                            Frame::Array(vec![bulk("message"), bulk(&ch), bulk("hello")]),
                            "client {i}"
                        );
                        let r = c.call(&["UNSUBSCRIBE", &ch]);
                        assert_eq!(
                            r,
                            Frame::Array(vec![bulk("unsubscribe"), bulk(&ch), Frame::Integer(0)]),
                            "client {i}"
                        );
                    }
                    _ => {
                        let list = format!("list:{i}");
                        let mut p = Client::connect(port);
                        c.send(&[&["BLPOP", &list, "10"]]);
                        std::thread::sleep(Duration::from_millis(50));
                        // Stateless work of another client goes on while this one blocks.
                        let mut pseq = 0;
                        stateless(&mut p, i + 1000, &mut pseq, 0);
                        assert_eq!(
                            p.call(&["RPUSH", &list, "x"]),
                            Frame::Integer(1),
                            "client {i}"
                        );
                        let r = c.read(1).remove(0);
                        assert_eq!(r, Frame::Array(vec![bulk(&list), bulk("x")]), "client {i}");
                    }
                }
                for _ in 0..3 {
                    stateless(&mut c, i, &mut seq, db);
                }
                (i % 5 == 0).then_some(c)
            })
        })
        .collect();
    let mut failed = 0;
    let mut kept = Vec::new();
    for h in handles {
        match h.join() {
            Ok(c) => kept.extend(c),
            Err(_) => failed += 1,
        }
    }
    assert_eq!(failed, 0, "{failed} clients failed");
    eprintln!("{n} clients in {:?}", t0.elapsed());
    // The 40 clients that stayed stateless are still connected, on a few pooled connections.
    std::thread::sleep(Duration::from_millis(500));
    for shard in ["redis1", "redis2"] {
        let conns = server_clients(&mesh, shard);
        eprintln!(
            "{shard}: {} connections for {} stateless clients",
            conns.len(),
            kept.len()
        );
        assert!(conns.len() <= 4, "{shard}: {} connections", conns.len());
    }
    for c in kept.iter_mut() {
        assert_eq!(c.call(&["GET", "marker"]), bulk("db0"));
    }
}

/// Client ids of the bridge's connections to a shard (every client but the asking one).
fn server_clients(mesh: &RedisMesh, shard: &str) -> Vec<String> {
    let mut d = mesh.direct(shard).unwrap();
    let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut d).unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut d).unwrap();
    list.lines()
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_owned)
        })
        .filter(|id| *id != me.to_string())
        .collect()
}

#[test]
fn a_pooled_connection_killed_mid_flight_fails_only_its_requests() {
    let mesh = RedisMesh::start("redis-pool-kill", &["redis1", "redis2"], TABLE).unwrap();
    let port = mesh.port;
    // Warm up: eight clients, their channels spread over the pool's connections.
    let mut clients: Vec<Client> = (0..8).map(|_| Client::connect(port)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.call(&["SET", &format!("w{i}"), "1"]), Frame::ok());
    }
    let pooled = server_clients(&mesh, "redis1");

    assert!(
        pooled.len() >= 2,
        "at least two pooled connections: {pooled:?}"
    );
    assert!(pooled.len() <= 4, "pooled, not one per client: {pooled:?}");
    // Every client pipelines many INCRs; one pooled connection is killed meanwhile.
    let n = 20_000;
    let batches: Vec<Vec<u8>> = (0..clients.len())
        .map(|i| {
            let k = format!("seq:{i}");
            format!("*2\r\n$4\r\nINCR\r\n${}\r\n{k}\r\n", k.len())
                .repeat(n)
                .into_bytes()
        })
        .collect();
    // The server is kept busy by a script (from a direct connection) while every client's
    // pipeline reaches the pooled connections, and the kill (from another direct connection)
    // queues behind the script: when it runs, the server has read at most one buffer of each
    // pooled connection, so requests are surely in flight on the victim.
    // Connected first: a connection made during the script would wait for it (the client's
    // handshake is a request).
    let mut d = mesh.direct("redis1").unwrap();
    let busy = {
        let mut d1 = mesh.direct("redis1").unwrap();
        std::thread::spawn(move || {
            let script = "local s = redis.call('TIME') local t0 = s[1] * 1000000 + s[2] \
                          repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - t0 > 2000000 return 1";
            let r: i64 = redis::cmd("EVAL").arg(script).arg(0).query(&mut d1).unwrap();
            r
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let writers: Vec<_> = clients
        .iter()
        .zip(batches)
        .map(|(c, b)| {
            let mut s = c.s.try_clone().unwrap();
            std::thread::spawn(move || s.write_all(&b).unwrap())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let victim = pooled[0].clone();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&victim)
        .query(&mut d)
        .unwrap();
    assert_eq!(busy.join().unwrap(), 1);
    assert_eq!(killed, 1);
    let t0 = Instant::now();
    let mut hit = 0;
    let mut untouched = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.read(n);
        let mut expect = 1i64;
        let mut errors = 0;
        let mut first_error = None;
        for f in &r {
            match f {
                Frame::Integer(v) => {
                    // Answers keep their order; a failed request did not count (or the
                    // client was told it failed).
                    assert!(*v >= expect, "client {i}: {v} after {expect}");
                    expect = v + 1;
                }
                Frame::SimpleError(_) => {
                    errors += 1;
                    let e = text(f);
                    assert!(
                        e.starts_with("ERR geomesh: cluster redis1: "),
                        "client {i}: {e}"
                    );
                    first_error.get_or_insert(e);
                }
                other => panic!("client {i}: {other:?}"),
            }
        }
        if errors > 0 {
            hit += 1;
            eprintln!(
                "client {i}: {errors} of {n} failed: {}",
                first_error.unwrap_or_default()
            );
        } else {
            untouched += 1;
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    eprintln!(
        "read everything {:?} after the kill: {hit} clients hit, {untouched} untouched",
        t0.elapsed()
    );
    assert!(hit >= 1, "the killed connection carried requests");
    assert!(untouched >= 1, "the other pooled connections went on");
    // Everything works again, on the same client connections (the pool reconnects).
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.call(&["SET", &format!("after{i}"), "1"]),
            Frame::ok(),
            "client {i}"
        );
    }
}

#[test]
fn a_restarted_shard_gets_pooled_connections_again_and_nothing_hangs() {
    let mut mesh = RedisMesh::start("redis-pool-restart", &["redis1", "redis2"], TABLE).unwrap();
    let port = mesh.port;
    let mut clients: Vec<Client> = (0..6).map(|_| Client::connect(port)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.call(&["SET", &format!("k{i}"), "1"]), Frame::ok());
    }
    mesh.restart_shard("redis1").unwrap();
    // Every request is answered within bounded time: the value, or an error naming the shard.
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            let t0 = Instant::now();
            let r = c.call(&["SET", &format!("k{i}"), "2"]);
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "round {round} client {i}: {:?}",
                t0.elapsed()
            );
            match &r {
                Frame::SimpleString(_) => {}
                Frame::SimpleError(_) => {
                    let e = text(&r);
                    assert!(e.starts_with("ERR geomesh: cluster redis1: "), "{e}");
                    eprintln!("round {round} client {i}: {e}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.call(&["GET", &format!("k{i}")]),
            bulk("2"),
            "client {i}: after the restart"
        );
        assert_eq!(
            c.call(&["GET", "user1:x"]),
            Frame::NullBulk,
            "client {i}: redis2 untouched"
        );
    }
    let conns = server_clients(&mesh, "redis1");
    assert!(
        !conns.is_empty() && conns.len() <= 4,
        "the pool connected again: {conns:?}"
    );
}

geomesh_integration::native_shell_too!(
    two_hundred_clients_mix_stateless_and_stateful_commands,
    a_pooled_connection_killed_mid_flight_fails_only_its_requests,
    a_restarted_shard_gets_pooled_connections_again_and_nothing_hangs,
);
