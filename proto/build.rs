//! Generates the Rust types of `proto/**/*.proto` at build time.
//!
//! The protoc binary comes from the `protoc-bin-vendored` crate, so building
//! Cairn needs no protoc installed by hand. `tonic-prost-build` is used (not
//! plain prost-build) so that gRPC services get server stubs (OTLP's
//! `MetricsService`, Cairn's `QueryService`) and clients (`cairn query`).
//! The descriptor set is kept for gRPC server reflection. The OTLP
//! packages also get serde implementations following the proto3 JSON
//! mapping from pbjson-build (camelCase names,
//! 64-bit integers as strings or numbers, enums as names or numbers,
//! unknown fields ignored), which is what OTLP/JSON is, save for trace and
//! span ids (hex, not base64), handled by the server.

use std::path::PathBuf;

/// Every .proto file compiled into this crate, relative to `proto/`.
const PROTOS: &[&str] = &[
    "prometheus/types.proto",
    "prometheus/remote.proto",
    "prometheus/write/v2/types.proto",
    "opentelemetry/proto/common/v1/common.proto",
    "opentelemetry/proto/resource/v1/resource.proto",
    "opentelemetry/proto/metrics/v1/metrics.proto",
    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
    "google/rpc/status.proto",
    "cairn/query/v1/query.proto",
];

/// Packages that also get serde (proto3 JSON mapping) implementations from
/// pbjson-build, for OTLP/JSON bodies.
const JSON_PACKAGES: &[&str] = &[".opentelemetry", ".google.rpc"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("descriptors.bin");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.file_descriptor_set_path(&descriptor_path);

    let root = PathBuf::from("proto");
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure()
        // Clients for `cairn query` and the tests; servers for Cairn.
        .build_client(true)
        .build_server(true)
        // Decode failures are the client's INVALID_ARGUMENT (src/codec.rs).
        .codec_path("crate::codec::CairnCodec")
        .compile_with_config(config, &files, &[root])?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .ignore_unknown_fields()
        .build(JSON_PACKAGES)?;
    Ok(())
}
