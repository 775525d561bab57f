//! Compaction: merging blocks into fewer, larger ones.
//!
//! The planner ([`plan`]) follows Prometheus's leveled compactor over
//! [`BlockMeta`]s alone (no data is read to plan):
//!
//! 1. Blocks that overlap in time (out-of-order data, two writers) are
//!    always merged first, whatever their size; a timestamp present in
//!    several of them is kept once ("vertical" compaction).
//! 2. Otherwise, for each range after the first of
//!    [`CompactionOptions::ranges_ms`] (default 2h -> 12h -> 48h), blocks
//!    that fit in one aligned range of that length are merged once the
//!    range is full (its blocks reach both of its ends) or lies entirely
//!    before the start of the newest block considered. The newest block is
//!    left out of this step, as Prometheus does, so a range is not
//!    compacted while the head may still hand blocks to it.
//!
//! The executor ([`compact_blocks`]) reads the sources through one
//! [`MergedQuerier`], writes the result (level = highest source level + 1,
//! sources = union of the sources' level-1 ULIDs), publishes it, and only
//! then deletes the sources.
//!
//! **Architecture Invariant:** a compacted block is published before any of
//! its sources is deleted, so no sample is ever absent from the store. In
//! between, queries see the data twice and return it once (block queries
//! dedupe equal timestamps). A crash in that window leaves sources behind
//! whose level-1 ULIDs are all listed by a newer block: [`obsolete_blocks`]
//! finds them and [`run`] deletes them before planning.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::reader::BlockReader;
use super::store::BlockStore;
use super::writer::{BlockOptions, BlockWriter};
use super::{BlockMeta, META_FILE, list_blocks, range_start};
use crate::error::Result;
use crate::querier::{MergedQuerier, Querier};
use crate::sample::TimestampMs;
use crate::tombstone::{TombstonedQuerier, Tombstones};

/// Default compaction ranges: 2h (blocks cut from the head), 12h, 48h.
pub const DEFAULT_RANGES_MS: [i64; 3] = [2 * 3_600_000, 12 * 3_600_000, 48 * 3_600_000];

/// How blocks are compacted.
#[derive(Debug, Clone)]
pub struct CompactionOptions {
    /// Block ranges by level, ascending, each a multiple of the one before
    /// (`storage.compaction_ranges`). The first is the head's block range.
    pub ranges_ms: Vec<i64>,
    /// How the compacted blocks are written.
    pub block: BlockOptions,
    /// Deletions in force: compacted blocks are written without their
    /// samples.
    pub tombstones: Tombstones,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            ranges_ms: DEFAULT_RANGES_MS.to_vec(),
            block: BlockOptions::default(),
            tombstones: Tombstones::default(),
        }
    }
}

/// What one [`run`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// ULIDs of the blocks written.
    pub created: Vec<String>,
    /// ULIDs of the blocks deleted (compacted sources and obsolete blocks).
    pub deleted: Vec<String>,
}

/// Blocks whose data is wholly held by another block: every level-1 ULID in
/// their `compaction.sources` is also in the sources of a block of a higher
/// level, or another block has the same level and sources and a later ULID
/// (a rewrite that applied deletions). They are the sources of a compaction
/// or rewrite that was published but whose clean-up did not finish.
pub fn obsolete_blocks(metas: &[BlockMeta]) -> Vec<BlockMeta> {
    let sets: Vec<BTreeSet<&str>> = metas
        .iter()
        .map(|m| m.compaction.sources.iter().map(String::as_str).collect())
        .collect();
    metas
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            metas.iter().enumerate().any(|(j, other)| {
                *i != j
                    && (other.compaction.level > m.compaction.level && sets[*i].is_subset(&sets[j])
                        || other.compaction.level == m.compaction.level
                            && sets[*i] == sets[j]
                            && other.ulid > m.ulid)
            })
        })
        .map(|(_, m)| m.clone())
        .collect()
}

/// The next group of blocks to merge into one, if any (see the module
/// doc). Obsolete blocks must have been removed from `metas` first.
pub fn plan(metas: &[BlockMeta], ranges_ms: &[i64]) -> Option<Vec<BlockMeta>> {
    let mut sorted: Vec<BlockMeta> = metas.to_vec();
    sorted.sort_by(|a, b| (a.min_time, &a.ulid).cmp(&(b.min_time, &b.ulid)));
    if let Some(group) = overlapping_group(&sorted) {
        return Some(group);
    }
    // Leave the newest block out; the newest of the rest marks how far the
    // store is known to be complete.
    sorted.pop()?;
    let high_time = sorted.last()?.min_time;
    let first_range = *ranges_ms.first()?;
    for &range in ranges_ms.iter().skip(1) {
        for group in split_by_range(&sorted, range) {
            if group.len() < 2 {
                continue;
            }
            let start = range_start(group[0].min_time, range);
            let end = start + range;
            let last = &group[group.len() - 1];
            // Blocks record their samples' times, not the range they were
            // cut for: compare the first-level ranges they sit in.
            let full = range_start(group[0].min_time, first_range) == start
                && range_start(last.max_time, first_range) + first_range == end;
            if full || last.max_time < high_time {
                return Some(group);
            }
        }
    }
    None
}

