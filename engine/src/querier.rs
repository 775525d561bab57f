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
        let mut results = Vec::with_capacity(self.sources.len());
        for q in &self.sources {
            let r = q.select(matchers, mint, maxt)?;
            if !r.is_empty() {
                results.push(r);
            }
        }
        if results.len() <= 1 {
            return Ok(results.pop().unwrap_or_default());
        }
        // Each source's list is sorted by labels; a stable sort of their
        // concatenation keeps equal label sets in source order.
        let mut all: Vec<Series> = results.into_iter().flatten().collect();
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut out = Vec::with_capacity(all.len());
        let mut iter = all.into_iter().peekable();
        while let Some(first) = iter.next() {
            let mut parts = vec![first];
            while iter.peek().is_some_and(|n| n.labels == parts[0].labels) {
                parts.extend(iter.next());
            }
            if parts.len() == 1 {
                out.extend(parts.pop());
                continue;
            }
            let labels = parts[0].labels.clone();
            let parts = match Series::concat(labels.clone(), parts) {
                Ok(joined) => {
                    out.push(joined);
                    continue;
                }
                Err(parts) => parts,
            };
            let mut samples = Vec::new();
            for p in &parts {
                p.try_read_samples(mint, maxt, &mut samples)?;
            }
            // Stable: among equal timestamps the earlier source stays first.
            samples.sort_by_key(|s| s.t);
            samples.dedup_by_key(|s| s.t);
            out.push(Series::from_samples(labels, samples));
        }
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
