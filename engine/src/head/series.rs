//! One series of the head: its label set, its sealed chunks, the open chunk
//! that takes in-order samples, and the out-of-order buffer; the append
//! rules (in order, out of order within the window, too old, duplicates)
//! and the snapshot a query reads.
//!
//! **Invariant:** a timestamp occurs at most once across all of a series'
//! storage (in-order chunks, out-of-order chunks and buffer), because every
//! append checks for an existing sample at its timestamp first. Reads can
//! therefore merge the sources by sorting on `t` alone.

use std::sync::atomic::AtomicBool;

use parking_lot::Mutex;

use super::symbols::LabelIds;
use crate::chunk::{Chunk, ChunkEncoder};
use crate::index::SeriesRef;
use crate::sample::Sample;

/// Out-of-order samples are buffered sorted and sealed into a chunk of their
/// own once this many have gathered.
pub const OOO_CHUNK_SAMPLES: usize = 32;

/// How chunks are cut.
#[derive(Debug, Clone, Copy)]
pub struct ChunkPolicy {
    /// An open chunk is sealed when it holds this many samples.
    pub max_samples: usize,
    /// Chunks never span a multiple of this range (ms), so that they fall
    /// into aligned blocks later.
    pub range_ms: i64,
}

/// The result of appending one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleOutcome {
    /// Stored.
    Appended,
    /// The same timestamp and value bits were already stored: a no-op.
    Duplicate,
    /// Older than the out-of-order window or the head's lower bound.
    TooOld,
    /// Another value is stored at this timestamp.
    DuplicateTimestamp,
}

/// A series in the head.
pub struct MemSeries {
    pub series_ref: SeriesRef,
    /// The label set as symbol ids of the head's
    /// [`super::symbols::SymbolTable`]; `Head::series_labels` decodes it.
    pub label_ids: LabelIds,
    /// True until the WAL record that created the series is known to be
    /// fsynced. Appenders that see it set log the series record again so
    /// that their samples never precede it in the WAL.
    pub wal_pending: AtomicBool,
    pub data: Mutex<SeriesData>,
}

/// What [`SeriesData::truncate_before`] dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    pub chunks: u64,
    pub samples: u64,
}

impl MemSeries {
    pub fn new(series_ref: SeriesRef, label_ids: LabelIds) -> Self {
        MemSeries {
            series_ref,
            label_ids,
            wal_pending: AtomicBool::new(true),
            data: Mutex::new(SeriesData::default()),
        }
    }
}

/// The samples of a series, under its lock.
#[derive(Default)]
pub struct SeriesData {
    /// Sealed in-order chunks, ascending and not overlapping.
    sealed: Vec<Chunk>,
    /// The open in-order chunk; its last sample is the series' newest
    /// in-order sample.
    open: Option<ChunkEncoder>,
    /// Out-of-order data, absent for the common in-order series.
    ooo: Option<Box<OooData>>,
    min_t: i64,
    max_t: i64,
    /// Set (under the series lock, with the registry stripe locked) when
    /// head truncation removed the emptied series from the head: appenders
    /// that still hold it must look the labels up again.
    removed: bool,
}

#[derive(Default)]
struct OooData {
    /// Sorted by `t`.
    buf: Vec<Sample>,
    chunks: Vec<Chunk>,
}

/// What a query reads of one series: shared chunks, decoded lazily, and the
/// few samples of the open chunk and the out-of-order buffer.
pub struct SeriesSnapshot {
    pub chunks: Vec<Chunk>,
    pub tail: Vec<Sample>,
    /// True when out-of-order data contributes, so the decoded samples
    /// must be sorted by time.
    pub needs_sort: bool,
}

impl SeriesData {
    pub fn is_empty(&self) -> bool {
        self.open.is_none() && self.ooo.is_none() && self.sealed.is_empty()
    }

    pub fn min_time(&self) -> Option<i64> {
        (!self.is_empty()).then_some(self.min_t)
    }

    pub fn max_time(&self) -> Option<i64> {
        (!self.is_empty()).then_some(self.max_t)
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        !self.is_empty() && self.min_t <= maxt && self.max_t >= mint
    }

    /// True once head truncation removed this series from the head.
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    pub(crate) fn mark_removed(&mut self) {
        self.removed = true;
    }

