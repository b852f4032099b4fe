//! `examples/replication/` is exactly what the generator
//! (`geomesh_integration::replication::ReplicationPlan::fixed`) writes, its README starts each
//! site with the generator's commands, and its ports are not those of `examples/scope/` (both
//! can be started by hand side by side). `GEOMESH_UPDATE_EXAMPLES=1` rewrites the generated
//! files instead of comparing.

use std::collections::BTreeSet;
use std::path::Path;

use geomesh_integration::paths::{repo_root, sync_generated};
use geomesh_integration::replication::{ReplicationPlan, EXAMPLE_DIR};

#[test]
fn examples_replication_match_the_generator() {
    let dir = repo_root().join(EXAMPLE_DIR);
    let plan = ReplicationPlan::fixed();
    let stale = sync_generated(&dir, plan.example_files()).unwrap();
    assert!(
        stale.is_empty(),
        "examples/replication is out of date (regenerate with GEOMESH_UPDATE_EXAMPLES=1 cargo test -p geomesh-integration --test replication_examples):\n{}",
        stale.join("\n")
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for i in 0..plan.sites.len() {
        for c in plan.example_commands(i) {
            assert!(readme.contains(&c), "README.md lacks the command {c:?}");
        }
        for port in [plan.ports[i].listener, plan.ports[i].agent] {
            assert!(
                readme.contains(&format!("127.0.0.1:{port}")),
                "README.md never names port {port}"
            );
        }
    }
}

/// Every port number a config file under `dir` names (`port_value: N`, `host:N`).
fn ports_in(dir: &Path) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let candidates = line
                .split("port_value:")
                .skip(1)
                .chain(line.split("127.0.0.1:").skip(1));
            for c in candidates {
                let digits: String = c
                    .trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(n) = digits.parse() {
                    out.insert(n);
                }
            }
        }
    }
    out
}

#[test]
fn replication_and_scope_examples_use_different_ports() {
    let root = repo_root();
    let replication = ports_in(&root.join(EXAMPLE_DIR));
    let scope = ports_in(&root.join("examples/scope"));
    let plan = ReplicationPlan::fixed();
    for p in &plan.ports {
        for port in [p.admin, p.listener, p.agent, p.proxy, p.instance] {
            assert!(
                replication.contains(&port),
                "{port} not found in examples/replication: {replication:?}"
            );
        }
    }
    assert!(
        scope.len() >= 18,
        "examples/scope ports not found: {scope:?}"
    );
    let shared: Vec<&u16> = replication.intersection(&scope).collect();
    assert!(
        shared.is_empty(),
        "examples/replication and examples/scope both use {shared:?}"
    );
}
