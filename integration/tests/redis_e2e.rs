//! Redis sharding end to end: real Envoy (the filter in V8), real geomesh-bridge, three real
//! redis-servers, real clients (the `redis` crate, redis-cli, redis-py). Every key written is
//! looked up on every shard directly: it must be on the shard the routing table names, and
//! only there.
//!
//! Needs `scripts/build-wasm.sh` (target/wasm/geomesh_filter_redis.wasm), `geomesh-bridge` built
//! with the same profile and target dir as the tests, and Envoy (scripts/bootstrap.sh). redis-py
//! is looked up in `.cache/pyredis` (see `python_redis_path`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use geomesh_core::{Config, RoutingTable};
use geomesh_integration::paths::repo_root;
use geomesh_integration::redis_mesh::{connect, wasm_filter_config_of, RedisMesh};
use redis::{Commands, Value};

const TABLE: &str = "\
workload_type: redis
type_proxy: downstream
default_cluster: redis1
local_cluster: redis1
upstream_timeout_ms: 3000
routing_table:
  user1: { type: key, cluster: redis2 }
  alert: { type: value, cluster: redis2 }
  'tmp:': { type: prefix, cluster: redis3 }
  h: { type: hash, clusters: [redis1, redis2, redis3] }
";
const SHARDS: [&str; 3] = ["redis1", "redis2", "redis3"];

fn table(yaml: &str) -> RoutingTable {
    RoutingTable::new(&Config::parse(yaml.as_bytes()).unwrap()).unwrap()
}

fn expected(t: &RoutingTable, key: &str) -> String {
    t.cluster_name(t.route(key.as_bytes())).to_owned()
}

/// Every key is on its shard and on no other (EXISTS on each shard, directly).
fn assert_placement(mesh: &RedisMesh, t: &RoutingTable, keys: &[String], db: u8) {
    for shard in SHARDS
        .iter()
        .filter(|s| mesh.shards.iter().any(|(n, _)| n == *s))
    {
        let mut d = mesh.direct(shard).unwrap();
        let _: () = redis::cmd("SELECT").arg(db).query(&mut d).unwrap();
        for k in keys {
            let here: bool = d.exists(k).unwrap();
            assert_eq!(
                here,
                expected(t, k) == *shard,
                "key {k:?} on {shard}: {here}, table says {}",
                expected(t, k)
            );
        }
    }
}

fn sample_keys() -> Vec<String> {
    let mut keys = vec![
        "user1".to_owned(),
        "user1:cart".into(),
        "user1/photo".into(),
        "{user1}:tagged".into(),
        "user10".into(),
        "alert".into(),
        "tmp:a".into(),
        "tmp:b:c".into(),
        "plain".into(),
    ];
    for i in 0..30 {
        keys.push(format!("h:{i}"));
        keys.push(format!("k{i}"));
    }
    keys
}

