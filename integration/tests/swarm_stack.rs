//! examples/swarm/docker-stack.yml, checked offline (no Docker engine here, only the client):
//!
//! * `docker stack config -c` accepts it: the client's compose loader with the version 3.8
//!   schema (unknown keys are errors), interpolation and merges, as `docker stack deploy`
//!   would read it;
//! * the result has the two sites: per site a Redis, an Envoy (envoyproxy/envoy:v1.40) with the
//!   Redis filter and its config as Docker configs, a geomesh-bridge; one overlay network;
//!   placement constraints by node label; every config file exists, the module fits Swarm's
//!   config limit;
//! * each Envoy config passes `envoy --mode validate` and runs until ready with the real
//!   module (the filter accepts its routing table); names resolve on the overlay network: the
//!   Envoy's bridge cluster and the bridges' addresses are stack services on the right ports;
//! * each bridge config passes `geomesh-bridge --check`, and knows every shard the filter
//!   routes to; the bridges' health checks and grace periods fit their drain;
//! * bridge/Dockerfile: `cargo build --locked` can work (the lock file is current) and its
//!   ports and health check agree with the configs.
//!
//! `broken_stacks_are_rejected` shows the checks failing.

mod deploy_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use deploy_support::*;
use geomesh_integration::paths::{native_bin, repo_root};
use geomesh_integration::TestDir;
use serde_json::{json, Value};

const STACK: &str = "examples/swarm/docker-stack.yml";
const SITES: &[&str] = &["dc1", "dc2"];
/// moby/swarmkit's MaxConfigSize.
const SWARM_CONFIG_MAX: u64 = 1000 * 1024;

fn docker() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("docker"))
        .find(|p| p.is_file());
    found.expect("the docker client is not installed (`docker stack config` needs only the client)")
}

