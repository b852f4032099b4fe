//! The text a platform engineer follows: istio/README.md, the manifests' comments, pin-wasm.sh
//! and the repository's documentation. Each check runs on the files as they are, and on the
//! text that was wrong before (kept here), which it must reject: a check that cannot fail is no
//! check.

use std::collections::BTreeSet;

use geomesh_integration::paths::repo_root;

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn istio_files() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(repo_root().join("istio"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".md") || n.ends_with(".sh"))
        .map(|n| {
            let rel = format!("istio/{n}");
            let text = read(&rel);
            (rel, text)
        })
        .collect();
    out.sort();
    out
}

/// Shell lines (commands, with `\` continuations joined) of a text.
fn command_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        let l = l.trim_start_matches('#').trim();
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(l);
        out.push(std::mem::take(&mut cur));
    }
    out
}

/// A module ConfigMap (~550 KB) applied client-side fails: the last-applied annotation holds
/// at most 256 KiB. Every `kubectl apply` fed by `create configmap` must be server-side.
fn client_side_configmap_applies(text: &str) -> Vec<String> {
    command_lines(text)
        .into_iter()
        .filter(|l| l.contains("create configmap") && l.contains("| kubectl apply") && !l.contains("--server-side"))
        .collect()
}

/// `oras push` commands (a command line, or a `code span` of prose) without Istio's layer
/// media type make an image istio-agent rejects.
fn bad_oras_pushes(text: &str) -> Vec<String> {
    command_lines(text)
        .into_iter()
        .flat_map(|l| {
            if l.starts_with("oras push") {
                return vec![l];
            }
            l.split('`')
                .skip(1)
                .step_by(2)
                .filter(|c| c.contains("oras push"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.contains(":application/vnd.module.wasm.content.layer.v1+wasm"))
        .collect()
}

/// `kubectl label deploy/...` labels the Deployment object, not its pods: a pod selector
/// (WasmPlugin, EnvoyFilter workloadSelector) never matches.
fn deployment_labels(text: &str) -> Vec<String> {
    command_lines(text)
        .into_iter()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.windows(3)
                .any(|x| x[0] == "kubectl" && x[1] == "label" && (x[2].starts_with("deploy") || x[2] == "deployment"))
        })
        .collect()
}

/// `NN-` references in a text that name no file of istio/.
fn dangling_references(text: &str, files: &BTreeSet<String>) -> BTreeSet<String> {
    let b = text.as_bytes();
    let mut out = BTreeSet::new();
    for i in 0..b.len().saturating_sub(2) {
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if boundary && b[i].is_ascii_digit() && b[i + 1].is_ascii_digit() && b[i + 2] == b'-' {
            let nn = &text[i..i + 3];
            if !files.iter().any(|f| f.starts_with(nn)) {
                out.insert(nn.to_owned());
            }
        }
    }
    out
}

/// A version `X.Y` as a comparable pair.
fn ver(s: &str) -> (u32, u32) {
    let mut it = s.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The first `NAME >= X.Y` of the `# Requires:` paragraph of a manifest.
fn required(text: &str, name: &str) -> Option<(u32, u32)> {
    let para: String = text
        .lines()
        .skip_while(|l| !l.starts_with("# Requires:"))
        .take_while(|l| l.starts_with('#') && l.trim() != "#")
        .collect::<Vec<_>>()
        .join(" ");
    let at = para.find(&format!("{name} >= "))? + name.len() + 4;
    let v: String = para[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    Some(ver(v.trim_end_matches('.')))
}

/// What a manifest needs, from what it uses (Istio and Envoy release notes):
/// networking.istio.io/v1 from Istio 1.22; WasmPlugin `type: NETWORK` from 1.20;
/// TrafficExtension from 1.30; the Wasm filter's `failure_policy` from Envoy 1.33 (first shipped
/// by Istio 1.25).
fn needs(text: &str) -> ((u32, u32), Option<(u32, u32)>) {
    let mut istio = (1, 20);
    let mut envoy = None;
    if text.contains("apiVersion: networking.istio.io/v1\n") {
        istio = istio.max((1, 22));
    }
    if text.contains("kind: TrafficExtension") {
        istio = istio.max((1, 30));
    }
    if text.lines().any(|l| l.trim_start().starts_with("failure_policy:")) {
        istio = istio.max((1, 25));
        envoy = Some((1, 33));
    }
    (istio, envoy)
}

fn version_problems(file: &str, text: &str) -> Vec<String> {
    let mut p = Vec::new();
    let (istio, envoy) = needs(text);
    match required(text, "Istio") {
        None => p.push(format!("{file}: no `# Requires: ... Istio >= X.Y` line")),
        Some(v) if v < istio => p.push(format!("{file}: says Istio >= {v:?}, uses what needs {istio:?}")),
        _ => {}
    }
    if let Some(e) = envoy {
        match required(text, "Envoy") {
            Some(v) if v >= e => {}
            other => p.push(format!("{file}: needs Envoy >= {e:?} (failure_policy), says {other:?}")),
        }
    }
    p
}

/// Sentences about the deny-all filter that istio-agent installs on a failed download must say
/// it is Istio >= 1.25 (1.20-1.24 NACK instead).
fn unversioned_deny_all(text: &str) -> Vec<String> {
    let flat = text.replace('\n', " ");
    flat.split(". ")
        .filter(|s| s.contains("deny-all") && !s.contains("1.25"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn module_configmaps_are_applied_server_side() {
    for (f, text) in istio_files() {
        let bad = client_side_configmap_applies(&text);
        assert!(bad.is_empty(), "{f}: client-side apply of a module ConfigMap: {bad:?}");
    }
    assert!(read("istio/pin-wasm.sh").contains("kubectl apply --server-side"));
    let old = "kubectl -n geomesh create configmap geomesh-wasm-redis --from-file=target/wasm/geomesh_filter_redis.wasm --dry-run=client -o yaml | kubectl apply -f -";
    assert_eq!(client_side_configmap_applies(old).len(), 1);
}

#[test]
fn oras_pushes_carry_istios_media_type() {
    for (f, text) in istio_files().into_iter().chain([("README.md".to_owned(), read("README.md"))]) {
        let bad = bad_oras_pushes(&text);
        assert!(bad.is_empty(), "{f}: oras push without Istio's layer media type: {bad:?}");
    }
    let old = "an image (`oras push REGISTRY/geomesh-filter-redis:0.1.0 geomesh_filter_redis.wasm`), use";
    assert_eq!(bad_oras_pushes(old).len(), 1);
}

#[test]
fn pods_are_labelled_through_the_pod_template() {
    for (f, text) in istio_files() {
        let bad = deployment_labels(&text);
        assert!(bad.is_empty(), "{f}: labels a Deployment, not its pods: {bad:?}");
    }
    assert!(read("istio/README.md").contains("\"template\":{\"metadata\":{\"labels\":{\"tier\":\"redis-routing\"}}}"));
    let old = "kubectl label deploy/my-redis-client tier=redis-routing   # on the pod template";
    assert_eq!(deployment_labels(old).len(), 1);
}

#[test]
fn every_manifest_number_named_exists() {
    let files: BTreeSet<String> = istio_files().into_iter().map(|(f, _)| f.trim_start_matches("istio/").to_owned()).collect();
    for (f, text) in istio_files() {
        let bad = dangling_references(&text, &files);
        assert!(bad.is_empty(), "{f} names {bad:?}, which istio/ does not have");
    }
    // The old header of 20-wasm-server.yaml named 43-, which did not exist then.
    let then: BTreeSet<String> = files.iter().filter(|f| !f.starts_with("43-")).cloned().collect();
    let old = "# Who downloads: with ECDS (31-, 42-) and WasmPlugin (32-, 43-) it is istio-agent";
    assert!(dangling_references(old, &then).contains("43-"));
}

#[test]
fn manifests_state_the_versions_they_need() {
    let mut problems = Vec::new();
    for (f, text) in istio_files().into_iter().filter(|(f, _)| f.ends_with(".yaml")) {
        problems.extend(version_problems(&f, &text));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for (f, text) in istio_files() {
        let bad = unversioned_deny_all(&text);
        assert!(bad.is_empty(), "{f}: deny-all without its Istio version: {bad:?}");
    }
    // The old texts: a WasmPlugin said to need Istio 1.20 with a v1 VirtualService in the same
    // file, an EnvoyFilter with failure_policy and no Envoy version, an unversioned deny-all.
    let old_32 = "# (Istio >= 1.20: WasmPlugin `type: NETWORK`)\nkind: WasmPlugin\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n";
    assert!(!version_problems("old-32", old_32).is_empty());
    let old_30 = "# Requires: Istio >= 1.20\napiVersion: networking.istio.io/v1alpha3\n              failure_policy: FAIL_CLOSED\n";
    assert!(version_problems("old-30", old_30).join(" ").contains("Envoy"));
    let old_readme = "the file and hands Envoy a local path; if it cannot, it installs a deny-all filter instead\n(FAIL_CLOSE), so no byte passes unrouted. In 30- the listener";
    assert_eq!(unversioned_deny_all(old_readme).len(), 1);
    // TrafficExtension's arrival and the translation of WasmPlugins are documented.
    let readme = read("istio/README.md");
    assert!(readme.contains("TrafficExtension") && readme.contains("1.30"), "istio/README.md");
}

#[test]
fn documentation_has_no_machine_paths_or_working_notes() {
    let out = std::process::Command::new("git")
        .args(["ls-files", "*.md"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    let files = String::from_utf8(out.stdout).unwrap();
    assert!(files.lines().count() > 10, "git ls-files found {files:?}");
    let mut bad = Vec::new();
    for f in files.lines() {
        let text = read(f);
        for needle in ["/work/main", "/work/wt/", "/work/shared", "CARGO_TARGET_DIR=/work"] {
            if text.contains(needle) {
                bad.push(format!("{f}: {needle}"));
            }
        }
    }
    assert!(bad.is_empty(), "machine paths in user documentation: {bad:?}");
    assert!(!repo_root().join("docs/HELPERS.md").exists(), "docs/HELPERS.md: internal working notes");
}

#[test]
fn the_license_file_is_the_one_cargo_declares() {
    let cargo = read("Cargo.toml");
    assert!(cargo.contains("license = \"Apache-2.0\""), "workspace license");
    let license = read("LICENSE");
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
    assert!(license.contains("END OF TERMS AND CONDITIONS"), "the full text");
}
