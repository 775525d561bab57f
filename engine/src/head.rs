//! The head: the in-memory, appendable part of the database. It owns the
//! series registry (label set -> series), each series' chunks, the label
//! index over the series, and applies the append rules. Durability is not
//! its job: [`crate::db::Db`] writes the WAL around it.
//!
//! **Concurrency.** The registry is split into stripes by the label set's
//! hash, each under its own lock, and each series has its own lock, so
//! appenders to different series rarely meet. Series creation takes a
//! stripe lock and one lock of the reference map.
//!
//! **Architecture Invariant:** a series is reachable by reference before it
//! is added to the postings, so a query that finds a reference in the
//! postings always finds the series.

pub mod series;
pub mod symbols;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;

use crate::index::{Interner, Postings, SeriesRef};
use crate::labels::Labels;
use crate::sample::Sample;
pub use series::{ChunkPolicy, MemSeries, SampleOutcome, SeriesSnapshot, Truncated};
use symbols::SymbolTable;

/// Number of registry stripes (a power of two).
const STRIPES: usize = 256;

/// How the head treats samples.
#[derive(Debug, Clone, Copy)]
pub struct HeadOptions {
    /// Samples older than a series' newest sample are accepted when they are
    /// at most this much older than the newest sample of the whole head.
    pub ooo_window_ms: i64,
    pub chunk: ChunkPolicy,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            ooo_window_ms: 10 * 60 * 1000,
            chunk: ChunkPolicy {
                // As a block's chunks (`BlockOptions::chunk_max_samples`):
                // an hour of 15 s scrapes. Twice Prometheus's 120, for a
                // sixth less head memory per series (a chunk's fixed cost
                // and its predictor restart are paid half as often).
                max_samples: 240,
                range_ms: 2 * 60 * 60 * 1000,
            },
        }
    }
}

/// A hasher for keys that already are hashes (u64) or dense ids (u32).
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
    fn write_u32(&mut self, x: u32) {
        // Series references are small dense integers: spread them over all
        // 64 bits (Fibonacci hashing), since the map uses the top bits too.
        self.0 = u64::from(x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdentityMap<K, V> = HashMap<K, V, BuildHasherDefault<IdentityHasher>>;
type RefMap = IdentityMap<u32, Arc<MemSeries>>;

/// Series sharing a label-set hash: almost always one.
// Boxing the rare collision list keeps every map entry at 16 bytes.
#[allow(clippy::box_collection)]
enum Slot {
    One(Arc<MemSeries>),
    Many(Box<Vec<Arc<MemSeries>>>),
}

impl Slot {
    fn find(&self, syms: &SymbolTable, labels: &Labels) -> Option<&Arc<MemSeries>> {
        match self {
            Slot::One(s) => syms.equals(&s.label_ids, labels).then_some(s),
            Slot::Many(v) => v.iter().find(|s| syms.equals(&s.label_ids, labels)),
        }
    }
}

/// The hash of a label set that keys the registry: foldhash (the hasher
/// hashbrown and the index's interner use) over each name and value with
/// its length, with a fixed seed so that it is the same in every process.
/// One streaming hasher over the strings in place, no copy into a buffer.
pub fn labels_hash(labels: &Labels) -> u64 {
    use std::hash::BuildHasher;
    let mut h = foldhash::fast::FixedState::with_seed(0x9e37_79b9_7f4a_7c15).build_hasher();
    h.write_usize(labels.len());
    for l in labels {
        // `write` folds the length in, so ("ab", "c") and ("a", "bc")
        // differ.
        h.write(l.name.as_bytes());
        h.write(l.value.as_bytes());
    }
    h.finish()
}

/// The head.
pub struct Head {
    opts: HeadOptions,
    /// [`labels_hash`], replaceable in tests to force collisions.
    hash: fn(&Labels) -> u64,
    stripes: Box<[Mutex<IdentityMap<u64, Slot>>]>,
    by_ref: Box<[RwLock<RefMap>]>,
    next_ref: AtomicU32,
    interner: Interner,
    symbols: SymbolTable,
    postings: Postings,
    /// Newest and oldest sample timestamps in the head (i64::MIN / MAX
    /// while empty).
    max_t: AtomicI64,
    min_t: AtomicI64,
    /// Samples older than this are rejected outright (raised when the head
    /// is truncated into blocks).
    min_valid_t: AtomicI64,
    /// Appenders hold it shared from reading `min_valid_t` until their
    /// samples are in the series; raising the bound takes it exclusively
    /// once, so that no append that read the old bound is still in flight
    /// when a range is read into a block.
    append_gate: RwLock<()>,
    num_series: AtomicU64,
    num_samples: AtomicU64,
}

/// What [`Head::truncate`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TruncateStats {
    pub series_removed: u64,
    pub chunks_removed: u64,
    pub samples_removed: u64,
}

/// A shared hold on the head's append gate (see [`Head::append_guard`]).
pub struct AppendGuard<'a>(#[allow(dead_code)] parking_lot::RwLockReadGuard<'a, ()>);

