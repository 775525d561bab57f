//! A block's index file: the symbol table, the series table and the roaring
//! postings (label name=value -> series ordinals), so that resolving matchers
//! needs neither the Parquet file's label columns nor a scan.
//!
//! Version 2 (written; all integers little endian; see `docs/format.md`,
//! "Blocks") also holds the block's time streams: the timestamps of a chunk
//! coded once for every chunk that shares them (every series of one scrape
//! target shares its scrape times), referred to by id from the Parquet
//! file's `time_stream` column. The sections are zstd-compressed:
//!
//! ```text
//! ┌──────────────┬─────────┬─────────────────┬──────────────────────────────────┬────────┐
//! │ magic "CNIX" │ version │ raw length      │ zstd( symbols │ series │ postings │ crc32c │
//! │ 4 bytes      │ 1 byte  │ uvarint         │   │ time streams │ toc 32B )      │ 4 B    │
//! └──────────────┴─────────┴─────────────────┴──────────────────────────────────┴────────┘
//! ```
//!
//! Version 1 (still read) has no time streams and no compression:
//! magic, version, symbols, series, postings, a 24-byte toc, crc32c.
//!
//! A series' ordinal is its position in the series table, which is also the
//! order of its rows in the Parquet file: series `i`'s chunk rows start at
//! the sum of `num_chunks` of the series before it.

use std::path::PathBuf;
use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::chunk::{put_uvarint, unzigzag, zigzag};
use crate::error::{Error, Result};
use crate::index::Postings;
use crate::labels::{Label, Labels};

pub const INDEX_MAGIC: [u8; 4] = *b"CNIX";
/// The index version written (block format 2).
pub const INDEX_VERSION: u8 = 2;
/// zstd level of the index and the Parquet columns: level 3 is zstd's
/// default, near its best ratio on this data at a fraction of the CPU of
/// the high levels.
pub const ZSTD_LEVEL: i32 = 3;

/// One series of a block, as the index holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSeries {
    pub labels: Labels,
    pub min_time: i64,
    pub max_time: i64,
    pub num_chunks: u32,
    pub num_samples: u64,
    /// First chunk row in the Parquet file (not stored: a prefix sum).
    pub first_row: u64,
}

/// A time stream of encoding 3 ([`crate::chunk::Encoding::DecimalSplit`]):
/// `count` timestamps from `first` to `last`, coded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimeStream {
    pub first: i64,
    pub last: i64,
    pub count: u32,
    pub stream: Vec<u8>,
}

/// A decoded index: series table, postings and (version 2) time streams.
pub struct BlockIndex {
    pub series: Vec<IndexSeries>,
    pub postings: Postings,
    pub time_streams: Vec<TimeStream>,
    /// Bytes of the decoded symbols and postings, as read.
    pub symbols_and_postings_bytes: u64,
}

impl BlockIndex {
    /// Estimated memory of the decoded index: the series table (entries
    /// and their label pairs), the symbols and postings, the time streams.
    pub fn memory_bytes(&self) -> u64 {
        let series: usize = self
            .series
            .iter()
            .map(|s| {
                std::mem::size_of::<IndexSeries>() + s.labels.len() * std::mem::size_of::<Label>()
            })
            .sum();
        let times: usize = self
            .time_streams
            .iter()
            .map(|t| std::mem::size_of::<TimeStream>() + t.stream.len())
            .sum();
        (series + times) as u64 + self.symbols_and_postings_bytes
    }
}

