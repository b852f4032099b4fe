//! `examples/scope/` is exactly what the generator (`geomesh_integration::scope::ScopePlan::fixed`)
//! writes, so the configs tests run and the configs users read cannot drift apart.
//! `GEOMESH_UPDATE_EXAMPLES=1` rewrites the files instead of comparing.

use geomesh_integration::paths::repo_root;
use geomesh_integration::scope::{ScopePlan, EXAMPLE_DIR};

#[test]
fn examples_scope_match_the_generator() {
    let dir = repo_root().join(EXAMPLE_DIR);
    let update = std::env::var_os("GEOMESH_UPDATE_EXAMPLES").is_some_and(|v| v != "0");
    let mut stale = Vec::new();
    for (name, text) in ScopePlan::fixed().example_files() {
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == text => {}
            Ok(_) => stale.push(format!("{} differs", path.display())),
            Err(e) => stale.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "examples/scope is out of date (regenerate with GEOMESH_UPDATE_EXAMPLES=1 cargo test -p geomesh-integration --test scope_examples):\n{}",
        stale.join("\n")
    );
}
