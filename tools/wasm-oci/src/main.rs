//! `geomesh-wasm-oci build --wasm FILE --out DIR --tag TAG`: writes the OCI image layout of a
//! module (see the library) and prints `DIR TAG sha256:MANIFEST`.
//! `geomesh-wasm-oci inspect DIR [--tag TAG]`: reads a layout back and prints what it holds.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "geomesh-wasm-oci", version, about = "A .wasm filter as an OCI image layout Istio's fetcher reads")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write the layout of a module.
    Build {
        /// The module (target/wasm/NAME.wasm).
        #[arg(long)]
        wasm: PathBuf,
        /// The layout directory (replaced).
        #[arg(long)]
        out: PathBuf,
        /// The tag (`oci:DIR:TAG`).
        #[arg(long)]
        tag: String,
    },
    /// Read a layout back and print its digests.
    Inspect {
        dir: PathBuf,
        #[arg(long)]
        tag: Option<String>,
    },
}

fn main() -> ExitCode {
    let r = match Cli::parse().cmd {
        Cmd::Build { wasm, out, tag } => std::fs::read(&wasm)
            .map_err(|e| anyhow::anyhow!("{}: {e}", wasm.display()))
            .and_then(|m| geomesh_wasm_oci::build(&m, &out, &tag))
            .map(|b| {
                println!(
                    "{} {} {} (layer {}, module {})",
                    b.dir.display(),
                    b.tag,
                    b.manifest_digest,
                    b.layer_digest,
                    b.module_sha256
                )
            }),
        Cmd::Inspect { dir, tag } => geomesh_wasm_oci::read(&dir, tag.as_deref()).map(|r| {
            println!(
                "{} manifest {} layer {} {} module {} bytes {}",
                dir.display(),
                r.manifest_digest,
                r.manifest.layers()[0].media_type(),
                r.manifest.layers()[0].digest(),
                r.module.len(),
                geomesh_wasm_oci::sha256_digest(&r.module)
            )
        }),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geomesh-wasm-oci: {e:#}");
            ExitCode::FAILURE
        }
    }
}
