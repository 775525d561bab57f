//! Postings: label name -> value -> roaring bitmap of series refs, and the
//! resolution of label matchers against it.
//!
//! Layout and locking: one `RwLock` around the map of names, taken for
//! writing only when a name appears or disappears, and one `RwLock` per name
//! around that name's sorted values (a `BTreeMap`, so prefix regexes are a
//! range scan) and the bitmap of every series that has the name. Writers
//! adding series with different label names do not contend; readers share
//! every lock. Lock order is always the names map, then one name at a time,
//! never two names at once, so there is no deadlock.
//!
//! Matcher semantics are Prometheus's (`PostingsForMatchers`): a matcher
//! that does not match "" selects the series whose value it matches (an
//! intersection); a matcher that matches "" selects every series except
//! those whose (non-empty) value it does not match (a subtraction). A
//! selection of only such matchers starts from all series; an empty matcher
//! list selects nothing. Intersections run cheapest first and stop as soon
//! as the result is empty.
//!
//! A concurrent `add` may or may not be visible to a `select` running at
//! the same time, and may be visible for some names and not others; the
//! head only hands out a series once `add` has returned.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::RwLock;
use roaring::{MultiOps, RoaringBitmap};

use super::SeriesRef;
use super::cardinality::{CardinalityStats, TopN};
use crate::labels::{Labels, METRIC_NAME};
use crate::matcher::{MatchOp, Matcher, RegexShape};

/// One label name's values and series.
#[derive(Default)]
struct NameEntry {
    /// Value -> series with that value. Never holds an empty bitmap.
    values: BTreeMap<Arc<str>, RoaringBitmap>,
    /// Every series with this name: the union of `values`, kept so that
    /// `{a!=""}`, `{a=~".+"}` and complements need no union at query time.
    any: RoaringBitmap,
}

impl NameEntry {
    fn insert(&mut self, value: &Arc<str>, id: u32) {
        match self.values.get_mut(&**value) {
            Some(b) => {
                if b.insert(id) && b.len() <= SMALL_BITMAP {
                    *b = exact(std::mem::take(b));
                }
            }
            None => {
                let mut b = RoaringBitmap::new();
                b.insert(id);
                self.values.insert(Arc::clone(value), exact(b));
            }
        }
        self.any.insert(id);
    }

    /// Inserts groups of refs sharing a value.
    fn insert_batch<'a>(&mut self, groups: impl Iterator<Item = (&'a Arc<str>, Vec<u32>)>) {
        for (value, mut ids) in groups {
            // Refs usually arrive in increasing order; sorting is then a
            // single pass, and sorted input lets roaring append.
            ids.sort_unstable();
            ids.dedup();
            let added = RoaringBitmap::from_sorted_iter(ids.iter().copied())
                .unwrap_or_else(|_| ids.iter().copied().collect());
            self.any |= &added;
            match self.values.get_mut(&**value) {
                Some(b) => {
                    *b |= added;
                    if b.len() <= SMALL_BITMAP {
                        *b = exact(std::mem::take(b));
                    }
                }
                None => {
                    self.values.insert(Arc::clone(value), exact(added));
                }
            }
        }
    }

    fn remove(&mut self, value: &str, id: u32) {
        if let Some(b) = self.values.get_mut(value) {
            b.remove(id);
            if b.is_empty() {
                self.values.remove(value);
            }
        }
        self.any.remove(id);
    }

    fn exact(&self, v: &str) -> Option<&RoaringBitmap> {
        self.values.get(v)
    }

    /// The values starting with `p`, in order.
    fn with_prefix<'a, 'p>(
        &'a self,
        p: &'p str,
    ) -> impl Iterator<Item = (&'a Arc<str>, &'a RoaringBitmap)> + 'p
    where
        'a: 'p,
    {
        self.values
            .range::<str, _>((Bound::Included(p), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(p))
    }

    /// The series whose value the pattern of `m` matches (the regex, or
    /// equality with `m.value`, ignoring a negated operator), or with
    /// `complement` the series that have the name and whose value it does
    /// not match; as borrowed bitmaps, combined by the caller.
    fn pattern_sel<'s>(&'s self, m: &Matcher, complement: bool) -> Sel<'s> {
        let sel = |parts| Sel::of(&self.any, parts, complement);
        match m.regex_shape() {
            None => sel(self.exact(&m.value).into_iter().collect()),
            Some(RegexShape::NonEmpty) => sel(vec![&self.any]),
            Some(RegexShape::Literals { exact, prefixes }) => {
                if prefixes.first().is_some_and(|p| p.is_empty()) {
                    return sel(vec![&self.any]);
                }
                let mut parts: Vec<&RoaringBitmap> =
                    exact.iter().filter_map(|v| self.exact(v)).collect();
                for p in prefixes {
                    // A value can be both an exact literal and under a
                    // prefix; a repeated part is harmless in a union.
                    parts.extend(self.with_prefix(p).map(|(_, b)| b));
                }
                sel(parts)
            }
            Some(RegexShape::General { prefix }) => {
                let candidates: Box<dyn Iterator<Item = (&'s Arc<str>, &'s RoaringBitmap)> + '_> =
                    if prefix.is_empty() {
                        Box::new(self.values.iter())
                    } else {
                        Box::new(self.with_prefix(prefix))
                    };
                let (mut hit, mut miss) = (Vec::new(), Vec::new());
                let (mut hit_len, mut miss_len) = (0u64, 0u64);
                for (v, b) in candidates {
                    if m.pattern_matches(v) {
                        hit_len += b.len();
                        hit.push(b);
                    } else {
                        miss_len += b.len();
                        miss.push(b);
                    }
                }
                // With every value scanned, `hit` and `miss` partition
                // `any`: work with the smaller side.
                if prefix.is_empty() && miss_len < hit_len {
                    if complement {
                        Sel::Union(miss)
                    } else {
                        Sel::AnyExcept(&self.any, miss)
                    }
                } else {
                    sel(hit)
                }
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        const ENTRY_BYTES: usize =
            std::mem::size_of::<Arc<str>>() + std::mem::size_of::<RoaringBitmap>();
        // B-tree nodes hold up to 11 entries and are about two-thirds full.
        let tree = self.values.len() * ENTRY_BYTES * 3 / 2;
        tree + bitmap_bytes(&self.any) + self.values.values().map(bitmap_bytes).sum::<usize>()
    }
}

