//! The read seam: the [`Querier`] trait that the query engine reads storage
//! through, whether the data sits in the head, in blocks, or both.
//!
//! **API Boundary:** cairn-query depends on this module and on nothing else
//! of the engine's internals. Matchers and the exact time range are pushed
//! down here so that storage prunes as much as it can.

use crate::chunk::Chunk;
use crate::error::Result;
use crate::labels::Labels;
use crate::matcher::Matcher;
use crate::sample::{Sample, TimestampMs};

/// One selected series: its labels and access to its samples in the
/// selected time range. Samples are decoded on demand, so selecting many
/// series does not hold all their samples in memory at once.
pub struct Series {
    pub labels: Labels,
    source: SampleSource,
}

/// Where a selected series' samples come from.
enum SampleSource {
    /// Samples already decoded and sorted by time, deduplicated.
    Decoded(Vec<Sample>),
    /// Sealed chunks decoded on demand, plus a few samples already decoded
    /// (the head's open chunk and out-of-order buffer). Only samples inside
    /// `[mint, maxt]`, the range the series was selected for, are returned.
    Chunks {
        chunks: Vec<Chunk>,
        tail: Vec<Sample>,
        /// False when the sources interleave in time (out-of-order data)
        /// and the decoded samples must be sorted.
        in_order: bool,
        mint: TimestampMs,
        maxt: TimestampMs,
    },
}

impl Series {
    /// A series whose samples are already decoded (sorted by time, one per
    /// timestamp).
    pub fn from_samples(labels: Labels, samples: Vec<Sample>) -> Self {
        debug_assert!(samples.windows(2).all(|w| w[0].t < w[1].t));
        Series {
            labels,
            source: SampleSource::Decoded(samples),
        }
    }

