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
use crate::remote_write::{IncomingSeries, RejectReason, SeriesKey};
use crate::series_cache::SeriesCache;

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
    /// Not part of Prometheus's response: for `/metrics`.
    #[serde(skip)]
    pub samples: u64,
    #[serde(skip)]
    pub memory_bytes: u64,
    #[serde(skip)]
    pub wal_fsyncs: u64,
    #[serde(skip)]
    pub wal_bytes_written: u64,
    /// Bytes the WAL takes on disk.
    #[serde(skip)]
    pub wal_disk_bytes: u64,
    #[serde(skip)]
    pub wal_fsync_latency: cairn_engine::wal::FsyncLatency,
    /// Published blocks and the bytes of their data files.
    #[serde(skip)]
    pub blocks: u64,
    #[serde(skip)]
    pub blocks_bytes: u64,
    #[serde(skip)]
    pub store_requests: cairn_engine::block::store::StoreRequests,
    #[serde(skip)]
    pub object_cache_bytes: u64,
    #[serde(skip)]
    pub blocks_opened_bytes: u64,
    /// Entries and bytes of the remote-write series cache.
    #[serde(skip)]
    pub series_cache_entries: u64,
    #[serde(skip)]
    pub series_cache_bytes: u64,
    #[serde(skip)]
    pub row_group_cache_bytes: u64,
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

    /// One pass of the block lifecycle: cut the head's frozen ranges into
    /// blocks, truncate the head, checkpoint the WAL, compact, expire.
    fn maintain(&self) -> Result<cairn_engine::MaintenanceReport>;

    /// Deletes the samples in `[mint, maxt]` of the series matching any of
    /// `sets` (Prometheus's `delete_series`); durable when it returns.
    fn delete_series(
        &self,
        sets: Vec<Vec<cairn_engine::Matcher>>,
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<()>;

    /// Rewrites blocks still holding deleted samples and drops the delete
    /// requests applied everywhere (Prometheus's `clean_tombstones`).
    fn clean_tombstones(&self) -> Result<cairn_engine::MaintenanceReport>;

    /// Writes a snapshot of every block (and, unless `skip_head`, the head
    /// as a block) into `snapshots/<name>` under the data directory;
    /// returns the name (Prometheus's `admin/tsdb/snapshot`).
    fn snapshot(&self, skip_head: bool) -> Result<String>;

    /// Flushes and closes the WAL; called once at shutdown.
    fn close(&self) -> Result<()>;

    /// The cache remote-write decoding names known series from, if this
    /// storage keeps one (see [`crate::series_cache`]).
    fn series_cache(&self) -> Option<&SeriesCache> {
        None
    }
}

/// The engine's [`cairn_engine::Db`] as the server's storage.
///
/// `Db::close` consumes the database, so it sits in an `RwLock<Option<_>>`:
/// appends and reads share the read lock, `close` takes the write lock
/// (waiting for in-flight appends) and leaves `None`, after which every
/// call answers "shutting down".
pub struct DbStorage {
    db: parking_lot::RwLock<Option<cairn_engine::Db>>,
    /// `storage.wal_max_size`: appends are refused past it.
    wal_max_bytes: u64,
    /// Remote-write's raw label bytes -> series handles of this database
    /// (`remote_write.series_cache_bytes`; none when 0).
    series_cache: Option<SeriesCache>,
}

