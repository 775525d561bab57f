//! The block writer: series with their samples in, a block's files out, and
//! their upload in publication order (data files, then `meta.json`).
//!
//! Samples are re-chunked on the way in: the head's in-order chunks, its
//! out-of-order chunks and buffers and its open chunk become one sequence of
//! time-ordered, non-overlapping chunks of up to
//! [`BlockOptions::chunk_max_samples`] samples each, so a block never needs
//! the head's merge logic to be read.
//!
//! Each chunk is coded as encoding 3's two streams ([`SplitStreams`]): the
//! value stream goes to the Parquet file's `chunk` column, the time stream
//! to the index, once per distinct stream (series scraped together share
//! their timestamps, so a fleet's blocks hold a few time streams per
//! target instead of one per series).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Int64Builder, StringBuilder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding as PqEncoding};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::index::{self, IndexSeries, TimeStream};
use super::store::BlockStore;
use super::{
    BlockFile, BlockMeta, BlockStats, Compaction, FORMAT_VERSION, INDEX_FILE, META_FILE,
    PARQUET_FILE, PARQUET_VERSION_KEY,
};
use crate::chunk::SplitStreams;
use crate::error::{Error, Result};
use crate::labels::{Labels, METRIC_NAME};
use crate::matcher::{MatchOp, Matcher};
use crate::querier::Querier;
use crate::sample::{Sample, TimestampMs};

/// Column names of the Parquet file (label columns are `label.<name>`).
pub const COL_SERIES: &str = "series";
pub const COL_MIN_TIME: &str = "min_time_ms";
pub const COL_MAX_TIME: &str = "max_time_ms";
pub const COL_NUM_SAMPLES: &str = "num_samples";
/// Format 2: the id of the chunk's time stream in the index.
pub const COL_TIME_STREAM: &str = "time_stream";
/// Format 2: the chunk's value stream; format 1: the whole chunk.
pub const COL_CHUNK: &str = "chunk";
pub const LABEL_COLUMN_PREFIX: &str = "label.";

/// How blocks are written.
#[derive(Debug, Clone)]
pub struct BlockOptions {
    /// Most samples per chunk. Longer chunks amortise the chunk header and
    /// the codec's warm-up; a query still decodes whole chunks.
    pub chunk_max_samples: usize,
    /// A row group is closed at the first metric-name boundary after it
    /// holds this many chunk rows, so most metric names sit in one row
    /// group and the `label.__name__` min/max statistics prune whole row
    /// groups for engines that read the Parquet file directly.
    pub row_group_target_rows: usize,
    /// Hard cap on rows per row group (a metric with very many chunks is
    /// split).
    pub row_group_max_rows: usize,
}

impl Default for BlockOptions {
    fn default() -> Self {
        BlockOptions {
            chunk_max_samples: 240,
            row_group_target_rows: 16 * 1024,
            row_group_max_rows: 128 * 1024,
        }
    }
}

/// One chunk of a series as the block stores it.
struct BlockChunk {
    min_time: i64,
    max_time: i64,
    count: u32,
    /// Id of its time stream in the index.
    time_stream: u32,
    values: Vec<u8>,
}

struct SeriesEntry {
    labels: Labels,
    chunks: Vec<BlockChunk>,
    num_samples: u64,
}

/// Gathers series for one block.
pub struct BlockWriter {
    opts: BlockOptions,
    series: Vec<SeriesEntry>,
    /// Distinct time streams, in id order, and their ids.
    time_streams: Vec<TimeStream>,
    time_stream_ids: HashMap<TimeStream, u32>,
}

/// A block's encoded files, ready for upload.
pub struct EncodedBlock {
    pub meta: BlockMeta,
    pub parquet: Bytes,
    pub index: Bytes,
}

impl BlockWriter {
    pub fn new(opts: BlockOptions) -> Self {
        BlockWriter {
            opts,
            series: Vec::new(),
            time_streams: Vec::new(),
            time_stream_ids: HashMap::new(),
        }
    }

    /// Adds a series with its samples (sorted by time, one per timestamp).
    /// A series without samples is skipped.
    pub fn add_series(&mut self, labels: Labels, samples: &[Sample]) {
        if samples.is_empty() {
            return;
        }
        let max = self.opts.chunk_max_samples.max(1);
        let chunks = samples
            .chunks(max)
            .map(|part| {
                let split = SplitStreams::encode(part);
                let ts = TimeStream {
                    first: split.min_time,
                    last: split.max_time,
                    count: split.count,
                    stream: split.times,
                };
                let next = self.time_streams.len() as u32;
                let time_stream = *self.time_stream_ids.entry(ts).or_insert_with_key(|ts| {
                    self.time_streams.push(ts.clone());
                    next
                });
                BlockChunk {
                    min_time: split.min_time,
                    max_time: split.max_time,
                    count: split.count,
                    time_stream,
                    values: split.values,
                }
            })
            .collect();
        self.series.push(SeriesEntry {
            labels,
            chunks,
            num_samples: samples.len() as u64,
        });
    }

