//! Generates the gRPC code of proto/bridge.proto with a vendored protoc, so that building needs
//! no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // `bytes` fields become `bytes::Bytes`: data moves between the socket buffers and the
    // HTTP/2 stream without extra copies.
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(config, &["proto/bridge.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/bridge.proto");
    Ok(())
}