/// Bitmaps of at most this many series are kept exactly sized.
const SMALL_BITMAP: u64 = 16;

/// `b` in exactly sized vectors. Roaring grows its container vector to
/// room for four (160 bytes) on the first insert; label values held by one
/// or two series (an instance, a pod) are common enough that this slack
/// would be a tenth of the head's memory. A clone allocates exactly.
fn exact(b: RoaringBitmap) -> RoaringBitmap {
    b.clone()
}

/// Estimated heap bytes of a roaring bitmap, from its container statistics.
fn bitmap_bytes(b: &RoaringBitmap) -> usize {
    // A container: its 16-bit key and its store (a vector or a box), 40
    // bytes; an array store's heap block is at least 24 bytes.
    const CONTAINER_BYTES: usize = 40;
    const ARRAY_MIN_BYTES: usize = 24;
    const BITSET_BYTES: usize = 8192;
    let s = b.statistics();
    s.n_containers as usize * CONTAINER_BYTES
        + (s.n_values_array_containers as usize * 2)
            .max(s.n_array_containers as usize * ARRAY_MIN_BYTES)
        + s.n_bitset_containers as usize * BITSET_BYTES
        + s.n_bytes_run_containers as usize
}

fn union(parts: &[&RoaringBitmap]) -> RoaringBitmap {
    match parts {
        [] => RoaringBitmap::new(),
        [one] => (*one).clone(),
        _ => parts.iter().copied().union(),
    }
}

/// The series one matcher selects under one label name, as borrowed
/// bitmaps, so that intersecting with or subtracting from a running result
/// can pick the cheapest order of operations.
enum Sel<'a> {
    /// The series in any of these bitmaps.
    Union(Vec<&'a RoaringBitmap>),
    /// The series in the first bitmap (those with the name) except those in
    /// any of the others.
    AnyExcept(&'a RoaringBitmap, Vec<&'a RoaringBitmap>),
}

/// Up to this many parts, and when the running result `r` is smaller than
/// the parts together, `r & (a | b | ...)` is computed as
/// `(r & a) | (r & b) | ...`: each intersection then costs about `r`, and
/// the union of small results is cheap. Measured on the bench fleet with
/// the 4 `model=~"llama.*"` bitmaps (200k series): r of 480 series 6 us
/// instead of 0.60 ms, r of 6k 14 us instead of 0.72 ms; with r of 393k the
/// union first is faster (0.80 ms against 1.10 ms).
const MAX_PARTS_INTERSECTED_ONE_BY_ONE: usize = 64;

