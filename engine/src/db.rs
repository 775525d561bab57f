//! The database façade the server uses: open a data directory (replaying
//! the WAL into the head), append batches durably, query through the
//! [`Querier`] seam, read stats, close.
//!
//! **Durability contract of [`Db::append`].** For each batch: labels are
//! validated; samples are applied to the head under the append rules; every
//! stored sample (and every exact duplicate, whose first copy may belong to
//! an append still waiting for its fsync), together with the records of
//! series this append created or found not yet durable, is written to the
//! WAL; the call returns only after that write is fsynced. Hence:
//!
//! - an acknowledged sample is in the WAL on disk, and survives any crash;
//! - a sample can be visible to queries for the length of one group commit
//!   before it is durable; if the process dies in that window the sample
//!   was never acknowledged, and it is gone after restart;
//! - a series record always precedes the samples that reference it in the
//!   WAL, so replay never meets a sample of an unknown series;
//! - the WAL holds only samples the head accepted, all values agreeing per
//!   timestamp, so replay in any order rebuilds the same set of samples.
//!
//! If a WAL write or fsync fails, the WAL refuses all further writes and
//! every later append returns an error, before touching the head, until the
//! process restarts. (Appends already past that check when the failure
//! happens may leave samples in the head that are not durable; they were
//! never acknowledged.)

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use roaring::RoaringBitmap;

use crate::block::{BlockStore, BlocksQuerier};
use crate::error::{Error, Result};
use crate::head::series::ChunkPolicy;
use crate::head::{Head, HeadOptions, MemSeries, SampleOutcome};
use crate::index::{CardinalityStats, SeriesRef};
use crate::labels::Labels;
use crate::matcher::Matcher;
use crate::querier::{MergedQuerier, Querier, Series};
use crate::sample::{Sample, TimestampMs};
use crate::tombstone::{TombstonedQuerier, Tombstones};
use crate::wal::{Record, RecordBuf, RefSample, Wal, WalOptions, WalStats};

/// Most series per WAL Series record and samples per Samples record, so a
/// huge batch never makes a record beyond the reader's size limit.
const SERIES_PER_RECORD: usize = 10_000;
const SAMPLES_PER_RECORD: usize = 100_000;

/// How a database is opened.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Out-of-order samples are accepted when at most this much older than
    /// the newest sample in the head (not the wall clock). Default 10 min.
    pub ooo_window_ms: i64,
    /// A head chunk is sealed after this many samples. Default 240.
    pub chunk_max_samples: usize,
    /// Head chunks never cross a multiple of this range. Default 2 h.
    pub chunk_range_ms: i64,
    /// WAL segment size. Default 128 MiB.
    pub wal_segment_max_bytes: u64,
    /// Open even when the WAL is corrupt in the middle, truncating it at the
    /// first bad record (everything after it is dropped and the amount is
    /// logged). Off by default: such corruption is a startup error. The
    /// server exposes it as `--wal-repair`.
    pub wal_repair: bool,
    /// Where blocks are kept; None for the directory `blocks/` in the
    /// data directory. One database per store: it deletes what it finds
    /// unfinished there on open.
    pub block_store: Option<crate::block::BlockStore>,
    /// Most memory opened blocks (indexes, Parquet footers) may hold;
    /// least recently used ones are closed past it. Default: no limit.
    pub block_memory_budget: u64,
    /// Compaction and retention of the blocks. The first compaction range
    /// is the range [`Db::maintain`] cuts blocks from the head at.
    pub maintenance: MaintenanceOptions,
}

impl Default for DbOptions {
    fn default() -> Self {
        let h = HeadOptions::default();
        DbOptions {
            ooo_window_ms: h.ooo_window_ms,
            chunk_max_samples: h.chunk.max_samples,
            chunk_range_ms: h.chunk.range_ms,
            wal_segment_max_bytes: crate::wal::DEFAULT_SEGMENT_MAX_BYTES,
            wal_repair: false,
            block_store: None,
            block_memory_budget: u64::MAX,
            maintenance: MaintenanceOptions::default(),
        }
    }
}

/// One series of a write: its labels and samples (any order).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// A series of the head, as [`Db::append_series`] hands it out: a writer
/// that meets the same series again (by the same raw labels) passes the
/// handle instead of the labels and skips their validation and look-up,
/// the way Prometheus's scrape cache keeps series references. A handle
/// stays usable after head truncation removes its series: the next append
/// recreates the series from the handle's labels.
#[derive(Clone)]
pub struct SeriesHandle(Arc<MemSeries>);