    /// Reads every series of `q` with samples in `[mint, maxt]`.
    pub fn add_from_querier(
        &mut self,
        q: &dyn Querier,
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<()> {
        // `=~".*"` matches every series, with or without a metric name.
        let all = Matcher::new(MatchOp::RegexMatch, METRIC_NAME, ".*")?;
        let mut buf = Vec::new();
        for s in q.select(&[all], mint, maxt)? {
            buf.clear();
            s.try_read_samples(mint, maxt, &mut buf)?;
            self.add_series(s.labels, &buf);
        }
        Ok(())
    }

    /// Number of series added.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// Encodes the block: sorts the series (by metric name, then labels),
    /// writes the Parquet file and the index, and builds `meta.json`.
    /// `sources` are the level-1 ULIDs the data came from (empty for a
    /// block cut from the head: the block is its own source).
    pub fn encode(mut self, level: u32, sources: Vec<String>) -> Result<EncodedBlock> {
        let ulid = ulid::Ulid::new().to_string();
        let location = format!("{ulid}/{PARQUET_FILE}");
        self.series.sort_by(|a, b| {
            let name = |l: &Labels| l.metric_name().unwrap_or("").to_string();
            name(&a.labels)
                .cmp(&name(&b.labels))
                .then_with(|| a.labels.cmp(&b.labels))
        });
        if let Some(w) = self.series.windows(2).find(|w| w[0].labels == w[1].labels) {
            return Err(Error::InvalidLabels {
                labels: w[0].labels.to_string(),
                reason: "series added twice to one block".into(),
            });
        }

        let label_names: Vec<Arc<str>> = self
            .series
            .iter()
            .flat_map(|s| s.labels.iter().map(|l| Arc::clone(&l.name)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut fields = vec![Field::new(COL_SERIES, DataType::UInt32, false)];
        fields.extend(
            label_names
                .iter()
                .map(|n| Field::new(format!("{LABEL_COLUMN_PREFIX}{n}"), DataType::Utf8, true)),
        );
        fields.extend([
            Field::new(COL_MIN_TIME, DataType::Int64, false),
            Field::new(COL_MAX_TIME, DataType::Int64, false),
            Field::new(COL_NUM_SAMPLES, DataType::UInt32, false),
            Field::new(COL_TIME_STREAM, DataType::UInt32, false),
            Field::new(COL_CHUNK, DataType::Binary, false),
        ]);
        let schema = Arc::new(Schema::new(fields));

        let props = writer_properties(&self.opts, &ulid);
        let pq_err = |source| Error::Parquet {
            location: location.clone(),
            source,
        };
        let mut writer =
            ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(props)).map_err(pq_err)?;

        // Row groups: whole metric names, closed past the target size.
        let mut start = 0usize;
        let mut rows = 0usize;
        for i in 0..self.series.len() {
            rows += self.series[i].chunks.len();
            let last = i + 1 == self.series.len();
            let boundary = last
                || self.series[i].labels.metric_name() != self.series[i + 1].labels.metric_name();
            if last || (boundary && rows >= self.opts.row_group_target_rows) {
                let batch = self.batch(&schema, &label_names, start..i + 1)?;
                writer.write(&batch).map_err(pq_err)?;
                writer.flush().map_err(pq_err)?;
                start = i + 1;
                rows = 0;
            }
        }
        let parquet = Bytes::from(writer.into_inner().map_err(pq_err)?);

        let mut index_series = Vec::with_capacity(self.series.len());
        let mut row = 0u64;
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        let mut stats = BlockStats {
            num_series: self.series.len() as u64,
            num_samples: 0,
            num_chunks: 0,
        };
        for s in &self.series {
            let lo = s.chunks.first().map_or(i64::MAX, |c| c.min_time);
            let hi = s.chunks.last().map_or(i64::MIN, |c| c.max_time);
            min_time = min_time.min(lo);
            max_time = max_time.max(hi);
            stats.num_samples += s.num_samples;
            stats.num_chunks += s.chunks.len() as u64;
            index_series.push(IndexSeries {
                labels: s.labels.clone(),
                min_time: lo,
                max_time: hi,
                num_chunks: s.chunks.len() as u32,
                num_samples: s.num_samples,
                first_row: row,
            });
            row += s.chunks.len() as u64;
        }
        let index = Bytes::from(index::encode(&index_series, &self.time_streams)?);
        let sources = if sources.is_empty() {
            vec![ulid.clone()]
        } else {
            sources
        };
        let meta = BlockMeta {
            version: FORMAT_VERSION,
            ulid,
            min_time,
            max_time,
            stats,
            compaction: Compaction { level, sources },
            files: vec![
                BlockFile {
                    name: PARQUET_FILE.into(),
                    size_bytes: parquet.len() as u64,
                },
                BlockFile {
                    name: INDEX_FILE.into(),
                    size_bytes: index.len() as u64,
                },
            ],
        };
        Ok(EncodedBlock {
            meta,
            parquet,
            index,
        })
    }

    /// The record batch of series `range` (their chunk rows).
    fn batch(
        &self,
        schema: &Arc<Schema>,
        label_names: &[Arc<str>],
        range: std::ops::Range<usize>,
    ) -> Result<RecordBatch> {
        let rows: usize = self.series[range.clone()]
            .iter()
            .map(|s| s.chunks.len())
            .sum();
        let mut series = UInt32Builder::with_capacity(rows);
        let mut labels: Vec<StringBuilder> =
            label_names.iter().map(|_| StringBuilder::new()).collect();
        let mut min_t = Int64Builder::with_capacity(rows);
        let mut max_t = Int64Builder::with_capacity(rows);
        let mut counts = UInt32Builder::with_capacity(rows);
        let mut time_streams = UInt32Builder::with_capacity(rows);
        let mut chunk = BinaryBuilder::new();
        for ordinal in range {
            let s = &self.series[ordinal];
            for c in &s.chunks {
                series.append_value(ordinal as u32);
                // Both lists are sorted by name: a merge walk.
                let mut it = s.labels.iter().peekable();
                for (name, b) in label_names.iter().zip(labels.iter_mut()) {
                    match it.peek() {
                        Some(l) if l.name == *name => {
                            b.append_value(&*l.value);
                            it.next();
                        }
                        _ => b.append_null(),
                    }
                }
                min_t.append_value(c.min_time);
                max_t.append_value(c.max_time);
                counts.append_value(c.count);
                time_streams.append_value(c.time_stream);
                chunk.append_value(&c.values);
            }
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(series.finish())];
        columns.extend(labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(min_t.finish()));
        columns.push(Arc::new(max_t.finish()));
        columns.push(Arc::new(counts.finish()));
        columns.push(Arc::new(time_streams.finish()));
        columns.push(Arc::new(chunk.finish()));
        RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| Error::Parquet {
            location: PARQUET_FILE.into(),
            source: parquet::errors::ParquetError::ArrowError(e.to_string()),
        })
    }
}

/// Parquet settings: zstd on every column, dictionaries for label columns
/// (a label value costs bytes once per row group, then a few bits per
/// row), delta encoding for the integer columns. The value streams are
/// already coded by the chunk codec, yet zstd still takes a fifth off them
/// (runs of equal codes: flat counters, repeated gauge values).
fn writer_properties(opts: &BlockOptions, ulid: &str) -> WriterProperties {
    let zstd = parquet::basic::ZstdLevel::try_new(index::ZSTD_LEVEL).unwrap_or_default();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(opts.row_group_max_rows.max(1)))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(PARQUET_VERSION_KEY.into(), FORMAT_VERSION.to_string()),
            KeyValue::new("cairn.block.ulid".into(), ulid.to_string()),
        ]));
    for col in [
        COL_SERIES,
        COL_MIN_TIME,
        COL_MAX_TIME,
        COL_NUM_SAMPLES,
        COL_TIME_STREAM,
    ] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(col), false)
            .set_column_encoding(ColumnPath::from(col), PqEncoding::DELTA_BINARY_PACKED);
    }
    b.set_column_dictionary_enabled(ColumnPath::from(COL_CHUNK), false)
        .set_column_statistics_enabled(ColumnPath::from(COL_CHUNK), EnabledStatistics::None)
        .build()
}

