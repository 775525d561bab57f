//! cairn-server: everything that speaks a wire format.
//!
//! The HTTP API (Prometheus-compatible), remote-write and remote-read, OTLP,
//! the gRPC query service, rule evaluation and configuration live here, on
//! top of cairn-engine (storage) and cairn-query (PromQL).
//!
//! Data path of a write: `http` reads the body (bounded), `remote_write`
//! negotiates the protocol, decompresses, decodes and validates, storage
//! appends (WAL fsync) on a blocking thread, and only then `http` answers.
//! `serve` owns the lifecycle: bind, open storage (WAL replay) while
//! `/-/ready` says 503, serve, and on SIGINT/SIGTERM drain and close.

pub mod config;
pub mod error;
pub mod exec;
pub mod format;
pub mod grpc;
pub mod http;
pub mod import;
pub mod metadata;
pub mod metrics;
pub mod otlp;
pub mod remote_write;
mod remote_write_fast;
pub mod rules;
pub mod selector;
pub mod series_cache;
pub mod serve;
pub mod storage;
pub mod xor_chunk;

pub use config::{Config, ServeArgs};
pub use error::{Error, Result};