impl SeriesHandle {
    /// Whether head truncation has removed the series (an append through
    /// the handle then recreates it, under a new handle).
    pub fn is_removed(&self) -> bool {
        self.0.data.lock().is_removed()
    }
}

/// Two handles are equal when they hold the same series object.
impl PartialEq for SeriesHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for SeriesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SeriesHandle")
            .field(&self.0.series_ref)
            .finish()
    }
}

/// The series an append of [`Db::append_series`] goes to.
#[derive(Debug, Clone, Copy)]
pub enum WriteTarget<'a> {
    /// By label set: validated, then looked up or created.
    Labels(&'a Labels),
    /// By a handle from an earlier append.
    Handle(&'a SeriesHandle),
}

/// Why samples of one series were not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// Older than the out-of-order window allows.
    TooOld,
    /// Another value is already stored at the timestamp.
    DuplicateSampleForTimestamp,
    /// The label set is not valid; no sample of the series was stored.
    InvalidLabels(String),
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::TooOld => f.write_str("too old sample"),
            RejectReason::DuplicateSampleForTimestamp => {
                f.write_str("duplicate sample for timestamp")
            }
            RejectReason::InvalidLabels(r) => write!(f, "invalid labels: {r}"),
        }
    }
}

/// Samples of one series of a batch that were rejected for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRejection {
    /// Index of the series in the batch.
    pub index: usize,
    pub reason: RejectReason,
    /// How many of its samples were rejected for this reason.
    pub samples: u64,
    /// The timestamp of the first of them (None for invalid labels on a
    /// series without samples).
    pub first_t: Option<TimestampMs>,
}

/// What an append did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Samples stored.
    pub samples_appended: u64,
    /// Exact duplicates of stored samples (no-ops, not errors).
    pub samples_duplicate: u64,
    pub series_created: u64,
    pub rejected: Vec<SeriesRejection>,
}

impl AppendOutcome {
    pub fn samples_rejected(&self) -> u64 {
        self.rejected.iter().map(|r| r.samples).sum()
    }
}

/// Figures of the head, for `/api/v1/status/tsdb` and benches.
#[derive(Debug, Clone)]
pub struct HeadStats {
    pub series: u64,
    pub samples: u64,
    pub chunks: u64,
    /// Estimated bytes of the head: series, chunks, registry, interned
    /// strings and postings (`series_memory_bytes + index_memory_bytes`).
    pub memory_bytes: u64,
    /// Series structs, their label vectors, chunks, buffers, registry maps.
    pub series_memory_bytes: u64,
    /// Interned strings and postings.
    pub index_memory_bytes: u64,
    pub min_time: Option<TimestampMs>,
    pub max_time: Option<TimestampMs>,
    pub cardinality: CardinalityStats,
    pub wal: WalStats,
}

/// The database. `Send + Sync`; share it by `Arc`.
pub struct Db {
    dir: PathBuf,
    head: Arc<Head>,
    wal: Wal,
    blocks: BlockStore,
    /// The published blocks, re-listed after every change this database
    /// makes to the store.
    blocks_querier: Arc<BlocksQuerier>,
    maintenance: MaintenanceOptions,
    /// [`Db::maintain`] runs one at a time.
    maintenance_lock: parking_lot::Mutex<()>,
    /// The head truncation bound the WAL was last checkpointed at.
    checkpointed_at: std::sync::atomic::AtomicI64,
    /// Deletions in force (stored in the block store; see
    /// [`crate::tombstone`]), replaced whole on each change.
    tombstones: parking_lot::RwLock<Tombstones>,
    _lock: File,
}