impl DbStorage {
    /// Opens the database in the configured data directory, replaying the
    /// WAL (this is what `/-/ready` waits for).
    pub fn open(config: &crate::config::Config) -> Result<DbStorage> {
        use cairn_engine::block::BlockStore;
        use cairn_engine::block::cache::{DiskCache, MemoryCache};
        let mut store = match &config.storage.url {
            Some(url) => BlockStore::from_url(url)?,
            None => BlockStore::local(&config.storage.data_dir.join("blocks"))?,
        };
        let disk_budget = config.storage.object_cache_size.0;
        if store.is_remote() && disk_budget > 0 {
            let dir = config.storage.data_dir.join("object-cache");
            store = store.with_cache(std::sync::Arc::new(DiskCache::open(&dir, disk_budget)?));
        }
        let memory_budget = config.storage.row_group_cache_size.0;
        if memory_budget > 0 {
            store = store.with_memory_cache(std::sync::Arc::new(MemoryCache::new(memory_budget)));
        }
        let block_store = Some(store);
        let opts = cairn_engine::DbOptions {
            ooo_window_ms: config.storage.ooo_window.as_millis_i64(),
            block_store,
            maintenance: config.maintenance_options(),
            wal_segment_max_bytes: config.storage.wal_segment_size.0,
            block_memory_budget: config.storage.block_memory.0,
            ..Default::default()
        };
        let db = cairn_engine::Db::open(&config.storage.data_dir, opts)?;
        Ok(DbStorage {
            db: parking_lot::RwLock::new(Some(db)),
            wal_max_bytes: config.storage.wal_max_size.0,
            series_cache: (config.remote_write.series_cache_bytes > 0)
                .then(|| SeriesCache::new(config.remote_write.series_cache_bytes)),
        })
    }

    fn with_db<T>(&self, f: impl FnOnce(&cairn_engine::Db) -> Result<T>) -> Result<T> {
        let guard = self.db.read();
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(crate::error::Error::Unavailable {
                reason: "storage is closed (shutting down)".into(),
            }),
        }
    }
}

impl Storage for DbStorage {
    fn append(&self, mut series: Vec<IncomingSeries>) -> Result<AppendReport> {
        use cairn_engine::WriteTarget;
        let mut looked_up: Vec<(usize, cairn_engine::SeriesHandle)> = Vec::new();
        let (outcome, rejected_labels) = self.with_db(|db| {
            // The WAL only grows this far when the head cannot be cut into
            // blocks (the store is down): refuse rather than fill the disk;
            // the sender retries on 503 and nothing acknowledged is lost.
            let wal = db.wal_disk_bytes();
            if wal > self.wal_max_bytes {
                return Err(crate::error::Error::Unavailable {
                    reason: format!(
                        "the WAL holds {wal} bytes, over storage.wal_max_size ({} bytes): \
                         blocks are not being written (see cairn_maintenance_failures_total \
                         and the log); writes resume once they are",
                        self.wal_max_bytes
                    ),
                });
            }
            let batch = series.iter().map(|s| {
                let target = match &s.series {
                    SeriesKey::Labels { labels, .. } => WriteTarget::Labels(labels),
                    SeriesKey::Cached(h) => WriteTarget::Handle(h),
                };
                (target, s.samples.as_slice())
            });
            let outcome = db.append_series(batch, |i, h| {
                if matches!(
                    series[i].series,
                    SeriesKey::Labels {
                        cache_key: Some(_),
                        ..
                    }
                ) {
                    looked_up.push((i, h));
                }
            })?;
            let labels: Vec<Labels> = outcome
                .rejected
                .iter()
                .map(|r| match series.get(r.index).map(|s| &s.series) {
                    Some(SeriesKey::Labels { labels, .. }) => labels.clone(),
                    Some(SeriesKey::Cached(h)) => db.handle_labels(h),
                    None => Labels::default(),
                })
                .collect();
            Ok((outcome, labels))
        })?;
        // Newest first: a series truncation removed between its look-up
        // and its append was looked up again, and the later handle counts.
        for (i, handle) in looked_up.into_iter().rev() {
            if let SeriesKey::Labels { cache_key, .. } = &mut series[i].series
                && let Some(key) = cache_key.take()
                && let Some(cache) = &self.series_cache
            {
                cache.insert(key, handle);
            }
        }
        let rejected = outcome
            .rejected
            .into_iter()
            .zip(rejected_labels)
            .map(|(r, labels)| {
                let first = r
                    .first_t
                    .map(|t| format!("first rejected timestamp {t}"))
                    .unwrap_or_default();
                let (reason, detail) = match r.reason {
                    cairn_engine::RejectReason::TooOld => (RejectReason::TooOld, first),
                    cairn_engine::RejectReason::DuplicateSampleForTimestamp => {
                        (RejectReason::DuplicateSample, first)
                    }
                    cairn_engine::RejectReason::InvalidLabels(why) => {
                        (RejectReason::InvalidLabels, why)
                    }
                };
                (labels, reason, r.samples, detail)
            })
            .collect();
        Ok(AppendReport {
            appended: outcome.samples_appended + outcome.samples_duplicate,
            rejected,
        })
    }