    /// Drops the data wholly older than `mint`: sealed and out-of-order
    /// chunks ending before it, buffered out-of-order samples before it,
    /// and the open chunk if its newest sample is before it. A chunk that
    /// straddles `mint` is kept whole (its older samples are also in a
    /// block; readers return each timestamp once). Called by head
    /// truncation after the range before `mint` is durable in blocks and
    /// the head refuses samples before it.
    pub fn truncate_before(&mut self, mint: i64) -> Truncated {
        let mut out = Truncated::default();
        if self.is_empty() || self.min_t >= mint {
            return out;
        }
        let mut drop_chunks = |v: &mut Vec<Chunk>| {
            let before = v.len();
            v.retain(|c| {
                let keep = c.max_time() >= mint;
                if !keep {
                    out.samples += c.len() as u64;
                }
                keep
            });
            out.chunks += (before - v.len()) as u64;
        };
        drop_chunks(&mut self.sealed);
        if let Some(ooo) = &mut self.ooo {
            drop_chunks(&mut ooo.chunks);
            let n = ooo.buf.partition_point(|x| x.t < mint);
            ooo.buf.drain(..n);
            out.samples += n as u64;
            if ooo.buf.is_empty() && ooo.chunks.is_empty() {
                self.ooo = None;
            }
        }
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.max_time().is_none_or(|t| t < mint))
        {
            let open = self.open.take().map_or(0, |o| o.len());
            out.samples += open as u64;
            out.chunks += 1;
        }
        if self.sealed.capacity() > self.sealed.len() + 4 {
            self.sealed.shrink_to_fit();
        }
        // The new bounds: the oldest and newest of what is left.
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        let mut note = |a: i64, b: i64| {
            lo = lo.min(a);
            hi = hi.max(b);
        };
        for c in &self.sealed {
            note(c.min_time(), c.max_time());
        }
        if let Some(o) = &self.open
            && let (Some(a), Some(b)) = (o.min_time(), o.max_time())
        {
            note(a, b);
        }
        if let Some(ooo) = &self.ooo {
            for c in &ooo.chunks {
                note(c.min_time(), c.max_time());
            }
            if let (Some(a), Some(b)) = (ooo.buf.first(), ooo.buf.last()) {
                note(a.t, b.t);
            }
        }
        if lo <= hi {
            self.min_t = lo;
            self.max_t = hi;
        }
        out
    }

    /// Appends one sample. `ooo_min_t` is the oldest timestamp accepted out
    /// of order (the head's newest sample minus the window); `min_valid_t`
    /// the oldest accepted at all.
    pub fn append(
        &mut self,
        s: Sample,
        ooo_min_t: i64,
        min_valid_t: i64,
        policy: ChunkPolicy,
    ) -> SampleOutcome {
        if s.t < min_valid_t {
            return SampleOutcome::TooOld;
        }
        let was_empty = self.is_empty();
        let last = self.open.as_ref().and_then(|o| o.last());
        match last {
            Some(last) if s.t == last.t => {
                return if last.v.to_bits() == s.v.to_bits() {
                    SampleOutcome::Duplicate
                } else {
                    SampleOutcome::DuplicateTimestamp
                };
            }
            Some(last) if s.t < last.t => return self.append_ooo(s, ooo_min_t),
            _ => {}
        }
        // In order. Out-of-order samples are only ever older than the open
        // chunk's last sample, so none can sit at a newer timestamp.
        let open = self.open.get_or_insert_with(ChunkEncoder::new);
        if let Some(first) = open.min_time() {
            let boundary = (first.div_euclid(policy.range_ms) + 1).saturating_mul(policy.range_ms);
            if open.len() >= policy.max_samples || s.t >= boundary {
                let full = std::mem::take(open);
                // Exact growth: a series seals a chunk every 30 minutes
                // or so, and doubling would leave on average a third of
                // the vector's 40-byte slots empty in every series.
                self.sealed.reserve_exact(1);
                self.sealed.push(full.seal());
            }
        }
        let open = self.open.get_or_insert_with(ChunkEncoder::new);
        open.append(s.t, s.v);
        self.note_time(s.t, was_empty);
        SampleOutcome::Appended
    }

    fn append_ooo(&mut self, s: Sample, ooo_min_t: i64) -> SampleOutcome {
        if s.t < ooo_min_t {
            return SampleOutcome::TooOld;
        }
        match self.find(s.t) {
            Some(v) if v.to_bits() == s.v.to_bits() => return SampleOutcome::Duplicate,
            Some(_) => return SampleOutcome::DuplicateTimestamp,
            None => {}
        }
        let ooo = self.ooo.get_or_insert_with(Box::default);
        let at = ooo.buf.partition_point(|x| x.t < s.t);
        ooo.buf.insert(at, s);
        if ooo.buf.len() >= OOO_CHUNK_SAMPLES {
            let mut enc = ChunkEncoder::new();
            for x in ooo.buf.drain(..) {
                enc.append(x.t, x.v);
            }
            ooo.chunks.push(enc.seal());
        }
        self.note_time(s.t, false);
        SampleOutcome::Appended
    }

    fn note_time(&mut self, t: i64, first: bool) {
        if first {
            self.min_t = t;
            self.max_t = t;
        } else {
            self.min_t = self.min_t.min(t);
            self.max_t = self.max_t.max(t);
        }
    }

    /// The value stored at `t`, if any (slow path: decodes the chunks that
    /// cover `t`).
    fn find(&self, t: i64) -> Option<f64> {
        if !self.overlaps(t, t) {
            return None;
        }
        let mut scratch = Vec::new();
        let covering = |c: &&Chunk| c.min_time() <= t && c.max_time() >= t;
        if let Some(ooo) = &self.ooo {
            if let Ok(i) = ooo.buf.binary_search_by_key(&t, |x| x.t) {
                return Some(ooo.buf[i].v);
            }
            for c in ooo.chunks.iter().filter(covering) {
                if c.decode_into(t, t, &mut scratch).is_ok() && !scratch.is_empty() {
                    return Some(scratch[0].v);
                }
            }
        }
        for c in self.sealed.iter().filter(covering) {
            if c.decode_into(t, t, &mut scratch).is_ok() && !scratch.is_empty() {
                return Some(scratch[0].v);
            }
        }
        if let Some(o) = &self.open {
            o.decode_into(t, t, &mut scratch);
        }
        scratch.first().map(|x| x.v)
    }

    /// The data a query over `[mint, maxt]` reads, or None without overlap.
    pub fn snapshot(&self, mint: i64, maxt: i64) -> Option<SeriesSnapshot> {
        if !self.overlaps(mint, maxt) {
            return None;
        }
        let over = |c: &&Chunk| c.min_time() <= maxt && c.max_time() >= mint;
        let mut chunks: Vec<Chunk> = self.sealed.iter().filter(over).cloned().collect();
        let mut tail = Vec::new();
        // The open chunk is copied, not decoded: decoding is left to the
        // reader (in parallel, outside this lock).
        if let Some(o) = &self.open
            && !o.is_empty()
            && o.min_time().is_some_and(|t| t <= maxt)
            && o.max_time().is_some_and(|t| t >= mint)
        {
            chunks.push(o.to_chunk());
        }
        let mut needs_sort = false;
        if let Some(ooo) = &self.ooo {
            let before = chunks.len() + tail.len();
            chunks.extend(ooo.chunks.iter().filter(over).cloned());
            let lo = ooo.buf.partition_point(|x| x.t < mint);
            let hi = ooo.buf.partition_point(|x| x.t <= maxt);
            tail.extend_from_slice(&ooo.buf[lo..hi]);
            needs_sort = chunks.len() + tail.len() > before;
        }
        if chunks.is_empty() && tail.is_empty() {
            return None;
        }
        Some(SeriesSnapshot {
            chunks,
            tail,
            needs_sort,
        })
    }

    /// Slots allocated for sealed chunks (tests check memory growth).
    #[cfg(test)]
    pub(crate) fn sealed_capacity(&self) -> usize {
        self.sealed.capacity()
    }

    pub fn num_chunks(&self) -> usize {
        self.sealed.len()
            + usize::from(self.open.is_some())
            + self.ooo.as_ref().map_or(0, |o| o.chunks.len())
    }

    pub fn num_samples(&self) -> usize {
        let sealed: usize = self.sealed.iter().map(Chunk::len).sum();
        let open = self.open.as_ref().map_or(0, ChunkEncoder::len);
        let ooo = self.ooo.as_ref().map_or(0, |o| {
            o.buf.len() + o.chunks.iter().map(Chunk::len).sum::<usize>()
        });
        sealed + open + ooo
    }

    /// Heap bytes this series' samples hold (chunk bytes, vectors, buffers),
    /// not counting the fixed size of [`MemSeries`].
    pub fn heap_bytes(&self) -> usize {
        // An Arc<[u8]> allocation carries two reference counts.
        let chunk = |c: &Chunk| c.as_bytes().len() + 16;
        let mut n = self.sealed.capacity() * std::mem::size_of::<Chunk>()
            + self.sealed.iter().map(chunk).sum::<usize>();
        if let Some(o) = &self.open {
            n += o.encoded_bytes();
        }
        if let Some(ooo) = &self.ooo {
            n += std::mem::size_of::<OooData>()
                + ooo.buf.capacity() * std::mem::size_of::<Sample>()
                + ooo.chunks.capacity() * std::mem::size_of::<Chunk>()
                + ooo.chunks.iter().map(chunk).sum::<usize>();
        }
        n
    }
}
