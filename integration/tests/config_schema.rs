//! Every filter configuration of the repository against the published JSON Schema
//! (`schema/geomesh-filter.schema.json`, read as an editor reads it, validated by the
//! `jsonschema` crate) and against the filters' own parsers:
//!
//! * the examples (`examples/**/envoy*.yaml`: the `StringValue` of every Wasm filter), the Istio
//!   manifests (`pluginConfig` of WasmPlugin and TrafficExtension, the `StringValue`s of
//!   EnvoyFilter and of ECDS resources held in ConfigMaps), the demo's and the topologies' filter
//!   configurations (the scope and replication plans, the Redis demo table): each is accepted by
//!   the parser **and** by the schema;
//! * every configuration text written in the sources (string literals of the integration tests,
//!   benches and protocol crates, `yaml` blocks of the READMEs, docs and crate docs): each one
//!   the parser accepts, the schema accepts too (those the parser refuses are the tests' bad
//!   examples).

use std::path::{Path, PathBuf};

use geomesh_integration::paths::repo_root;
use serde_yaml_ng::Value;

fn schema_validator() -> jsonschema::Validator {
    let path = repo_root().join(geomesh_config_schema::SCHEMA_PATH);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::options().with_draft(jsonschema::Draft::Draft7).build(&schema).unwrap()
}

/// One configuration found in the repository.
struct Found {
    origin: String,
    text: String,
}

fn files(dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if p.is_dir() {
            if !["target", ".cache", ".git", "node_modules"].contains(&name) {
                files(&p, keep, out);
            }
        } else if keep(&p) {
            out.push(p);
        }
    }
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo_root()).unwrap_or(p).display().to_string()
}

