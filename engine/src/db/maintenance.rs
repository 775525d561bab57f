//! Background maintenance of a database's blocks: compaction, then
//! retention. The server's background loop calls [`Db::run_maintenance`]
//! after cutting blocks from the head.
//!
//! The store is a parameter rather than a field of [`Db`] so that the same
//! entry point serves any [`BlockStore`] the caller owns.
//!
//! **Architecture Invariant:** maintenance and block cutting for one store
//! run one at a time (the caller serialises them): the compactor lists the
//! store once per pass and assumes no other writer adds or deletes blocks
//! in between, other than appending new level-1 blocks it may ignore.

use super::Db;
use crate::block::BlockStore;
use crate::block::compact::{self, CompactionOptions, CompactionReport};
use crate::block::retention::{self, RetentionOptions};
use crate::error::Result;

/// What maintenance does (`storage.compaction_ranges`,
/// `storage.retention`, `storage.retention_size`).
#[derive(Debug, Clone, Default)]
pub struct MaintenanceOptions {
    pub compaction: CompactionOptions,
    pub retention: RetentionOptions,
}

/// What one [`Db::run_maintenance`] or [`Db::maintain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// ULIDs of the blocks cut from the head ([`Db::maintain`] only).
    pub blocks_cut: Vec<String>,
    /// What head truncation removed ([`Db::maintain`] only).
    pub head_truncated: crate::head::TruncateStats,
    /// WAL segments the checkpoint replaced ([`Db::maintain`] only).
    pub wal_segments_deleted: u64,
    pub compaction: CompactionReport,
    /// Delete requests dropped because no data they cover is left
    /// ([`Db::maintain`] and [`Db::clean_tombstones`] only).
    pub tombstones_removed: usize,
    /// ULIDs of the blocks deleted by retention, oldest first.
    pub retention_deleted: Vec<String>,
}

impl Db {
    /// One maintenance pass over `store`: deletes blocks left behind by an
    /// interrupted compaction, compacts (leveled and overlapping blocks),
    /// then applies retention to the result, as Prometheus does after each
    /// compaction. Safe to call repeatedly; a pass after a crash finishes
    /// the interrupted one's clean-up.
    pub fn run_maintenance(
        &self,
        store: &BlockStore,
        opts: &MaintenanceOptions,
    ) -> Result<MaintenanceReport> {
        let compaction = compact::run(store, &opts.compaction)?;
        let retention_deleted = retention::run(store, &opts.retention)?;
        Ok(MaintenanceReport {
            compaction,
            retention_deleted,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests;
