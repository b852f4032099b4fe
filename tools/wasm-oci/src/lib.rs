//! A geomesh `.wasm` filter as an OCI image, in the format Istio's Wasm fetcher reads
//! (istio-agent `pkg/wasm/imagefetcher.go`, the *compat* variant of the Wasm image
//! specification, github.com/solo-io/wasm `spec/spec-compat.md`):
//!
//! * one layer of media type `application/vnd.oci.image.layer.v1.tar+gzip`, a tar holding
//!   `plugin.wasm` (the module, byte for byte);
//! * a standard image configuration (`application/vnd.oci.image.config.v1+json`), whose
//!   `rootfs.diff_ids` is the digest of the uncompressed tar;
//! * the manifest annotation `module.wasm.image/variant: compat`.
//!
//! Why this variant and not the *oci* one (a raw layer of media type
//! `application/vnd.module.wasm.content.layer.v1+wasm`): istio-agent accepts the raw layer only
//! in a manifest of exactly two layers (module and runtime configuration), which a plain
//! `oras push REG/x:tag file.wasm` does not make; and standard media types pass every registry
//! and every copying tool (skopeo, crane, docker) unchanged, so the digest a manifest pins is
//! the digest the registry serves.
//!
//! [`build`] writes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`;
//! image-spec `image-layout.md`) that `skopeo copy --preserve-digests oci:DIR:TAG
//! docker://REGISTRY/NAME:TAG` pushes as is. The bytes are deterministic (tar and gzip
//! timestamps zero, fixed modes and owners): the same module gives the same digest, which is
//! what `oci://REGISTRY/NAME@sha256:DIGEST` in a WasmPlugin pins. [`read`] reads a layout back
//! the way a fetcher does: index, manifest, media types, every blob against its digest, the
//! module out of the layer.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest,
    ImageManifestBuilder, MediaType, OciLayoutBuilder,
};
use sha2::Digest as _;

/// The file istio-agent looks for in the layer.
pub const WASM_FILE: &str = "plugin.wasm";
/// The layer's media type (standard OCI tar+gzip).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The configuration's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The annotation that marks a compat-variant Wasm image.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// Its value.
pub const VARIANT: &str = "compat";
/// The annotation of `index.json` that names a manifest (the tag in `oci:DIR:TAG`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The image layout version written to `oci-layout`.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// Largest module read back (the filters are < 1 MiB; scripts/build-wasm.sh fails above).
pub const MAX_MODULE_BYTES: u64 = 64 << 20;

/// What [`build`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The layout directory.
    pub dir: PathBuf,
    /// The tag (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// `sha256:...` of the manifest: what `oci://REGISTRY/NAME@sha256:...` and a WasmPlugin's
    /// `sha256` pin.
    pub manifest_digest: String,
    /// `sha256:...` of the gzipped layer.
    pub layer_digest: String,
    /// `sha256:...` of the module itself (what the HTTP path pins).
    pub module_sha256: String,
}

/// What [`read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub manifest_digest: String,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    /// The module, out of the layer.
    pub module: Vec<u8>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The layer: a tar with `plugin.wasm` (mode 0644, owner 0:0, mtime 0), gzipped with mtime 0.
/// Returns (gzipped, uncompressed tar).
fn layer(module: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path(WASM_FILE)?;
    h.set_size(module.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, module)?;
    let plain = tar.into_inner()?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&plain)?;
    Ok((gz.finish()?, plain))
}

fn descriptor(media_type: MediaType, bytes: &[u8], annotations: Option<HashMap<String, String>>) -> Result<Descriptor> {
    let digest: Digest = sha256_digest(bytes).parse()?;
    let mut b = DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(bytes.len() as u64);
    if let Some(a) = annotations {
        b = b.annotations(a);
    }
    Ok(b.build()?)
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("digest `{digest}` is not sha256"))?;
    ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "digest `{digest}` is not 64 lowercase hex digits"
    );
    Ok(dir.join("blobs").join("sha256").join(hex))
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Result<String> {
    let digest = sha256_digest(bytes);
    let path = blob_path(dir, &digest)?;
    std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
    Ok(digest)
}

/// Writes the OCI image layout of `module` under `dir` (replacing what was there), tagged `tag`.
pub fn build(module: &[u8], dir: &Path, tag: &str) -> Result<Built> {
    ensure!(module.starts_with(b"\0asm"), "not a WebAssembly module (no \\0asm header)");
    ensure!(!tag.is_empty() && !tag.contains(['/', ':', '@']), "tag `{tag}`: no /, : or @");
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("blobs").join("sha256"))?;
    let (gz, plain) = layer(module)?;
    let config = serde_json::json!({
        // Docker's platform for Wasm images (`wasi/wasm`); nothing selects on it for a single
        // manifest.
        "architecture": "wasm",
        "os": "wasi",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&plain)] },
    });
    let config = serde_json::to_vec(&config)?;
    let layer_desc = descriptor(MediaType::ImageLayerGzip, &gz, None)?;
    let config_desc = descriptor(MediaType::ImageConfig, &config, None)?;
    write_blob(dir, &gz)?;
    write_blob(dir, &config)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(vec![layer_desc.clone()])
        .annotations(HashMap::from([(VARIANT_ANNOTATION.to_owned(), VARIANT.to_owned())]))
        .build()?;
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = write_blob(dir, &manifest_bytes)?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![descriptor(
            MediaType::ImageManifest,
            &manifest_bytes,
            Some(HashMap::from([(REF_NAME.to_owned(), tag.to_owned())])),
        )?])
        .build()?;
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    OciLayoutBuilder::default()
        .image_layout_version(LAYOUT_VERSION)
        .build()?
        .to_file(dir.join("oci-layout"))?;
    Ok(Built {
        dir: dir.to_owned(),
        tag: tag.to_owned(),
        manifest_digest,
        layer_digest: layer_desc.digest().to_string(),
        module_sha256: sha256_digest(module),
    })
}

