//! Blocks: immutable, compressed, time-partitioned files on object storage
//! that hold the history the head has handed off.
//!
//! A block is a directory `<ULID>/` in a [`BlockStore`] with three objects:
//!
//! - `series.parquet`: one row per chunk, sorted by series (metric name
//!   first), with one dictionary-encoded column per label name, the chunk's
//!   time range and sample count, and the chunk's bytes in the engine's own
//!   codec ([`crate::chunk`]). Standard tools (pyarrow, DuckDB) open it.
//! - `index`: the series table and roaring postings ([`index`]), so that a
//!   matcher costs one small read instead of a scan of the label columns.
//! - `meta.json`: ULID, time range, counts, format version, compaction level
//!   and sources ([`BlockMeta`]).
//!
//! **Architecture Invariant:** a block is published by its `meta.json`,
//! which is uploaded last. A block directory without one is an interrupted
//! upload: readers ignore it and [`clean_partial_blocks`] deletes it. Blocks
//! are never modified after publication.
//!
//! **Architecture Invariant:** [`FORMAT_VERSION`] is only ever raised, and a
//! reader refuses a version it does not know
//! ([`crate::Error::UnsupportedBlockVersion`]) rather than guessing.
//!
//! The write path is [`writer::BlockWriter`] (from any [`crate::Querier`],
//! such as the head's); the read path is [`reader::BlockReader`] for one
//! block and [`reader::BlocksQuerier`] over every block of a store, both
//! behind the [`crate::Querier`] seam. Byte-level layout: `docs/format.md`,
//! "Blocks".

pub mod cache;
pub mod compact;
pub mod index;
pub mod reader;
pub mod retention;
pub mod store;
pub mod writer;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use reader::{BlockReader, BlocksQuerier};
pub use store::BlockStore;
pub use writer::{BlockOptions, BlockWriter, EncodedBlock};

/// The block format this build writes (2: chunks as value streams with
/// shared time streams in the index, zstd throughout).
pub const FORMAT_VERSION: u64 = 2;

/// The oldest block format this build still reads (1: whole chunks in the
/// Parquet file, an uncompressed index).
pub const MIN_FORMAT_VERSION: u64 = 1;

/// Whether this build reads blocks of format `version`.
pub fn version_supported(version: u64) -> bool {
    (MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version)
}

/// The error for a block of a format version this build does not read.
pub(crate) fn unsupported_version(block: String, version: u64) -> Error {
    Error::UnsupportedBlockVersion {
        block,
        version,
        min_supported: MIN_FORMAT_VERSION,
        max_supported: FORMAT_VERSION,
    }
}

/// Object names inside a block directory.
pub const META_FILE: &str = "meta.json";
pub const PARQUET_FILE: &str = "series.parquet";
pub const INDEX_FILE: &str = "index";

/// Default block range: two hours, aligned to multiples of it since the epoch.
pub const DEFAULT_BLOCK_RANGE_MS: i64 = 2 * 60 * 60 * 1000;

/// Parquet key-value metadata key holding the format version.
pub const PARQUET_VERSION_KEY: &str = "cairn.block.format_version";

/// A block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// Format version of every file in the block ([`FORMAT_VERSION`] for
    /// blocks this build writes).
    pub version: u64,
    /// The block's id: a ULID (its time part is the creation time).
    pub ulid: String,
    /// Oldest sample timestamp in the block, ms, inclusive.
    pub min_time: i64,
    /// Newest sample timestamp in the block, ms, inclusive.
    pub max_time: i64,
    pub stats: BlockStats,
    pub compaction: Compaction,
    /// The data files, with their sizes (the reader takes the Parquet
    /// file's size from here to read its footer without a HEAD request).
    pub files: Vec<BlockFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    /// 1 for a block cut from the head; one more for each compaction.
    pub level: u32,
    /// ULIDs of the level-1 blocks this block's data came from (itself at
    /// level 1).
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockFile {
    pub name: String,
    pub size_bytes: u64,
}

impl BlockMeta {
    /// Parses a `meta.json`, refusing versions outside
    /// [`MIN_FORMAT_VERSION`]..=[`FORMAT_VERSION`] before looking at any
    /// other field (a future version may change them).
    pub fn parse(bytes: &[u8], location: &str) -> Result<BlockMeta> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u64,
        }
        let malformed = |e: serde_json::Error| Error::Corrupted {
            path: location.into(),
            offset: 0,
            reason: format!("meta.json does not parse: {e}"),
        };
        let v: VersionOnly = serde_json::from_slice(bytes).map_err(malformed)?;
        if !version_supported(v.version) {
            return Err(unsupported_version(location.to_string(), v.version));
        }
        serde_json::from_slice(bytes).map_err(malformed)
    }

    /// The size of a data file as recorded, if the block has it.
    pub fn file_size(&self, name: &str) -> Option<u64> {
        self.files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.size_bytes)
    }
}

/// Start of the aligned range of length `range_ms` that holds `t`.
pub fn range_start(t: i64, range_ms: i64) -> i64 {
    t.div_euclid(range_ms) * range_ms
}

/// Lists the published blocks of `store` (directories with a `meta.json`),
/// oldest ULID first.
pub fn list_blocks(store: &BlockStore) -> Result<Vec<BlockMeta>> {
    // One listing of every object (one request per 1000 objects on a
    // cloud store) instead of a HEAD per block directory.
    let mut dirs: Vec<String> = store
        .list("")?
        .into_iter()
        .filter_map(|o| {
            let dir = o.key.strip_suffix(&format!("/{META_FILE}"))?;
            (!dir.contains('/') && ulid::Ulid::from_string(dir).is_ok()).then(|| dir.to_string())
        })
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let key = format!("{dir}/{META_FILE}");
        let bytes = match store.get(&key) {
            Ok(b) => b,
            // Deleted since the listing (compaction, retention).
            Err(Error::ObjectStore {
                source: object_store::Error::NotFound { .. },
                ..
            }) => continue,
            Err(e) => return Err(e),
        };
        let meta = BlockMeta::parse(&bytes, &format!("{}/{key}", store.location()))?;
        if meta.ulid != dir {
            return Err(Error::Corrupted {
                path: key.into(),
                offset: 0,
                reason: format!("meta.json names block {} in directory {dir}", meta.ulid),
            });
        }
        out.push(meta);
    }
    Ok(out)
}

/// Deletes the leftovers of interrupted uploads: block directories without
/// a `meta.json`. Returns the ULIDs removed. Run only while no block is
/// being written to the store (on open).
pub fn clean_partial_blocks(store: &BlockStore) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for dir in store.list_dirs()? {
        if ulid::Ulid::from_string(&dir).is_err() {
            continue;
        }
        if store.exists(&format!("{dir}/{META_FILE}"))? {
            continue;
        }
        for obj in store.list(&dir)? {
            store.delete(&obj.key)?;
        }
        tracing::info!(block = %dir, "removed an unpublished block (interrupted upload)");
        removed.push(dir);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
