//! cairn-proto: protobuf definitions and the Rust types generated from them.
