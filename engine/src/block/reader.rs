//! The block read path: [`BlockReader`] serves one block through the
//! [`Querier`] seam, [`BlocksQuerier`] every published block of a store.
//!
//! Blocks open lazily: listing reads only `meta.json`; the first query that
//! overlaps a block's time range reads its index (one GET) and the Parquet
//! footer (one or two range GETs), and keeps both in memory for the
//! reader's lifetime. A select then fetches only the column chunks of the
//! row groups holding the selected series, and only the columns it needs
//! (series, chunk time range and count, time stream id, value stream):
//! the label columns are never read, labels come from the index. A chunk is
//! put together from its value stream and its time stream, which the index
//! holds ([`Chunk::from_streams`]); format-1 blocks store whole chunks.
//! An opened block keeps the chunks of the series queries selected (all
//! of each series' chunks) within half the block memory budget, so a
//! repeated query reads nothing from the file; the budget's least recently
//! used blocks are closed with their caches.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type};
use bytes::Bytes;
use parking_lot::Mutex;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::file::reader::{ChunkReader, Length};
use roaring::RoaringBitmap;

use super::index::{self, BlockIndex};
use super::store::BlockStore;
use super::writer::{
    COL_CHUNK, COL_MAX_TIME, COL_MIN_TIME, COL_NUM_SAMPLES, COL_SERIES, COL_TIME_STREAM,
};
use super::{BlockMeta, INDEX_FILE, PARQUET_FILE, PARQUET_VERSION_KEY, list_blocks};
use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::labels::Labels;
use crate::matcher::Matcher;
use crate::querier::{MergedQuerier, Querier, Series};
use crate::sample::{Sample, TimestampMs};

/// Most bytes fetched for a read of unknown length outside the fetched
/// ranges (a page header: a few hundred bytes).
const READ_WINDOW: u64 = 1 << 20;

/// Bytes of a Parquet file's tail fetched to read its footer at once.
const FOOTER_GUESS: u64 = 64 << 10;

/// A Parquet file in the object store, read by byte ranges; reads inside
/// ranges fetched ahead (a select's column chunks, fetched concurrently)
/// are served from those.
#[derive(Clone)]
struct StoreFile {
    store: BlockStore,
    key: String,
    size: u64,
    /// (start offset, bytes) of ranges fetched ahead.
    prefetched: Arc<Vec<(u64, Bytes)>>,
}

impl Length for StoreFile {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for StoreFile {
    type T = Cursor<Bytes>;

    /// The page reader reads each page header through this: served from
    /// the fetched range holding `start` (to that range's end), else a
    /// bounded window, never the rest of the file.
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        for (at, bytes) in self.prefetched.iter() {
            let end = at + bytes.len() as u64;
            if *at <= start && start < end {
                return Ok(Cursor::new(bytes.slice((start - at) as usize..)));
            }
        }
        self.range(start, self.size.saturating_sub(start).min(READ_WINDOW))
            .map(Cursor::new)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.range(start, length as u64)
    }
}

impl StoreFile {
    fn range(&self, start: u64, len: u64) -> parquet::errors::Result<Bytes> {
        let end = start.saturating_add(len).min(self.size);
        if start >= end {
            return Ok(Bytes::new());
        }
        for (at, bytes) in self.prefetched.iter() {
            if *at <= start && end <= at + bytes.len() as u64 {
                return Ok(bytes.slice((start - at) as usize..(end - at) as usize));
            }
        }
        self.store
            .get_range(&self.key, start..end)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
    }
}

/// What a block keeps in memory once opened.
struct Opened {
    index: BlockIndex,
    file: StoreFile,
    parquet: ArrowReaderMetadata,
    /// First row of each row group, then the total row count.
    row_group_starts: Vec<u64>,
    projection: ProjectionMask,
    /// The projected columns' indices in the file (flat: leaves).
    leaves: Vec<usize>,
    /// Estimated memory held (decoded index, Parquet metadata).
    memory_bytes: u64,
    /// Positions of the projected columns in a read batch: series, min
    /// time, max time, chunk, and for format 2 sample count and time
    /// stream.
    cols: [usize; 4],
    split: Option<[usize; 2]>,
    /// All chunks of recently selected series, by ordinal (whatever range
    /// selected them): a dashboard refreshing the same panels reads no
    /// Parquet pages and assembles no chunks again. Counted in the
    /// opened block's memory, so the block memory budget bounds it (least
    /// recently used blocks are closed, their caches with them).
    chunk_cache: Mutex<std::collections::HashMap<u32, Arc<[Chunk]>>>,
    chunk_cache_bytes: std::sync::atomic::AtomicU64,
}