/// The first run of two or more blocks (sorted by min time) that overlap in
/// time, transitively.
fn overlapping_group(sorted: &[BlockMeta]) -> Option<Vec<BlockMeta>> {
    let mut i = 0;
    while i < sorted.len() {
        let mut max = sorted[i].max_time;
        let mut j = i + 1;
        while j < sorted.len() && sorted[j].min_time <= max {
            max = max.max(sorted[j].max_time);
            j += 1;
        }
        if j - i > 1 {
            return Some(sorted[i..j].to_vec());
        }
        i = j;
    }
    None
}

/// Groups of consecutive blocks (sorted by min time) that each fit inside
/// one aligned range of length `range`; blocks too long for it are skipped.
fn split_by_range(sorted: &[BlockMeta], range: i64) -> Vec<Vec<BlockMeta>> {
    let mut out: Vec<Vec<BlockMeta>> = Vec::new();
    let mut current_start = None;
    for m in sorted {
        let start = range_start(m.min_time, range);
        if m.max_time >= start + range {
            continue;
        }
        if current_start != Some(start) {
            out.push(Vec::new());
            current_start = Some(start);
        }
        if let Some(g) = out.last_mut() {
            g.push(m.clone());
        }
    }
    out
}

/// Merges `sources` into one new block and publishes it, then deletes the
/// sources. Samples at the same timestamp in several sources are kept once
/// (the oldest source's value: the one queries returned before). Returns
/// the new block's meta, or None when the sources hold no samples. Samples
/// `tombstones` delete are left out.
pub fn compact_blocks(
    store: &BlockStore,
    sources: &[BlockMeta],
    opts: &BlockOptions,
    tombstones: &Tombstones,
) -> Result<Option<BlockMeta>> {
    let level = sources
        .iter()
        .map(|m| m.compaction.level)
        .max()
        .unwrap_or(0)
        + 1;
    merge_blocks(store, sources, opts, tombstones, level)
}

/// Rewrites one block without the samples `tombstones` delete: a new block
/// with the same level and sources (which makes the old one obsolete),
/// then the old one is deleted. None when nothing is left.
pub fn rewrite_block(
    store: &BlockStore,
    meta: &BlockMeta,
    opts: &BlockOptions,
    tombstones: &Tombstones,
) -> Result<Option<BlockMeta>> {
    merge_blocks(
        store,
        std::slice::from_ref(meta),
        opts,
        tombstones,
        meta.compaction.level,
    )
}

/// Writes the data of `sources` (read through `tombstones`) as one block of
/// `level`, publishes it, then deletes the sources.
fn merge_blocks(
    store: &BlockStore,
    sources: &[BlockMeta],
    opts: &BlockOptions,
    tombstones: &Tombstones,
    level: u32,
) -> Result<Option<BlockMeta>> {
    let mut ordered: Vec<&BlockMeta> = sources.iter().collect();
    ordered.sort_by(|a, b| a.ulid.cmp(&b.ulid));
    let readers: Vec<Arc<dyn Querier>> = ordered
        .iter()
        .map(|m| Arc::new(BlockReader::new(store.clone(), (*m).clone())) as Arc<dyn Querier>)
        .collect();
    let merged = TombstonedQuerier::wrap(Arc::new(MergedQuerier::new(readers)), tombstones);
    let mut w = BlockWriter::new(opts.clone());
    w.add_from_querier(&*merged, TimestampMs::MIN, TimestampMs::MAX)?;
    let source_ulids: Vec<String> = sources
        .iter()
        .flat_map(|m| m.compaction.sources.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let result = if w.num_series() == 0 {
        None
    } else {
        let block = w.encode(level, source_ulids)?;
        block.upload(store)?;
        Some(block.meta)
    };
    for m in sources {
        delete_block(store, &m.ulid)?;
    }
    Ok(result)
}

/// Deletes a block: `meta.json` first, so that an interrupted deletion
/// leaves an unpublished directory that readers ignore and
/// [`super::clean_partial_blocks`] removes.
pub fn delete_block(store: &BlockStore, ulid: &str) -> Result<()> {
    store.delete(&format!("{ulid}/{META_FILE}"))?;
    for obj in store.list(ulid)? {
        store.delete(&obj.key)?;
    }
    Ok(())
}

/// One compaction pass over the store: deletes obsolete blocks, then plans
/// and executes merges until nothing is left to merge (at most one merge
/// per block present at the start, so the loop is bounded).
pub fn run(store: &BlockStore, opts: &CompactionOptions) -> Result<CompactionReport> {
    let mut report = CompactionReport::default();
    let mut metas = list_blocks(store)?;
    let obsolete = obsolete_blocks(&metas);
    for m in &obsolete {
        tracing::info!(block = %m.ulid, "deleting a block already held by a compacted block");
        delete_block(store, &m.ulid)?;
        report.deleted.push(m.ulid.clone());
    }
    metas.retain(|m| !obsolete.iter().any(|o| o.ulid == m.ulid));
    for _ in 0..metas.len() {
        let Some(group) = plan(&metas, &opts.ranges_ms) else {
            break;
        };
        let created = compact_blocks(store, &group, &opts.block, &opts.tombstones)?;
        tracing::info!(
            sources = group.len(),
            result = created
                .as_ref()
                .map(|m| m.ulid.as_str())
                .unwrap_or("(empty)"),
            "compacted blocks"
        );
        metas.retain(|m| !group.iter().any(|g| g.ulid == m.ulid));
        report.deleted.extend(group.iter().map(|m| m.ulid.clone()));
        if let Some(m) = created {
            report.created.push(m.ulid.clone());
            metas.push(m);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
