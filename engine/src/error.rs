//! The one error type of cairn-engine.
//!
//! Variants are structured so that callers (the server) can map them to
//! status codes and messages without parsing strings.

use std::path::PathBuf;

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A label matcher's regular expression does not compile.
    #[error("invalid regular expression {pattern:?} in matcher for label {label:?}: {reason}")]
    InvalidRegex {
        label: String,
        pattern: String,
        reason: String,
    },
    /// A label set is malformed (empty name, duplicate name, invalid UTF-8 ...).
    #[error("invalid label set {labels}: {reason}")]
    InvalidLabels { labels: String, reason: String },
    /// An I/O error on a file the engine owns.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk do not decode: a checksum mismatch or a malformed record.
    #[error("corrupted data in {path} at offset {offset}: {reason}")]
    Corrupted {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The WAL cannot take writes: it was closed, or its writer stopped.
    #[error("the WAL is unavailable: {reason}")]
    WalUnavailable { reason: String },
    /// An encoded chunk does not decode: unknown encoding, truncated or
    /// malformed header or body. Bytes from disk or the network land here
    /// rather than in a panic.
    #[error("corrupt chunk: {reason}")]
    CorruptChunk { reason: String },
    /// Another process holds the data directory.
    #[error("data directory {path} is in use by another process")]
    DirectoryLocked { path: PathBuf },
    /// An object store request failed (after the store's own retries).
    #[error("object store error on {location}: {source}")]
    ObjectStore {
        location: String,
        #[source]
        source: object_store::Error,
    },
    /// A storage URL does not name a usable object store.
    #[error("invalid storage URL {url:?}: {reason}")]
    InvalidStorageUrl { url: String, reason: String },
    /// A block was written in a format version this build does not read.
    #[error(
        "block {block} has format version {version}, this build reads versions {min_supported} to {max_supported}; upgrade Cairn to read it"
    )]
    UnsupportedBlockVersion {
        block: String,
        version: u64,
        min_supported: u64,
        max_supported: u64,
    },
    /// A block's Parquet file does not decode (or, writing, encode).
    #[error("parquet error in {location}: {source}")]
    Parquet {
        location: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
}