/// One block, opened lazily.
pub struct BlockReader {
    store: BlockStore,
    meta: BlockMeta,
    opened: Mutex<Option<Arc<Opened>>>,
    /// When a read last opened (or found open) the block.
    last_used: Mutex<Option<std::time::Instant>>,
}

/// Series of one block selected for a query: labels and chunks overlapping
/// the range, in time order.
type BlockSeries = (Labels, Vec<Chunk>);

/// Memory a cached series holds: its chunks' bytes and reference counts,
/// the slice of chunks, and the map entry.
fn cached_bytes(chunks: &[Chunk]) -> u64 {
    let bytes: usize = chunks.iter().map(|c| c.as_bytes().len() + 16).sum();
    (bytes + std::mem::size_of_val(chunks) + 16 + 32) as u64
}

impl BlockReader {
    /// A reader for a published block (nothing is read until a query).
    pub fn new(store: BlockStore, meta: BlockMeta) -> Self {
        BlockReader {
            store,
            meta,
            opened: Mutex::new(None),
            last_used: Mutex::new(None),
        }
    }

    /// Memory held by the opened index, footer and cached chunks (0 when
    /// not open).
    pub fn opened_bytes(&self) -> u64 {
        self.opened.lock().as_ref().map_or(0, |o| {
            o.memory_bytes
                + o.chunk_cache_bytes
                    .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Drops the opened index and footer (reopened by the next read;
    /// reads in progress keep what they hold).
    pub fn close(&self) {
        *self.opened.lock() = None;
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    fn overlaps(&self, mint: TimestampMs, maxt: TimestampMs) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time >= mint
    }

    fn location(&self, file: &str) -> String {
        format!("{}/{}/{file}", self.store.location(), self.meta.ulid)
    }

    /// Reads and caches the index and the Parquet footer.
    fn open(&self) -> Result<Arc<Opened>> {
        *self.last_used.lock() = Some(std::time::Instant::now());
        let mut slot = self.opened.lock();
        if let Some(o) = &*slot {
            return Ok(Arc::clone(o));
        }
        let dir = &self.meta.ulid;
        let index_key = format!("{dir}/{INDEX_FILE}");
        let bytes = self.store.get(&index_key)?;
        let index = index::decode(&bytes, &self.location(INDEX_FILE))?;

        let key = format!("{dir}/{PARQUET_FILE}");
        let size = match self.meta.file_size(PARQUET_FILE) {
            Some(s) => s,
            None => self
                .store
                .list(dir)?
                .into_iter()
                .find(|o| o.key == key)
                .map(|o| o.size_bytes)
                .ok_or_else(|| Error::Corrupted {
                    path: self.location(PARQUET_FILE).into(),
                    offset: 0,
                    reason: "missing".into(),
                })?,
        };
        // The footer (its length, then the metadata) in one request: the
        // file's tail, which holds both unless the metadata is large.
        let tail_len = size.min(FOOTER_GUESS);
        let tail_start = size - tail_len;
        let tail = self.store.get_range(&key, tail_start..size)?;
        let file = StoreFile {
            store: self.store.clone(),
            key,
            size,
            prefetched: Arc::new(vec![(tail_start, tail)]),
        };
        let location = self.location(PARQUET_FILE);
        let pq_err = |source| Error::Parquet {
            location: location.clone(),
            source,
        };
        let parquet =
            ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(pq_err)?;
        let md = parquet.metadata();
        let version = md
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == PARQUET_VERSION_KEY))
            .and_then(|k| k.value.as_deref())
            .and_then(|v| v.parse::<u64>().ok());
        if version != Some(self.meta.version) {
            return Err(match version {
                Some(v) if !super::version_supported(v) => super::unsupported_version(location, v),
                _ => Error::Corrupted {
                    path: location.into(),
                    offset: 0,
                    reason: format!(
                        "the Parquet file's format version {version:?} differs from meta.json's {}",
                        self.meta.version
                    ),
                },
            });
        }
        let mut row_group_starts = Vec::with_capacity(md.num_row_groups() + 1);
        let mut total = 0u64;
        for rg in md.row_groups() {
            row_group_starts.push(total);
            total += rg.num_rows() as u64;
        }
        row_group_starts.push(total);
        let expected: u64 = index.series.iter().map(|s| u64::from(s.num_chunks)).sum();
        if expected != total {
            return Err(Error::Corrupted {
                path: location.into(),
                offset: 0,
                reason: format!("index names {expected} chunk rows, the file has {total}"),
            });
        }
        let schema = parquet.schema();
        let find = |name: &str| {
            schema.index_of(name).map_err(|_| Error::Corrupted {
                path: self.location(PARQUET_FILE).into(),
                offset: 0,
                reason: format!("column {name} missing"),
            })
        };
        let mut wanted = vec![
            find(COL_SERIES)?,
            find(COL_MIN_TIME)?,
            find(COL_MAX_TIME)?,
            find(COL_CHUNK)?,
        ];
        let split_format = self.meta.version >= 2;
        if split_format {
            wanted.push(find(COL_NUM_SAMPLES)?);
            wanted.push(find(COL_TIME_STREAM)?);
        }
        // Every column is a flat root column, so root indices are leaves.
        let projection =
            ProjectionMask::roots(md.file_metadata().schema_descr(), wanted.iter().copied());
        // Projected columns keep file order in the batch.
        let mut order = wanted.clone();
        order.sort_unstable();
        let pos = |c: usize| order.iter().position(|&x| x == c).unwrap_or(0);
        let cols = [
            pos(wanted[0]),
            pos(wanted[1]),
            pos(wanted[2]),
            pos(wanted[3]),
        ];
        let split = split_format.then(|| [pos(wanted[4]), pos(wanted[5])]);
        let memory_bytes = index.memory_bytes() + md.memory_size() as u64;
        let opened = Arc::new(Opened {
            index,
            file,
            parquet,
            row_group_starts,
            projection,
            leaves: wanted.clone(),
            memory_bytes,
            cols,
            split,
            chunk_cache: Mutex::new(std::collections::HashMap::new()),
            chunk_cache_bytes: std::sync::atomic::AtomicU64::new(0),
        });
        *slot = Some(Arc::clone(&opened));
        Ok(opened)
    }

    /// Ordinals of series matching `matchers` (all when empty and
    /// `all_if_empty`) with samples in `[mint, maxt]`.
    fn select_ordinals(
        &self,
        o: &Opened,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
        all_if_empty: bool,
    ) -> RoaringBitmap {
        let mut bm = if matchers.is_empty() && all_if_empty {
            o.index.postings.all()
        } else {
            o.index.postings.select(matchers)
        };
        if !(mint <= self.meta.min_time && maxt >= self.meta.max_time) {
            bm.retain(|i| {
                o.index
                    .series
                    .get(i as usize)
                    .is_some_and(|s| s.min_time <= maxt && s.max_time >= mint)
            });
        }
        bm
    }

    /// The selected series with their chunks overlapping `[mint, maxt]`, in
    /// block order (by metric name, then labels). Series read from the
    /// block are kept in its chunk cache while it holds less than
    /// `cache_limit` bytes (0: not cached, as compaction reads).
    pub(crate) fn select_chunks(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
        cache_limit: u64,
    ) -> Result<Vec<BlockSeries>> {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.overlaps(mint, maxt) {
            return Ok(Vec::new());
        }
        let o = self.open()?;
        let ordinals = self.select_ordinals(&o, matchers, mint, maxt, false);
        if ordinals.is_empty() {
            return Ok(Vec::new());
        }
        let mut cached: Vec<(u32, Arc<[Chunk]>)> = Vec::new();
        let mut missing = RoaringBitmap::new();
        {
            let cache = o.chunk_cache.lock();
            for ord in &ordinals {
                match cache.get(&ord) {
                    Some(c) => cached.push((ord, Arc::clone(c))),
                    None => {
                        missing.insert(ord);
                    }
                }
            }
        }
        let read = if missing.is_empty() {
            Vec::new()
        } else {
            self.read_chunks(&o, &missing)?
        };
        if cache_limit > 0 && !read.is_empty() {
            let mut cache = o.chunk_cache.lock();
            for (ord, chunks) in &read {
                let bytes = cached_bytes(chunks);
                if o.chunk_cache_bytes.load(Relaxed) + bytes > cache_limit {
                    break;
                }
                if cache.insert(*ord, Arc::clone(chunks)).is_none() {
                    o.chunk_cache_bytes.fetch_add(bytes, Relaxed);
                }
            }
        }
        // Both lists ascend by ordinal: merge them, keeping the chunks
        // that overlap the range.
        let mut out: Vec<BlockSeries> = Vec::with_capacity(ordinals.len() as usize);
        let (mut a, mut b) = (cached.into_iter().peekable(), read.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 < y.0 => a.next(),
                (Some(_), None) => a.next(),
                (_, Some(_)) => b.next(),
                (None, None) => break,
            };
            let Some((ord, chunks)) = next else { break };
            let kept: Vec<Chunk> = chunks
                .iter()
                .filter(|c| c.min_time() <= maxt && c.max_time() >= mint)
                .cloned()
                .collect();
            if kept.is_empty() {
                continue;
            }
            let Some(s) = o.index.series.get(ord as usize) else {
                continue;
            };
            out.push((s.labels.clone(), kept));
        }
        Ok(out)
    }

    /// Every chunk of the series `ordinals`, read from the block's Parquet
    /// file and checked against the index, by ascending ordinal.
    fn read_chunks(
        &self,
        o: &Opened,
        ordinals: &RoaringBitmap,
    ) -> Result<Vec<(u32, Arc<[Chunk]>)>> {
        let location = self.location(PARQUET_FILE);
        let corrupt = |reason: String| Error::Corrupted {
            path: location.clone().into(),
            offset: 0,
            reason,
        };
        let pq_err = |source| Error::Parquet {
            location: location.clone(),
            source,
        };

        // Row ranges per selected series, then the row groups they touch.
        let ranges: Vec<(u64, u64)> = ordinals
            .iter()
            .map(|i| {
                let s = &o.index.series[i as usize];
                (s.first_row, s.first_row + u64::from(s.num_chunks))
            })
            .collect();
        let starts = &o.row_group_starts;
        let mut groups: Vec<usize> = Vec::new();
        for &(lo, hi) in &ranges {
            let first = starts.partition_point(|&s| s <= lo).saturating_sub(1);
            let last = starts.partition_point(|&s| s < hi).saturating_sub(1);
            for g in first..=last {
                if groups.last() != Some(&g) {
                    groups.push(g);
                }
            }
        }
        // Rows of the chosen groups, concatenated: map file rows into them.
        let mut offset_of = BTreeMap::new();
        let mut total = 0u64;
        for &g in &groups {
            offset_of.insert(g, (starts[g], total));
            total += starts[g + 1] - starts[g];
        }
        let to_local = |row: u64| -> u64 {
            let g = starts.partition_point(|&s| s <= row).saturating_sub(1);
            let (gstart, local) = offset_of.get(&g).copied().unwrap_or((starts[g], 0));
            local + (row - gstart)
        };
        let selection = RowSelection::from_consecutive_ranges(
            ranges
                .iter()
                .map(|&(lo, hi)| to_local(lo) as usize..(to_local(hi - 1) + 1) as usize),
            total as usize,
        );
        // The column chunks the read needs, fetched at once (cached,
        // coalesced, concurrent) instead of one request after another.
        let md = o.parquet.metadata();
        let mut wanted_ranges = Vec::new();
        for &g in &groups {
            let Some(rg) = md.row_groups().get(g) else {
                continue;
            };
            for &c in &o.leaves {
                let Some(col) = rg.columns().get(c) else {
                    continue;
                };
                let start = col
                    .dictionary_page_offset()
                    .unwrap_or_else(|| col.data_page_offset());
                let len = col.compressed_size();
                if let Some(end) = start.checked_add(len)
                    && start >= 0
                    && len > 0
                {
                    wanted_ranges.push(start as u64..end as u64);
                }
            }
        }
        let fetched = self.store.get_ranges(&o.file.key, &wanted_ranges)?;
        let file = StoreFile {
            prefetched: Arc::new(wanted_ranges.iter().map(|r| r.start).zip(fetched).collect()),
            ..o.file.clone()
        };
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, o.parquet.clone())
            .with_row_groups(groups)
            .with_projection(o.projection.clone())
            .with_row_selection(selection)
            .with_batch_size(8192)
            .build()
            .map_err(pq_err)?;

        let mut out: Vec<(u32, Vec<Chunk>)> = Vec::with_capacity(ordinals.len() as usize);
        let mut ords = ordinals.iter();
        let mut current: Option<(u32, u32)> = None; // (ordinal, rows left)
        for batch in reader {
            let batch = batch.map_err(|e| pq_err(e.into()))?;
            let [c_series, c_min, c_max, c_chunk] = o.cols;
            let series = batch
                .column(c_series)
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| corrupt("series column is not UInt32".into()))?;
            let min_t = batch
                .column(c_min)
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| corrupt("min_time_ms column is not Int64".into()))?;
            let max_t = batch
                .column(c_max)
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| corrupt("max_time_ms column is not Int64".into()))?;
            let chunks = batch
                .column(c_chunk)
                .as_binary_opt::<i32>()
                .ok_or_else(|| corrupt("chunk column is not Binary".into()))?;
            let split = match o.split {
                Some([c_count, c_time]) => Some((
                    batch
                        .column(c_count)
                        .as_primitive_opt::<UInt32Type>()
                        .ok_or_else(|| corrupt("num_samples column is not UInt32".into()))?,
                    batch
                        .column(c_time)
                        .as_primitive_opt::<UInt32Type>()
                        .ok_or_else(|| corrupt("time_stream column is not UInt32".into()))?,
                )),
                None => None,
            };
            for row in 0..batch.num_rows() {
                let (ord, left) = match current {
                    Some((ord, left)) if left > 0 => (ord, left),
                    _ => {
                        let ord = ords
                            .next()
                            .ok_or_else(|| corrupt("more chunk rows than selected".into()))?;
                        let s = &o.index.series[ord as usize];
                        out.push((ord, Vec::new()));
                        (ord, s.num_chunks)
                    }
                };
                current = Some((ord, left - 1));
                if series.value(row) != ord {
                    return Err(corrupt(format!(
                        "chunk row of series {} where series {ord} was expected",
                        series.value(row)
                    )));
                }
                let chunk = match split {
                    Some((counts, times)) => {
                        let id = times.value(row);
                        let ts = o.index.time_streams.get(id as usize).ok_or_else(|| {
                            corrupt(format!("chunk of series {ord}: no time stream {id}"))
                        })?;
                        let (lo, hi, n) = (min_t.value(row), max_t.value(row), counts.value(row));
                        if (ts.first, ts.last, ts.count) != (lo, hi, n) {
                            return Err(corrupt(format!(
                                "chunk of series {ord}: time stream {id} does not cover its time range and count"
                            )));
                        }
                        Chunk::from_streams(n, lo, hi, &ts.stream, chunks.value(row))?
                    }
                    None => Chunk::from_bytes(chunks.value(row).to_vec())?,
                };
                if chunk.min_time() != min_t.value(row) || chunk.max_time() != max_t.value(row) {
                    return Err(corrupt(format!(
                        "chunk of series {ord}: header time range differs from its columns"
                    )));
                }
                if let Some(last) = out.last_mut() {
                    last.1.push(chunk);
                }
            }
        }
        if ords.next().is_some() || current.is_some_and(|(_, left)| left > 0) {
            return Err(corrupt("fewer chunk rows than the index names".into()));
        }
        Ok(out
            .into_iter()
            .map(|(ord, chunks)| (ord, Arc::from(chunks)))
            .collect())
    }

    fn matching_labels(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Labels>> {
        if !self.overlaps(mint, maxt) {
            return Ok(Vec::new());
        }
        let o = self.open()?;
        let bm = self.select_ordinals(&o, matchers, mint, maxt, true);
        let mut v: Vec<Labels> = bm
            .iter()
            .map(|i| o.index.series[i as usize].labels.clone())
            .collect();
        v.sort();
        Ok(v)
    }
}

