//! Shared by tests/istio_manifests.rs and tests/swarm_stack.rs: YAML documents as JSON values,
//! Kubernetes structural schemas as JSON Schema, and Envoy runs of generated bootstraps.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use geomesh_integration::envoy::{validate, Envoy, EnvoyOptions};
use geomesh_integration::paths::{envoy_bin, repo_root, wasm_dir};
use geomesh_integration::{free_port, TestDir};
use serde::Deserialize as _;
use serde_json::{json, Map, Value};

/// One document of a multi-document YAML file.
#[derive(Clone, Debug)]
pub struct Doc {
    /// Path relative to the repository root.
    pub file: String,
    /// 0-based position in the file.
    pub index: usize,
    pub value: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    }

    /// `file#index kind/namespace/name`, for messages.
    pub fn label(&self) -> String {
        format!(
            "{}#{} {}/{}/{}",
            self.file,
            self.index,
            self.kind(),
            self.namespace(),
            self.name()
        )
    }
}

/// Every non-empty document of a YAML text, as JSON values (YAML 1.2 core schema: `yes` stays
/// a string).
pub fn yaml_docs(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(de).context("YAML document")?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Every document of every `*.yaml` directly in `dir` (relative to the repository root),
/// files in name order.
pub fn docs_in(dir: &str) -> Result<Vec<Doc>> {
    let root = repo_root();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
        .with_context(|| format!("read {dir}"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&f).with_context(|| format!("read {rel}"))?;
        for (index, value) in yaml_docs(&text)
            .with_context(|| rel.clone())?
            .into_iter()
            .enumerate()
        {
            out.push(Doc {
                file: rel.clone(),
                index,
                value,
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Kubernetes structural schemas (CRD openAPIV3Schema) as JSON Schema

/// The CRDs of a file like Istio's `crd-all.gen.yaml`: (group, version, kind) -> schema.
pub struct Crds {
    schemas: BTreeMap<(String, String, String), Value>,
}

impl Crds {
    pub fn load(path: &Path) -> Result<Crds> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let mut schemas = BTreeMap::new();
        for crd in yaml_docs(&text)? {
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let group = crd["spec"]["group"].as_str().unwrap_or_default().to_owned();
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
                let version = v["name"].as_str().unwrap_or_default().to_owned();
                let schema = v["schema"]["openAPIV3Schema"].clone();
                if !schema.is_null() {
                    schemas.insert((group.clone(), version, kind.clone()), schema);
                }
            }
        }
        if schemas.is_empty() {
            bail!("no CRD schema in {}", path.display());
        }
        Ok(Crds { schemas })
    }

    /// The schema for `apiVersion` (`group/version`) and `kind`.
    pub fn schema(&self, api_version: &str, kind: &str) -> Option<&Value> {
        let (group, version) = api_version.split_once('/')?;
        self.schemas
            .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
    }

    pub fn groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self.schemas.keys().map(|k| k.0.clone()).collect();
        g.dedup();
        g
    }
}

/// Turns a Kubernetes structural schema into a JSON Schema with the API server's semantics for
/// `kubectl apply` (field validation `Strict`, kubectl's default):
///
/// * an object with `properties` and without `x-kubernetes-preserve-unknown-fields: true` or
///   `additionalProperties` rejects other fields (the API server would reject them, where a
///   plain JSON Schema would let them through);
/// * `x-kubernetes-preserve-unknown-fields: true` keeps the node open (EnvoyFilter's
///   `patch.value`, WasmPlugin's `pluginConfig`): Istio's own validation of those parts is done
///   elsewhere (Envoy parses the patch; the filter parses its configuration);
/// * `nullable: true` admits `null`;
/// * the root gets `apiVersion`, `kind` and `metadata` (name required, DNS-1123, string maps
///   for labels and annotations), which the API server adds to every CRD's schema.
///
/// `x-kubernetes-validations` (CEL rules) are not evaluated here: see [`cel_rules`].
pub fn k8s_to_json_schema(schema: &Value) -> Value {
    let mut s = schema.clone();
    strict(&mut s);
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("apiVersion".into(), json!({ "type": "string" }));
        props.insert("kind".into(), json!({ "type": "string" }));
        props.insert("metadata".into(), object_meta_schema());
    }
    if let Some(obj) = s.as_object_mut() {
        let req = obj.entry("required").or_insert_with(|| json!([]));
        if let Some(r) = req.as_array_mut() {
            for k in ["apiVersion", "kind", "metadata"] {
                if !r.iter().any(|x| x == k) {
                    r.push(json!(k));
                }
            }
        }
    }
    s
}

fn strict(node: &mut Value) {
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    let preserve = obj
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if obj.get("nullable").and_then(Value::as_bool) == Some(true) {
        if let Some(Value::String(t)) = obj.get("type").cloned() {
            obj.insert("type".into(), json!([t, "null"]));
        }
    }
    if obj.contains_key("properties") && !preserve && !obj.contains_key("additionalProperties") {
        obj.insert("additionalProperties".into(), json!(false));
    }
    for key in ["properties"] {
        if let Some(Value::Object(props)) = obj.get_mut(key) {
            for v in props.values_mut() {
                strict(v);
            }
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(v) = obj.get_mut(key) {
            strict(v);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(items)) = obj.get_mut(key) {
            for v in items {
                strict(v);
            }
        }
    }
}

/// `metadata` as the API server checks it for a namespaced object we ship.
fn object_meta_schema() -> Value {
    let dns_subdomain = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    let dns_label = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name"],
        "properties": {
            "name": { "type": "string", "maxLength": 253, "pattern": dns_subdomain },
            "namespace": { "type": "string", "maxLength": 63, "pattern": dns_label },
            "labels": { "type": "object", "additionalProperties": { "type": "string", "maxLength": 63 } },
            "annotations": { "type": "object", "additionalProperties": { "type": "string" } },
        }
    })
}

/// Validates `instance` against a CRD schema (see [`k8s_to_json_schema`]): the errors, each
/// with the path of the offending value.
pub fn schema_errors(crd_schema: &Value, instance: &Value) -> Result<Vec<String>> {
    let schema = k8s_to_json_schema(crd_schema);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(false)
        .build(&schema)
        .map_err(|e| anyhow::anyhow!("schema does not compile: {e}"))?;
    Ok(validator
        .iter_errors(instance)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect())
}

/// The CEL rules (`x-kubernetes-validations`) the API server would evaluate on `instance`: one
/// per schema node that has rules and whose value is present, as (path, rule, message).
pub fn cel_rules(crd_schema: &Value, instance: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![(crd_schema, instance, String::new())];
    while let Some((s, v, path)) = stack.pop() {
        for r in s["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push((
                path.clone(),
                r["rule"].as_str().unwrap_or_default().to_owned(),
                r["message"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        if let (Some(props), Some(obj)) = (s["properties"].as_object(), v.as_object()) {
            for (k, child) in obj {
                if let Some(cs) = props.get(k) {
                    stack.push((cs, child, format!("{path}/{k}")));
                }
            }
        } else if let (Some(ap), Some(obj)) = (s.get("additionalProperties"), v.as_object()) {
            for (k, child) in obj {
                stack.push((ap, child, format!("{path}/{k}")));
            }
        }
        if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
            for (i, child) in arr.iter().enumerate() {
                stack.push((items, child, format!("{path}/{i}")));
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Walking JSON

/// Every object in `v` (depth first, `v` included) with its JSON pointer.
pub fn objects(v: &Value) -> Vec<(String, &Map<String, Value>)> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), v)];
    while let Some((p, v)) = stack.pop() {
        match v {
            Value::Object(m) => {
                out.push((p.clone(), m));
                for (k, c) in m {
                    stack.push((format!("{p}/{k}"), c));
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    stack.push((format!("{p}/{i}"), c));
                }
            }
            _ => {}
        }
    }
    out
}

/// Applies `f` to every object in `v`, parents before children.
pub fn for_each_object_mut(v: &mut Value, f: &mut dyn FnMut(&mut Map<String, Value>)) {
    match v {
        Value::Object(m) => {
            f(m);
            for c in m.values_mut() {
                for_each_object_mut(c, f);
            }
        }
        Value::Array(a) => {
            for c in a {
                for_each_object_mut(c, f);
            }
        }
        _ => {}
    }
}

/// The names of the clusters a bootstrap's filters and routes use (tcp_proxy `cluster`, route
/// `cluster`, weighted clusters, remote data sources' `http_uri.cluster`).
pub fn referenced_clusters(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (path, m) in objects(v) {
        let tcp = m
            .get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with(".TcpProxy"));
        let route_action = path.ends_with("/route") && m.contains_key("cluster");
        let http_uri = path.ends_with("/http_uri");
        if tcp || route_action || http_uri {
            if let Some(c) = m.get("cluster").and_then(Value::as_str) {
                out.push(c.to_owned());
            }
        }
        if path.ends_with("/weighted_clusters") {
            for c in m
                .get("clusters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = c["name"].as_str() {
                    out.push(n.to_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every Wasm `vm_config` whose code is remote becomes a local file from `target/wasm/` (the
/// file named like the URL's last segment). Returns (uri, sha256, local path) per replacement.
/// Fails if the module is not built.
pub fn remote_wasm_to_local(v: &mut Value) -> Result<Vec<(String, String, String)>> {
    let mut done = Vec::new();
    let mut err = None;
    for_each_object_mut(v, &mut |m| {
        let Some(code) = m.get_mut("code").and_then(Value::as_object_mut) else {
            return;
        };
        let Some(remote) = code.get("remote").cloned() else {
            return;
        };
        let uri = remote["http_uri"]["uri"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let sha = remote["sha256"].as_str().unwrap_or_default().to_owned();
        let file = uri.rsplit('/').next().unwrap_or_default().to_owned();
        let local = format!("target/wasm/{file}");
        if !file.ends_with(".wasm") || !wasm_dir().join(&file).is_file() {
            err.get_or_insert_with(|| {
                format!("{uri}: no module target/wasm/{file} (run scripts/build-wasm.sh)")
            });
            return;
        }
        code.remove("remote");
        code.insert("local".into(), json!({ "filename": local }));
        done.push((uri, sha, local));
    });
    if let Some(e) = err {
        bail!(e);
    }
    Ok(done)
}

// ---------------------------------------------------------------------------------------------
// Envoy

/// `envoy --mode validate` of a bootstrap (written to `dir/name.yaml`), from the repository
/// root.
pub fn envoy_validate(dir: &TestDir, name: &str, bootstrap: &Value) -> Result<PathBuf> {
    let path = dir.write(format!("{name}.yaml"), serde_yaml_ng::to_string(bootstrap)?)?;
    validate(&path)?;
    Ok(path)
}

/// Runs a bootstrap for real, long enough for every listener to be ready, which requires every
/// Wasm plugin's `on_configure` to accept its configuration (Envoy exits, or never becomes
/// ready, when one refuses). What is changed for the run only, so that it works on a test
/// machine: the admin and every listener bind free loopback ports, and STRICT_DNS/LOGICAL_DNS
/// clusters (names that only resolve inside a mesh or an overlay network) become STATIC
/// 127.0.0.1 clusters. Returns Envoy's log.
pub fn envoy_configure_run(dir: &TestDir, name: &str, bootstrap: &Value) -> Result<String> {
    let mut b = bootstrap.clone();
    let admin_port = free_port()?;
    b["admin"] = json!({ "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } });
    for l in b["static_resources"]["listeners"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        l["address"] =
            json!({ "socket_address": { "address": "127.0.0.1", "port_value": free_port()? } });
    }
    for c in b["static_resources"]["clusters"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let t = c["type"].as_str().unwrap_or_default();
        if t == "STRICT_DNS" || t == "LOGICAL_DNS" {
            c["type"] = json!("STATIC");
            let cname = c["name"].clone();
            c["load_assignment"] = json!({
                "cluster_name": cname,
                "endpoints": [ { "lb_endpoints": [ { "endpoint": { "address": {
                    "socket_address": { "address": "127.0.0.1", "port_value": free_port()? } } } } ] } ],
            });
            if let Some(o) = c.as_object_mut() {
                o.remove("dns_lookup_family");
                o.remove("respect_dns_ttl");
                o.remove("dns_refresh_rate");
            }
        }
    }
    if b["node"].is_null() {
        b["node"] = json!({ "id": format!("{name}-run"), "cluster": "geomesh-test" });
    }
    let path = dir.write(format!("{name}-run.yaml"), serde_yaml_ng::to_string(&b)?)?;
    let opts = EnvoyOptions {
        ready_timeout: std::time::Duration::from_secs(40),
        ..EnvoyOptions::default()
    };
    let mut envoy = Envoy::start_file(dir, &format!("{name}-run"), &path, admin_port, &opts)
        .with_context(|| format!("Envoy did not become ready with {}", path.display()))?;
    // Ready is not enough: a filter config delivered by ECDS that the filter refuses is logged
    // and rejected while the listener still becomes ready (without the filter: connections are
    // then refused).
    let failure = envoy.wasm_failure();
    let log = envoy.log();
    if failure.is_some() {
        // Expected by a test that feeds a bad configuration; a panic or a trap still fails the
        // test when `envoy` is dropped.
        envoy.tolerate_wasm_log("Failed to configure base Wasm plugin");
    }
    envoy.stop()?;
    if let Some(line) = failure {
        bail!(
            "Envoy ran {} but a Wasm plugin failed: {line}\n{log}",
            path.display()
        );
    }
    for bad in ["failed to load", "config update rejected", "[critical]"] {
        if log.contains(bad) {
            bail!("Envoy ran {} but logged {bad:?}:\n{log}", path.display());
        }
    }
    Ok(log)
}

/// The Envoy binary's version line (for messages).
pub fn envoy_version() -> String {
    envoy_bin()
        .ok()
        .and_then(|b| Command::new(b).arg("--version").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// sha256 of a file, lowercase hex.
pub fn sha256_hex(path: &Path) -> Result<String> {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let d = sha2::Sha256::digest(&bytes);
    Ok(d.iter().map(|b| format!("{b:02x}")).collect())
}