impl EncodedBlock {
    /// Uploads the block: data files first, `meta.json` last, so the block
    /// becomes visible to readers only once it is complete.
    pub fn upload(&self, store: &BlockStore) -> Result<()> {
        let dir = &self.meta.ulid;
        store.put(&format!("{dir}/{PARQUET_FILE}"), self.parquet.clone())?;
        store.put(&format!("{dir}/{INDEX_FILE}"), self.index.clone())?;
        let meta = serde_json::to_vec_pretty(&self.meta).map_err(|e| Error::Corrupted {
            path: format!("{dir}/{META_FILE}").into(),
            offset: 0,
            reason: format!("meta.json does not serialise: {e}"),
        })?;
        store.put(&format!("{dir}/{META_FILE}"), Bytes::from(meta))
    }
}

/// Writes one level-1 block of the series of `q` in `[mint, maxt]` and
/// publishes it; None when there is nothing in the range.
pub fn write_block(
    store: &BlockStore,
    q: &dyn Querier,
    mint: TimestampMs,
    maxt: TimestampMs,
    opts: BlockOptions,
) -> Result<Option<BlockMeta>> {
    let mut w = BlockWriter::new(opts);
    w.add_from_querier(q, mint, maxt)?;
    if w.num_series() == 0 {
        return Ok(None);
    }
    let block = w.encode(1, Vec::new())?;
    block.upload(store)?;
    Ok(Some(block.meta))
}