    fn querier(&self) -> Result<Arc<dyn Querier>> {
        self.with_db(|db| Ok(db.querier()))
    }

    fn maintain(&self) -> Result<cairn_engine::MaintenanceReport> {
        self.with_db(|db| Ok(db.maintain()?))
    }

    fn delete_series(
        &self,
        sets: Vec<Vec<cairn_engine::Matcher>>,
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<()> {
        self.with_db(|db| {
            for matchers in &sets {
                db.delete_series(matchers, mint, maxt)?;
            }
            Ok(())
        })
    }

    fn clean_tombstones(&self) -> Result<cairn_engine::MaintenanceReport> {
        self.with_db(|db| Ok(db.clean_tombstones()?))
    }

    fn snapshot(&self, skip_head: bool) -> Result<String> {
        self.with_db(|db| {
            // As Prometheus names them: UTC time, then 16 random hex digits.
            let random = ulid::Ulid::new().random() as u64;
            let name = format!(
                "{}-{random:016x}",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            );
            let dir = db.dir().join("snapshots").join(&name);
            db.snapshot(&dir, skip_head)?;
            Ok(name)
        })
    }

    fn stats(&self, limit: usize) -> Result<StorageStats> {
        self.with_db(|db| {
            let s = db.stats_with_top(limit);
            let blocks = db.blocks();
            let blocks_bytes = blocks
                .iter()
                .map(cairn_engine::block::retention::block_size_bytes)
                .sum();
            let list = |v: &[cairn_engine::index::Stat]| -> Vec<Stat> {
                v.iter()
                    .map(|e| Stat {
                        name: e.name.clone(),
                        value: e.count,
                    })
                    .collect()
            };
            let c = &s.cardinality;
            Ok(StorageStats {
                head_stats: HeadStats {
                    num_series: s.series,
                    num_label_pairs: c.num_label_pairs,
                    chunk_count: s.chunks,
                    min_time: s.min_time.unwrap_or(0),
                    max_time: s.max_time.unwrap_or(0),
                },
                series_count_by_metric_name: list(&c.series_count_by_metric_name),
                label_value_count_by_label_name: list(&c.label_value_count_by_label_name),
                memory_in_bytes_by_label_name: list(&c.memory_in_bytes_by_label_name),
                series_count_by_label_value_pair: list(&c.series_count_by_label_value_pair),
                samples: s.samples,
                memory_bytes: s.memory_bytes,
                wal_fsyncs: s.wal.fsyncs,
                wal_bytes_written: s.wal.bytes_written,
                wal_disk_bytes: db.wal_disk_bytes(),
                store_requests: db.block_store().requests(),
                object_cache_bytes: db.block_store().cache().map_or(0, |c| c.size_bytes()),
                blocks_opened_bytes: db.blocks_opened_bytes(),
                series_cache_entries: self.series_cache.as_ref().map_or(0, |c| c.len() as u64),
                series_cache_bytes: self
                    .series_cache
                    .as_ref()
                    .map_or(0, |c| c.memory_bytes() as u64),
                row_group_cache_bytes: db.block_store().memory_cache_bytes(),
                wal_fsync_latency: s.wal.fsync_latency,
                blocks: blocks.len() as u64,
                blocks_bytes,
            })
        })
    }

    fn close(&self) -> Result<()> {
        match self.db.write().take() {
            Some(db) => Ok(db.close()?),
            None => Ok(()),
        }
    }

    fn series_cache(&self) -> Option<&SeriesCache> {
        self.series_cache.as_ref()
    }
}
