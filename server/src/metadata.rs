//! The metadata store: type, help and unit per metric family, as writes
//! report them (remote-write metadata, OTLP metric descriptions), for
//! `/api/v1/metadata`.
//!
//! Kept in memory only (Prometheus keeps it with the scrape targets, also
//! in memory): after a restart it fills again with the next writes. A
//! family may have several distinct entries (different senders disagree);
//! each distinct one is kept once, newest last, at most
//! [`MAX_PER_FAMILY`] of them.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::remote_write::Metadata;

/// Distinct metadata entries kept per family.
pub const MAX_PER_FAMILY: usize = 8;

/// Metric family name to its metadata entries.
#[derive(Debug, Default)]
pub struct MetadataStore {
    inner: RwLock<BTreeMap<String, Vec<Metadata>>>,
}

impl MetadataStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one entry for `family` (a repeat of a known entry is a
    /// no-op and takes only the read lock).
    pub fn record(&self, family: &str, m: Metadata) {
        if self
            .inner
            .read()
            .get(family)
            .is_some_and(|v| v.contains(&m))
        {
            return;
        }
        let mut map = self.inner.write();
        let v = map.entry(family.to_string()).or_default();
        if !v.contains(&m) {
            if v.len() >= MAX_PER_FAMILY {
                v.remove(0);
            }
            v.push(m);
        }
    }

    /// Entries of one family, or of every family when `family` is None,
    /// at most `limit` families and `limit_per_metric` entries each
    /// (as `/api/v1/metadata`'s parameters).
    pub fn get(
        &self,
        family: Option<&str>,
        limit: Option<usize>,
        limit_per_metric: Option<usize>,
    ) -> BTreeMap<String, Vec<Metadata>> {
        let map = self.inner.read();
        let per = limit_per_metric.unwrap_or(usize::MAX);
        let take = |v: &Vec<Metadata>| v.iter().take(per).cloned().collect::<Vec<_>>();
        match family {
            Some(f) => map
                .get(f)
                .map(|v| BTreeMap::from([(f.to_string(), take(v))]))
                .unwrap_or_default(),
            None => map
                .iter()
                .take(limit.unwrap_or(usize::MAX))
                .map(|(k, v)| (k.clone(), take(v)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(kind: &'static str, help: &str) -> Metadata {
        Metadata {
            kind,
            help: help.into(),
            unit: String::new(),
        }
    }

    #[test]
    fn records_distinct_entries_once_and_filters() {
        let s = MetadataStore::new();
        s.record("a", md("counter", "x"));
        s.record("a", md("counter", "x"));
        s.record("a", md("gauge", "y"));
        s.record("b", md("gauge", "z"));
        assert_eq!(s.get(Some("a"), None, None)["a"].len(), 2);
        assert_eq!(
            s.get(Some("a"), None, Some(1))["a"],
            vec![md("counter", "x")]
        );
        assert!(s.get(Some("zzz"), None, None).is_empty());
        assert_eq!(s.get(None, Some(1), None).len(), 1);
        assert_eq!(s.get(None, None, None).len(), 2);
    }

    #[test]
    fn keeps_at_most_the_newest_entries_per_family() {
        let s = MetadataStore::new();
        for i in 0..MAX_PER_FAMILY + 3 {
            s.record("a", md("gauge", &i.to_string()));
        }
        let v = &s.get(Some("a"), None, None)["a"];
        assert_eq!(v.len(), MAX_PER_FAMILY);
        assert_eq!(v.last().map(|m| m.help.as_str()), Some("10"));
    }
}