/// Per-series result of [`Head::append_samples`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeriesAppendResult {
    pub appended: u64,
    pub duplicates: u64,
    pub too_old: u64,
    pub duplicate_timestamp: u64,
    /// Timestamp of the first sample rejected, for error messages.
    pub first_rejected_t: Option<i64>,
}

impl Head {
    pub fn new(opts: HeadOptions) -> Head {
        Head {
            opts,
            hash: labels_hash,
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(IdentityMap::default()))
                .collect(),
            by_ref: (0..STRIPES)
                .map(|_| RwLock::new(IdentityMap::default()))
                .collect(),
            next_ref: AtomicU32::new(0),
            interner: Interner::default(),
            symbols: SymbolTable::default(),
            postings: Postings::new(),
            max_t: AtomicI64::new(i64::MIN),
            min_t: AtomicI64::new(i64::MAX),
            min_valid_t: AtomicI64::new(i64::MIN),
            append_gate: RwLock::new(()),
            num_series: AtomicU64::new(0),
            num_samples: AtomicU64::new(0),
        }
    }

    /// A head whose registry uses `hash` (tests force collisions with it).
    #[cfg(test)]
    pub(crate) fn with_hash(opts: HeadOptions, hash: fn(&Labels) -> u64) -> Head {
        Head {
            hash,
            ..Head::new(opts)
        }
    }

    pub fn options(&self) -> &HeadOptions {
        &self.opts
    }

    pub fn postings(&self) -> &Postings {
        &self.postings
    }

    pub fn interner(&self) -> &Interner {
        &self.interner
    }

    /// The series with these labels, created if absent (`true` when
    /// created). `labels` must already be validated.
    pub fn get_or_create(&self, labels: &Labels) -> (Arc<MemSeries>, bool) {
        let hash = (self.hash)(labels);
        let stripe = &self.stripes[hash as usize & (STRIPES - 1)];
        if let Some(s) = stripe
            .lock()
            .get(&hash)
            .and_then(|slot| slot.find(&self.symbols, labels))
        {
            return (s.clone(), false);
        }
        let (ids, interned) = self.symbols.encode(&self.interner, labels);
        let mut map = stripe.lock();
        if let Some(s) = map
            .get(&hash)
            .and_then(|slot| slot.find(&self.symbols, labels))
        {
            return (s.clone(), false);
        }
        let r = SeriesRef(self.next_ref.fetch_add(1, Ordering::Relaxed));
        let series = Arc::new(MemSeries::new(r, ids));
        insert_slot(&mut map, hash, series.clone());
        drop(map);
        self.publish(&series, &interned);
        (series, true)
    }

    /// Recreates a series under the reference the WAL recorded. Returns the
    /// series now registered for these labels (an existing one if the
    /// label set is already known under another reference).
    pub fn create_with_ref(&self, r: SeriesRef, labels: &Labels) -> Arc<MemSeries> {
        let (series, created) = self.register_with_ref(r, labels);
        if let Some(interned) = created {
            self.postings.add(series.series_ref, &interned);
        }
        series
    }

    /// [`Head::create_with_ref`] for a whole WAL Series record: the
    /// postings of the new series are added in one batch at the end. Only
    /// for replay, before the head serves queries.
    pub fn create_many_with_refs(&self, series: &[(u32, Labels)]) -> Vec<Arc<MemSeries>> {
        let mut created: Vec<(SeriesRef, Labels)> = Vec::new();
        let out = series
            .iter()
            .map(|(r, labels)| {
                let (s, new) = self.register_with_ref(SeriesRef(*r), labels);
                if let Some(interned) = new {
                    created.push((s.series_ref, interned));
                }
                s
            })
            .collect();
        self.postings
            .add_batch(created.iter().map(|(r, l)| (*r, l)));
        out
    }

    /// Registers a replayed series without adding it to the postings;
    /// returns its interned labels when it was created.
    fn register_with_ref(&self, r: SeriesRef, labels: &Labels) -> (Arc<MemSeries>, Option<Labels>) {
        let hash = (self.hash)(labels);
        let stripe = &self.stripes[hash as usize & (STRIPES - 1)];
        let mut map = stripe.lock();
        if let Some(s) = map
            .get(&hash)
            .and_then(|slot| slot.find(&self.symbols, labels))
        {
            return (s.clone(), None);
        }
        let (ids, interned) = self.symbols.encode(&self.interner, labels);
        let series = Arc::new(MemSeries::new(r, ids));
        // Replayed series are durable already.
        series
            .wal_pending
            .store(false, std::sync::atomic::Ordering::Relaxed);
        insert_slot(&mut map, hash, series.clone());
        drop(map);
        self.next_ref
            .fetch_max(r.0.saturating_add(1), Ordering::Relaxed);
        self.publish_ref(&series);
        (series, Some(interned))
    }

    fn publish(&self, series: &Arc<MemSeries>, labels: &Labels) {
        self.publish_ref(series);
        self.postings.add(series.series_ref, labels);
    }

    /// Makes a series reachable by reference (before it is in the
    /// postings: see the module's invariant).
    fn publish_ref(&self, series: &Arc<MemSeries>) {
        let r = series.series_ref;
        self.by_ref[r.0 as usize & (STRIPES - 1)]
            .write()
            .insert(r.0, series.clone());
        self.num_series.fetch_add(1, Ordering::Relaxed);
    }

    /// The label set of a series of this head.
    pub fn series_labels(&self, s: &MemSeries) -> Labels {
        self.symbols.decode(&s.label_ids)
    }

    /// Whether a series of this head has exactly these labels.
    pub fn series_has_labels(&self, s: &MemSeries, labels: &Labels) -> bool {
        self.symbols.equals(&s.label_ids, labels)
    }

    /// The series with reference `r`.
    pub fn series(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        self.by_ref[r.0 as usize & (STRIPES - 1)]
            .read()
            .get(&r.0)
            .cloned()
    }

    /// Holds off [`Head::raise_min_valid_time`]'s wait while a batch of
    /// appends is applied: take it before the first
    /// [`Head::append_samples`] of a batch and drop it once the batch is
    /// in the head (before waiting for the WAL).
    pub fn append_guard(&self) -> AppendGuard<'_> {
        AppendGuard(self.append_gate.read())
    }

    /// Appends samples to one series under the append rules, calling
    /// `logged` with every sample the WAL must hold (stored ones and exact
    /// duplicates, whose first copy may not be durable yet). The caller
    /// holds an [`Head::append_guard`].
    ///
    /// Returns None, storing nothing, when head truncation has removed the
    /// series since it was looked up: look the labels up again.
    pub fn append_samples(
        &self,
        series: &MemSeries,
        samples: &[Sample],
        mut logged: impl FnMut(Sample),
    ) -> Option<SeriesAppendResult> {
        let mut res = SeriesAppendResult::default();
        let head_max = self.max_t.load(Ordering::Acquire);
        let ooo_min_t = head_max.saturating_sub(self.opts.ooo_window_ms);
        let min_valid_t = self.min_valid_t.load(Ordering::Acquire);
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        {
            let mut data = series.data.lock();
            if data.is_removed() {
                return None;
            }
            for &s in samples {
                match data.append(s, ooo_min_t, min_valid_t, self.opts.chunk) {
                    SampleOutcome::Appended => {
                        res.appended += 1;
                        lo = lo.min(s.t);
                        hi = hi.max(s.t);
                        logged(s);
                    }
                    SampleOutcome::Duplicate => {
                        res.duplicates += 1;
                        logged(s);
                    }
                    SampleOutcome::TooOld => {
                        res.too_old += 1;
                        res.first_rejected_t.get_or_insert(s.t);
                    }
                    SampleOutcome::DuplicateTimestamp => {
                        res.duplicate_timestamp += 1;
                        res.first_rejected_t.get_or_insert(s.t);
                    }
                }
            }
        }
        if res.appended > 0 {
            self.note_times(lo, hi, res.appended);
        }
        Some(res)
    }

    /// Applies a sample read back from the WAL: no window applies (it was
    /// accepted once), and exact duplicates are no-ops. Samples before the
    /// head's lower bound (already in blocks) are skipped as too old.
    pub fn replay_sample(&self, series: &MemSeries, s: Sample) -> SampleOutcome {
        let mut res = [SampleOutcome::Appended];
        self.replay_samples(series, std::iter::once(s), |o| res[0] = o);
        res[0]
    }

    /// Applies samples of one series read back from the WAL under one lock
    /// (see [`Head::replay_sample`]), reporting each outcome.
    pub fn replay_samples(
        &self,
        series: &MemSeries,
        samples: impl IntoIterator<Item = Sample>,
        mut outcome: impl FnMut(SampleOutcome),
    ) {
        let (mut lo, mut hi, mut n) = (i64::MAX, i64::MIN, 0u64);
        {
            let mut data = series.data.lock();
            let min_valid_t = self.min_valid_t.load(Ordering::Relaxed);
            for s in samples {
                let out = data.append(s, i64::MIN, min_valid_t, self.opts.chunk);
                if out == SampleOutcome::Appended {
                    lo = lo.min(s.t);
                    hi = hi.max(s.t);
                    n += 1;
                }
                outcome(out);
            }
        }
        if n > 0 {
            self.note_times(lo, hi, n);
        }
    }

    fn note_times(&self, lo: i64, hi: i64, n: u64) {
        // Loads first: the common case changes nothing and then the shared
        // cache line stays clean.
        if hi > self.max_t.load(Ordering::Relaxed) {
            self.max_t.fetch_max(hi, Ordering::AcqRel);
        }
        if lo < self.min_t.load(Ordering::Relaxed) {
            self.min_t.fetch_min(lo, Ordering::AcqRel);
        }
        self.num_samples.fetch_add(n, Ordering::Relaxed);
    }

    /// Raises the oldest timestamp the head accepts (never lowers it):
    /// from now on samples older than `t` are rejected as too old, in or
    /// out of order, for new series too. Called before a range is cut into
    /// a block, so the range cannot change once written: it returns only
    /// after every append that read the old bound has finished (it waits
    /// for the holders of [`Head::append_guard`]).
    pub fn raise_min_valid_time(&self, t: i64) {
        let old = self.min_valid_t.fetch_max(t, Ordering::AcqRel);
        if old < t {
            drop(self.append_gate.write());
        }
    }

    /// The oldest timestamp the head accepts.
    pub fn min_valid_time(&self) -> i64 {
        self.min_valid_t.load(Ordering::Acquire)
    }

    /// Newest sample timestamp in the head, if any.
    pub fn max_time(&self) -> Option<i64> {
        let t = self.max_t.load(Ordering::Acquire);
        (t != i64::MIN).then_some(t)
    }

    /// Oldest sample timestamp in the head, if any.
    pub fn min_time(&self) -> Option<i64> {
        let t = self.min_t.load(Ordering::Acquire);
        (t != i64::MAX).then_some(t)
    }

    /// True when the head holds samples in `[mint, maxt]` (by its bounds).
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        match (self.min_time(), self.max_time()) {
            (Some(lo), Some(hi)) => lo <= maxt && hi >= mint,
            _ => false,
        }
    }

    pub fn num_series(&self) -> u64 {
        self.num_series.load(Ordering::Relaxed)
    }

    pub fn num_samples(&self) -> u64 {
        self.num_samples.load(Ordering::Relaxed)
    }

    /// The series matching `matchers` (all when empty and
    /// `all_if_empty`) if the head overlaps `[mint, maxt]` at all, without
    /// checking each series' own time range ([`Head::select_refs`] does).
    pub fn candidate_refs(
        &self,
        matchers: &[crate::matcher::Matcher],
        mint: i64,
        maxt: i64,
        all_if_empty: bool,
    ) -> RoaringBitmap {
        if !self.overlaps(mint, maxt) {
            return RoaringBitmap::new();
        }
        if matchers.is_empty() && all_if_empty {
            self.postings.all()
        } else {
            self.postings.select(matchers)
        }
    }

    /// References of series matching `matchers` with samples in `[mint,
    /// maxt]`; every series when `matchers` is empty and `all_if_empty`.
    pub fn select_refs(
        &self,
        matchers: &[crate::matcher::Matcher],
        mint: i64,
        maxt: i64,
        all_if_empty: bool,
    ) -> RoaringBitmap {
        let mut bm = self.candidate_refs(matchers, mint, maxt, all_if_empty);
        let head_covered = matches!((self.min_time(), self.max_time()),
            (Some(lo), Some(hi)) if mint <= lo && maxt >= hi);
        if !head_covered {
            bm.retain(|r| {
                self.series(SeriesRef(r))
                    .is_some_and(|s| s.data.lock().overlaps(mint, maxt))
            });
        }
        bm
    }

    /// Visits every series (for stats and checkpoints).
    pub fn for_each_series(&self, mut f: impl FnMut(&Arc<MemSeries>)) {
        for shard in self.by_ref.iter() {
            let snapshot: Vec<Arc<MemSeries>> = shard.read().values().cloned().collect();
            for s in &snapshot {
                f(s);
            }
        }
    }

    /// Drops the head's data older than `mint` and the series left with
    /// no data. `mint` must not be above the head's lower bound
    /// ([`Head::raise_min_valid_time`] first), so nothing older can arrive
    /// meanwhile; the data before it must be durable elsewhere (blocks).
    ///
    /// A removed series leaves the registry, the reference map and the
    /// postings; an appender still holding it finds it marked removed
    /// and looks its labels up again, creating a new series. Strings of
    /// removed series stay in the symbol table (ids are only added).
    pub fn truncate(&self, mint: i64) -> TruncateStats {
        debug_assert!(mint <= self.min_valid_time());
        let mut stats = TruncateStats::default();
        let mut emptied: Vec<Arc<MemSeries>> = Vec::new();
        self.for_each_series(|s| {
            let mut data = s.data.lock();
            let t = data.truncate_before(mint);
            stats.chunks_removed += t.chunks;
            stats.samples_removed += t.samples;
            if data.is_empty() {
                emptied.push(s.clone());
            }
        });
        for s in emptied {
            let labels = self.series_labels(&s);
            let hash = (self.hash)(&labels);
            {
                // Lock order: stripe, then series (appenders take them one
                // at a time).
                let mut map = self.stripes[hash as usize & (STRIPES - 1)].lock();
                let mut data = s.data.lock();
                if !data.is_empty() || data.is_removed() {
                    continue;
                }
                data.mark_removed();
                remove_slot(&mut map, hash, &s);
            }
            self.by_ref[s.series_ref.0 as usize & (STRIPES - 1)]
                .write()
                .remove(&s.series_ref.0);
            self.postings.remove(s.series_ref, &labels);
            self.num_series.fetch_sub(1, Ordering::Relaxed);
            stats.series_removed += 1;
        }
        self.num_samples
            .fetch_sub(stats.samples_removed, Ordering::Relaxed);
        // A lower bound of what is left (exact bounds would race with
        // appends): nothing before `mint` remains but chunks straddling it,
        // whose older part the blocks hold too.
        if self.min_t.load(Ordering::Acquire) != i64::MAX {
            self.min_t.fetch_max(mint, Ordering::AcqRel);
        }
        stats
    }

    /// Approximate heap bytes of the registry and series (label ids,
    /// chunks, buffers, map entries, the symbol table). Interned strings and
    /// postings are counted by the index, not here.
    pub fn memory_bytes(&self) -> (u64, u64) {
        let mut bytes = 0usize;
        let mut chunks = 0usize;
        // Two hash maps hold an entry per series: (u64, Slot) and
        // (u32, Arc), plus a control byte each, at most 8/7 full.
        let per_map_entry =
            (std::mem::size_of::<(u64, Slot)>() + std::mem::size_of::<(u32, Arc<MemSeries>)>() + 2)
                * 8
                / 7;
        self.for_each_series(|s| {
            let data = s.data.lock();
            chunks += data.num_chunks();
            bytes += 16 // Arc counts
                + std::mem::size_of::<MemSeries>()
                + s.label_ids.heap_bytes()
                + data.heap_bytes()
                + per_map_entry;
        });
        bytes += self.symbols.memory_bytes();
        (bytes as u64, chunks as u64)
    }
}