impl<'a> Sel<'a> {
    /// `parts`, or with `complement` the series in `any` but not in `parts`.
    fn of(any: &'a RoaringBitmap, parts: Vec<&'a RoaringBitmap>, complement: bool) -> Self {
        if complement {
            Sel::AnyExcept(any, parts)
        } else {
            Sel::Union(parts)
        }
    }

    fn into_bitmap(self) -> RoaringBitmap {
        match self {
            Sel::Union(parts) => union(&parts),
            Sel::AnyExcept(any, parts) => {
                let mut x = any.clone();
                for p in parts {
                    x -= p;
                }
                x
            }
        }
    }

    /// `r &= self`.
    fn intersect_into(self, r: &mut RoaringBitmap) {
        match self {
            Sel::Union(parts) => match parts.as_slice() {
                [] => r.clear(),
                [one] => *r &= *one,
                _ => {
                    let total: u64 = parts.iter().map(|p| p.len()).sum();
                    if parts.len() <= MAX_PARTS_INTERSECTED_ONE_BY_ONE && r.len() < total {
                        let pieces: Vec<RoaringBitmap> = parts.iter().map(|p| &*r & *p).collect();
                        *r = pieces.into_iter().union();
                    } else {
                        *r &= union(&parts);
                    }
                }
            },
            Sel::AnyExcept(any, parts) => {
                *r &= any;
                for p in parts {
                    if r.is_empty() {
                        break;
                    }
                    *r -= p;
                }
            }
        }
    }

    /// `r -= self`.
    fn subtract_from(self, r: &mut RoaringBitmap) {
        match self {
            Sel::Union(parts) => {
                for p in parts {
                    if r.is_empty() {
                        break;
                    }
                    *r -= p;
                }
            }
            Sel::AnyExcept(any, parts) => {
                // Keep the series without the name, and those with it whose
                // value is among the excepted ones.
                let lacking = &*r - any;
                let kept = parts.iter().map(|p| &*r & *p);
                *r = std::iter::once(lacking).chain(kept).union();
            }
        }
    }
}

/// The inverted index. `Send + Sync`; see the module docs for locking.
#[derive(Default)]
pub struct Postings {
    names: RwLock<HashMap<Arc<str>, RwLock<NameEntry>>>,
    all: RwLock<RoaringBitmap>,
}

/// How a matcher combines with the selection.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Cost {
    /// One bitmap look-up.
    Lookup,
    /// A few look-ups, or the name's whole-name bitmap.
    Lookups,
    /// Range scans over sorted values.
    Prefix,
    /// The regex runs over values starting with a literal prefix.
    RegexWithPrefix,
    /// The regex runs over every value of the name.
    RegexAll,
}

fn cost(m: &Matcher) -> Cost {
    match m.regex_shape() {
        None if m.op == MatchOp::Equal && !m.value.is_empty() => Cost::Lookup,
        None => Cost::Lookups,
        Some(RegexShape::NonEmpty) => Cost::Lookups,
        Some(RegexShape::Literals { prefixes, .. }) => {
            if prefixes.iter().all(|p| p.is_empty()) {
                Cost::Lookups
            } else {
                Cost::Prefix
            }
        }
        Some(RegexShape::General { prefix }) if prefix.is_empty() => Cost::RegexAll,
        Some(RegexShape::General { .. }) => Cost::RegexWithPrefix,
    }
}