    /// A series backed by chunks selected for `[mint, maxt]`.
    ///
    /// With `in_order`, `chunks` are ascending and disjoint in time and every
    /// `tail` sample is newer than them (sorted); otherwise the sources may
    /// interleave but no timestamp occurs twice across them.
    pub fn from_chunks(
        labels: Labels,
        chunks: Vec<Chunk>,
        tail: Vec<Sample>,
        in_order: bool,
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Self {
        Series {
            labels,
            source: SampleSource::Chunks {
                chunks,
                tail,
                in_order,
                mint,
                maxt,
            },
        }
    }

    /// Appends to `out` the samples with `mint <= t <= maxt`, sorted by time.
    ///
    /// A chunk that fails to decode (a bug or corrupt bytes) is logged and
    /// skipped; [`Series::try_read_samples`] reports it instead.
    pub fn read_samples(&self, mint: TimestampMs, maxt: TimestampMs, out: &mut Vec<Sample>) {
        if let Err(e) = self.try_read_samples(mint, maxt, out) {
            tracing::error!(series = %self.labels, error = %e, "series samples do not decode");
        }
    }

    /// Like [`Series::read_samples`], but a chunk that does not decode is an
    /// error (with the samples decoded before it left in `out`).
    pub fn try_read_samples(
        &self,
        mint: TimestampMs,
        maxt: TimestampMs,
        out: &mut Vec<Sample>,
    ) -> Result<()> {
        match &self.source {
            SampleSource::Decoded(s) => {
                let lo = s.partition_point(|x| x.t < mint);
                let hi = s.partition_point(|x| x.t <= maxt);
                if lo < hi {
                    out.extend_from_slice(&s[lo..hi]);
                }
                Ok(())
            }
            SampleSource::Chunks {
                chunks,
                tail,
                in_order,
                mint: sel_mint,
                maxt: sel_maxt,
            } => {
                let mint = mint.max(*sel_mint);
                let maxt = maxt.min(*sel_maxt);
                if mint > maxt {
                    return Ok(());
                }
                let start = out.len();
                for c in chunks {
                    if c.min_time() <= maxt && c.max_time() >= mint {
                        c.decode_into(mint, maxt, out)?;
                    }
                }
                let lo = if *in_order {
                    tail.partition_point(|x| x.t < mint)
                } else {
                    0
                };
                out.extend(tail[lo..].iter().filter(|x| x.t >= mint && x.t <= maxt));
                if !*in_order {
                    out[start..].sort_unstable_by_key(|x| x.t);
                }
                Ok(())
            }
        }
    }

    /// The oldest and newest timestamps this series can return, by its
    /// chunks' bounds, when its sources are in time order (None for an
    /// out-of-order or empty one).
    fn ordered_span(&self) -> Option<(TimestampMs, TimestampMs)> {
        match &self.source {
            SampleSource::Decoded(s) => Some((s.first()?.t, s.last()?.t)),
            SampleSource::Chunks {
                chunks,
                tail,
                in_order: true,
                ..
            } => {
                let lo = chunks
                    .first()
                    .map(Chunk::min_time)
                    .or(tail.first().map(|s| s.t))?;
                let hi = tail
                    .last()
                    .map(|s| s.t)
                    .or(chunks.last().map(Chunk::max_time))?;
                Some((lo, hi))
            }
            SampleSource::Chunks { .. } => None,
        }
    }

    /// [`Series::concat`] of two parts, the usual case (a block's part and
    /// the head's), without its bookkeeping: a query over a few thousand
    /// series merges as many pairs, serially, before it can start.
    fn concat_pair(a: Series, b: Series) -> std::result::Result<Series, Box<(Series, Series)>> {
        let spans = (a.ordered_span(), b.ordered_span());
        let (Some(sa), Some(sb)) = spans else {
            return Err(Box::new((a, b)));
        };
        let ranges = match (&a.source, &b.source) {
            (
                SampleSource::Chunks { mint, maxt, .. },
                SampleSource::Chunks {
                    mint: mint_b,
                    maxt: maxt_b,
                    ..
                },
            ) => (*mint == *mint_b && *maxt == *maxt_b).then_some((*mint, *maxt)),
            _ => None,
        };
        let Some((mint, maxt)) = ranges else {
            return Err(Box::new((a, b)));
        };
        let a_first = sa.0 <= sb.0;
        let (older, older_span, newer_span) = if a_first { (&a, sa, sb) } else { (&b, sb, sa) };
        let older_has_tail =
            matches!(&older.source, SampleSource::Chunks { tail, .. } if !tail.is_empty());
        if older_span.1 >= newer_span.0 || older_has_tail {
            return Err(Box::new((a, b)));
        }
        // The first source's labels are kept (the head's, allocated on
        // this thread: the other part's are freed).
        let Series { labels, source: a } = a;
        let (older, newer) = if a_first {
            (a, b.source)
        } else {
            (b.source, a)
        };
        match (older, newer) {
            (
                SampleSource::Chunks {
                    chunks: mut joined, ..
                },
                SampleSource::Chunks { chunks, tail, .. },
            ) => {
                joined.extend(chunks);
                Ok(Series::from_chunks(labels, joined, tail, true, mint, maxt))
            }
            // Both were checked to be chunks above.
            (o, n) => {
                let (a, b) = if a_first { (o, n) } else { (n, o) };
                let a = Series {
                    labels: labels.clone(),
                    source: a,
                };
                Err(Box::new((a, Series { labels, source: b })))
            }
        }
    }

    /// Joins parts of one series that follow each other in time (blocks,
    /// then the head) without decoding them: their chunks are chained and
    /// the newest part's tail kept. Gives the parts back when they
    /// overlap in time, are out of order, or were selected for different
    /// ranges.
    fn concat(labels: Labels, mut parts: Vec<Series>) -> std::result::Result<Series, Vec<Series>> {
        let mut spans = Vec::with_capacity(parts.len());
        for p in &parts {
            match (p.ordered_span(), &p.source) {
                (Some(span), SampleSource::Chunks { mint, maxt, .. }) => {
                    spans.push((span, *mint, *maxt))
                }
                _ => return Err(parts),
            }
        }
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by_key(|&i| spans[i].0.0);
        let (_, sel_mint, sel_maxt) = spans[0];
        let fits = order.windows(2).all(|w| {
            let (a, b) = (&spans[w[0]], &spans[w[1]]);
            a.0.1 < b.0.0 && a.1 == b.1 && a.2 == b.2
        });
        // Only the newest part may carry decoded tail samples.
        let tails_last = order[..order.len() - 1].iter().all(
            |&i| matches!(&parts[i].source, SampleSource::Chunks { tail, .. } if tail.is_empty()),
        );
        if !fits || !tails_last {
            return Err(parts);
        }
        let mut chunks = Vec::new();
        let mut last_tail = Vec::new();
        let mut taken: Vec<Option<Series>> = parts.drain(..).map(Some).collect();
        for i in order {
            if let Some(Series {
                source:
                    SampleSource::Chunks {
                        chunks: c, tail, ..
                    },
                ..
            }) = taken[i].take()
            {
                chunks.extend(c);
                last_tail = tail;
            }
        }
        Ok(Series::from_chunks(
            labels, chunks, last_tail, true, sel_mint, sel_maxt,
        ))
    }

    /// All samples of the selected range, decoded into a new vector.
    pub fn samples(&self) -> Vec<Sample> {
        let mut v = Vec::new();
        self.read_samples(TimestampMs::MIN, TimestampMs::MAX, &mut v);
        v
    }
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// Read access to stored series over a time range.
///
/// Time ranges are inclusive at both ends, in milliseconds. Implementations
/// must return series sorted by labels, each label set once (data for one
/// series from several sources merged, a sample present in two sources
/// returned once).
pub trait Querier: Send + Sync {
    /// Series matching all `matchers` that have samples in `[mint, maxt]`.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Series>>;

    /// Label sets of the series matching all `matchers` in `[mint, maxt]`,
    /// sorted; with no matchers, every series.
    fn series(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Labels>>;

    /// Sorted label names of series matching `matchers` (all series when
    /// empty) in `[mint, maxt]`.
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>>;

    /// Sorted values of label `name` over series matching `matchers` (all
    /// series when empty) in `[mint, maxt]`.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>>;
}

/// Walks lists that are each sorted by `key` (ascending, each key once in
/// a list) in merged order: `group` gets, for every key, the items that
/// have it, in list order, to take what it keeps (what it leaves is
/// dropped). Each item is compared with the other lists' heads once, not
/// sorted again with them: comparisons across sources read the strings,
/// comparisons within one are cheap (interned).
pub(crate) fn merge_sorted<T>(
    lists: Vec<Vec<T>>,
    key: impl Fn(&T) -> &Labels,
    mut group: impl FnMut(&mut Vec<T>) -> Result<()>,
) -> Result<()> {
    let k = lists.len();
    let mut iters: Vec<std::vec::IntoIter<T>> = lists.into_iter().map(Vec::into_iter).collect();
    let mut heads: Vec<Option<T>> = iters.iter_mut().map(Iterator::next).collect();
    let mut at_min = vec![false; k];
    // Reused: a query merges thousands of series here, serially.
    let mut parts: Vec<T> = Vec::with_capacity(k);
    loop {
        let mut min: Option<usize> = None;
        for i in 0..k {
            at_min[i] = false;
            let Some(s) = &heads[i] else { continue };
            let order = match min.and_then(|m| heads[m].as_ref()) {
                None => std::cmp::Ordering::Less,
                Some(m) => key(s).cmp(key(m)),
            };
            match order {
                std::cmp::Ordering::Less => {
                    at_min[..i].iter_mut().for_each(|t| *t = false);
                    min = Some(i);
                    at_min[i] = true;
                }
                std::cmp::Ordering::Equal => at_min[i] = true,
                std::cmp::Ordering::Greater => {}
            }
        }
        if min.is_none() {
            return Ok(());
        }
        for i in 0..k {
            if at_min[i] {
                parts.extend(heads[i].take());
                heads[i] = iters[i].next();
            }
        }
        group(&mut parts)?;
        parts.clear();
    }
}

/// Selections spanning at least this much (ms) read their sources in
/// parallel.
const PARALLEL_SELECT_MS: TimestampMs = 60 * 60 * 1000;

/// Several queriers read as one (the head and the blocks, or several
/// blocks): series with the same labels are merged, and a sample present
/// in more than one source (a block cut from the head before the head is
/// truncated, overlapping blocks) is returned once. Where two sources hold
/// different values at one timestamp, the earlier source in the list wins.
///
/// A series found in one source is passed through untouched (decoded on
/// demand), and so is one whose parts follow each other in time (the
/// usual blocks-then-head case: their chunks are chained); one whose parts
/// overlap is decoded when selected and merged.
pub struct MergedQuerier {
    sources: Vec<std::sync::Arc<dyn Querier>>,
}

impl MergedQuerier {
    pub fn new(sources: Vec<std::sync::Arc<dyn Querier>>) -> Self {
        MergedQuerier { sources }
    }

    /// Every source's selection, in source order. Over an hour or more
    /// (a dashboard's range query, where each source decodes indexes,
    /// chunks and block pages for milliseconds) the sources are read at
    /// once on threads of their own; shorter selections (rules, instant
    /// queries) are not worth a thread's start.
    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Vec<Series>>> {
        let Some((first, rest)) = self.sources.split_first() else {
            return Ok(Vec::new());
        };
        if rest.is_empty() || maxt.saturating_sub(mint) < PARALLEL_SELECT_MS {
            return self
                .sources
                .iter()
                .map(|q| q.select(matchers, mint, maxt))
                .collect();
        }
        std::thread::scope(|scope| {
            let others: Vec<_> = rest
                .iter()
                .map(|q| scope.spawn(move || q.select(matchers, mint, maxt)))
                .collect();
            let mut out = Vec::with_capacity(self.sources.len());
            out.push(first.select(matchers, mint, maxt));
            for h in others {
                // A source that panicked panics here, as it would have
                // read in line.
                out.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            out.into_iter().collect()
        })
    }

    fn union<T: Ord>(parts: Vec<Vec<T>>) -> Vec<T> {
        let mut v: Vec<T> = parts.into_iter().flatten().collect();
        v.sort();
        v.dedup();
        v
    }
}

impl Querier for MergedQuerier {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Series>> {
        let mut lists: Vec<Vec<Series>> = self
            .select_each(matchers, mint, maxt)?
            .into_iter()
            .filter(|r| !r.is_empty())
            .collect();
        if lists.len() <= 1 {
            return Ok(lists.pop().unwrap_or_default());
        }
        let mut out = Vec::with_capacity(lists.iter().map(Vec::len).max().unwrap_or(0));
        merge_sorted(
            lists,
            |s| &s.labels,
            |parts| {
                let overlapping = match parts.len() {
                    1 => {
                        out.extend(parts.pop());
                        return Ok(());
                    }
                    2 => {
                        let (Some(b), Some(a)) = (parts.pop(), parts.pop()) else {
                            return Ok(());
                        };
                        match Series::concat_pair(a, b) {
                            Ok(joined) => {
                                out.push(joined);
                                return Ok(());
                            }
                            Err(pair) => {
                                let (a, b) = *pair;
                                vec![a, b]
                            }
                        }
                    }
                    _ => {
                        let labels = parts[0].labels.clone();
                        match Series::concat(labels, std::mem::take(parts)) {
                            Ok(joined) => {
                                out.push(joined);
                                return Ok(());
                            }
                            Err(parts) => parts,
                        }
                    }
                };
                let mut samples = Vec::new();
                for p in &overlapping {
                    p.try_read_samples(mint, maxt, &mut samples)?;
                }
                // Stable: among equal timestamps the earlier source stays first.
                samples.sort_by_key(|s| s.t);
                samples.dedup_by_key(|s| s.t);
                let labels = overlapping[0].labels.clone();
                out.push(Series::from_samples(labels, samples));
                Ok(())
            },
        )?;
        Ok(out)
    }

    fn series(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<Labels>> {
        let parts = self
            .sources
            .iter()
            .map(|q| q.series(matchers, mint, maxt))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::union(parts))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>> {
        let parts = self
            .sources
            .iter()
            .map(|q| q.label_names(matchers, mint, maxt))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::union(parts))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> Result<Vec<String>> {
        let parts = self
            .sources
            .iter()
            .map(|q| q.label_values(name, matchers, mint, maxt))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::union(parts))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A source holding series sorted by labels, selected decoded or as
    /// one chunk each.
    struct VecQuerier(Vec<(Labels, Vec<Sample>)>, bool);

    impl Querier for VecQuerier {
        fn select(
            &self,
            _: &[Matcher],
            mint: TimestampMs,
            maxt: TimestampMs,
        ) -> Result<Vec<Series>> {
            Ok(self
                .0
                .iter()
                .map(|(l, s)| {
                    if self.1 {
                        let mut enc = crate::chunk::ChunkEncoder::new();
                        for p in s {
                            enc.append(p.t, p.v);
                        }
                        let chunks = vec![enc.finish()];
                        return Series::from_chunks(
                            l.clone(),
                            chunks,
                            Vec::new(),
                            true,
                            mint,
                            maxt,
                        );
                    }
                    let s = s
                        .iter()
                        .filter(|p| p.t >= mint && p.t <= maxt)
                        .copied()
                        .collect();
                    Series::from_samples(l.clone(), s)
                })
                .collect())
        }
        fn series(&self, _: &[Matcher], _: TimestampMs, _: TimestampMs) -> Result<Vec<Labels>> {
            Ok(self.0.iter().map(|(l, _)| l.clone()).collect())
        }
        fn label_names(
            &self,
            _: &[Matcher],
            _: TimestampMs,
            _: TimestampMs,
        ) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
        fn label_values(
            &self,
            _: &str,
            _: &[Matcher],
            _: TimestampMs,
            _: TimestampMs,
        ) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
    }

    proptest! {
        /// Any number of sources, series in any subset of them, samples
        /// overlapping or not: the merged selection is every label set
        /// once, in order, with each timestamp once and the earliest
        /// source's value; the same whether the sources are read in
        /// parallel (a long range) or in line, decoded or as chunks that
        /// are chained when they follow each other in time.
        #[test]
        fn merged_sources_read_as_one(
            sources in proptest::collection::vec(
                proptest::collection::btree_map(0u8..12, proptest::collection::btree_map(0i64..40, 0u8..4, 1..8), 0..8),
                1..5,
            ),
            long in any::<bool>(),
            chunked in any::<bool>(),
            disjoint in any::<bool>(),
        ) {
            let hour = PARALLEL_SELECT_MS;
            let scale = if long { hour } else { 1000 };
            let labels = |k: u8| Labels::from_pairs([("__name__", "m"), ("k", &*format!("{k:02}"))]);
            let mut want: std::collections::BTreeMap<u8, std::collections::BTreeMap<i64, f64>> =
                Default::default();
            let mut queriers: Vec<std::sync::Arc<dyn Querier>> = Vec::new();
            for (si, src) in sources.iter().enumerate() {
                let mut series = Vec::new();
                for (&k, points) in src {
                    let samples: Vec<Sample> = points
                        .iter()
                        .map(|(&t, &v)| {
                            // Disjoint: each source a later stretch of time,
                            // as blocks and then the head hold it.
                            let t = if disjoint { t + 40 * si as i64 } else { t };
                            Sample::new(t * scale, f64::from(v) + 10.0 * si as f64)
                        })
                        .collect();
                    for s in &samples {
                        want.entry(k).or_default().entry(s.t).or_insert(s.v);
                    }
                    series.push((labels(k), samples));
                }
                queriers.push(std::sync::Arc::new(VecQuerier(series, chunked)));
            }
            let merged = MergedQuerier::new(queriers);
            let end = 40 * scale * (sources.len() as i64 + 1);
            let got = merged.select(&[], 0, end).unwrap();
            let got: Vec<(Labels, Vec<Sample>)> = got
                .iter()
                .map(|s| {
                    let mut v = Vec::new();
                    s.read_samples(0, end, &mut v);
                    (s.labels.clone(), v)
                })
                .collect();
            let want: Vec<(Labels, Vec<Sample>)> = want
                .into_iter()
                .map(|(k, pts)| (labels(k), pts.into_iter().map(|(t, v)| Sample::new(t, v)).collect()))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