/// The error text (the redis crate prints `CROSSSLOT` as `CrossSlot`: upper-cased here).
fn err_string(r: redis::RedisResult<Value>) -> String {
    match r {
        Err(e) => e.to_string().to_uppercase(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn command_families_with_the_redis_crate() {
    let mesh = RedisMesh::start("redis-families", &SHARDS, TABLE).unwrap();
    let t = table(TABLE);
    let mut c = mesh.client().unwrap();
    let keys = sample_keys();
    let spread: BTreeSet<String> = keys.iter().map(|k| expected(&t, k)).collect();
    assert_eq!(spread.len(), 3, "the sample covers every shard");

    // Single keys.
    for k in &keys {
        let _: () = c.set(k, format!("v-{k}")).unwrap();
    }
    assert_placement(&mesh, &t, &keys, 0);
    for k in &keys {
        let v: String = c.get(k).unwrap();
        assert_eq!(v, format!("v-{k}"));
    }
    let _: () = c.del(&keys).unwrap();

    // MSET / MGET: one command each, batched per shard, merged in the client's order.
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("m-{k}"))).collect();
    let _: () = c.mset(&pairs).unwrap();
    assert_placement(&mesh, &t, &keys, 0);
    let mut asked: Vec<String> = keys.iter().rev().cloned().collect();
    asked.insert(3, "missing".into());
    let got: Vec<Option<String>> = c.mget(&asked).unwrap();
    for (k, v) in asked.iter().zip(&got) {
        if k == "missing" {
            assert_eq!(v, &None);
        } else {
            assert_eq!(v.as_deref(), Some(format!("m-{k}").as_str()));
        }
    }
    // Sums.
    let n: usize = c.exists(&keys[..10]).unwrap();
    assert_eq!(n, 10);
    let n: usize = redis::cmd("TOUCH")
        .arg(&keys[..5])
        .arg("missing")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 5);
    let n: usize = c.unlink(&keys[..4]).unwrap();
    assert_eq!(n, 4);
    let n: usize = c.del(&keys[4..8]).unwrap();
    assert_eq!(n, 4);
    let rest = &keys[8..];

    // Broadcasts.
    let mut all: Vec<String> = c.keys("*").unwrap();
    all.sort();
    let mut want: Vec<String> = rest.to_vec();
    want.sort();
    assert_eq!(all, want);
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    let mut direct_total = 0;
    for s in SHARDS {
        let n: usize = redis::cmd("DBSIZE")
            .query(&mut mesh.direct(s).unwrap())
            .unwrap();
        direct_total += n;
    }
    assert_eq!((n, direct_total), (rest.len(), rest.len()));
    let r: String = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
    assert!(rest.contains(&r));

    // SCAN walks every shard once: every key exactly once.
    let mut seen: Vec<String> = c
        .scan_options(redis::ScanOptions::default().with_count(7))
        .unwrap()
        .map(|k| k.unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, want, "every key exactly once");
    let matched: BTreeSet<String> = c.scan_match("h:*").unwrap().map(|k| k.unwrap()).collect();
    assert_eq!(
        matched,
        want.iter()
            .filter(|k| k.starts_with("h:"))
            .cloned()
            .collect()
    );

    // Local answers.
    let p: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(p, "PONG");
    let e: String = redis::cmd("ECHO").arg("hi there").query(&mut c).unwrap();
    assert_eq!(e, "hi there");

    // Several keys on one shard: forwarded; across shards: CROSSSLOT, connection kept.
    let _: () = c.sadd("{user1}a", &["x", "y", "z"]).unwrap();
    let _: () = c.sadd("{user1}b", &["y", "z", "w"]).unwrap();
    let mut inter: Vec<String> = c.sinter(&["{user1}a", "{user1}b"]).unwrap();
    inter.sort();
    assert_eq!(inter, ["y", "z"]);
    let _: () = c.sadd("plain-set", "y").unwrap();
    let e = err_string(
        redis::cmd("SINTER")
            .arg("{user1}a")
            .arg("plain-set")
            .query(&mut c),
    );
    assert!(
        e.contains("CROSSSLOT") && e.contains("ROUTE TO CLUSTERS REDIS2, REDIS1"),
        "{e}"
    );
    let _: () = c.rename("{user1}a", "{user1}c").unwrap();
    let moved: bool = c.smove("{user1}c", "{user1}b", "x").unwrap();
    assert!(moved);
    let _: () = c.rpush("tmp:l1", &["1", "2"]).unwrap();
    let v: String = redis::cmd("LMOVE")
        .arg("tmp:l1")
        .arg("tmp:l2")
        .arg("LEFT")
        .arg("RIGHT")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "1");
    assert!(err_string(
        redis::cmd("LMOVE")
            .arg("tmp:l1")
            .arg("plain-l")
            .arg("LEFT")
            .arg("RIGHT")
            .query(&mut c)
    )
    .contains("CROSSSLOT"));
    let v: Vec<String> = redis::cmd("EVAL")
        .arg("return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}")
        .arg(2)
        .arg("user1:x")
        .arg("{user1}y")
        .query(&mut c)
        .unwrap_or_default();
    assert!(v.is_empty(), "nil values end a Lua array");
    let _: () = c.set("user1:x", "1").unwrap();
    let v: Vec<String> = redis::cmd("EVAL")
        .arg("return {redis.call('GET', KEYS[1])}")
        .arg(1)
        .arg("user1:x")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, ["1"]);
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return redis.call('GET', KEYS[1])")
        .query(&mut c)
        .unwrap();
    for s in SHARDS {
        let loaded: Vec<bool> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&sha)
            .query(&mut mesh.direct(s).unwrap())
            .unwrap();
        assert_eq!(loaded, [true], "SCRIPT LOAD reached {s}");
    }
    let v: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg("tmp:a")
        .query(&mut c)
        .unwrap_or_default();
    assert_eq!(v, "");
    let _: () = c.set("tmp:a", "ta").unwrap();
    let v: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg("tmp:a")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "ta");
    let ok: bool = redis::cmd("MSETNX")
        .arg("user1:n1")
        .arg(1)
        .arg("{user1}n2")
        .arg(2)
        .query(&mut c)
        .unwrap();
    assert!(ok);
    assert!(err_string(
        redis::cmd("MSETNX")
            .arg("n1")
            .arg(1)
            .arg("user1:n3")
            .arg(2)
            .query(&mut c)
    )
    .contains("CROSSSLOT"));

    // Transactions on one shard.
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("tmp:ctr", 1)
        .incr("tmp:ctr", 2)
        .query(&mut c)
        .unwrap();
    assert_eq!((a, b), (1, 3));
    let r: redis::RedisResult<(i64, i64)> = redis::pipe()
        .atomic()
        .incr("tmp:ctr", 1)
        .incr("plain-ctr", 1)
        .query(&mut c);
    let e = r.unwrap_err().to_string().to_uppercase();
    assert!(e.contains("CROSSSLOT"), "{e}");
    let ctr: i64 = c.get("tmp:ctr").unwrap();
    assert_eq!(ctr, 3, "nothing of the refused transaction ran");
    // WATCH: a change by another client aborts EXEC.
    let _: () = redis::cmd("WATCH").arg("user1:w").query(&mut c).unwrap();
    let mut other = mesh.client().unwrap();
    let _: () = other.set("user1:w", "changed").unwrap();
    let r: Option<(String,)> = redis::pipe()
        .atomic()
        .set("user1:w", "mine")
        .ignore()
        .get("user1:w")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, None, "EXEC aborted by the WATCH");
    let w: String = c.get("user1:w").unwrap();
    assert_eq!(w, "changed");

    // Blocking commands.
    let t0 = Instant::now();
    let v: Option<(String, String)> = c.blpop("tmp:empty", 0.5).unwrap();
    assert_eq!(v, None);
    assert!(t0.elapsed() >= Duration::from_millis(450));
    let _: () = c.rpush("tmp:q", "job").unwrap();
    let v: Option<(String, String)> = c.blpop(&["tmp:q", "tmp:q2"], 1.0).unwrap();
    assert_eq!(v, Some(("tmp:q".into(), "job".into())));

    // Local cluster, unsupported.
    let info: String = redis::cmd("INFO").arg("server").query(&mut c).unwrap();
    assert!(info.contains("redis_version"));
    let time: Vec<String> = redis::cmd("TIME").query(&mut c).unwrap();
    assert_eq!(time.len(), 2);
    let e = err_string(redis::cmd("MONITOR").query(&mut c));
    assert!(
        e.contains("MONITOR IS NOT SUPPORTED THROUGH THE SHARDING PROXY"),
        "{e}"
    );
    let e = err_string(redis::cmd("NOSUCHCOMMAND").arg("x").query(&mut c));
    assert!(e.contains("UNKNOWN COMMAND"), "{e}");
    let p: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(p, "PONG", "the connection is still usable");

    // FLUSHDB reaches every shard.
    let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
    for s in SHARDS {
        let n: usize = redis::cmd("DBSIZE")
            .query(&mut mesh.direct(s).unwrap())
            .unwrap();
        assert_eq!(n, 0, "{s}");
    }
}

