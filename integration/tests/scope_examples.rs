//! `examples/scope/` is exactly what the generator (`geomesh_integration::scope::ScopePlan::fixed`)
//! writes, so the configs tests run and the configs users read cannot drift apart.
//! `GEOMESH_UPDATE_EXAMPLES=1` rewrites the files instead of comparing.

use geomesh_integration::paths::{repo_root, sync_generated};
use geomesh_integration::scope::{ScopePlan, EXAMPLE_DIR};

#[test]
fn examples_scope_match_the_generator() {
    let dir = repo_root().join(EXAMPLE_DIR);
    let stale = sync_generated(&dir, ScopePlan::fixed().example_files()).unwrap();
    assert!(
        stale.is_empty(),
        "examples/scope is out of date (regenerate with GEOMESH_UPDATE_EXAMPLES=1 cargo test -p geomesh-integration --test scope_examples):\n{}",
        stale.join("\n")
    );
}