impl Querier for BlockReader {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Series>> {
        let mut v: Vec<Series> = self
            .select_chunks(matchers, mint, maxt, 0)?
            .into_iter()
            .map(|(labels, chunks)| {
                Series::from_chunks(labels, chunks, Vec::new(), true, mint, maxt)
            })
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(v)
    }

    fn series(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Labels>> {
        self.matching_labels(matchers, mint, maxt)
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>> {
        if !self.overlaps(mint, maxt) {
            return Ok(Vec::new());
        }
        let o = self.open()?;
        let bm = self.select_ordinals(&o, matchers, mint, maxt, true);
        Ok(o.index.postings.label_names(Some(&bm)))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>> {
        if !self.overlaps(mint, maxt) {
            return Ok(Vec::new());
        }
        let o = self.open()?;
        let bm = self.select_ordinals(&o, matchers, mint, maxt, true);
        Ok(o.index.postings.label_values(name, Some(&bm)))
    }
}

/// Every published block of a store behind one [`Querier`].
///
/// Compaction and retention delete blocks while queries run. A read that
/// fails on a block listed before such a deletion re-lists the store and
/// is retried on the new list (where the compacted block holds the same
/// samples), so a query never fails because a block it was about to read
/// was replaced.
pub struct BlocksQuerier {
    store: BlockStore,
    blocks: Mutex<Vec<Arc<BlockReader>>>,
    /// Most memory the opened blocks (indexes, footers) may hold; least
    /// recently used ones are closed past it.
    memory_budget: std::sync::atomic::AtomicU64,
}

/// Reads retried after re-listing the store, at most.
const RETRIES_AFTER_RELIST: usize = 2;

impl BlocksQuerier {
    /// Lists the store's published blocks (reading only their meta.json).
    pub fn open(store: BlockStore) -> Result<Self> {
        let q = BlocksQuerier {
            store,
            blocks: Mutex::new(Vec::new()),
            memory_budget: std::sync::atomic::AtomicU64::new(u64::MAX),
        };
        q.refresh()?;
        Ok(q)
    }

    /// Re-lists the store, keeping opened blocks' caches. Returns whether
    /// the set of blocks changed.
    pub fn refresh(&self) -> Result<bool> {
        let metas = list_blocks(&self.store)?;
        let mut blocks = self.blocks.lock();
        let changed = blocks.len() != metas.len()
            || blocks
                .iter()
                .zip(&metas)
                .any(|(b, m)| b.meta.ulid != m.ulid);
        let old: BTreeMap<String, Arc<BlockReader>> =
            blocks.drain(..).map(|b| (b.meta.ulid.clone(), b)).collect();
        for m in metas {
            let b = match old.get(&m.ulid) {
                Some(b) => Arc::clone(b),
                None => Arc::new(BlockReader::new(self.store.clone(), m)),
            };
            blocks.push(b);
        }
        Ok(changed)
    }

    /// Sets the memory budget of opened blocks (`u64::MAX`: none).
    pub fn set_memory_budget(&self, bytes: u64) {
        self.memory_budget
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
        self.enforce_budget();
    }

    /// Memory held by the opened blocks now.
    pub fn opened_bytes(&self) -> u64 {
        self.blocks.lock().iter().map(|b| b.opened_bytes()).sum()
    }

    /// Closes least recently used blocks while the opened ones hold more
    /// than the budget.
    fn enforce_budget(&self) {
        let budget = self
            .memory_budget
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut open: Vec<(Option<std::time::Instant>, u64, Arc<BlockReader>)> = self
            .blocks
            .lock()
            .iter()
            .map(|b| (*b.last_used.lock(), b.opened_bytes(), Arc::clone(b)))
            .filter(|(_, bytes, _)| *bytes > 0)
            .collect();
        let mut total: u64 = open.iter().map(|(_, bytes, _)| bytes).sum();
        if total <= budget {
            return;
        }
        open.sort_by_key(|(used, _, _)| *used);
        for (_, bytes, b) in open {
            if total <= budget {
                break;
            }
            b.close();
            total -= bytes;
            tracing::debug!(block = %b.meta.ulid, bytes, "closed a block (memory budget)");
        }
    }

    /// Runs a read; when it fails and re-listing the store shows the block
    /// list changed meanwhile, runs it again on the new list. Then keeps
    /// the opened blocks within the memory budget.
    fn retrying<T>(&self, read: impl Fn() -> Result<T>) -> Result<T> {
        let result = self.retrying_inner(read);
        self.enforce_budget();
        result
    }

    fn retrying_inner<T>(&self, read: impl Fn() -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            match read() {
                Ok(v) => return Ok(v),
                Err(e) if attempt < RETRIES_AFTER_RELIST => {
                    if !self.refresh()? {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "block read failed after the block list changed; retrying");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The published blocks' metas, oldest first.
    pub fn metas(&self) -> Vec<BlockMeta> {
        self.blocks.lock().iter().map(|b| b.meta.clone()).collect()
    }

    /// The opened readers of the blocks overlapping `[mint, maxt]`.
    pub(crate) fn overlapping(
        &self,
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Vec<Arc<BlockReader>> {
        self.blocks
            .lock()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .cloned()
            .collect()
    }

    /// The blocks overlapping `[mint, maxt]` as one querier, for the
    /// look-ups that merge plain sorted lists (series, label names/values).
    fn merged(&self, mint: TimestampMs, maxt: TimestampMs) -> MergedQuerier {
        MergedQuerier::new(
            self.overlapping(mint, maxt)
                .into_iter()
                .map(|b| b as Arc<dyn Querier>)
                .collect(),
        )
    }
}

impl BlocksQuerier {
    fn select_once(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Series>> {
        // Half the block memory budget for cached chunks, per block: the
        // budget closes the least recently used blocks past it.
        let cache_limit = self
            .memory_budget
            .load(std::sync::atomic::Ordering::Relaxed)
            / 2;
        // Each block's series sorted by labels (cheap: a block's label
        // strings are shared), then merged across blocks in one pass.
        let mut lists = Vec::new();
        for b in self.overlapping(mint, maxt) {
            let mut v = b.select_chunks(matchers, mint, maxt, cache_limit)?;
            v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            lists.push(v);
        }
        let mut out = Vec::with_capacity(lists.iter().map(Vec::len).max().unwrap_or(0));
        crate::querier::merge_sorted(
            lists,
            |s| &s.0,
            |parts| {
                let labels = std::mem::take(&mut parts[0].0);
                let mut chunks: Vec<Chunk> = parts.drain(..).flat_map(|(_, c)| c).collect();
                chunks.sort_by_key(Chunk::min_time);
                let disjoint = chunks.windows(2).all(|w| w[0].max_time() < w[1].min_time());
                if disjoint {
                    out.push(Series::from_chunks(
                        labels,
                        chunks,
                        Vec::new(),
                        true,
                        mint,
                        maxt,
                    ));
                } else {
                    // Overlapping blocks (out-of-order data, two writers): a
                    // timestamp present in both is returned once.
                    let mut samples: Vec<Sample> = Vec::new();
                    for c in &chunks {
                        c.decode_into(mint, maxt, &mut samples)?;
                    }
                    samples.sort_by_key(|s| s.t);
                    samples.dedup_by_key(|s| s.t);
                    out.push(Series::from_samples(labels, samples));
                }
                Ok(())
            },
        )?;
        Ok(out)
    }
}

impl Querier for BlocksQuerier {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Series>> {
        self.retrying(|| self.select_once(matchers, mint, maxt))
    }

    fn series(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Labels>> {
        self.retrying(|| self.merged(mint, maxt).series(matchers, mint, maxt))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>> {
        self.retrying(|| self.merged(mint, maxt).label_names(matchers, mint, maxt))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>> {
        self.retrying(|| {
            self.merged(mint, maxt)
                .label_values(name, matchers, mint, maxt)
        })
    }
}
