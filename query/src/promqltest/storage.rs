//! Where a script's `load` data lives while its evals run.

use std::collections::BTreeMap;

use cairn_engine::{Labels, Matcher, Querier, Sample, Series, TimestampMs};

/// The storage a script runs against: loaded by `load`, emptied by
/// `clear`, read by the evaluator through a [`Querier`].
pub trait TestStorage {
    /// Appends series (samples sorted by time); additive across loads.
    fn load(&mut self, series: Vec<(Labels, Vec<Sample>)>) -> Result<(), String>;
    /// Removes all data.
    fn clear(&mut self) -> Result<(), String>;
    /// A reader over everything loaded so far.
    fn querier(&self) -> &dyn Querier;
}

/// A simple in-memory store: series by labels, samples sorted.
#[derive(Debug, Default)]
pub struct MemStorage {
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn matching<'a>(
        &'a self,
        matchers: &'a [Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> impl Iterator<Item = (&'a Labels, &'a Vec<Sample>)> + 'a {
        self.series.iter().filter(move |(l, s)| {
            matchers
                .iter()
                .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
                && s.iter().any(|p| p.t >= mint && p.t <= maxt)
        })
    }
}

impl TestStorage for MemStorage {
    fn load(&mut self, series: Vec<(Labels, Vec<Sample>)>) -> Result<(), String> {
        for (labels, samples) in series {
            let e = self.series.entry(labels).or_default();
            for s in samples {
                match e.binary_search_by_key(&s.t, |p| p.t) {
                    Ok(i) => e[i] = s,
                    Err(i) => e.insert(i, s),
                }
            }
        }
        Ok(())
    }

    fn clear(&mut self) -> Result<(), String> {
        self.series.clear();
        Ok(())
    }

    fn querier(&self) -> &dyn Querier {
        self
    }
}

impl Querier for MemStorage {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> cairn_engine::Result<Vec<Series>> {
        Ok(self
            .matching(matchers, mint, maxt)
            .map(|(l, s)| {
                let lo = s.partition_point(|p| p.t < mint);
                let hi = s.partition_point(|p| p.t <= maxt);
                Series::from_samples(l.clone(), s[lo..hi].to_vec())
            })
            .collect())
    }

    fn series(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> cairn_engine::Result<Vec<Labels>> {
        Ok(self
            .matching(matchers, mint, maxt)
            .map(|(l, _)| l.clone())
            .collect())
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> cairn_engine::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .matching(matchers, mint, maxt)
            .flat_map(|(l, _)| l.iter().map(|x| x.name.to_string()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: TimestampMs,
        maxt: TimestampMs,
    ) -> cairn_engine::Result<Vec<String>> {
        let mut vals: Vec<String> = self
            .matching(matchers, mint, maxt)
            .filter_map(|(l, _)| l.get(name).map(str::to_string))
            .collect();
        vals.sort();
        vals.dedup();
        Ok(vals)
    }
}
