//! Generates the Rust types of `proto/**/*.proto` at build time.
//!
//! The protoc binary comes from the `protoc-bin-vendored` crate, so building
//! Cairn needs no protoc installed by hand. `tonic-prost-build` is used (not
//! plain prost-build) so that the gRPC query service and OTLP's gRPC
//! services can be added to the same list later, with `build_server(true)`.

use std::path::PathBuf;

/// Every .proto file compiled into this crate, relative to `proto/`.
const PROTOS: &[&str] = &[
    "prometheus/types.proto",
    "prometheus/remote.proto",
    "prometheus/write/v2/types.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    let root = PathBuf::from("proto");
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_with_config(config, &files, &[root])?;
    Ok(())
}
