//! Deleting series from a [`Db`]: delete requests ([`crate::tombstone`])
//! made, applied to blocks, and dropped once applied everywhere.

use std::sync::Arc;

use super::{Db, MaintenanceReport};
use crate::block::compact;
use crate::error::Result;
use crate::matcher::Matcher;
use crate::querier::Querier;
use crate::sample::TimestampMs;
use crate::tombstone::{DeleteRequest, Tombstones};

impl Db {
    /// The deletions in force.
    pub fn tombstones(&self) -> Tombstones {
        Arc::clone(&self.tombstones.read())
    }

    /// Deletes the samples in `[mint, maxt]` of every series matching all
    /// `matchers` (Prometheus's `delete_series`): from the moment this
    /// returns, no read returns them, and blocks written later do not hold
    /// them. The range is clamped to the data stored now, so samples
    /// written later beyond it are kept. Returns the request, None when no
    /// data lies in the range. Durable when it returns (the request is in
    /// the block store).
    ///
    /// Waits for a maintenance pass in progress: a block being written
    /// from the old requests must not be taken for one written after this
    /// request.
    pub fn delete_series(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Option<DeleteRequest>> {
        let _no_maintenance = self.maintenance_lock.lock();
        let metas = self.blocks_querier.metas();
        let oldest = metas
            .iter()
            .map(|m| m.min_time)
            .chain(self.head.min_time())
            .min();
        let newest = metas
            .iter()
            .map(|m| m.max_time)
            .chain(self.head.max_time())
            .max();
        let (Some(oldest), Some(newest)) = (oldest, newest) else {
            return Ok(None);
        };
        let (mint, maxt) = (mint.max(oldest), maxt.min(newest));
        if mint > maxt {
            return Ok(None);
        }
        let req = DeleteRequest::new(matchers.to_vec(), mint, maxt);
        req.save(&self.blocks)?;
        let mut t = self.tombstones.write();
        let mut next: Vec<DeleteRequest> = t.as_ref().clone();
        next.push(req.clone());
        *t = Arc::new(next);
        tracing::info!(request = ?req, "series deleted (delete request stored)");
        Ok(Some(req))
    }

    /// Prometheus's `clean_tombstones`: rewrites every block that still
    /// holds samples a delete request covers, then drops the requests
    /// applied everywhere (those whose range the head still holds stay
    /// until it is cut into blocks). Runs between maintenance passes.
    pub fn clean_tombstones(&self) -> Result<MaintenanceReport> {
        let _one_at_a_time = self.maintenance_lock.lock();
        let tombstones = self.tombstones();
        let mut report = MaintenanceReport::default();
        for meta in self.blocks_querier.metas() {
            if !self.block_holds_deleted(&meta, &tombstones)? {
                continue;
            }
            let created = compact::rewrite_block(
                &self.blocks,
                &meta,
                &self.maintenance.compaction.block,
                &tombstones,
            )?;
            tracing::info!(
                block = %meta.ulid,
                result = created.as_ref().map(|m| m.ulid.as_str()).unwrap_or("(empty)"),
                "rewrote a block without deleted series"
            );
            report.compaction.deleted.push(meta.ulid.clone());
            report.compaction.created.extend(created.map(|m| m.ulid));
        }
        self.blocks_querier.refresh()?;
        report.tombstones_removed = self.prune_tombstones()?;
        Ok(report)
    }

    /// Whether `meta`'s block still stores samples one of `tombstones`
    /// covers (it was written before the request, and holds a matching
    /// series in its range).
    fn block_holds_deleted(
        &self,
        meta: &crate::block::BlockMeta,
        tombstones: &[DeleteRequest],
    ) -> Result<bool> {
        let written_ms = ulid::Ulid::from_string(&meta.ulid).map_or(0, |u| u.timestamp_ms());
        for r in tombstones {
            if r.min_time > meta.max_time || r.max_time < meta.min_time {
                continue;
            }
            // A block written strictly after the request went through it.
            if written_ms > r.created_ms() {
                continue;
            }
            let reader = self
                .blocks_querier
                .overlapping(meta.min_time, meta.max_time)
                .into_iter()
                .find(|b| b.meta().ulid == meta.ulid);
            let Some(reader) = reader else { continue };
            if !reader
                .series(&r.matchers, r.min_time, r.max_time)?
                .is_empty()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Drops the requests no data can be hidden by any more: the head's
    /// lower bound is past their range (their samples can only be in
    /// blocks) and no block holds their samples. Returns how many. The
    /// caller holds the maintenance lock.
    pub(super) fn prune_tombstones(&self) -> Result<usize> {
        let tombstones = self.tombstones();
        if tombstones.is_empty() {
            return Ok(0);
        }
        let bound = self.head.min_valid_time();
        let metas = self.blocks_querier.metas();
        let mut done = Vec::new();
        for r in tombstones.iter() {
            if bound <= r.max_time {
                continue;
            }
            let mut applied = true;
            for meta in &metas {
                if self.block_holds_deleted(meta, std::slice::from_ref(r))? {
                    applied = false;
                    break;
                }
            }
            if applied {
                done.push(r.id.clone());
            }
        }
        if done.is_empty() {
            return Ok(0);
        }
        for r in tombstones.iter().filter(|r| done.contains(&r.id)) {
            r.remove(&self.blocks)?;
            tracing::info!(request = ?r, "delete request applied everywhere; removed");
        }
        let mut t = self.tombstones.write();
        let next: Vec<DeleteRequest> = t
            .iter()
            .filter(|r| !done.contains(&r.id))
            .cloned()
            .collect();
        *t = Arc::new(next);
        Ok(done.len())
    }
}

#[cfg(test)]
mod tests;
