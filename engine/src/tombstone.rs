//! Deleting series (Prometheus's `admin/tsdb/delete_series`): a
//! [`DeleteRequest`] names series by matchers and a time range; its samples
//! disappear from every read at once and from storage as blocks are
//! rewritten.
//!
//! A request is an object `tombstones/<ULID>.json` in the block store,
//! written before the deletion is acknowledged, so it holds for every
//! reader of the store and survives restarts (the WAL replays deleted
//! samples into the head; the request hides them again). Reads go through
//! a [`TombstonedQuerier`]; blocks written after the request (cut from the
//! head, compacted, or rewritten by [`crate::Db::clean_tombstones`]) are
//! written through one, so they no longer hold the deleted samples. A
//! request is dropped once nothing can hold its samples any more: the head
//! has moved past its range and every block overlapping the range was
//! written after it.
//!
//! **Architecture Invariant:** a request's time range is clamped at
//! creation to the data stored then (as Prometheus clamps to the head's
//! range), so samples written later, beyond it, are never hidden.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::block::BlockStore;
use crate::error::{Error, Result};
use crate::labels::Labels;
use crate::matcher::{MatchOp, Matcher};
use crate::querier::{Querier, Series};
use crate::sample::{Sample, TimestampMs};

/// The store directory holding the requests.
pub const TOMBSTONES_DIR: &str = "tombstones";

/// One deletion: series matching every matcher lose their samples in
/// `[min_time, max_time]`.
#[derive(Clone)]
pub struct DeleteRequest {
    /// A ULID: its time part is when the request was made.
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub min_time: TimestampMs,
    pub max_time: TimestampMs,
}

impl std::fmt::Debug for DeleteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m: Vec<String> = self.matchers.iter().map(|m| m.to_string()).collect();
        f.debug_struct("DeleteRequest")
            .field("id", &self.id)
            .field("matchers", &m)
            .field("min_time", &self.min_time)
            .field("max_time", &self.max_time)
            .finish()
    }
}

/// The JSON form of a request (`tombstones/<ULID>.json`).
#[derive(Serialize, Deserialize)]
struct RequestFile {
    version: u32,
    id: String,
    matchers: Vec<MatcherFile>,
    min_time: i64,
    max_time: i64,
}

#[derive(Serialize, Deserialize)]
struct MatcherFile {
    #[serde(rename = "type")]
    op: String,
    name: String,
    value: String,
}

impl DeleteRequest {
    /// A new request (a fresh ULID).
    pub fn new(matchers: Vec<Matcher>, min_time: TimestampMs, max_time: TimestampMs) -> Self {
        DeleteRequest {
            id: ulid::Ulid::new().to_string(),
            matchers,
            min_time,
            max_time,
        }
    }

    /// Milliseconds since the epoch when the request was made.
    pub fn created_ms(&self) -> u64 {
        ulid::Ulid::from_string(&self.id).map_or(0, |u| u.timestamp_ms())
    }

    fn key(&self) -> String {
        format!("{TOMBSTONES_DIR}/{}.json", self.id)
    }

    /// Whether the request covers `labels` at some time in `[mint, maxt]`.
    pub fn applies(&self, labels: &Labels, mint: TimestampMs, maxt: TimestampMs) -> bool {
        self.min_time <= maxt
            && self.max_time >= mint
            && self
                .matchers
                .iter()
                .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
    }

    fn to_json(&self) -> Result<Vec<u8>> {
        let file = RequestFile {
            version: 1,
            id: self.id.clone(),
            matchers: self
                .matchers
                .iter()
                .map(|m| MatcherFile {
                    op: m.op.as_str().to_string(),
                    name: m.name.clone(),
                    value: m.value.clone(),
                })
                .collect(),
            min_time: self.min_time,
            max_time: self.max_time,
        };
        serde_json::to_vec_pretty(&file).map_err(|e| Error::Corrupted {
            path: self.key().into(),
            offset: 0,
            reason: format!("delete request does not serialise: {e}"),
        })
    }