/// Filter configurations inside a YAML value: maps with `workload_type` (a `pluginConfig`),
/// and strings holding YAML that has them (a `StringValue`, an ECDS resource in a ConfigMap).
fn walk(v: &Value, origin: &str, out: &mut Vec<Found>) {
    match v {
        Value::Mapping(m) => {
            if m.contains_key("workload_type") {
                out.push(Found { origin: origin.to_owned(), text: serde_yaml_ng::to_string(v).unwrap() });
                return;
            }
            for (_, child) in m {
                walk(child, origin, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| walk(i, origin, out)),
        Value::String(s) if s.contains("workload_type") => {
            if let Ok(inner) = serde_yaml_ng::from_str::<Value>(s) {
                if inner.as_mapping().is_some_and(|m| m.contains_key("workload_type")) {
                    out.push(Found { origin: origin.to_owned(), text: s.clone() });
                } else {
                    walk(&inner, origin, out);
                }
            }
        }
        _ => {}
    }
}

fn from_yaml_files(paths: &[PathBuf], out: &mut Vec<Found>) {
    for p in paths {
        let text = std::fs::read_to_string(p).unwrap();
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let v = <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: document {i}: {e}", rel(p)));
            walk(&v, &format!("{} (document {i})", rel(p)), out);
        }
    }
}

/// The deployable configurations: examples, Istio manifests, the demo and the topologies.
fn deployed() -> Vec<Found> {
    let root = repo_root();
    let mut paths = Vec::new();
    files(&root.join("examples"), &|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"), &mut paths);
    files(&root.join("istio"), &|p| p.extension().is_some_and(|e| e == "yaml"), &mut paths);
    paths.sort();
    let mut out = Vec::new();
    from_yaml_files(&paths, &mut out);
    let mut add = |origin: &str, text: String| out.push(Found { origin: origin.to_owned(), text });
    add("integration/src/demo.rs REDIS_FILTER_CONFIG", geomesh_integration::demo::REDIS_FILTER_CONFIG.to_owned());
    let scope = geomesh_integration::scope::ScopePlan::fixed();
    for i in 0..3 {
        for (service, _) in geomesh_integration::scope::SERVICES {
            add(&format!("ScopePlan::fixed().filter_config({i}, {service})"), scope.filter_config(i, service));
        }
    }
    let replication = geomesh_integration::replication::ReplicationPlan::fixed();
    for i in 0..3 {
        add(&format!("ReplicationPlan::fixed().filter_config({i})"), replication.filter_config(i));
    }
    out
}

/// String literals of Rust sources that look like whole filter configurations.
fn literals(path: &Path, out: &mut Vec<Found>) {
    let text = std::fs::read_to_string(path).unwrap();
    if !text.contains("workload_type") {
        return;
    }
    let tokens: proc_macro2::TokenStream =
        text.parse().unwrap_or_else(|e| panic!("{}: not Rust: {e:?}", rel(path)));
    let mut stack = vec![tokens];
    while let Some(ts) = stack.pop() {
        for t in ts {
            match t {
                proc_macro2::TokenTree::Group(g) => stack.push(g.stream()),
                proc_macro2::TokenTree::Literal(l) => {
                    let repr = l.to_string();
                    let value = if let Ok(s) = syn::parse_str::<syn::LitStr>(&repr) {
                        s.value()
                    } else if let Ok(b) = syn::parse_str::<syn::LitByteStr>(&repr) {
                        String::from_utf8_lossy(&b.value()).into_owned()
                    } else {
                        continue;
                    };
                    if value.contains("workload_type") {
                        out.push(Found { origin: format!("{} (literal)", rel(path)), text: value });
                    }
                }
                _ => {}
            }
        }
    }
}

/// `yaml` code blocks of Markdown (or of `//!` crate docs) holding `workload_type`.
fn yaml_blocks(origin: &str, markdown: &str, out: &mut Vec<Found>) {
    let mut block: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match &mut block {
            None if trimmed.starts_with("```yaml") => block = Some(String::new()),
            Some(b) if trimmed.starts_with("```") => {
                if b.contains("workload_type") {
                    out.push(Found { origin: origin.to_owned(), text: std::mem::take(b) });
                }
                block = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
}

fn written() -> Vec<Found> {
    let root = repo_root();
    let mut out = Vec::new();
    let mut rust = Vec::new();
    for dir in ["integration", "protocols", "filters", "tools"] {
        files(&root.join(dir), &|p| p.extension().is_some_and(|e| e == "rs"), &mut rust);
    }
    rust.sort();
    for p in &rust {
        literals(p, &mut out);
        let text = std::fs::read_to_string(p).unwrap();
        let docs: String = text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("//!"))
            .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
            .collect();
        yaml_blocks(&format!("{} (crate docs)", rel(p)), &docs, &mut out);
    }
    let mut md = Vec::new();
    files(&root, &|p| p.extension().is_some_and(|e| e == "md"), &mut md);
    md.sort();
    for p in &md {
        yaml_blocks(&rel(p), &std::fs::read_to_string(p).unwrap(), &mut out);
    }
    out
}

fn schema_errors(v: &jsonschema::Validator, text: &str) -> Vec<String> {
    match geomesh_config_schema::instance(text) {
        Ok(json) => v.iter_errors(&json).map(|e| format!("{e} (at `{}`)", e.instance_path())).collect(),
        Err(e) => vec![format!("not YAML: {e}")],
    }
}

#[test]
fn every_deployable_configuration_passes_the_schema_and_the_parser() {
    let v = schema_validator();
    let found = deployed();
    let mut failures = Vec::new();
    for f in &found {
        if let Err(e) = geomesh_config_schema::check(f.text.as_bytes()) {
            failures.push(format!("{}: the filter refuses it: {e}\n{}", f.origin, f.text));
        }
        let errors = schema_errors(&v, &f.text);
        if !errors.is_empty() {
            failures.push(format!("{}: the schema refuses it: {errors:#?}\n{}", f.origin, f.text));
        }
    }
    eprintln!("{} deployable configurations checked", found.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Each place holds some: a change that moves configurations elsewhere must move this test.
    for place in ["examples/redis/", "examples/scope/", "examples/replication/", "examples/swarm/", "istio/3", "istio/4", "ScopePlan", "ReplicationPlan", "demo.rs"] {
        assert!(found.iter().any(|f| f.origin.contains(place)), "no configuration found in {place}");
    }
    // Every example or manifest that mentions workload_type had its configuration found.
    let mut paths = Vec::new();
    for dir in ["examples", "istio"] {
        files(&repo_root().join(dir), &|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"), &mut paths);
    }
    for p in paths {
        if std::fs::read_to_string(&p).unwrap().contains("workload_type") {
            let name = rel(&p);
            assert!(found.iter().any(|f| f.origin.starts_with(&name)), "{name}: its configuration was not found");
        }
    }
}

#[test]
fn every_configuration_the_parser_accepts_the_schema_accepts() {
    let v = schema_validator();
    let found = written();
    let (mut accepted, mut failures) = (0, Vec::new());
    for f in &found {
        if geomesh_config_schema::check(f.text.as_bytes()).is_err() {
            continue;
        }
        accepted += 1;
        let errors = schema_errors(&v, &f.text);
        if !errors.is_empty() {
            failures.push(format!("{}: accepted by the filter, refused by the schema: {errors:#?}\n{}", f.origin, f.text));
        }
    }
    eprintln!("{} configuration texts in the sources, {accepted} accepted by the filters, all by the schema", found.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(accepted >= 20, "only {accepted} valid configurations found in the sources");
    // The README's reference example is one of them.
    assert!(found.iter().any(|f| f.origin == "README.md" && geomesh_config_schema::check(f.text.as_bytes()).is_ok()));
}

#[test]
fn the_standalone_example_is_the_one_envoy_yaml_embeds() {
    let root = repo_root();
    let mut embedded = Vec::new();
    from_yaml_files(&[root.join("examples/redis/envoy.yaml")], &mut embedded);
    let [one] = embedded.as_slice() else { panic!("examples/redis/envoy.yaml: {} configurations", embedded.len()) };
    let standalone = std::fs::read_to_string(root.join("examples/redis/filter-config.yaml")).unwrap();
    assert!(standalone.starts_with("# yaml-language-server: $schema=../../schema/geomesh-filter.schema.json\n"));
    let parse = |t: &str| serde_yaml_ng::from_str::<Value>(t).unwrap();
    assert_eq!(parse(&standalone), parse(&one.text), "examples/redis/filter-config.yaml and envoy.yaml differ");
}
