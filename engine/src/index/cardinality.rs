//! Cardinality statistics of the label index: the data behind Prometheus's
//! `/api/v1/status/tsdb` (`seriesCountByMetricName`,
//! `labelValueCountByLabelName`, `memoryInBytesByLabelName`,
//! `seriesCountByLabelValuePair`), plus series counts per label name.
//!
//! [`Postings::cardinality`](super::Postings::cardinality) fills it in one
//! pass over the index, keeping only the top N of each list in a bounded
//! heap so that an index with millions of distinct pairs does not build a
//! list of them all.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One entry of a top-N list: a label name, a metric name, or a
/// `name=value` pair, with its count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub name: String,
    pub count: u64,
}

/// Cardinality of the index at one moment. Every list is sorted by count,
/// highest first, ties by name, and holds at most the requested top N.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardinalityStats {
    /// Series in the index.
    pub num_series: u64,
    /// Distinct label names.
    pub num_label_names: u64,
    /// Distinct `name=value` pairs.
    pub num_label_pairs: u64,
    /// Series per value of `__name__` (`seriesCountByMetricName`).
    pub series_count_by_metric_name: Vec<Stat>,
    /// Distinct values per label name (`labelValueCountByLabelName`).
    pub label_value_count_by_label_name: Vec<Stat>,
    /// Bytes of the distinct values per label name, the sum of their lengths
    /// (`memoryInBytesByLabelName`).
    pub memory_in_bytes_by_label_name: Vec<Stat>,
    /// Series per `name=value` pair (`seriesCountByLabelValuePair`).
    pub series_count_by_label_value_pair: Vec<Stat>,
    /// Series that have each label name.
    pub series_count_by_label_name: Vec<Stat>,
}

/// Keeps the `n` entries with the highest counts (ties: smallest name).
pub(crate) struct TopN {
    n: usize,
    // A max-heap on (Reverse(count), name): the top is the worst entry kept.
    heap: BinaryHeap<(Reverse<u64>, String)>,
}

impl TopN {
    pub(crate) fn new(n: usize) -> Self {
        TopN {
            n,
            heap: BinaryHeap::with_capacity(n.min(1024) + 1),
        }
    }

    /// Offers an entry; `name` is only built when the entry can make the list.
    pub(crate) fn offer(&mut self, count: u64, name: impl FnOnce() -> String) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() == self.n
            && let Some((Reverse(worst), _)) = self.heap.peek()
            && count < *worst
        {
            return;
        }
        self.heap.push((Reverse(count), name()));
        if self.heap.len() > self.n {
            self.heap.pop();
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<Stat> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|(Reverse(count), name)| Stat { name, count })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_n_keeps_highest_counts_ties_by_name() {
        let mut t = TopN::new(3);
        for (name, count) in [("a", 1), ("b", 5), ("c", 3), ("d", 5), ("e", 3), ("f", 0)] {
            t.offer(count, || name.to_string());
        }
        let got: Vec<(String, u64)> = t
            .into_sorted()
            .into_iter()
            .map(|s| (s.name, s.count))
            .collect();
        assert_eq!(got, vec![("b".into(), 5), ("d".into(), 5), ("c".into(), 3)]);
    }

    #[test]
    fn top_zero_is_empty() {
        let mut t = TopN::new(0);
        t.offer(10, || "x".to_string());
        assert!(t.into_sorted().is_empty());
    }
}