/// Values far over the bridge's 8 MiB channel buffer, one SET and pipelined, to a local shard
/// and to another, stored whole on the shard the table names and read back through Envoy.
#[test]
fn large_values_pass_whole() {
    let mesh = RedisMesh::start("redis-large", &SHARDS, TABLE).unwrap();
    let t = table(TABLE);
    let mut c = mesh.client().unwrap();
    let big: Vec<u8> = (0..(20usize << 20)).map(|i| (i % 251) as u8).collect();
    for k in ["big", "user1:big"] {
        let _: () = c.set(k, &big).unwrap();
        let back: Vec<u8> = c.get(k).unwrap();
        assert!(back == big, "{k}: {} bytes back", back.len());
        let len: usize = redis::cmd("STRLEN").arg(k).query(&mut mesh.direct(&expected(&t, k)).unwrap()).unwrap();
        assert_eq!(len, big.len(), "{k} on {}", expected(&t, k));
    }
    // Pipelined: four 12 MiB values to two shards in one write.
    let mid = &big[..12 << 20];
    let keys = ["p1", "user1:p2", "p3", "user1:p4"];
    let mut p = redis::pipe();
    for k in keys {
        p.set(k, mid).ignore();
    }
    for k in keys {
        p.strlen(k);
    }
    let lens: Vec<usize> = p.query(&mut c).unwrap();
    assert_eq!(lens, vec![mid.len(); 4]);
    assert_placement(&mesh, &t, &keys.map(String::from), 0);
}

