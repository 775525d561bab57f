//! The server's view of storage: the few operations the HTTP layer needs,
//! as a trait so that handlers do not depend on how the engine is opened.
//!
//! **Architecture Invariant:** the only implementation used by `cairn serve`
//! is the engine's `Db` (see `serve.rs`); this trait is a seam, not a second
//! storage engine. It exists so that the HTTP layer was buildable before the
//! engine's `Db` landed and so that each engine call is made in one place.

use std::sync::Arc;

use cairn_engine::{Labels, Querier, TimestampMs};

use crate::error::Result;
use crate::remote_write::{IncomingSeries, RejectReason};

/// What storage did with one write.
#[derive(Debug, Default)]
pub struct AppendReport {
    /// Samples appended and durable in the WAL.
    pub appended: u64,
    /// Series with rejected samples: labels, reason, count, detail.
    pub rejected: Vec<(Labels, RejectReason, u64, String)>,
}

/// One entry of a cardinality top list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stat {
    pub name: String,
    pub value: u64,
}

/// Head statistics and the cardinality top lists of `/api/v1/status/tsdb`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageStats {
    pub head_stats: HeadStats,
    pub series_count_by_metric_name: Vec<Stat>,
    pub label_value_count_by_label_name: Vec<Stat>,
    pub memory_in_bytes_by_label_name: Vec<Stat>,
    pub series_count_by_label_value_pair: Vec<Stat>,
}

/// Prometheus's `headStats`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadStats {
    pub num_series: u64,
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    /// Oldest and newest sample time in the head, ms (0 when empty).
    pub min_time: TimestampMs,
    pub max_time: TimestampMs,
}

/// The storage operations the server uses.
pub trait Storage: Send + Sync + 'static {
    /// Appends the series' samples; returns once they are durable in the
    /// WAL. Per-series rejections (out of order, too old ...) are reported,
    /// not returned as errors; an `Err` means nothing may be assumed
    /// written and the sender should retry.
    fn append(&self, series: Vec<IncomingSeries>) -> Result<AppendReport>;

    /// A querier over everything stored (head and blocks).
    fn querier(&self) -> Result<Arc<dyn Querier>>;

    /// Head statistics and the top `limit` entries of each cardinality list.
    fn stats(&self, limit: usize) -> Result<StorageStats>;

    /// Flushes and closes the WAL; called once at shutdown.
    fn close(&self) -> Result<()>;
}
