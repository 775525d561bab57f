//! cairn-server: everything that speaks a wire format.
//!
//! The HTTP API (Prometheus-compatible), remote-write and remote-read, OTLP,
//! the gRPC query service, rule evaluation and configuration live here, on
//! top of cairn-engine (storage) and cairn-query (PromQL).
//!
//! Data path of a write: `http` reads the body (bounded), `remote_write`
//! negotiates the protocol, decompresses, decodes and validates, the engine
//! appends (WAL fsync) on a blocking thread, and only then `http` answers.

pub mod config;
pub mod error;
pub mod metadata;
pub mod otlp;
pub mod remote_write;

pub use config::{Config, ServeArgs};
pub use error::{Error, Result};
