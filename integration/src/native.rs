//! The native shell (`native/`, an Envoy dynamic module) in the harness: where its `.so` is,
//! the Envoy network filter that loads it, and the bridge configuration it starts in-process.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::envoy::EnvoyOptions;
use crate::paths::bin_dirs;
use crate::process::TestDir;

/// Envoy looks for `lib<name>.so` in this directory (then the loader's paths).
pub const SEARCH_PATH_ENV: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";
/// The module's name (`libgeomesh_native.so`).
pub const MODULE: &str = "geomesh_native";
const FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.dynamic_modules.v3.DynamicModuleNetworkFilter";

/// The directory holding `libgeomesh_native.so`, in the same places as the native binaries
/// (`make build` builds it).
pub fn module_dir() -> Result<PathBuf> {
    let dirs = bin_dirs();
    for d in &dirs {
        if d.join(format!("lib{MODULE}.so")).is_file() {
            return Ok(d.clone());
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "lib{MODULE}.so not found in [{}]: build it with `cargo build -p geomesh-native` (same profile \
         and CARGO_TARGET_DIR as this run; `make build` builds it)",
        searched.join(", ")
    )
}

/// `opts` with Envoy told where the module is.
pub fn with_module(mut opts: EnvoyOptions) -> Result<EnvoyOptions> {
    opts.env.push((SEARCH_PATH_ENV.to_owned(), module_dir()?.display().to_string()));
    Ok(opts)
}

/// Writes `<dir>/<name>.yaml`, a bridge configuration for the module's in-process bridge: the
/// `clusters` (name, redis port) of this site, its socket listener on a free loopback port.
pub fn bridge_config(dir: &TestDir, name: &str, clusters: &[(&str, u16)]) -> Result<PathBuf> {
    let mut yaml = "site: local\nlisten: 127.0.0.1:0\nclusters:\n".to_owned();
    for (c, port) in clusters {
        yaml.push_str(&format!("  {c}: {{ address: 127.0.0.1:{port} }}\n"));
    }
    dir.write(format!("{name}.yaml"), yaml)
}

/// The terminal network filter that runs the native shell with the geomesh configuration
/// `filter` (YAML, as the Wasm filter's) over the bridge of `bridge_config`.
pub fn network_filter(bridge_config: &Path, filter: &str) -> Value {
    json!({
        "name": "envoy.filters.network.dynamic_modules",
        "typed_config": {
            "@type": FILTER_TYPE,
            "dynamic_module_config": { "name": MODULE, "do_not_close": true },
            "filter_name": "redis",
            "terminal_filter": true,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.Struct",
                "value": { "bridge_config": bridge_config.display().to_string(), "filter": filter },
            },
        },
    })
}
