//! `geomesh-config-schema [--write | --check] [--path FILE]`: prints the filter configuration's
//! JSON Schema, writes it to FILE (default `schema/geomesh-filter.schema.json`, from the
//! repository root), or checks that FILE holds it (exit 1 otherwise).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The filter configuration's JSON Schema, from the tables the parsers read.
#[derive(Parser, Debug)]
#[command(name = "geomesh-config-schema", version, about)]
struct Args {
    /// Write the schema to --path.
    #[arg(long, conflicts_with = "check")]
    write: bool,
    /// Exit 1 when --path does not hold the schema.
    #[arg(long)]
    check: bool,
    /// The schema file.
    #[arg(long, default_value = geomesh_config_schema::SCHEMA_PATH)]
    path: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = geomesh_config_schema::schema_text();
    if args.write {
        if let Err(e) = std::fs::write(&args.path, &text) {
            eprintln!("geomesh-config-schema: write {}: {e}", args.path.display());
            return ExitCode::FAILURE;
        }
        println!("{}: written ({} bytes)", args.path.display(), text.len());
    } else if args.check {
        match std::fs::read_to_string(&args.path) {
            Ok(on_disk) if on_disk == text => println!("{}: up to date", args.path.display()),
            Ok(_) => {
                eprintln!(
                    "{}: differs from the field tables; run `cargo run -p geomesh-config-schema -- --write`",
                    args.path.display()
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("geomesh-config-schema: read {}: {e}", args.path.display());
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{text}");
    }
    ExitCode::SUCCESS
}
