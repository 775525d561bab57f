//! The read seam: the [`Querier`] trait that the query engine reads storage
//! through, whether the data sits in the head, in blocks, or both.
//!
//! **API Boundary:** cairn-query depends on this module and on nothing else
//! of the engine's internals. Matchers and the exact time range are pushed
//! down here so that storage prunes as much as it can.

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

    /// Appends to `out` the samples with `mint <= t <= maxt`, sorted by time.
    pub fn read_samples(&self, mint: TimestampMs, maxt: TimestampMs, out: &mut Vec<Sample>) {
        match &self.source {
            SampleSource::Decoded(s) => {
                let lo = s.partition_point(|x| x.t < mint);
                let hi = s.partition_point(|x| x.t <= maxt);
                if lo < hi {
                    out.extend_from_slice(&s[lo..hi]);
                }
            }
        }
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