/// Encodes the index (version 2) of `series` (in block order) and the
/// block's time streams.
pub fn encode(series: &[IndexSeries], time_streams: &[TimeStream]) -> Result<Vec<u8>> {
    let raw = encode_sections(series, time_streams);
    let packed = zstd::bulk::compress(&raw, ZSTD_LEVEL).map_err(|e| Error::Corrupted {
        path: PathBuf::from("index"),
        offset: 0,
        reason: format!("zstd failed to compress the index: {e}"),
    })?;
    let mut out = Vec::with_capacity(packed.len() + 20);
    out.extend_from_slice(&INDEX_MAGIC);
    out.push(INDEX_VERSION);
    put_uvarint(&mut out, raw.len() as u64);
    out.extend_from_slice(&packed);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The uncompressed sections of a version-2 index, with its toc.
fn encode_sections(series: &[IndexSeries], time_streams: &[TimeStream]) -> Vec<u8> {
    let mut symbols: Vec<&str> = series
        .iter()
        .flat_map(|s| s.labels.iter())
        .flat_map(|l| [&*l.name, &*l.value])
        .collect();
    symbols.sort_unstable();
    symbols.dedup();
    let sym = |s: &str| symbols.binary_search(&s).unwrap_or(0) as u64;

    let mut out = Vec::new();
    let symbols_offset = out.len() as u64;
    put_uvarint(&mut out, symbols.len() as u64);
    for s in &symbols {
        put_uvarint(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    let series_offset = out.len() as u64;
    put_uvarint(&mut out, series.len() as u64);
    // (name, value) -> ordinals, sorted by symbol ids (= by strings).
    let mut postings: std::collections::BTreeMap<(u64, u64), RoaringBitmap> = Default::default();
    for (i, s) in series.iter().enumerate() {
        put_uvarint(&mut out, s.labels.len() as u64);
        for l in &s.labels {
            let key = (sym(&l.name), sym(&l.value));
            put_uvarint(&mut out, key.0);
            put_uvarint(&mut out, key.1);
            postings.entry(key).or_default().insert(i as u32);
        }
        put_uvarint(&mut out, zigzag(s.min_time));
        put_uvarint(&mut out, s.max_time.wrapping_sub(s.min_time) as u64);
        put_uvarint(&mut out, u64::from(s.num_chunks));
        put_uvarint(&mut out, s.num_samples);
    }

    let postings_offset = out.len() as u64;
    put_uvarint(&mut out, postings.len() as u64);
    let mut buf = Vec::new();
    for ((name, value), bitmap) in &postings {
        put_uvarint(&mut out, *name);
        put_uvarint(&mut out, *value);
        buf.clear();
        // Writing into a Vec cannot fail.
        let _ = bitmap.serialize_into(&mut buf);
        put_uvarint(&mut out, buf.len() as u64);
        out.extend_from_slice(&buf);
    }

    let times_offset = out.len() as u64;
    put_uvarint(&mut out, time_streams.len() as u64);
    for ts in time_streams {
        put_uvarint(&mut out, zigzag(ts.first));
        put_uvarint(&mut out, ts.last.wrapping_sub(ts.first) as u64);
        put_uvarint(&mut out, u64::from(ts.count));
        put_uvarint(&mut out, ts.stream.len() as u64);
        out.extend_from_slice(&ts.stream);
    }

    for off in [symbols_offset, series_offset, postings_offset, times_offset] {
        out.extend_from_slice(&off.to_le_bytes());
    }
    out
}

/// Reads bytes of one index file, with errors naming the file and offset.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a str,
}

impl<'a> Cursor<'a> {
    fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::Corrupted {
            path: PathBuf::from(self.path),
            offset: self.pos as u64,
            reason: reason.into(),
        }
    }

    fn uvarint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.corrupt("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.corrupt("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.corrupt("varint overflows 64 bits"))
    }

    /// A length that must fit in the rest of the file (guards allocations).
    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.uvarint()?;
        if n > (self.bytes.len() - self.pos) as u64 {
            return Err(self.corrupt(format!("{what} {n} exceeds the file")));
        }
        Ok(n as usize)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.corrupt("truncated"));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// Decodes an index file. `path` names it in errors.
pub fn decode(bytes: &[u8], path: &str) -> Result<BlockIndex> {
    let corrupt = |offset: usize, reason: &str| Error::Corrupted {
        path: PathBuf::from(path),
        offset: offset as u64,
        reason: reason.to_string(),
    };
    if bytes.len() < 5 + 4 || bytes[..4] != INDEX_MAGIC {
        return Err(corrupt(
            0,
            "not a Cairn block index (bad magic or too short)",
        ));
    }
    let version = bytes[4];
    if version != 1 && version != INDEX_VERSION {
        return Err(Error::UnsupportedBlockVersion {
            block: path.to_string(),
            version: u64::from(version),
            min_supported: 1,
            max_supported: u64::from(INDEX_VERSION),
        });
    }
    let body_len = bytes.len() - 4;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[body_len..]);
    if crc32c::crc32c(&bytes[..body_len]) != u32::from_le_bytes(crc) {
        return Err(corrupt(body_len, "checksum mismatch"));
    }
    if version == 1 {
        if body_len < 5 + 24 {
            return Err(corrupt(0, "index too short"));
        }
        let c = Cursor {
            bytes: &bytes[..body_len - 24],
            pos: 5,
            path,
        };
        return decode_sections(c, false);
    }
    let mut c = Cursor {
        bytes: &bytes[..body_len],
        pos: 5,
        path,
    };
    let raw_len = c.uvarint()?;
    // The checksum matched, so the length is the writer's; still bounded,
    // as a guard against a writer bug.
    if raw_len > 1 << 34 {
        return Err(c.corrupt(format!("index of {raw_len} bytes uncompressed")));
    }
    let raw = zstd::bulk::decompress(&bytes[c.pos..body_len], raw_len as usize)
        .map_err(|e| c.corrupt(format!("zstd: {e}")))?;
    if raw.len() as u64 != raw_len || raw.len() < 32 {
        return Err(c.corrupt("uncompressed index length differs from its header"));
    }
    let c = Cursor {
        bytes: &raw[..raw.len() - 32],
        pos: 0,
        path,
    };
    decode_sections(c, true)
}

