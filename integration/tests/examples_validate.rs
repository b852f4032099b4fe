//! Every Envoy config under `examples/` passes `envoy --mode validate`.
//!
//! Naming rule (examples/README.md): a file under `examples/` (any depth) is an Envoy bootstrap
//! config if and only if its name starts with `envoy` and ends with `.yaml`, e.g.
//! `examples/redis/envoy.yaml`, `examples/scope/envoy-dc1.yaml`. Each is
//! validated from the repository root, so `.wasm` paths such as `target/wasm/x.wasm` resolve
//! (run `scripts/build-wasm.sh` first; Envoy loads the module while validating). There is no
//! skip list: a config that cannot be validated fails the test.

use std::path::{Path, PathBuf};

use geomesh_integration::envoy::validate;
use geomesh_integration::paths::repo_root;
use geomesh_integration::TestDir;

fn is_envoy_config(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("envoy") && n.ends_with(".yaml"))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if is_envoy_config(&p) {
            out.push(p);
        }
    }
}

#[test]
fn every_example_envoy_config_validates() {
    let examples = repo_root().join("examples");
    let mut configs = Vec::new();
    collect(&examples, &mut configs);
    configs.sort();
    assert!(
        !configs.is_empty(),
        "no Envoy config (examples/**/envoy*.yaml) found under {}",
        examples.display()
    );
    let mut failures = Vec::new();
    for c in &configs {
        let rel = c.strip_prefix(repo_root()).unwrap_or(c).to_path_buf();
        match validate(&rel) {
            Ok(()) => eprintln!("valid: {}", rel.display()),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} example configs rejected by Envoy:\n{}",
        failures.len(),
        configs.len(),
        failures.join("\n")
    );
}

/// The check above can fail: Envoy rejects an unknown field and a missing .wasm.
#[test]
fn validate_rejects_broken_configs() {
    let dir = TestDir::new("validate-negative").unwrap();
    let unknown_field = dir
        .write(
            "envoy-bad.yaml",
            "static_resources:\n  clusters:\n  - name: c\n    type: STATIC\n    no_such_field: 1\n",
        )
        .unwrap();
    let err = format!("{:#}", validate(&unknown_field).unwrap_err());
    assert!(err.contains("no_such_field"), "{err}");

    let missing_wasm = dir
        .write(
            "envoy-missing-wasm.yaml",
            r#"static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.wasm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm
          config:
            vm_config:
              runtime: envoy.wasm.runtime.v8
              code: { local: { filename: target/wasm/does_not_exist.wasm } }
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: s
          cluster: c
  clusters:
  - name: c
    type: STATIC
"#,
        )
        .unwrap();
    let err = format!("{:#}", validate(&missing_wasm).unwrap_err());
    assert!(err.contains("does_not_exist.wasm"), "{err}");
}