#[test]
fn session_state_is_replayed_on_every_shard() {
    let mesh = RedisMesh::start("redis-replay", &SHARDS, TABLE).unwrap();
    let t = table(TABLE);
    let mut c = mesh.client().unwrap();
    let _: () = c.set("user1:before", "x").unwrap(); // opens redis2 (and redis1 is local)
    let _: () = redis::cmd("SELECT").arg(5).query(&mut c).unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("replayed")
        .query(&mut c)
        .unwrap();
    let keys: Vec<String> = sample_keys();
    for k in &keys {
        let _: () = c.set(k, "db5").unwrap();
    }
    // Written in db 5 on every shard, the ones opened after SELECT included (redis3).
    assert_placement(&mesh, &t, &keys, 5);
    let mut d0 = mesh.direct("redis3").unwrap();
    let n: usize = redis::cmd("DBSIZE").query(&mut d0).unwrap();
    assert_eq!(n, 0, "nothing in db 0 of redis3");
    // CLIENT SETNAME reached every shard connection of this client.
    for s in SHARDS {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut mesh.direct(s).unwrap())
            .unwrap();
        assert!(list.contains("name=replayed"), "{s}: {list}");
    }
    // A refused SELECT is not stored.
    assert!(err_string(redis::cmd("SELECT").arg(99).query(&mut c)).contains("OUT OF RANGE"));
    let _: () = c.set("tmp:after", "y").unwrap();
    let mut d3 = mesh.direct("redis3").unwrap();
    let _: () = redis::cmd("SELECT").arg(5).query(&mut d3).unwrap();
    let v: String = d3.get("tmp:after").unwrap();
    assert_eq!(v, "y");
}

#[test]
fn auth_password_and_acl_forms() {
    let mesh = RedisMesh::start("redis-auth", &SHARDS, TABLE).unwrap();
    for s in SHARDS {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("s3cret")
            .query(&mut mesh.direct(s).unwrap())
            .unwrap();
    }
    let t = table(TABLE);
    // Without AUTH the shards refuse.
    let mut c = mesh.client().unwrap();
    assert!(err_string(redis::cmd("GET").arg("x").query(&mut c)).contains("NOAUTH"));
    assert!(err_string(redis::cmd("AUTH").arg("wrong").query(&mut c)).contains("WRONGPASS"));
    // Password form (the redis crate sends AUTH <password>).
    let mut c = connect(&format!("redis://:s3cret@127.0.0.1:{}/", mesh.port)).unwrap();
    let keys = sample_keys();
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), "v".to_string())).collect();
    let _: () = c.mset(&pairs).unwrap();
    for s in SHARDS {
        let mut d = connect(&format!(
            "redis://:s3cret@127.0.0.1:{}/",
            mesh.shard(s).port
        ))
        .unwrap();
        for k in &keys {
            let here: bool = d.exists(k).unwrap();
            assert_eq!(here, expected(&t, k) == s);
        }
    }
    // ACL form (AUTH default s3cret).
    let mut c = connect(&format!("redis://default:s3cret@127.0.0.1:{}/", mesh.port)).unwrap();
    let got: Vec<String> = c.mget(&keys).unwrap();
    assert_eq!(got.len(), keys.len());
    let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut c).unwrap();
    assert_eq!(who, "default");
}