/// Decodes the sections (the toc already cut off); `with_times` for
/// version 2.
fn decode_sections(mut c: Cursor<'_>, with_times: bool) -> Result<BlockIndex> {
    let data_len = c.bytes.len();
    let symbols_start = c.pos;

    let n = c.len("symbol count")?;
    let mut symbols: Vec<Arc<str>> = Vec::with_capacity(n);
    for _ in 0..n {
        let len = c.len("symbol length")?;
        let raw = c.take(len)?;
        let s = std::str::from_utf8(raw).map_err(|_| c.corrupt("symbol is not UTF-8"))?;
        symbols.push(Arc::from(s));
    }
    let symbol = |c: &mut Cursor<'_>| -> Result<Arc<str>> {
        let id = c.uvarint()?;
        symbols
            .get(id as usize)
            .cloned()
            .ok_or_else(|| c.corrupt(format!("symbol {id} out of range")))
    };

    let symbols_bytes = c.pos - symbols_start;
    let n = c.len("series count")?;
    let mut series = Vec::with_capacity(n);
    let mut row = 0u64;
    for _ in 0..n {
        let nl = c.len("label count")?;
        let mut labels = Vec::with_capacity(nl);
        for _ in 0..nl {
            let name = symbol(&mut c)?;
            let value = symbol(&mut c)?;
            labels.push(Label { name, value });
        }
        if !labels.windows(2).all(|w| w[0].name < w[1].name) {
            return Err(c.corrupt("labels not sorted by name"));
        }
        let min_time = unzigzag(c.uvarint()?);
        let max_time = min_time.wrapping_add(c.uvarint()? as i64);
        let num_chunks = u32::try_from(c.uvarint()?).map_err(|_| c.corrupt("chunk count"))?;
        let num_samples = c.uvarint()?;
        series.push(IndexSeries {
            labels: Labels::from_sorted(labels),
            min_time,
            max_time,
            num_chunks,
            num_samples,
            first_row: row,
        });
        row += u64::from(num_chunks);
    }

    let postings_start = c.pos;
    let n = c.len("postings count")?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let name = symbol(&mut c)?;
        let value = symbol(&mut c)?;
        let len = c.len("postings length")?;
        let raw = c.take(len)?;
        let bitmap = RoaringBitmap::deserialize_from(raw)
            .map_err(|e| c.corrupt(format!("postings do not decode: {e}")))?;
        if bitmap.max().is_some_and(|m| m as usize >= series.len()) {
            return Err(c.corrupt("postings name a series beyond the series table"));
        }
        entries.push((name, value, bitmap));
    }
    let postings_bytes = c.pos - postings_start;
    let mut time_streams = Vec::new();
    if with_times {
        let n = c.len("time stream count")?;
        time_streams.reserve(n);
        for _ in 0..n {
            let first = unzigzag(c.uvarint()?);
            let last = first.wrapping_add(c.uvarint()? as i64);
            let count = u32::try_from(c.uvarint()?).map_err(|_| c.corrupt("time stream count"))?;
            let len = c.len("time stream length")?;
            let stream = c.take(len)?.to_vec();
            time_streams.push(TimeStream {
                first,
                last,
                count,
                stream,
            });
        }
    }
    if c.pos != data_len {
        return Err(c.corrupt("trailing bytes before the table of contents"));
    }
    Ok(BlockIndex {
        postings: Postings::from_bitmaps(series.len() as u32, entries),
        series,
        time_streams,
        symbols_and_postings_bytes: (symbols_bytes + postings_bytes) as u64,
    })
}