impl Db {
    /// Opens or creates the database in `dir` and replays its WAL.
    pub fn open(dir: &Path, opts: DbOptions) -> Result<Db> {
        let started = Instant::now();
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => Error::DirectoryLocked {
                path: dir.to_path_buf(),
            },
            fs::TryLockError::Error(e) => io_err(&lock_path, e),
        })?;

        let blocks = match &opts.block_store {
            Some(store) => store.clone(),
            None => BlockStore::local(&dir.join("blocks"))?,
        };
        for ulid in crate::block::clean_partial_blocks(&blocks)? {
            tracing::warn!(block = %ulid, "removed a block whose upload was interrupted");
        }
        let blocks_querier = Arc::new(BlocksQuerier::open(blocks.clone())?);
        blocks_querier.set_memory_budget(opts.block_memory_budget);
        let tombstones: Tombstones = Arc::new(crate::tombstone::load(&blocks)?);

        let head = Arc::new(Head::new(HeadOptions {
            ooo_window_ms: opts.ooo_window_ms.max(0),
            chunk: ChunkPolicy {
                max_samples: opts.chunk_max_samples.max(1),
                range_ms: opts.chunk_range_ms.max(1),
            },
        }));
        // Ranges already in blocks are closed: the WAL may still hold
        // their samples (a crash before the checkpoint), and replay and
        // appends must not bring them back into the head.
        let block_range = block_range_ms(&opts.maintenance);
        if let Some(newest) = blocks_querier.metas().iter().map(|m| m.max_time).max() {
            let bound = crate::block::range_start(newest, block_range).saturating_add(block_range);
            head.raise_min_valid_time(bound);
        }
        let wal_dir = dir.join("wal");
        let mut replay = Replay {
            head: &head,
            refs: Default::default(),
            samples: 0,
            unknown_ref: 0,
            conflicts: 0,
            in_blocks: 0,
            wal_dir: &wal_dir,
        };
        let (wal, report) = Wal::open(
            &wal_dir,
            WalOptions {
                segment_max_bytes: opts.wal_segment_max_bytes,
                repair: opts.wal_repair,
            },
            |rec| replay.apply(rec),
        )?;
        if replay.unknown_ref > 0 {
            tracing::warn!(
                samples = replay.unknown_ref,
                "WAL replay: samples of series without a series record were dropped"
            );
        }
        if replay.in_blocks > 0 {
            tracing::info!(
                samples = replay.in_blocks,
                "WAL replay: samples already in blocks were skipped"
            );
        }
        if replay.conflicts > 0 {
            tracing::warn!(
                samples = replay.conflicts,
                "WAL replay: samples conflicting with an earlier value at the same timestamp were dropped"
            );
        }
        tracing::info!(
            dir = %dir.display(),
            series = head.num_series(),
            samples = replay.samples,
            records = report.records,
            segments = report.segments,
            bytes_dropped = report.bytes_dropped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "database ready"
        );
        Ok(Db {
            dir: dir.to_path_buf(),
            head,
            wal,
            blocks,
            blocks_querier,
            maintenance: opts.maintenance,
            maintenance_lock: parking_lot::Mutex::new(()),
            checkpointed_at: std::sync::atomic::AtomicI64::new(i64::MIN),
            tombstones: parking_lot::RwLock::new(tombstones),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a batch and returns once everything stored is fsynced in the
    /// WAL (see the module docs for the exact contract). Rejected series
    /// and samples are reported in the outcome; `Err` means the batch may
    /// not be durable (I/O failure) and must not be acknowledged.
    pub fn append(&self, batch: &[WriteSeries]) -> Result<AppendOutcome> {
        self.append_series(
            batch
                .iter()
                .map(|w| (WriteTarget::Labels(&w.labels), w.samples.as_slice())),
            |_, _| {},
        )
    }

    /// [`Db::append`] for series given by labels or by a [`SeriesHandle`]
    /// from an earlier call. `looked_up(index, handle)` is called for every
    /// series of the batch found or created by its labels (and for a
    /// handle whose series head truncation removed since, with its
    /// replacement), so the caller can keep the handle for the next time.
    /// A handle skips the label validation and the look-up: it costs one
    /// lock of the series.
    pub fn append_series<'a>(
        &self,
        batch: impl IntoIterator<Item = (WriteTarget<'a>, &'a [Sample])>,
        mut looked_up: impl FnMut(usize, SeriesHandle),
    ) -> Result<AppendOutcome> {
        if !self.wal.is_available() {
            return Err(Error::WalUnavailable {
                reason: "the WAL is closed or failed; restart to recover".into(),
            });
        }
        let mut out = AppendOutcome::default();
        let mut to_log: Vec<Arc<MemSeries>> = Vec::new();
        let mut samples: Vec<RefSample> = Vec::new();
        let guard = self.head.append_guard();
        for (index, (target, ws_samples)) in batch.into_iter().enumerate() {
            if let WriteTarget::Labels(labels) = target
                && let Err(reason) = validate_labels(labels)
            {
                out.rejected.push(SeriesRejection {
                    index,
                    reason: RejectReason::InvalidLabels(reason),
                    samples: ws_samples.len() as u64,
                    first_t: ws_samples.first().map(|s| s.t),
                });
                continue;
            }
            if ws_samples.is_empty() {
                continue;
            }
            let mut known = match target {
                WriteTarget::Handle(h) => Some(h.0.clone()),
                WriteTarget::Labels(_) => None,
            };
            let mut removed_labels: Option<Labels> = None;
            let res = loop {
                let (series, created) = match known.take() {
                    Some(s) => (s, false),
                    None => {
                        let labels = match (target, &removed_labels) {
                            (_, Some(l)) => l,
                            (WriteTarget::Labels(l), None) => l,
                            (WriteTarget::Handle(h), None) => {
                                removed_labels.insert(self.head.series_labels(&h.0))
                            }
                        };
                        let (s, created) = self.head.get_or_create(labels);
                        looked_up(index, SeriesHandle(s.clone()));
                        (s, created)
                    }
                };
                let r = series.series_ref.0;
                let res = self.head.append_samples(&series, ws_samples, |s| {
                    samples.push(RefSample {
                        series_ref: r,
                        t: s.t,
                        v: s.v,
                    })
                });
                // None: head truncation removed the series meanwhile.
                if let Some(res) = res {
                    out.series_created += u64::from(created);
                    if created || series.wal_pending.load(Ordering::Acquire) {
                        to_log.push(series);
                    }
                    break res;
                }
            };
            out.samples_appended += res.appended;
            out.samples_duplicate += res.duplicates;
            for (reason, n) in [
                (RejectReason::TooOld, res.too_old),
                (
                    RejectReason::DuplicateSampleForTimestamp,
                    res.duplicate_timestamp,
                ),
            ] {
                if n > 0 {
                    out.rejected.push(SeriesRejection {
                        index,
                        reason,
                        samples: n,
                        first_t: res.first_rejected_t,
                    });
                }
            }
        }
        drop(guard);
        let mut buf = RecordBuf::new();
        for part in to_log.chunks(SERIES_PER_RECORD) {
            let labels: Vec<(u32, Labels)> = part
                .iter()
                .map(|s| (s.series_ref.0, self.head.series_labels(s)))
                .collect();
            buf.push_series(labels.iter().map(|(r, l)| (*r, l)));
        }
        for part in samples.chunks(SAMPLES_PER_RECORD) {
            buf.push_samples(part);
        }
        self.wal.log(buf)?;
        for s in &to_log {
            s.wal_pending.store(false, Ordering::Release);
        }
        Ok(out)
    }

    /// The label set of the series behind a handle.
    pub fn handle_labels(&self, handle: &SeriesHandle) -> Labels {
        self.head.series_labels(&handle.0)
    }

    /// A querier over everything stored: the head and the blocks, each
    /// sample once. It reads live data: samples appended and blocks
    /// published after it was made are visible to later calls.
    pub fn querier(&self) -> Arc<dyn Querier> {
        let merged = Arc::new(MergedQuerier::new(vec![
            self.head_querier(),
            self.blocks_querier.clone(),
        ]));
        TombstonedQuerier::wrap(merged, &self.tombstones.read())
    }

    /// A querier over the head only.
    pub fn head_querier(&self) -> Arc<dyn Querier> {
        Arc::new(HeadQuerier {
            head: self.head.clone(),
        })
    }

    /// Memory held by opened blocks now.
    pub fn blocks_opened_bytes(&self) -> u64 {
        self.blocks_querier.opened_bytes()
    }

    /// The store this database keeps its blocks in.
    pub fn block_store(&self) -> &BlockStore {
        &self.blocks
    }

    /// The published blocks' metas, oldest first, as of the last change.
    pub fn blocks(&self) -> Vec<crate::block::BlockMeta> {
        self.blocks_querier.metas()
    }

    /// Head figures, with the top 10 of each cardinality list.
    pub fn stats(&self) -> HeadStats {
        self.stats_with_top(10)
    }

    /// Head figures, with the top `top_n` of each cardinality list.
    pub fn stats_with_top(&self, top_n: usize) -> HeadStats {
        let (series_memory_bytes, chunks) = self.head.memory_bytes();
        let index_memory_bytes =
            (self.head.interner().memory_bytes() + self.head.postings().memory_bytes()) as u64;
        HeadStats {
            series: self.head.num_series(),
            samples: self.head.num_samples(),
            chunks,
            memory_bytes: series_memory_bytes + index_memory_bytes,
            series_memory_bytes,
            index_memory_bytes,
            min_time: self.head.min_time(),
            max_time: self.head.max_time(),
            cardinality: self.head.postings().cardinality(top_n),
            wal: self.wal.stats(),
        }
    }

    /// Bytes the WAL takes on disk now (see [`crate::wal::Wal::disk_bytes`]).
    pub fn wal_disk_bytes(&self) -> u64 {
        self.wal.disk_bytes()
    }

    /// Condenses the WAL's closed segments into a checkpoint that keeps the
    /// series still in the head and their samples at or after `mint`, and
    /// deletes the segments. Called when the head is truncated into blocks.
    pub fn checkpoint_wal(
        &self,
        mint: TimestampMs,
    ) -> Result<crate::wal::checkpoint::CheckpointStats> {
        let head = self.head.clone();
        self.wal
            .checkpoint(move |r| head.series(SeriesRef(r)).is_some(), mint)
    }

    /// Writes a level-1 block for every aligned range of `range_ms` that
    /// the head holds and that can no longer change: ranges ending at or
    /// before the newest sample minus the out-of-order window. Before a
    /// range is read, the head's lower bound is raised to its end, so
    /// samples for it (even of new series) are rejected from then on.
    /// Ranges that already have a published level-1 block in `store`, or
    /// that a compacted block overlaps, are skipped, so calling this again
    /// (or after a restart, while the WAL still holds the range) writes
    /// nothing twice. Returns the new blocks, each durable in the store
    /// when returned.
    ///
    /// Raising the bound waits for appends that read the old one, so a
    /// written range never changes. The head is not truncated here (see
    /// [`Db::maintain`], which also uses the database's own store).
    pub fn cut_blocks(
        &self,
        store: &crate::block::BlockStore,
        range_ms: i64,
        opts: crate::block::BlockOptions,
    ) -> Result<Vec<crate::block::BlockMeta>> {
        let range_ms = range_ms.max(1);
        let (Some(lo), Some(hi)) = (self.head.min_time(), self.head.max_time()) else {
            return Ok(Vec::new());
        };
        let frozen_end = hi.saturating_sub(self.head.options().ooo_window_ms);
        let existing = crate::block::list_blocks(store)?;
        // Deleted samples are not written into blocks.
        let q = TombstonedQuerier::wrap(self.head_querier(), &self.tombstones.read());
        let mut out = Vec::new();
        let mut start = crate::block::range_start(lo, range_ms);
        while start.saturating_add(range_ms) <= frozen_end {
            let end = start + range_ms; // exclusive
            // Cut before if a level-1 block lies inside the range, or a
            // compacted block (made of whole aligned level-1 blocks)
            // overlaps it: the head is not truncated after a cut, so it
            // still holds ranges that compaction has already merged.
            let covered = existing.iter().any(|m| {
                if m.compaction.level <= 1 {
                    m.min_time >= start && m.max_time < end
                } else {
                    m.min_time < end && m.max_time >= start
                }
            });
            if !covered {
                self.head.raise_min_valid_time(end);
                if let Some(meta) =
                    crate::block::writer::write_block(store, &*q, start, end - 1, opts.clone())?
                {
                    tracing::info!(block = %meta.ulid, mint = start, maxt = end - 1,
                        series = meta.stats.num_series, samples = meta.stats.num_samples,
                        "block written");
                    out.push(meta);
                }
            }
            start = end;
        }
        Ok(out)
    }

    /// One pass of the block lifecycle on the database's own store, as the
    /// server's background loop runs it: cut every frozen range of the
    /// head into a level-1 block, re-list the blocks (queries see them),
    /// truncate the head before the cut boundary and checkpoint the WAL
    /// there, then compact and apply retention, and re-list again.
    ///
    /// Each step is durable before the next undoes anything: a crash
    /// between any two leaves every sample readable once (a block already
    /// written shadows the same samples replayed from the WAL, which are
    /// skipped on open). Passes run one at a time.
    pub fn maintain(&self) -> Result<MaintenanceReport> {
        let _one_at_a_time = self.maintenance_lock.lock();
        let range = block_range_ms(&self.maintenance);
        let cut = self.cut_blocks(
            &self.blocks,
            range,
            self.maintenance.compaction.block.clone(),
        )?;
        if !cut.is_empty() {
            self.blocks_querier.refresh()?;
        }
        // Everything before the head's lower bound is in blocks now (cut
        // just now or before this process started).
        let bound = self.head.min_valid_time();
        let mut report = MaintenanceReport {
            blocks_cut: cut.iter().map(|m| m.ulid.clone()).collect(),
            ..Default::default()
        };
        if bound > i64::MIN {
            report.head_truncated = self.head.truncate(bound);
            if bound > self.checkpointed_at.load(Ordering::Acquire) {
                let cp = self.checkpoint_wal(bound)?;
                self.checkpointed_at.store(bound, Ordering::Release);
                report.wal_segments_deleted = cp.segments_deleted;
            }
        }
        let mut opts = self.maintenance.clone();
        opts.compaction.tombstones = self.tombstones();
        let m = self.run_maintenance(&self.blocks, &opts)?;
        report.compaction = m.compaction;
        report.retention_deleted = m.retention_deleted;
        self.blocks_querier.refresh()?;
        report.tombstones_removed = self.prune_tombstones()?;
        Ok(report)
    }

    /// Prometheus's TSDB snapshot: copies every published block into
    /// `dir` (a new local block store) and, unless `skip_head`, writes what
    /// the head holds as one more block there, deleted series left out.
    /// The result is a set of complete blocks, readable by pointing a
    /// block store at `dir`. Returns the blocks written.
    pub fn snapshot(&self, dir: &Path, skip_head: bool) -> Result<Vec<crate::block::BlockMeta>> {
        let target = BlockStore::local(dir)?;
        let mut out = Vec::new();
        {
            // No compaction may delete a block while it is copied.
            let _no_maintenance = self.maintenance_lock.lock();
            for meta in self.blocks_querier.metas() {
                for obj in self.blocks.list(&meta.ulid)? {
                    if obj.key.ends_with(crate::block::META_FILE) {
                        continue;
                    }
                    target.put(&obj.key, self.blocks.get(&obj.key)?)?;
                }
                let key = format!("{}/{}", meta.ulid, crate::block::META_FILE);
                target.put(&key, self.blocks.get(&key)?)?;
                out.push(meta);
            }
        }
        if !skip_head && let (Some(lo), Some(hi)) = (self.head.min_time(), self.head.max_time()) {
            let q = TombstonedQuerier::wrap(self.head_querier(), &self.tombstones.read());
            if let Some(meta) = crate::block::writer::write_block(
                &target,
                &*q,
                lo,
                hi,
                self.maintenance.compaction.block.clone(),
            )? {
                out.push(meta);
            }
        }
        Ok(out)
    }

    /// Flushes and fsyncs the WAL and releases the directory.
    pub fn close(self) -> Result<()> {
        self.wal.close()
    }

    /// Like [`Db::close`] for a database shared by `Arc`: flushes, fsyncs
    /// and stops the WAL; later appends fail with
    /// [`Error::WalUnavailable`] while queries keep working. The directory
    /// lock is released when the last reference is dropped.
    pub fn shutdown(&self) -> Result<()> {
        self.wal.close()
    }
}