/// `docker stack config -c FILE`, parsed.
fn stack_config(file: &Path) -> Result<Value> {
    let out = Command::new(docker())
        .args(["stack", "config", "-c"])
        .arg(file)
        .env_remove("GEOMESH_BRIDGE_IMAGE")
        .output()
        .context("run docker stack config")?;
    if !out.status.success() {
        bail!(
            "docker stack config -c {} failed: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    yaml_docs(&text)?.pop().context("empty output")
}

fn host_port(s: &str) -> (String, u64) {
    let s = s.trim_start_matches("http://");
    let (h, p) = s.rsplit_once(':').unwrap_or((s, "0"));
    (h.to_owned(), p.parse().unwrap_or(0))
}

fn secs(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or("10s");
    s.trim_end_matches('s').parse().unwrap_or(10)
}

/// Every check on a stack; the problems found.
fn check_stack(file: &Path, dir: &TestDir, run_envoy: bool) -> Result<Vec<String>> {
    let stack = stack_config(file)?;
    let mut problems = Vec::new();
    let services = stack["services"].as_object().context("services")?;
    let configs = stack["configs"].as_object().context("configs")?;
    let nets = stack["networks"].as_object().context("networks")?;
    if stack["version"] != "3.8" {
        problems.push(format!("version {} (3.8 expected)", stack["version"]));
    }
    let overlay: Vec<&String> = nets
        .iter()
        .filter(|(_, n)| n["driver"] == "overlay")
        .map(|(k, _)| k)
        .collect();
    if overlay.len() != 1 {
        problems.push(format!("one overlay network expected, got {overlay:?}"));
    }

    // The config files, read as Docker would upload them.
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (name, c) in configs {
        let f = PathBuf::from(c["file"].as_str().unwrap_or_default());
        match std::fs::metadata(&f) {
            Ok(m) if m.len() >= SWARM_CONFIG_MAX => problems.push(format!(
                "config {name}: {} is {} bytes, over Swarm's {SWARM_CONFIG_MAX}",
                f.display(),
                m.len()
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("config {name}: {}: {e}", f.display())),
        }
        files.insert(name.clone(), f);
    }
    let mounted = |svc: &Value, target: &str| -> Option<PathBuf> {
        svc["configs"]
            .as_array()?
            .iter()
            .find(|c| c["target"] == target)
            .and_then(|c| files.get(c["source"].as_str().unwrap_or_default()).cloned())
    };

    for site in SITES {
        let (redis, envoy, bridge) = (
            format!("redis-{site}"),
            format!("envoy-{site}"),
            format!("bridge-{site}"),
        );
        for name in [&redis, &envoy, &bridge] {
            let Some(svc) = services.get(name) else {
                problems.push(format!("no service {name}"));
                continue;
            };
            let want = format!("node.labels.geomesh.site == {site}");
            let cons = &svc["deploy"]["placement"]["constraints"];
            if !cons
                .as_array()
                .is_some_and(|a| a.iter().any(|c| *c == want))
            {
                problems.push(format!(
                    "{name}: placement constraint `{want}` missing ({cons})"
                ));
            }
            if !svc["networks"]
                .as_object()
                .is_some_and(|n| overlay.iter().all(|o| n.contains_key(*o)))
            {
                problems.push(format!("{name}: not on the overlay network"));
            }
        }
        let (Some(esvc), Some(bsvc)) = (services.get(&envoy), services.get(&bridge)) else {
            continue;
        };
        if !esvc["image"]
            .as_str()
            .unwrap_or_default()
            .starts_with("envoyproxy/envoy:v1.40")
        {
            problems.push(format!(
                "{envoy}: image {} (envoyproxy/envoy:v1.40.x expected)",
                esvc["image"]
            ));
        }

        // The bridge: config valid for the real binary, ports, health check, grace period.
        let Some(bfile) = mounted(bsvc, "/etc/geomesh/bridge.yaml") else {
            problems.push(format!(
                "{bridge}: no config mounted at /etc/geomesh/bridge.yaml"
            ));
            continue;
        };
        let out = Command::new(native_bin("geomesh-bridge")?)
            .arg("--check")
            .arg("--config")
            .arg(&bfile)
            .output()?;
        if !out.status.success() {
            problems.push(format!(
                "{bridge}: geomesh-bridge --check: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let bcfg = yaml_docs(&std::fs::read_to_string(&bfile)?)?
            .pop()
            .context("bridge config")?;
        if bcfg["site"] != *site {
            problems.push(format!("{bridge}: its config says site {}", bcfg["site"]));
        }
        let admin_port = host_port(bcfg["admin_listen"].as_str().unwrap_or_default()).1;
        let probe = bsvc["healthcheck"]["test"].as_array().map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        });
        if probe != Some(format!("CMD geomesh-bridge --probe 127.0.0.1:{admin_port}")) {
            problems.push(format!(
                "{bridge}: healthcheck {probe:?} does not probe the admin port {admin_port}"
            ));
        }
        let drain_s = bcfg["defaults"]["drain_timeout_ms"]
            .as_u64()
            .unwrap_or(20_000)
            / 1000;
        if secs(&bsvc["stop_grace_period"]) < drain_s + 5 {
            problems.push(format!(
                "{bridge}: stop_grace_period {} leaves no margin over the {drain_s} s drain",
                bsvc["stop_grace_period"]
            ));
        }
        for (name, c) in bcfg["clusters"].as_object().into_iter().flatten() {
            let at = c["site"].as_str().unwrap_or(site);
            for a in c["address"].as_str().into_iter().chain(
                c["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str),
            ) {
                let (h, p) = host_port(a);
                if at == *site && !services.contains_key(&h) {
                    problems.push(format!(
                        "{bridge}: cluster {name} -> {a}: no service {h} in the stack"
                    ));
                }
                if h == format!("redis-{at}") && p != 6379 {
                    problems.push(format!(
                        "{bridge}: cluster {name} -> {a}: Redis listens on 6379"
                    ));
                }
            }
        }
        for (other, s) in bcfg["sites"].as_object().into_iter().flatten() {
            let (h, p) = host_port(s["grpc"].as_str().unwrap_or_default());
            let theirs = mounted(
                &services[&format!("bridge-{other}")],
                "/etc/geomesh/bridge.yaml",
            )
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| yaml_docs(&t).ok()?.pop());
            let their_grpc = theirs
                .as_ref()
                .map(|t| host_port(t["grpc_listen"].as_str().unwrap_or_default()).1);
            if h != format!("bridge-{other}") || their_grpc != Some(p) {
                problems.push(format!(
                    "{bridge}: site {other} at {h}:{p}, but bridge-{other} serves gRPC on {their_grpc:?}"
                ));
            }
        }

        // The Envoy: config name (examples/README.md's rule), module path, names on the network.
        let Some(efile) = mounted(esvc, "/etc/geomesh/envoy.yaml") else {
            problems.push(format!(
                "{envoy}: no config mounted at /etc/geomesh/envoy.yaml"
            ));
            continue;
        };
        let fname = efile
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !(fname.starts_with("envoy") && fname.ends_with(".yaml")) {
            problems.push(format!(
                "{envoy}: {fname} escapes examples_validate.rs (name must be envoy*.yaml)"
            ));
        }
        let ecfg = yaml_docs(&std::fs::read_to_string(&efile)?)?
            .pop()
            .context("envoy config")?;
        let workdir = esvc["working_dir"].as_str().unwrap_or("/");
        for (_, m) in objects(&ecfg) {
            if let Some(f) = m.get("local").and_then(|l| l["filename"].as_str()) {
                let in_container = if f.starts_with('/') {
                    f.to_owned()
                } else {
                    format!("{workdir}/{f}")
                };
                match mounted(esvc, &in_container) {
                    Some(src) if src.file_name() == Path::new(f).file_name() => {}
                    other => problems.push(format!(
                        "{envoy}: {f} is {in_container} in the container, mounted from {other:?}"
                    )),
                }
            }
        }
        let bridge_listen = host_port(bcfg["listen"].as_str().unwrap_or_default()).1;
        let defined: Vec<String> = ecfg["static_resources"]["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        for c in referenced_clusters(&ecfg) {
            if !defined.contains(&c) {
                problems.push(format!("{envoy}: cluster {c} is used but not defined"));
            }
        }
        for c in ecfg["static_resources"]["clusters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for (_, m) in objects(&c["load_assignment"]) {
                if let Some(sa) = m.get("socket_address") {
                    let h = sa["address"].as_str().unwrap_or_default();
                    let p = sa["port_value"].as_u64().unwrap_or(0);
                    if h != format!("bridge-{site}") || p != bridge_listen {
                        problems.push(format!(
                            "{envoy}: cluster {} -> {h}:{p}, not bridge-{site}:{bridge_listen}",
                            c["name"]
                        ));
                    }
                }
            }
        }
        // Every shard the filter routes to is known to the bridge.
        for (_, m) in objects(&ecfg) {
            let Some(text) = m.get("configuration").and_then(|c| c["value"].as_str()) else {
                continue;
            };
            let cfg = yaml_docs(text)?.pop().unwrap_or(Value::Null);
            let mut targets = vec![cfg["default_cluster"].clone(), cfg["local_cluster"].clone()];
            for r in cfg["routing_table"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.values())
            {
                targets.push(r["cluster"].clone());
                targets.extend(r["clusters"].as_array().into_iter().flatten().cloned());
            }
            for t in targets.iter().filter_map(Value::as_str) {
                if bcfg["clusters"].get(t).is_none() {
                    problems.push(format!(
                        "{envoy}: the filter routes to {t}, which {bridge} does not know"
                    ));
                }
            }
            if cfg["local_cluster"] != json!(format!("redis-{site}")) {
                problems.push(format!(
                    "{envoy}: local_cluster {} is not this site's shard",
                    cfg["local_cluster"]
                ));
            }
        }
        // Envoy itself: validation from the repository root, then a run with the real module.
        let rel = efile
            .strip_prefix(repo_root())
            .unwrap_or(&efile)
            .to_path_buf();
        if let Err(e) = geomesh_integration::envoy::validate(&rel) {
            problems.push(format!("{envoy}: {e:#}"));
        } else if run_envoy {
            if let Err(e) = envoy_configure_run(dir, &envoy, &ecfg) {
                problems.push(format!("{envoy}: {e:#}"));
            }
        }
    }
    Ok(problems)
}

#[test]
fn the_swarm_stack_is_complete_and_its_configs_are_valid() {
    let dir = TestDir::new("swarm-stack").unwrap();
    let problems = check_stack(&repo_root().join(STACK), &dir, true).unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_bridge_image_can_build() {
    // `cargo build --locked` in the Dockerfile needs a current Cargo.lock.
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--locked",
            "--offline",
            "--format-version",
            "1",
            "--no-deps",
        ])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata --locked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "geomesh-bridge"),
        "no geomesh-bridge package"
    );
    let dockerfile = std::fs::read_to_string(repo_root().join("bridge/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("cargo build --release --locked -p geomesh-bridge"),
        "{dockerfile}"
    );
    let ignore =
        std::fs::read_to_string(repo_root().join("bridge/Dockerfile.dockerignore")).unwrap();
    for must in ["target", ".cache", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == must),
            "{must} not ignored"
        );
    }
    // The image's ports and health check are the ones the stack's bridge configs use.
    for site in SITES {
        let cfg = yaml_docs(
            &std::fs::read_to_string(
                repo_root().join(format!("examples/swarm/bridge-{site}.yaml")),
            )
            .unwrap(),
        )
        .unwrap()
        .pop()
        .unwrap();
        for key in ["listen", "grpc_listen", "admin_listen"] {
            let p = host_port(cfg[key].as_str().unwrap()).1;
            assert!(
                dockerfile
                    .lines()
                    .any(|l| l.starts_with("EXPOSE")
                        && l.split_whitespace().any(|w| w == p.to_string())),
                "bridge-{site} {key} {p} is not EXPOSEd"
            );
        }
        let admin = host_port(cfg["admin_listen"].as_str().unwrap()).1;
        assert!(
            dockerfile.contains(&format!("\"--probe\", \"127.0.0.1:{admin}\"")),
            "HEALTHCHECK does not probe {admin}"
        );
    }
}