#[test]
fn resp3_with_the_redis_crate() {
    let mesh = RedisMesh::start("redis-resp3", &SHARDS, TABLE).unwrap();
    let mut c = connect(&format!("redis://127.0.0.1:{}/?protocol=resp3", mesh.port)).unwrap();
    let _: () = c.set("user1", "a").unwrap();
    let _: () = c
        .hset_multiple("tmp:h", &[("f1", "1"), ("f2", "2")])
        .unwrap();
    let v: Value = redis::cmd("MGET")
        .arg("user1")
        .arg("nope")
        .arg("tmp:h2")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        v,
        Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::Nil,
            Value::Nil
        ])
    );
    // RESP3 types from the server come through as such.
    let h: Value = redis::cmd("HGETALL").arg("tmp:h").query(&mut c).unwrap();
    assert!(matches!(h, Value::Map(ref m) if m.len() == 2), "{h:?}");
    let r: Value = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
    assert!(matches!(r, Value::BulkString(_)));
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let r: Value = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
    assert_eq!(r, Value::Nil);
    // A RESP2 client on the same listener at the same time keeps RESP2.
    let mut c2 = mesh.client().unwrap();
    let h: Value = redis::cmd("HGETALL")
        .arg("tmp:nope")
        .query(&mut c2)
        .unwrap();
    assert_eq!(h, Value::Array(vec![]));
    let v: Value = redis::cmd("MGET")
        .arg("user1")
        .arg("x")
        .query(&mut c2)
        .unwrap();
    assert_eq!(v, Value::Array(vec![Value::Nil, Value::Nil]));
}