/// The range blocks are cut from the head at: the first compaction range.
fn block_range_ms(m: &MaintenanceOptions) -> i64 {
    m.compaction
        .ranges_ms
        .first()
        .copied()
        .unwrap_or(crate::block::DEFAULT_BLOCK_RANGE_MS)
        .max(1)
}

/// Validates a label set for storage: at least one label, no empty name.
/// Sorted unique names and non-empty values are guaranteed by [`Labels`].
pub fn validate_labels(labels: &Labels) -> std::result::Result<(), String> {
    if labels.is_empty() {
        return Err("empty label set".into());
    }
    if labels.iter().any(|l| l.name.is_empty()) {
        return Err(format!("empty label name in {labels}"));
    }
    Ok(())
}

/// Fibonacci hashing for dense series references.
#[derive(Default, Clone, Copy)]
struct RefHasherImpl(u64);

impl std::hash::Hasher for RefHasherImpl {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.0 = u64::from(x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type RefHasher = std::hash::BuildHasherDefault<RefHasherImpl>;

/// Rebuilds the head from WAL records.
struct Replay<'a> {
    head: &'a Head,
    refs: std::collections::HashMap<u32, Arc<MemSeries>, RefHasher>,
    samples: u64,
    unknown_ref: u64,
    conflicts: u64,
    /// Samples before the head's lower bound: already in blocks.
    in_blocks: u64,
    wal_dir: &'a Path,
}

impl Replay<'_> {
    fn apply(&mut self, rec: Record) -> Result<()> {
        match rec {
            Record::Series(series) => {
                // Refs already known must name the same labels; the rest
                // are created together (postings added in one batch).
                let mut fresh: Vec<(u32, Labels)> = Vec::with_capacity(series.len());
                for (r, labels) in series {
                    if let Some(known) = self.refs.get(&r) {
                        if !self.head.series_has_labels(known, &labels) {
                            return Err(Error::Corrupted {
                                path: self.wal_dir.to_path_buf(),
                                offset: 0,
                                reason: format!(
                                    "series reference {r} recorded for {} and for {labels}",
                                    self.head.series_labels(known)
                                ),
                            });
                        }
                        continue;
                    }
                    fresh.push((r, labels));
                }
                let made = self.head.create_many_with_refs(&fresh);
                for ((r, _), s) in fresh.iter().zip(made) {
                    self.refs.insert(*r, s);
                }
            }
            Record::Samples(samples) => {
                // An append logs each series' samples contiguously: apply
                // each run under one lock.
                for run in samples.chunk_by(|a, b| a.series_ref == b.series_ref) {
                    let min_valid = self.head.min_valid_time();
                    let Some(series) = self.refs.get(&run[0].series_ref) else {
                        // Series removed by head truncation lose their
                        // record at the next checkpoint; their samples
                        // left in segments are all in blocks.
                        let old = run.iter().filter(|s| s.t < min_valid).count() as u64;
                        self.in_blocks += old;
                        self.unknown_ref += run.len() as u64 - old;
                        continue;
                    };
                    let (applied, conflicts, in_blocks) =
                        (&mut self.samples, &mut self.conflicts, &mut self.in_blocks);
                    self.head.replay_samples(
                        series,
                        run.iter().map(|s| Sample { t: s.t, v: s.v }),
                        |out| match out {
                            SampleOutcome::Appended => *applied += 1,
                            SampleOutcome::Duplicate => {}
                            SampleOutcome::TooOld => *in_blocks += 1,
                            SampleOutcome::DuplicateTimestamp => *conflicts += 1,
                        },
                    );
                }
            }
        }
        Ok(())
    }
}

