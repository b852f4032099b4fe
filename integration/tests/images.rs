//! The container images of the bridge and the agent, checked without a Docker engine (none on
//! the test machine): both Dockerfiles pass hadolint (the Dockerfile linter, installed by
//! scripts/bootstrap.sh), are multi-stage, run a distroless non-root image, and copy the binary
//! `cargo build --release -p PACKAGE --bin BIN` makes, BIN being a binary target of PACKAGE that
//! `make demo` builds too; one image name per binary everywhere (Istio, Swarm, Makefile).

use std::path::PathBuf;
use std::process::Command;

use geomesh_integration::paths::repo_root;
use geomesh_integration::TestDir;
use serde_json::Value;

const IMAGES: &[(&str, &str, &str)] = &[
    ("bridge/Dockerfile", "geomesh-bridge", "geomesh-bridge"),
    ("agent/Dockerfile", "geomesh-agent", "geomesh-agent"),
];
const REPO: &str = "ghcr.io/geomesh";

fn hadolint() -> PathBuf {
    let p = repo_root().join(".cache/hadolint/bin/hadolint");
    assert!(p.is_file(), "{} missing: run scripts/bootstrap.sh", p.display());
    p
}

/// hadolint's findings on a Dockerfile (empty: clean).
fn lint(path: &std::path::Path) -> String {
    let out = Command::new(hadolint()).arg("--no-color").arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert!(text.trim().is_empty(), "hadolint succeeded but said: {text}");
    } else {
        assert!(!text.trim().is_empty(), "hadolint failed silently on {}", path.display());
    }
    text
}

/// Dockerfile instructions, continuation lines joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head.trim());
            cur.push(' ');
        } else {
            cur.push_str(l.trim());
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

#[test]
fn the_dockerfiles_pass_hadolint_and_a_bad_one_does_not() {
    for (file, _, _) in IMAGES {
        let findings = lint(&repo_root().join(file));
        assert!(findings.trim().is_empty(), "{file}: {findings}");
    }
    let dir = TestDir::new("hadolint").unwrap();
    let bad = dir
        .write("Dockerfile", "FROM debian:latest\nRUN apt-get update && apt-get install curl\nCMD curl x\n")
        .unwrap();
    let findings = lint(&bad);
    for rule in ["DL3007", "DL3008", "DL3015"] {
        assert!(findings.contains(rule), "hadolint missed {rule}: {findings}");
    }
}

#[test]
fn the_images_copy_the_binaries_make_builds_and_run_them_unprivileged() {
    let meta = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--locked", "--offline", "--format-version", "1", "--no-deps"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(meta.status.success(), "{}", String::from_utf8_lossy(&meta.stderr));
    let meta: Value = serde_json::from_slice(&meta.stdout).unwrap();
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).unwrap();
    assert!(makefile.contains("$(CARGO) build --workspace --bins --release"), "make demo builds every binary in release");
    for (file, package, bin) in IMAGES {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let ins = instructions(&text);
        let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
        assert!(froms.len() >= 2, "{file}: not multi-stage: {froms:?}");
        let runtime = froms.last().unwrap();
        assert!(
            runtime.contains("gcr.io/distroless/") && runtime.contains(":nonroot"),
            "{file}: the runtime stage is not distroless nonroot: {runtime}"
        );
        let user = ins.iter().rev().find(|i| i.starts_with("USER ")).expect("USER");
        assert!(!user.contains("root") && !user.contains(" 0"), "{file}: {user}");
        // The build: cargo build --release --locked -p PACKAGE --bin BIN, BIN a bin of PACKAGE.
        let build = ins
            .iter()
            .find(|i| i.contains("cargo build"))
            .unwrap_or_else(|| panic!("{file}: no cargo build"));
        assert!(
            build.contains(&format!("cargo build --release --locked -p {package} --bin {bin}")),
            "{file}: {build}"
        );
        let pkg = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *package)
            .unwrap_or_else(|| panic!("no package {package}"));
        assert!(
            pkg["targets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == *bin && t["kind"][0] == "bin"),
            "{package} has no binary {bin}"
        );
        assert!(build.contains(&format!("target/release/{bin} /out/{bin}")), "{file}: {build}");
        assert!(
            ins.iter().any(|i| i.starts_with("COPY --from=build") && i.contains(&format!("/out/{bin} /usr/local/bin/{bin}"))),
            "{file}: the runtime stage does not copy /out/{bin}"
        );
        assert!(ins.iter().any(|i| *i == format!("ENTRYPOINT [\"{bin}\"]")), "{file}: ENTRYPOINT");
        let health = ins.iter().find(|i| i.starts_with("HEALTHCHECK")).expect("HEALTHCHECK");
        assert!(health.contains(&format!("CMD [\"{bin}\", \"--probe\"")), "{file}: {health}");
        // --probe exists on the real binary.
        let help = Command::new(geomesh_integration::paths::native_bin(bin).unwrap())
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in ["--probe", "--check", "--log-format", "--config"] {
            assert!(help.contains(flag), "{bin} --help lacks {flag}");
        }
    }
}

#[test]
fn one_image_name_per_binary_everywhere() {
    let mut found = 0;
    let mut bad = Vec::new();
    for dir in ["istio", "examples/swarm"] {
        for e in std::fs::read_dir(repo_root().join(dir)).unwrap().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for l in text.lines().filter(|l| l.trim_start().starts_with("image:")) {
                for (_, _, bin) in IMAGES {
                    if l.contains(&format!("{bin}:")) {
                        found += 1;
                        if !l.contains(&format!("{REPO}/{bin}:0.1.0")) {
                            bad.push(format!("{}: {l}", e.path().display()));
                        }
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "other image names: {bad:?}");
    assert!(found >= 3, "only {found} image references checked");
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).unwrap();
    assert!(makefile.contains(&format!("IMAGE_REPO ?= {REPO}")));
}
