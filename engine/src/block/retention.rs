//! Retention: deleting whole blocks that are too old or that push the store
//! past its size limit, oldest first, as Prometheus does.
//!
//! - By time (`storage.retention`): a block goes once its newest sample is
//!   more than the retention older than the newest sample of the newest
//!   block. Time is measured from the data, not the wall clock, so a store
//!   that stops receiving data keeps its last retention's worth.
//! - By size (`storage.retention_size`): blocks are summed newest first;
//!   the block at which the sum passes the limit and every older block go.
//!
//! Retention never splits a block: data is kept up to one block range
//! longer than asked. The head is not counted (it is cut into blocks first).

use super::compact::delete_block;
use super::store::BlockStore;
use super::{BlockMeta, list_blocks};
use crate::error::Result;

/// Retention limits; None disables a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOptions {
    pub retention_ms: Option<i64>,
    pub max_bytes: Option<u64>,
}

/// A block's size: the sum of its data files as recorded in `meta.json`.
pub fn block_size_bytes(m: &BlockMeta) -> u64 {
    m.files.iter().map(|f| f.size_bytes).sum()
}

/// The blocks that retention deletes, oldest first.
pub fn plan(metas: &[BlockMeta], opts: &RetentionOptions) -> Vec<BlockMeta> {
    // Newest first: by max time, then min time, then ULID, descending.
    let mut sorted: Vec<&BlockMeta> = metas.iter().collect();
    sorted
        .sort_by(|a, b| (b.max_time, b.min_time, &b.ulid).cmp(&(a.max_time, a.min_time, &a.ulid)));
    let mut doomed = vec![false; sorted.len()];
    if let (Some(retention), Some(newest)) = (opts.retention_ms, sorted.first()) {
        let newest_max = newest.max_time;
        for (i, m) in sorted.iter().enumerate().skip(1) {
            if newest_max.saturating_sub(m.max_time) > retention {
                doomed[i] = true;
            }
        }
    }
    if let Some(max_bytes) = opts.max_bytes {
        let mut total = 0u64;
        for (i, m) in sorted.iter().enumerate() {
            total = total.saturating_add(block_size_bytes(m));
            if total > max_bytes {
                doomed[i..].iter_mut().for_each(|d| *d = true);
                break;
            }
        }
    }
    sorted
        .iter()
        .zip(doomed)
        .rev()
        .filter(|(_, d)| *d)
        .map(|(m, _)| (*m).clone())
        .collect()
}

/// Applies retention to the store; returns the ULIDs deleted, oldest first.
pub fn run(store: &BlockStore, opts: &RetentionOptions) -> Result<Vec<String>> {
    if opts.retention_ms.is_none() && opts.max_bytes.is_none() {
        return Ok(Vec::new());
    }
    let metas = list_blocks(store)?;
    let mut deleted = Vec::new();
    for m in plan(&metas, opts) {
        tracing::info!(
            block = %m.ulid,
            max_time = m.max_time,
            size_bytes = block_size_bytes(&m),
            "deleting a block past retention"
        );
        delete_block(store, &m.ulid)?;
        deleted.push(m.ulid);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests;
