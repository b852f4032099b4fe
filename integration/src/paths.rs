//! Where things are: the repository, Envoy, the built `.wasm` filters, the workspace's native
//! binaries and the tools `scripts/bootstrap.sh` installs under `.cache/`.
//!
//! Nothing here builds anything. When a file is missing the error names the command that
//! produces it (`make build` does all of them).

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The repository root: `GEOMESH_ROOT` if set, else the parent of this crate's manifest dir.
pub fn repo_root() -> PathBuf {
    if let Some(r) = env::var_os("GEOMESH_ROOT") {
        return PathBuf::from(r);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The Envoy binary: `GEOMESH_ENVOY` if set, else `<root>/.cache/envoy/bin/envoy`.
pub fn envoy_bin() -> Result<PathBuf> {
    if let Some(p) = env::var_os("GEOMESH_ENVOY") {
        let p = PathBuf::from(p);
        if !is_executable(&p) {
            bail!("GEOMESH_ENVOY={} is not an executable file", p.display());
        }
        return Ok(p);
    }
    let p = repo_root().join(".cache/envoy/bin/envoy");
    if !is_executable(&p) {
        bail!(
            "Envoy not found at {}: run `scripts/bootstrap.sh` (or set GEOMESH_ENVOY)",
            p.display()
        );
    }
    Ok(p)
}

/// Directory holding the built filters: `<root>/target/wasm` (see `scripts/build-wasm.sh`).
pub fn wasm_dir() -> PathBuf {
    repo_root().join("target/wasm")
}

/// A built filter by lib name, with or without `.wasm` and with `-` or `_`:
/// `wasm_path("geomesh-redis-filter")` -> `<root>/target/wasm/geomesh_redis_filter.wasm`.
pub fn wasm_path(name: &str) -> Result<PathBuf> {
    let stem = name.strip_suffix(".wasm").unwrap_or(name).replace('-', "_");
    let p = wasm_dir().join(format!("{stem}.wasm"));
    if !p.is_file() {
        bail!(
            "{} not found: run `scripts/build-wasm.sh` (or `make build`)",
            p.display()
        );
    }
    Ok(p)
}

/// Every `.wasm` currently in `target/wasm`, sorted.
pub fn built_wasm() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(wasm_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    v.sort();
    v
}

/// Directories searched for the workspace's native binaries, in order:
/// 1. `GEOMESH_BIN_DIR` if set;
/// 2. the profile dir of the running executable: a test binary lives in
///    `<target-dir>/<profile>/deps/`, a `cargo run` binary in `<target-dir>/<profile>/`; the
///    workspace binaries of the same build (same `CARGO_TARGET_DIR`, same profile) sit in
///    `<target-dir>/<profile>/`;
/// 3. `<root>/target/debug` and `<root>/target/release`.
pub fn bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = env::var_os("GEOMESH_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = env::current_exe() {
        if let Some(mut d) = exe.parent().map(Path::to_path_buf) {
            if d.file_name().is_some_and(|n| n == "deps") {
                d.pop();
            }
            dirs.push(d);
        }
    }
    let root = repo_root();
    dirs.push(root.join("target/debug"));
    dirs.push(root.join("target/release"));
    dirs.dedup();
    dirs
}

/// A native binary of the workspace (`geomesh-bridge`, `geomesh-agent`, ...), see [`bin_dirs`].
/// The harness never builds it: `make build` (or `cargo build --workspace --bins` with the same
/// profile and `CARGO_TARGET_DIR` as the tests) does.
pub fn native_bin(name: &str) -> Result<PathBuf> {
    let dirs = bin_dirs();
    for d in &dirs {
        let p = d.join(name);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "binary `{name}` not found in [{}]: build it first with `cargo build --bins -p {name}` \
         using the same profile and CARGO_TARGET_DIR as this run (`make build` builds everything), \
         or set GEOMESH_BIN_DIR",
        searched.join(", ")
    )
}

/// json-server, installed by `scripts/bootstrap.sh` into `<root>/.cache/node`.
pub fn json_server_bin() -> Result<PathBuf> {
    let p = repo_root().join(".cache/node/node_modules/.bin/json-server");
    if !is_executable(&p) {
        bail!(
            "json-server not found at {}: run `scripts/bootstrap.sh`",
            p.display()
        );
    }
    Ok(p)
}

/// tansu (a Kafka-compatible broker), built by `scripts/bootstrap.sh` into
/// `<root>/.cache/tansu/bin/tansu`.
pub fn tansu_bin() -> Result<PathBuf> {
    let p = repo_root().join(".cache/tansu/bin/tansu");
    if !is_executable(&p) {
        bail!(
            "tansu not found at {}: run `scripts/bootstrap.sh`",
            p.display()
        );
    }
    Ok(p)
}

/// The directory holding the Python Kafka clients (confluent-kafka, kafka-python), installed by
/// `scripts/bootstrap.sh` with `pip install --target <root>/.cache/kafka-py`: put it on
/// `PYTHONPATH`.
pub fn kafka_py_path() -> Result<PathBuf> {
    let p = repo_root().join(".cache/kafka-py");
    if !(p.join("confluent_kafka").is_dir() && p.join("kafka").is_dir()) {
        bail!(
            "confluent-kafka / kafka-python not found in {}: run `scripts/bootstrap.sh`",
            p.display()
        );
    }
    Ok(p)
}

/// A program from PATH (redis-server, mosquitto, influxd, ...), with an error naming the
/// bootstrap script when it is missing.
pub fn system_bin(name: &str) -> Result<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    for d in env::split_paths(&path) {
        let p = d.join(name);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    // Debian puts daemons such as mosquitto in /usr/sbin, which a non-root PATH may lack.
    for d in ["/usr/sbin", "/sbin"] {
        let p = Path::new(d).join(name);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    bail!("`{name}` not found on PATH: run `scripts/bootstrap.sh`")
}

/// Keeps generated files (`examples/scope/`, `examples/replication/`) equal to their generator:
/// with `GEOMESH_UPDATE_EXAMPLES` set (and not `0`) writes every (file name, contents) of `files`
/// into `dir` and returns nothing; otherwise compares each with the file on disk and returns one
/// line per file that differs or cannot be read.
pub fn sync_generated(dir: &Path, files: Vec<(String, String)>) -> Result<Vec<String>> {
    let update = env::var_os("GEOMESH_UPDATE_EXAMPLES").is_some_and(|v| v != "0");
    let mut stale = Vec::new();
    for (name, text) in files {
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            std::fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == text => {}
            Ok(_) => stale.push(format!("{} differs", path.display())),
            Err(e) => stale.push(format!("{}: {e}", path.display())),
        }
    }
    Ok(stale)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
