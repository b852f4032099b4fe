//! The filters as OCI images (`make oci`, tools/wasm-oci): each built module packed into an OCI
//! image layout, then read back two ways: by our reader (index, manifest, media types, every
//! blob against its digest, `plugin.wasm` out of the tar+gzip layer) and by skopeo
//! (containers/image, an independent implementation: `skopeo inspect --raw`, and a
//! `skopeo copy --preserve-digests` to another layout, as a push to a registry would copy it).

use std::process::Command;

use geomesh_integration::paths::{repo_root, wasm_dir};
use geomesh_integration::TestDir;
use geomesh_wasm_oci::{build, read, sha256_digest, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, VARIANT_ANNOTATION};
use serde_json::Value;

const MODULES: &[(&str, &str)] = &[
    ("geomesh_filter_redis.wasm", "geomesh-filter-redis"),
    ("geomesh_filter_scope.wasm", "geomesh-filter-scope"),
];

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is not installed (scripts/bootstrap.sh installs it)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn each_module_as_an_oci_layout_reads_back_with_istios_media_types_and_digest() {
    let dir = TestDir::new("oci").unwrap();
    for (file, name) in MODULES {
        let module = std::fs::read(wasm_dir().join(file)).expect("run scripts/build-wasm.sh");
        let layout = dir.join(name);
        let built = build(&module, &layout, "0.1.0").unwrap();
        assert_eq!(built.module_sha256, sha256_digest(&module));

        // Our reader.
        let r = read(&layout, Some("0.1.0")).unwrap();
        assert_eq!(r.module, module, "{name}: plugin.wasm differs from {file}");
        assert_eq!(r.manifest_digest, built.manifest_digest);
        let layer = &r.manifest.layers()[0];
        assert_eq!(layer.media_type().to_string(), LAYER_MEDIA_TYPE);

        // skopeo: the raw manifest hashes to the digest we pin; media types and the variant.
        let reference = format!("oci:{}:0.1.0", layout.display());
        let raw = skopeo(&["inspect", "--raw", &reference]);
        assert_eq!(sha256_digest(&raw), built.manifest_digest, "{name}: skopeo's manifest digest");
        let m: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(m["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(m["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(m["layers"][0]["digest"], built.layer_digest);
        assert_eq!(m["annotations"][VARIANT_ANNOTATION], "compat");
        let inspect: Value = serde_json::from_slice(&skopeo(&["inspect", &reference])).unwrap();
        assert_eq!(inspect["Digest"], built.manifest_digest);

        // A copy as a push makes it keeps the digest, and still reads back.
        let copy = dir.join(format!("{name}-copy"));
        let dest = format!("oci:{}:0.1.0", copy.display());
        skopeo(&["copy", "-q", "--preserve-digests", &reference, &dest]);
        let again = read(&copy, Some("0.1.0")).unwrap();
        assert_eq!(again.manifest_digest, built.manifest_digest);
        assert_eq!(again.module, module);
        eprintln!("{name}: {} (layer {}, module {})", built.manifest_digest, built.layer_digest, built.module_sha256);
    }
}

#[test]
fn a_tampered_layout_is_refused_by_both_readers() {
    let dir = TestDir::new("oci-bad").unwrap();
    let module = std::fs::read(wasm_dir().join(MODULES[0].0)).expect("run scripts/build-wasm.sh");
    let layout = dir.join("x");
    let built = build(&module, &layout, "t").unwrap();
    let blob = layout
        .join("blobs/sha256")
        .join(built.layer_digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&blob, bytes).unwrap();
    let e = format!("{:#}", read(&layout, None).unwrap_err());
    assert!(e.contains(&built.layer_digest), "{e}");
    let out = Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{}:t", layout.display()))
        .arg(format!("oci:{}:t", dir.join("y").display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "skopeo copied a layout whose layer does not match its digest");
    // The documented push command is the one the Makefile and pin-wasm.sh print.
    let pin = std::fs::read_to_string(repo_root().join("istio/pin-wasm.sh")).unwrap();
    assert!(pin.contains("skopeo copy --preserve-digests oci:target/oci/geomesh-filter-redis"));
}
