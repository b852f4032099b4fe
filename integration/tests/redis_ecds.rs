//! The routing table of a running Envoy replaced through ECDS (issue 2's live table swap): new
//! requests on a connection opened BEFORE the swap follow the new table, in-flight and
//! existing data stay where they are.

use std::time::Duration;

use geomesh_integration::redis_mesh::{MeshOptions, RedisMesh};
use redis::Commands;

const OLD: &str =
    "workload_type: redis\ndefault_cluster: redis1\nrouting_table:\n  user1: redis2\n";
const NEW: &str = "workload_type: redis\ndefault_cluster: redis1\nrouting_table:\n  user1: redis3\n  'tmp:': { type: prefix, cluster: redis2 }\n";

fn on(mesh: &RedisMesh, shard: &str, key: &str) -> Option<String> {
    mesh.direct(shard).unwrap().get(key).unwrap()
}

#[test]
fn ecds_swap_reroutes_an_existing_connection() {
    let mut opts = MeshOptions::new(&["redis1", "redis2", "redis3"], OLD);
    opts.ecds = true;
    let mut mesh = RedisMesh::start_with("redis-ecds", opts).unwrap();
    mesh.envoy
        .wait_log("configuration generation 1 loaded", Duration::from_secs(20))
        .unwrap();
    let mut c = mesh.client().unwrap();
    let _: () = c.set("user1", "old-table").unwrap();
    let _: () = c.set("tmp:x", "old-table").unwrap();
    assert_eq!(on(&mesh, "redis2", "user1").as_deref(), Some("old-table"));
    assert_eq!(on(&mesh, "redis1", "tmp:x").as_deref(), Some("old-table"));

    mesh.set_filter_config(NEW).unwrap();
    mesh.envoy
        .wait_log("configuration generation 2 loaded", Duration::from_secs(20))
        .unwrap();

    // Same connection, next requests: the new table.
    let _: () = c.set("user1", "new-table").unwrap();
    let _: () = c.set("tmp:x", "new-table").unwrap();
    assert_eq!(on(&mesh, "redis3", "user1").as_deref(), Some("new-table"));
    assert_eq!(on(&mesh, "redis2", "tmp:x").as_deref(), Some("new-table"));
    assert_eq!(
        on(&mesh, "redis2", "user1").as_deref(),
        Some("old-table"),
        "old data untouched"
    );
    let v: Vec<String> = c.mget(&["user1", "tmp:x"]).unwrap();
    assert_eq!(v, ["new-table", "new-table"]);
    // A new connection too.
    let mut c2 = mesh.client().unwrap();
    let v: String = c2.get("user1").unwrap();
    assert_eq!(v, "new-table");
    // A bad configuration is refused (Envoy words it "Wasm VM failed Failed to configure") and
    // the table in force stays.
    mesh.envoy
        .tolerate_wasm_log("Failed to configure base Wasm plugin");
    mesh.set_filter_config("workload_type: redis\n").unwrap();
    mesh.envoy
        .wait_log("`default_cluster`: missing", Duration::from_secs(20))
        .unwrap();
    let v: String = c.get("user1").unwrap();
    assert_eq!(v, "new-table");
}