/// Writes a copy of the stack (and its config files, with `edit` applied to the one named
/// `file`) into `dir`, for negative tests.
fn broken_copy(dir: &TestDir, file: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let src = repo_root().join("examples/swarm");
    let dst = dir.join(format!("swarm-{}", file.replace('.', "_")));
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") && !name.ends_with(".yml") {
            continue;
        }
        let mut text = std::fs::read_to_string(e.path()).unwrap();
        // Keep the module reachable from the copy.
        text = text.replace(
            "../../target/wasm/",
            &format!("{}/target/wasm/", repo_root().display()),
        );
        if name == file {
            let before = text.clone();
            text = edit(&text);
            assert_ne!(before, text, "the edit changed nothing in {file}");
        }
        std::fs::write(dst.join(&name), text).unwrap();
    }
    dst.join("docker-stack.yml")
}

#[test]
fn broken_stacks_are_rejected() {
    let dir = TestDir::new("swarm-broken").unwrap();
    // The compose schema: a misspelt key.
    let s = broken_copy(&dir, "docker-stack.yml", |t| {
        t.replacen("placement:", "placment:", 1)
    });
    let err = format!("{:#}", check_stack(&s, &dir, false).unwrap_err());
    assert!(err.contains("placment"), "{err}");
    // A service without its site constraint.
    let s = broken_copy(&dir, "docker-stack.yml", |t| {
        t.replacen(
            "constraints: [node.labels.geomesh.site == dc2]",
            "constraints: [node.role == worker]",
            1,
        )
    });
    let p = check_stack(&s, &dir, false).unwrap().join("\n");
    assert!(p.contains("redis-dc2: placement constraint"), "{p}");
    // An Envoy config with a field Envoy does not know.
    let s = broken_copy(&dir, "envoy-dc1.yaml", |t| {
        t.replace("stat_prefix: geomesh_bridge", "stat_prefx: geomesh_bridge")
    });
    let p = check_stack(&s, &dir, false).unwrap().join("\n");
    assert!(p.contains("envoy-dc1") && p.contains("stat_prefx"), "{p}");
    // A bridge cluster pointing at a host that is not a service of the stack.
    let s = broken_copy(&dir, "bridge-dc2.yaml", |t| {
        t.replace("redis-dc2:6379", "redis-two:6379")
    });
    let p = check_stack(&s, &dir, false).unwrap().join("\n");
    assert!(p.contains("no service redis-two"), "{p}");
    // A route to a shard the bridge does not know, and a bad routing table the filter refuses.
    let s = broken_copy(&dir, "envoy-dc2.yaml", |t| {
        t.replace("cluster: redis-dc1 }", "cluster: redis-dc3 }")
    });
    let p = check_stack(&s, &dir, false).unwrap().join("\n");
    assert!(p.contains("redis-dc3"), "{p}");
    let s = broken_copy(&dir, "envoy-dc2.yaml", |t| {
        t.replace(
            "type: prefix, cluster: redis-dc1",
            "type: prefixes, cluster: redis-dc1",
        )
    });
    let p = check_stack(&s, &dir, true).unwrap().join("\n");
    assert!(
        p.contains("routing_table.eu:.type") || p.contains("prefixes"),
        "{p}"
    );
    // Each site's Envoy must talk to its own bridge.
    let s = broken_copy(&dir, "envoy-dc1.yaml", |t| {
        t.replace("address: bridge-dc1", "address: bridge-dc2")
    });
    let p = check_stack(&s, &dir, false).unwrap().join("\n");
    assert!(p.contains("not bridge-dc1:7000"), "{p}");
}