fn remove_slot(map: &mut IdentityMap<u64, Slot>, hash: u64, series: &Arc<MemSeries>) {
    use std::collections::hash_map::Entry;
    if let Entry::Occupied(mut o) = map.entry(hash) {
        match o.get_mut() {
            Slot::One(s) => {
                if Arc::ptr_eq(s, series) {
                    o.remove();
                }
            }
            Slot::Many(v) => {
                v.retain(|s| !Arc::ptr_eq(s, series));
                if v.len() == 1 {
                    let last = v.pop().expect("one left");
                    *o.get_mut() = Slot::One(last);
                } else if v.is_empty() {
                    o.remove();
                }
            }
        }
    }
}

fn insert_slot(map: &mut IdentityMap<u64, Slot>, hash: u64, series: Arc<MemSeries>) {
    use std::collections::hash_map::Entry;
    match map.entry(hash) {
        Entry::Vacant(v) => {
            v.insert(Slot::One(series));
        }
        Entry::Occupied(mut o) => {
            let slot = o.get_mut();
            match slot {
                Slot::One(first) => {
                    let first = first.clone();
                    *slot = Slot::Many(Box::new(vec![first, series]));
                }
                Slot::Many(v) => v.push(series),
            }
        }
    }
}

#[cfg(test)]
mod tests;
