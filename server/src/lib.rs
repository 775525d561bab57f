//! cairn-server: everything that speaks a wire format.
//!
//! The HTTP API (Prometheus-compatible), remote-write and remote-read, OTLP,
//! the gRPC query service, rule evaluation and configuration live here, on
//! top of cairn-engine (storage) and cairn-query (PromQL).