/// The head's implementation of the read seam.
struct HeadQuerier {
    head: Arc<Head>,
}

impl HeadQuerier {
    fn sorted_series(&self, refs: &RoaringBitmap) -> Vec<(Labels, Arc<MemSeries>)> {
        let mut v: Vec<(Labels, Arc<MemSeries>)> = refs
            .iter()
            .filter_map(|r| self.head.series(SeriesRef(r)))
            .map(|s| (self.head.series_labels(&s), s))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

impl Querier for HeadQuerier {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Series>> {
        // One pass: a series is looked up and locked once, its snapshot
        // (None outside the range) deciding whether it is selected.
        let refs = self.head.candidate_refs(matchers, mint, maxt, false);
        let mut out: Vec<Series> = refs
            .iter()
            .filter_map(|r| {
                let s = self.head.series(SeriesRef(r))?;
                let snap = s.data.lock().snapshot(mint, maxt)?;
                Some(Series::from_chunks(
                    self.head.series_labels(&s),
                    snap.chunks,
                    snap.tail,
                    !snap.needs_sort,
                    mint,
                    maxt,
                ))
            })
            .collect();
        // Label sets are unique in the head.
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn series(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Labels>> {
        let refs = self.head.select_refs(matchers, mint, maxt, true);
        Ok(self
            .sorted_series(&refs)
            .into_iter()
            .map(|(labels, _)| labels)
            .collect())
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>> {
        if !self.head.overlaps(mint, maxt) {
            return Ok(Vec::new());
        }
        let refs = self.head.select_refs(matchers, mint, maxt, true);
        Ok(self.head.postings().label_names(Some(&refs)))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>> {
        if !self.head.overlaps(mint, maxt) {
            return Ok(Vec::new());
        }
        let refs = self.head.select_refs(matchers, mint, maxt, true);
        Ok(self.head.postings().label_values(name, Some(&refs)))
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

mod deletion;
mod maintenance;

pub use maintenance::{MaintenanceOptions, MaintenanceReport};

#[cfg(test)]
mod tests;