impl Postings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers series `r` with `labels`. Adding the same pair twice is
    /// harmless. The labels' `Arc<str>`s are kept as keys, so pass interned
    /// labels ([`super::Interner::intern_labels`]) to share them.
    pub fn add(&self, r: SeriesRef, labels: &Labels) {
        let mut missing = false;
        {
            let names = self.names.read();
            for l in labels {
                match names.get(&*l.name) {
                    Some(e) => e.write().insert(&l.value, r.0),
                    None => missing = true,
                }
            }
        }
        if missing {
            let mut names = self.names.write();
            for l in labels {
                // Inserting again where the name existed is idempotent.
                names
                    .entry(Arc::clone(&l.name))
                    .or_default()
                    .get_mut()
                    .insert(&l.value, r.0);
            }
        }
        // Last, so that "all series" never holds a half-added series.
        self.all.write().insert(r.0);
    }

    /// Registers many series at once, as WAL replay does: equivalent to
    /// [`Postings::add`] for each, but each name is locked once and each
    /// value looked up once per batch. Pairs are grouped by the identity of
    /// their `Arc<str>`s, so interned labels group fully; labels that are
    /// not interned are still indexed correctly, only in smaller groups.
    pub fn add_batch<'a>(&self, series: impl IntoIterator<Item = (SeriesRef, &'a Labels)>) {
        type Values<'a> = HashMap<*const u8, (&'a Arc<str>, Vec<u32>)>;
        let mut by_name: HashMap<*const u8, (&'a Arc<str>, Values<'a>)> = HashMap::new();
        let mut refs = Vec::new();
        for (r, labels) in series {
            refs.push(r.0);
            for l in labels {
                let (_, values) = by_name
                    .entry(Arc::as_ptr(&l.name).cast::<u8>())
                    .or_insert_with(|| (&l.name, HashMap::new()));
                values
                    .entry(Arc::as_ptr(&l.value).cast::<u8>())
                    .or_insert_with(|| (&l.value, Vec::new()))
                    .1
                    .push(r.0);
            }
        }
        let mut missing = Vec::new();
        {
            let names = self.names.read();
            for (name, values) in by_name.into_values() {
                match names.get(&**name) {
                    Some(e) => e.write().insert_batch(values.into_values()),
                    None => missing.push((name, values)),
                }
            }
        }
        if !missing.is_empty() {
            let mut names = self.names.write();
            for (name, values) in missing {
                names
                    .entry(Arc::clone(name))
                    .or_default()
                    .get_mut()
                    .insert_batch(values.into_values());
            }
        }
        refs.sort_unstable();
        self.all.write().extend(refs);
    }

    /// An index over series `0..num_series` from ready bitmaps, one per
    /// (name, value) pair (a block's postings as read from disk). Empty
    /// bitmaps are skipped; a pair given twice has its bitmaps united.
    pub fn from_bitmaps(
        num_series: u32,
        entries: impl IntoIterator<Item = (Arc<str>, Arc<str>, RoaringBitmap)>,
    ) -> Self {
        let mut names: HashMap<Arc<str>, RwLock<NameEntry>> = HashMap::new();
        for (name, value, bitmap) in entries {
            if bitmap.is_empty() {
                continue;
            }
            let e = names.entry(name).or_default().get_mut();
            e.any |= &bitmap;
            *e.values.entry(value).or_default() |= bitmap;
        }
        let mut all = RoaringBitmap::new();
        all.insert_range(0..num_series);
        Postings {
            names: RwLock::new(names),
            all: RwLock::new(all),
        }
    }

    /// Unregisters series `r`, which was added with `labels`. Values and
    /// names left without series are dropped.
    pub fn remove(&self, r: SeriesRef, labels: &Labels) {
        // First, so that "all series" never holds a half-removed series.
        self.all.write().remove(r.0);
        let mut emptied = false;
        {
            let names = self.names.read();
            for l in labels {
                if let Some(e) = names.get(&*l.name) {
                    let mut e = e.write();
                    e.remove(&l.value, r.0);
                    emptied |= e.any.is_empty();
                }
            }
        }
        if emptied {
            self.names
                .write()
                .retain(|_, e| !e.get_mut().any.is_empty());
        }
    }

    /// Every series in the index.
    pub fn all(&self) -> RoaringBitmap {
        self.all.read().clone()
    }

    /// Number of series in the index.
    pub fn len(&self) -> u64 {
        self.all.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.read().is_empty()
    }

    /// Series matching every matcher, with Prometheus's semantics (see the
    /// module docs). An empty matcher list selects nothing.
    pub fn select(&self, matchers: &[Matcher]) -> RoaringBitmap {
        if matchers.is_empty() {
            return RoaringBitmap::new();
        }
        let (mut positive, mut negative): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.iter().partition(|m| !m.matches_empty());
        // Cheapest first; among single look-ups, the smallest bitmap first.
        let mut keyed: Vec<((Cost, u64), &Matcher)> = positive
            .drain(..)
            .map(|m| {
                let c = cost(m);
                let size = if c == Cost::Lookup {
                    self.exact_len(&m.name, &m.value)
                } else {
                    u64::MAX
                };
                ((c, size), m)
            })
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        negative.sort_by_key(|m| cost(m));

        let mut result: Option<RoaringBitmap> = None;
        for ((c, size), m) in keyed {
            if c == Cost::Lookup && size == 0 {
                return RoaringBitmap::new();
            }
            match result.as_mut() {
                Some(r) => self.with_sel(m, true, |sel| sel.intersect_into(r)),
                None => result = Some(self.with_sel(m, true, |sel| sel.into_bitmap())),
            }
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                return RoaringBitmap::new();
            }
        }
        let mut result = result.unwrap_or_else(|| self.all());
        for m in negative {
            if result.is_empty() {
                break;
            }
            self.with_sel(m, false, |sel| sel.subtract_from(&mut result));
        }
        result
    }

    /// Runs `f` on the selection of the series that have a value of
    /// `m.name` and for which `m.matches(value) == want`, under the name's
    /// read lock (an empty selection when no series has the name).
    fn with_sel<T>(&self, m: &Matcher, want: bool, f: impl FnOnce(Sel<'_>) -> T) -> T {
        let negated = matches!(m.op, MatchOp::NotEqual | MatchOp::RegexNoMatch);
        let names = self.names.read();
        match names.get(m.name.as_str()) {
            Some(e) => f(e.read().pattern_sel(m, want == negated)),
            None => f(Sel::Union(Vec::new())),
        }
    }

    fn exact_len(&self, name: &str, value: &str) -> u64 {
        let names = self.names.read();
        names
            .get(name)
            .and_then(|e| e.read().exact(value).map(|b| b.len()))
            .unwrap_or(0)
    }

    /// Label names held by at least one series (of `within`, if given),
    /// sorted.
    pub fn label_names(&self, within: Option<&RoaringBitmap>) -> Vec<String> {
        let names = self.names.read();
        let mut out: Vec<String> = names
            .iter()
            .filter(|(_, e)| {
                let e = e.read();
                match within {
                    Some(w) => !e.any.is_disjoint(w),
                    None => !e.any.is_empty(),
                }
            })
            .map(|(n, _)| n.to_string())
            .collect();
        out.sort_unstable();
        out
    }

    /// Values of label `name` held by at least one series (of `within`, if
    /// given), sorted.
    pub fn label_values(&self, name: &str, within: Option<&RoaringBitmap>) -> Vec<String> {
        let names = self.names.read();
        let Some(e) = names.get(name) else {
            return Vec::new();
        };
        let e = e.read();
        match within {
            // The whole name is inside `within`: no per-value test needed.
            Some(w) if !e.any.is_subset(w) => e
                .values
                .iter()
                .filter(|(_, b)| !b.is_disjoint(w))
                .map(|(v, _)| v.to_string())
                .collect(),
            _ => e.values.keys().map(|v| v.to_string()).collect(),
        }
    }

    /// Cardinality statistics, each list cut to the `top_n` largest.
    pub fn cardinality(&self, top_n: usize) -> CardinalityStats {
        let num_series = self.len();
        let names = self.names.read();
        let mut by_metric = TopN::new(top_n);
        let mut value_count = TopN::new(top_n);
        let mut memory = TopN::new(top_n);
        let mut pairs = TopN::new(top_n);
        let mut by_name = TopN::new(top_n);
        let mut num_label_pairs = 0u64;
        for (name, e) in names.iter() {
            let e = e.read();
            num_label_pairs += e.values.len() as u64;
            value_count.offer(e.values.len() as u64, || name.to_string());
            let bytes: usize = e.values.keys().map(|v| v.len()).sum();
            memory.offer(bytes as u64, || name.to_string());
            by_name.offer(e.any.len(), || name.to_string());
            let is_metric = &**name == METRIC_NAME;
            for (v, b) in &e.values {
                pairs.offer(b.len(), || format!("{name}={v}"));
                if is_metric {
                    by_metric.offer(b.len(), || v.to_string());
                }
            }
        }
        CardinalityStats {
            num_series,
            num_label_names: names.len() as u64,
            num_label_pairs,
            series_count_by_metric_name: by_metric.into_sorted(),
            label_value_count_by_label_name: value_count.into_sorted(),
            memory_in_bytes_by_label_name: memory.into_sorted(),
            series_count_by_label_value_pair: pairs.into_sorted(),
            series_count_by_label_name: by_name.into_sorted(),
        }
    }

    /// Estimated heap bytes of the index structure and its bitmaps. The
    /// strings themselves are shared with the [`super::Interner`] and
    /// counted there.
    pub fn memory_bytes(&self) -> usize {
        const NAME_BYTES: usize =
            std::mem::size_of::<Arc<str>>() + std::mem::size_of::<RwLock<NameEntry>>() + 1;
        let names = self.names.read();
        let per_name: usize = names.values().map(|e| e.read().memory_bytes()).sum();
        names.capacity() * NAME_BYTES + per_name + bitmap_bytes(&self.all.read())
    }
}