/// Reads the blob `digest` of the layout at `dir`, at most `max` bytes, and checks its digest
/// and size.
fn read_blob(dir: &Path, d: &Descriptor, max: u64) -> Result<Vec<u8>> {
    let digest = d.digest().to_string();
    ensure!(d.size() <= max, "blob {digest}: size {} over the limit {max}", d.size());
    let path = blob_path(dir, &digest)?;
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .with_context(|| format!("blob {digest}: {}", path.display()))?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    ensure!(bytes.len() as u64 == d.size(), "blob {digest}: {} bytes, descriptor says {}", bytes.len(), d.size());
    let actual = sha256_digest(&bytes);
    ensure!(actual == digest, "blob {digest}: content hashes to {actual}");
    Ok(bytes)
}

/// Reads the layout at `dir` back: the manifest tagged `tag` (the only one if `None`), its
/// media types and annotation, every blob against its digest, the configuration's `diff_ids`
/// against the uncompressed layer, and the module out of the layer.
pub fn read(dir: &Path, tag: Option<&str>) -> Result<Read> {
    let layout: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("oci-layout"))?)
        .context("oci-layout is not JSON")?;
    ensure!(
        layout["imageLayoutVersion"] == LAYOUT_VERSION,
        "oci-layout: imageLayoutVersion {}",
        layout["imageLayoutVersion"]
    );
    let index = ImageIndex::from_file(dir.join("index.json")).context("index.json")?;
    let wanted: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|m| match tag {
            None => true,
            Some(t) => m.annotations().as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str) == Some(t),
        })
        .collect();
    let [mdesc] = wanted.as_slice() else {
        bail!("index.json: {} manifests match tag {tag:?} (one expected)", wanted.len());
    };
    ensure!(
        mdesc.media_type().to_string() == MANIFEST_MEDIA_TYPE,
        "index.json: manifest media type {}",
        mdesc.media_type()
    );
    let manifest_bytes = read_blob(dir, mdesc, 1 << 20)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).context("manifest")?;
    ensure!(manifest.schema_version() == 2, "manifest: schemaVersion {}", manifest.schema_version());
    let variant = manifest.annotations().as_ref().and_then(|a| a.get(VARIANT_ANNOTATION));
    ensure!(
        variant.map(String::as_str) == Some(VARIANT),
        "manifest: annotation {VARIANT_ANNOTATION} is {variant:?}, `{VARIANT}` expected"
    );
    let cdesc = manifest.config();
    ensure!(
        cdesc.media_type().to_string() == CONFIG_MEDIA_TYPE,
        "config media type {}",
        cdesc.media_type()
    );
    let config: ImageConfiguration = serde_json::from_slice(&read_blob(dir, cdesc, 1 << 20)?).context("config")?;
    let [ldesc] = manifest.layers().as_slice() else {
        bail!("manifest: {} layers (one expected)", manifest.layers().len());
    };
    ensure!(
        ldesc.media_type().to_string() == LAYER_MEDIA_TYPE,
        "layer media type {}",
        ldesc.media_type()
    );
    let gz = read_blob(dir, ldesc, MAX_MODULE_BYTES)?;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .take(MAX_MODULE_BYTES + 4096)
        .read_to_end(&mut plain)
        .context("layer is not gzip")?;
    let diff_ids = config.rootfs().diff_ids();
    ensure!(
        diff_ids == &vec![sha256_digest(&plain)],
        "config rootfs.diff_ids {diff_ids:?} is not the uncompressed layer's digest"
    );
    let mut module = None;
    for entry in tar::Archive::new(plain.as_slice()).entries()? {
        let mut e = entry?;
        if e.path()?.file_name().is_some_and(|n| n == WASM_FILE) {
            let mut m = Vec::new();
            e.read_to_end(&mut m)?;
            module = Some(m);
        }
    }
    let module = module.with_context(|| format!("the layer holds no {WASM_FILE}"))?;
    ensure!(module.starts_with(b"\0asm"), "{WASM_FILE} is not a WebAssembly module");
    Ok(Read {
        manifest_digest: mdesc.digest().to_string(),
        manifest,
        config,
        module,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn build_then_read_gives_the_module_back() {
        let dir = tempfile::tempdir().unwrap();
        let b = build(MODULE, &dir.path().join("x"), "0.1.0").unwrap();
        let r = read(&b.dir, Some("0.1.0")).unwrap();
        assert_eq!(r.module, MODULE);
        assert_eq!(r.manifest_digest, b.manifest_digest);
        assert_eq!(r.manifest.layers()[0].digest().to_string(), b.layer_digest);
        assert!(read(&b.dir, Some("0.2.0")).is_err());
    }

    #[test]
    fn deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let a = build(MODULE, &dir.path().join("a"), "t").unwrap();
        let b = build(MODULE, &dir.path().join("b"), "t").unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let c = build(b"\0asm\x01\0\0\0\0", &dir.path().join("c"), "t").unwrap();
        assert_ne!(a.manifest_digest, c.manifest_digest);
    }

    #[test]
    fn a_changed_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = build(MODULE, &dir.path().join("x"), "t").unwrap();
        let p = blob_path(&b.dir, &b.layer_digest).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        let e = format!("{:#}", read(&b.dir, None).unwrap_err());
        assert!(e.contains("hashes to"), "{e}");
        assert!(build(b"not wasm", &dir.path().join("y"), "t").is_err());
    }
}