#[test]
fn pubsub_through_the_proxy() {
    let mesh = RedisMesh::start("redis-pubsub", &SHARDS, TABLE).unwrap();
    // Direct subscribers on the shards see where each message was published.
    let mut direct1 = mesh.direct("redis1").unwrap();
    let mut direct2 = mesh.direct("redis2").unwrap();
    let mut d1 = direct1.as_pubsub();
    let mut d2 = direct2.as_pubsub();
    d1.subscribe("sensors").unwrap();
    d2.subscribe("sensors").unwrap();
    d1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    d2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    let mut sub_con = mesh.client().unwrap();
    let mut sub = sub_con.as_pubsub();
    sub.subscribe(&["sensors", "news"]).unwrap();
    sub.psubscribe("user1:*").unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    let mut publisher = mesh.client().unwrap();
    let n: usize = publisher.publish("sensors", "temperature 20C").unwrap();
    assert_eq!(n, 2, "the proxy subscriber and the direct one on redis1");
    let n: usize = publisher
        .publish("sensors", "temperature alert: 90C")
        .unwrap();
    assert_eq!(n, 2, "value route: published on redis2");
    let _: usize = publisher.publish("user1:inbox", "hi").unwrap();

    let m = d1.get_message().unwrap();
    assert_eq!(m.get_payload::<String>().unwrap(), "temperature 20C");
    let m = d2.get_message().unwrap();
    assert_eq!(
        m.get_payload::<String>().unwrap(),
        "temperature alert: 90C",
        "only the alert reached redis2"
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = sub.get_message().unwrap();
        got.push((
            m.get_channel_name().to_owned(),
            m.get_payload::<String>().unwrap(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("sensors".to_owned(), "temperature 20C".to_owned()),
            ("sensors".into(), "temperature alert: 90C".into()),
            ("user1:inbox".into(), "hi".into())
        ]
    );
    // Dropping the PubSub sends UNSUBSCRIBE and PUNSUBSCRIBE and reads until the count is 0.
    drop(sub);
    // Out of subscribed mode, the connection works as before.
    let _: () = sub_con.set("user1:after", "1").unwrap();
    let v: String = sub_con.get("user1:after").unwrap();
    assert_eq!(v, "1");
}

/// The example of examples/redis/ (seed 004's EnvoyFilter table, as written).
#[test]
fn echarde_example_table_as_written() {
    let text = std::fs::read_to_string(repo_root().join("examples/redis/envoy.yaml")).unwrap();
    let cfg = wasm_filter_config_of(&text).unwrap();
    assert!(cfg.contains("user1:") && cfg.contains("alert:"), "{cfg}");
    let mesh =
        RedisMesh::start("redis-echarde", &["redis1-master", "redis2-master"], &cfg).unwrap();
    let mut c = mesh.client().unwrap();
    let _: () = c
        .mset(&[("user1", "u1"), ("user2", "u2"), ("user1:profile", "p")])
        .unwrap();
    let mut r1 = mesh.direct("redis1-master").unwrap();
    let mut r2 = mesh.direct("redis2-master").unwrap();
    let on1: BTreeSet<String> = r1.keys("*").unwrap();
    let on2: BTreeSet<String> = r2.keys("*").unwrap();
    assert_eq!(on1, ["user2".to_owned()].into());
    assert_eq!(on2, ["user1".to_owned(), "user1:profile".into()].into());
    let v: Vec<String> = c.mget(&["user2", "user1"]).unwrap();
    assert_eq!(v, ["u2", "u1"]);
    // `alert` is a value route: a message whose payload holds it goes to redis2-master.
    let mut d2 = r2.as_pubsub();
    d2.subscribe("events").unwrap();
    d2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n: usize = c.publish("events", "alert: door open").unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        d2.get_message().unwrap().get_payload::<String>().unwrap(),
        "alert: door open"
    );
}

#[test]
fn redis_cli_families_and_mass_insertion() {
    let mesh = RedisMesh::start("redis-cli", &SHARDS, TABLE).unwrap();
    let t = table(TABLE);
    let cli = |args: &[&str]| {
        let (out, err, ok) = mesh.cli(args).unwrap();
        assert!(ok, "redis-cli {args:?}: {err}");
        out.trim_end().to_owned()
    };
    assert_eq!(cli(&["SET", "user1", "a"]), "OK");
    assert_eq!(cli(&["MSET", "tmp:x", "1", "plain", "2"]), "OK");
    assert_eq!(
        cli(&["MGET", "plain", "user1", "nope", "tmp:x"]),
        "2\na\n\n1"
    );
    assert_eq!(cli(&["DEL", "plain", "user1", "nope"]), "2");
    assert_eq!(cli(&["PING"]), "PONG");
    assert!(cli(&["SINTER", "user1", "plain"]).starts_with("CROSSSLOT"));
    assert!(cli(&["CONFIG", "SET", "maxmemory", "1"])
        .contains("not supported through the sharding proxy"));
    // RESP3 (redis-cli -3 sends HELLO 3).
    assert_eq!(
        cli(&["-3", "MGET", "nope", "tmp:x"]),
        "\n1",
        "a RESP3 null, then the value"
    );
    // Mass insertion: redis-cli --pipe writes 20 000 SETs as fast as it can.
    let mut proto = Vec::new();
    let mut keys = Vec::new();
    for i in 0..20_000 {
        let k = match i % 4 {
            0 => format!("user1:{i}"),
            1 => format!("tmp:{i}"),
            2 => format!("h:{i}"),
            _ => format!("k:{i}"),
        };
        geomesh_redis_like_command(&mut proto, &["SET", &k, &i.to_string()]);
        keys.push(k);
    }
    let input = mesh.dir.write("mass.txt", &proto).unwrap();
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &mesh.port.to_string(), "--pipe"])
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0, replies: 20000"), "{text}");
    let mut per_shard: BTreeMap<String, usize> = BTreeMap::new();
    for k in &keys {
        *per_shard.entry(expected(&t, k)).or_default() += 1;
    }
    for s in SHARDS {
        let (n, _, _) =
            geomesh_integration::redis_mesh::redis_cli(mesh.shard(s).port, &["DBSIZE"]).unwrap();
        let extra = usize::from(s == "redis3"); // tmp:x
        assert_eq!(
            n.trim().parse::<usize>().unwrap(),
            per_shard[s] + extra,
            "{s}"
        );
    }
    assert_placement(&mesh, &t, &keys[..400], 0);
    let scanned = cli(&["--scan"]);
    let set: BTreeSet<&str> = scanned.lines().collect();
    assert_eq!(
        scanned.lines().count(),
        20_001,
        "--scan returns every key exactly once"
    );
    assert_eq!(set.len(), 20_001);
}

fn geomesh_redis_like_command(out: &mut Vec<u8>, args: &[&str]) {
    out.extend(format!("*{}\r\n", args.len()).bytes());
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
}

/// redis-py, installed by `pip install --target .cache/pyredis redis` (see scripts/bootstrap.sh).
fn python_redis_path() -> Option<PathBuf> {
    let p = repo_root().join(".cache/pyredis");
    p.join("redis").is_dir().then_some(p)
}

const PY_SCRIPT: &str = r#"
import json, sys, threading, time
import redis