    fn from_json(bytes: &[u8], key: &str) -> Result<DeleteRequest> {
        let bad = |reason: String| Error::Corrupted {
            path: key.into(),
            offset: 0,
            reason,
        };
        let f: RequestFile =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("does not parse: {e}")))?;
        if f.version != 1 {
            return Err(bad(format!("unknown delete request version {}", f.version)));
        }
        let matchers = f
            .matchers
            .into_iter()
            .map(|m| {
                let op = match m.op.as_str() {
                    "=" => MatchOp::Equal,
                    "!=" => MatchOp::NotEqual,
                    "=~" => MatchOp::RegexMatch,
                    "!~" => MatchOp::RegexNoMatch,
                    other => return Err(bad(format!("unknown matcher type {other:?}"))),
                };
                Matcher::new(op, m.name, m.value)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DeleteRequest {
            id: f.id,
            matchers,
            min_time: f.min_time,
            max_time: f.max_time,
        })
    }

    /// Writes the request to the store (durable when this returns).
    pub fn save(&self, store: &BlockStore) -> Result<()> {
        store.put(&self.key(), Bytes::from(self.to_json()?))
    }

    /// Deletes the request from the store.
    pub fn remove(&self, store: &BlockStore) -> Result<()> {
        store.delete(&self.key())
    }
}

/// Every request in the store, oldest first.
pub fn load(store: &BlockStore) -> Result<Vec<DeleteRequest>> {
    let mut out = Vec::new();
    for obj in store.list(TOMBSTONES_DIR)? {
        if !obj.key.ends_with(".json") {
            continue;
        }
        let bytes = store.get(&obj.key)?;
        out.push(DeleteRequest::from_json(&bytes, &obj.key)?);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The requests in force, shared by every querier made from them.
pub type Tombstones = Arc<Vec<DeleteRequest>>;

/// The intervals of `tombstones` that cover `labels` in `[mint, maxt]`.
fn intervals(
    tombstones: &[DeleteRequest],
    labels: &Labels,
    mint: TimestampMs,
    maxt: TimestampMs,
) -> Vec<(TimestampMs, TimestampMs)> {
    tombstones
        .iter()
        .filter(|r| r.applies(labels, mint, maxt))
        .map(|r| (r.min_time, r.max_time))
        .collect()
}

/// A querier that hides the samples of deleted series (`tombstones`) from
/// `inner`'s `select`: a series with no sample left in the range is not
/// selected. Series and label look-ups are `inner`'s (see below).
pub struct TombstonedQuerier {
    inner: Arc<dyn Querier>,
    tombstones: Tombstones,
}

impl TombstonedQuerier {
    /// `inner` itself when there is nothing to hide.
    pub fn wrap(inner: Arc<dyn Querier>, tombstones: &Tombstones) -> Arc<dyn Querier> {
        if tombstones.is_empty() {
            return inner;
        }
        Arc::new(TombstonedQuerier {
            inner,
            tombstones: Arc::clone(tombstones),
        })
    }

    fn any_overlap(&self, mint: TimestampMs, maxt: TimestampMs) -> bool {
        self.tombstones
            .iter()
            .any(|r| r.min_time <= maxt && r.max_time >= mint)
    }
}

impl Querier for TombstonedQuerier {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Series>> {
        let selected = self.inner.select(matchers, mint, maxt)?;
        if !self.any_overlap(mint, maxt) {
            return Ok(selected);
        }
        let mut out = Vec::with_capacity(selected.len());
        for s in selected {
            let cut = intervals(&self.tombstones, &s.labels, mint, maxt);
            if cut.is_empty() {
                out.push(s);
                continue;
            }
            let mut samples: Vec<Sample> = Vec::new();
            s.try_read_samples(mint, maxt, &mut samples)?;
            samples.retain(|x| !cut.iter().any(|&(lo, hi)| lo <= x.t && x.t <= hi));
            if !samples.is_empty() {
                out.push(Series::from_samples(s.labels, samples));
            }
        }
        Ok(out)
    }

    /// Series and label look-ups answer from the index, deleted series
    /// included, as Prometheus's do (its `/api/v1/series` and label values
    /// list a deleted series until compaction drops it; Cairn's, until its
    /// range is cut into a block without it).
    fn series(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Labels>> {
        self.inner.series(matchers, mint, maxt)
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>> {
        self.inner.label_names(matchers, mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>> {
        self.inner.label_values(name, matchers, mint, maxt)
    }
}

#[cfg(test)]
mod tests;