port = int(sys.argv[1])
out = {}
r = redis.Redis(port=port, decode_responses=True)   # redis-py's default: HELLO 3
out["version"] = redis.__version__
out["protocol"] = r.get_connection_kwargs().get("protocol")
out["client_info"] = r.execute_command("CLIENT", "INFO")
r.set("user1", "a"); r.set("tmp:b", "b"); r.set("plain", "c")
out["mget"] = r.mget(["plain", "user1", "missing", "tmp:b"])
r.mset({"h:1": "1", "h:2": "2", "user1:x": "x"})
out["exists"] = r.exists("h:1", "h:2", "nope")
out["hash"] = (r.hset("user1:h", mapping={"f": "1", "g": "2"}), r.hgetall("user1:h"))
p = r.pipeline(transaction=False)
for i in range(200):
    p.set(f"k{i}", i); p.get(f"k{i}")
res = p.execute()
out["pipeline_ok"] = all(res[2 * i] is True and res[2 * i + 1] == str(i) for i in range(200))
tx = r.pipeline(transaction=True)
tx.incr("tmp:n"); tx.incr("tmp:n")
out["tx"] = tx.execute()
out["scan"] = sorted(r.scan_iter(count=13))
out["dbsize"] = r.dbsize()
ps = r.pubsub()
ps.subscribe("chan")
deadline = time.time() + 5
msgs = []
pub = redis.Redis(port=port, decode_responses=True, protocol=2)
while time.time() < deadline and len(msgs) < 2:
    m = ps.get_message(timeout=0.2)
    if m is None:
        continue
    msgs.append([m["type"], m["channel"], m["data"]])
    if m["type"] == "subscribe":
        pub.publish("chan", "hello")
out["pubsub"] = msgs
out["resp2_client_info"] = pub.execute_command("CLIENT", "INFO")
out["resp2_mget"] = pub.mget(["user1", "nope"])
try:
    r.execute_command("SINTER", "user1", "plain")
    out["crossslot"] = None
except redis.ResponseError as e:
    out["crossslot"] = str(e)
print(json.dumps(out))
"#;

#[test]
fn redis_py_with_its_default_hello_3() {
    let Some(pypath) = python_redis_path() else {
        panic!("redis-py not installed: pip install --target .cache/pyredis redis (scripts/bootstrap.sh)");
    };
    let mesh = RedisMesh::start("redis-py", &SHARDS, TABLE).unwrap();
    let t = table(TABLE);
    let script = mesh.dir.write("client.py", PY_SCRIPT).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(mesh.port.to_string())
        .env("PYTHONPATH", &pypath)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("redis-py {}", v["version"]);
    assert!(
        v["protocol"].is_null() || v["protocol"] == 3,
        "default protocol: {}",
        v["protocol"]
    );
    assert!(
        v["client_info"].as_str().unwrap().contains("resp=3"),
        "the shard connection speaks RESP3: {}",
        v["client_info"]
    );
    assert!(v["resp2_client_info"].as_str().unwrap().contains("resp=2"));
    assert_eq!(v["mget"], serde_json::json!(["c", "a", null, "b"]));
    assert_eq!(v["exists"], 2);
    assert_eq!(v["hash"], serde_json::json!([2, {"f": "1", "g": "2"}]));
    assert_eq!(v["pipeline_ok"], true);
    assert_eq!(v["tx"], serde_json::json!([1, 2]));
    let scan: Vec<String> = serde_json::from_value(v["scan"].clone()).unwrap();
    assert_eq!(scan.len(), 208, "{scan:?}");
    assert_eq!(scan.iter().collect::<BTreeSet<_>>().len(), 208);
    assert_eq!(v["dbsize"], 208);
    assert_eq!(
        v["pubsub"],
        serde_json::json!([["subscribe", "chan", 1], ["message", "chan", "hello"]])
    );
    assert_eq!(v["resp2_mget"], serde_json::json!(["a", null]));
    assert!(
        v["crossslot"]
            .as_str()
            .unwrap()
            .contains("route to clusters"),
        "{}",
        v["crossslot"]
    );
    let keys: Vec<String> = scan;
    assert_placement(&mesh, &t, &keys, 0);
}

geomesh_integration::native_shell_too!(
    command_families_with_the_redis_crate,
    large_values_pass_whole,
    session_state_is_replayed_on_every_shard,
    auth_password_and_acl_forms,
    resp3_with_the_redis_crate,
    pubsub_through_the_proxy,
    echarde_example_table_as_written,
    redis_cli_families_and_mass_insertion,
    redis_py_with_its_default_hello_3,
);
