//! Label sets: the identity of a series.
//!
//! A [`Labels`] is a list of name/value pairs sorted by name with unique
//! names; `__name__` (the metric name) is one of them. Names and values are
//! `Arc<str>` so that copies handed out by the index share the interned
//! strings instead of allocating. An empty value means "no label", as in
//! Prometheus: constructors drop such pairs.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One name/value pair. Ordered by name, then value, as strings.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Label {
    pub name: Arc<str>,
    pub value: Arc<str>,
}

impl Label {
    pub fn new(name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Strings from one interner are equal exactly when they are the same
/// allocation: label sets of the head's series (and of one block) compare
/// label by label without reading the bytes of the labels they share.
fn cmp_interned(a: &Arc<str>, b: &Arc<str>) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) {
        std::cmp::Ordering::Equal
    } else {
        a.as_ref().cmp(b.as_ref())
    }
}

impl Ord for Label {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_interned(&self.name, &other.name).then_with(|| cmp_interned(&self.value, &other.value))
    }
}

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.name, &*self.value)
    }
}

/// A label set sorted by name, names unique, no empty values.
///
/// **Invariant:** `self.0` is sorted by name, strictly (no duplicates), and
/// holds no empty value. Every constructor establishes it.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The empty label set.
    pub fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order. Pairs with an empty value
    /// are dropped; a repeated name is an error.
    pub fn try_from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Result<Self>
    where
        N: Into<Arc<str>>,
        V: Into<Arc<str>>,
    {
        let mut v: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label::new(n, v))
            .filter(|l| !l.value.is_empty())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        for w in v.windows(2) {
            if w[0].name == w[1].name {
                return Err(Error::InvalidLabels {
                    labels: Labels(v.clone()).to_string(),
                    reason: format!("duplicate label name {:?}", &*w[0].name),
                });
            }
        }
        Ok(Labels(v))
    }

    /// Builds a label set from pairs where a later pair with the same name
    /// replaces an earlier one (builder semantics, never an error).
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<Arc<str>>,
        V: Into<Arc<str>>,
    {
        let mut b = LabelsBuilder::new(Labels::empty());
        for (n, v) in pairs {
            b.set(n, v);
        }
        b.build()
    }

    /// Wraps labels that are already sorted, unique and without empty
    /// values. Checked in debug builds.
    pub fn from_sorted(v: Vec<Label>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        debug_assert!(v.iter().all(|l| !l.value.is_empty()));
        Labels(v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.0[i].value)
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// A copy without `__name__`.
    pub fn without_metric_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| &*l.name != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }

    /// A builder starting from this label set.
    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder::new(self.clone())
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Prometheus's text form: `name{a="1", b="2"}`, or `{a="1"}` without a
/// metric name. Values are escaped as Go's `%q` does for common cases.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(n) = name {
            f.write_str(n)?;
        }
        let rest: Vec<&Label> = self.0.iter().filter(|l| &*l.name != METRIC_NAME).collect();
        if rest.is_empty() && name.is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, l) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, &*l.value)?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Edits a label set: set or delete names, keep or drop lists of names.
#[derive(Debug, Clone)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    pub fn new(base: Labels) -> Self {
        LabelsBuilder { labels: base.0 }
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> &mut Self {
        let name = name.into();
        let value = value.into();
        match self.labels.binary_search_by(|l| l.name.cmp(&name)) {
            Ok(i) if value.is_empty() => {
                self.labels.remove(i);
            }
            Ok(i) => self.labels[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.labels.insert(i, Label { name, value }),
        }
        self
    }

    /// Deletes `name` if present.
    pub fn del(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| &*l.name != name);
        self
    }

    /// Keeps only the names in `names`.
    pub fn keep(&mut self, names: &[impl AsRef<str>]) -> &mut Self {
        self.labels
            .retain(|l| names.iter().any(|n| n.as_ref() == &*l.name));
        self
    }

    pub fn build(self) -> Labels {
        Labels(self.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_sorted_and_empty_values_dropped() {
        let l = Labels::try_from_pairs([("b", "2"), ("__name__", "up"), ("a", ""), ("c", "3")])
            .unwrap();
        assert_eq!(l.to_string(), r#"up{b="2", c="3"}"#);
        assert_eq!(l.get("a"), None);
        assert_eq!(l.metric_name(), Some("up"));
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let err = Labels::try_from_pairs([("a", "1"), ("a", "2")]).unwrap_err();
        assert!(
            err.to_string().contains("duplicate label name \"a\""),
            "{err}"
        );
    }

    #[test]
    fn builder_sets_and_deletes() {
        let l = Labels::from_pairs([("a", "1"), ("b", "2")]);
        let mut b = l.builder();
        b.set("a", "").set("c", "3").set("b", "x");
        assert_eq!(b.build().to_string(), r#"{b="x", c="3"}"#);
    }

    proptest::proptest! {
        /// Label sets order as their (name, value) strings do, whether
        /// they share interned strings or hold copies.
        #[test]
        fn order_is_the_strings_order(
            a in proptest::collection::btree_map("[a-c]{1,2}", "[x-z]{0,2}", 0..4),
            b in proptest::collection::btree_map("[a-c]{1,2}", "[x-z]{0,2}", 0..4),
        ) {
            let interner = crate::index::Interner::new();
            let la = Labels::from_pairs(a.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            let lb = Labels::from_pairs(b.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            let strings = |l: &Labels| -> Vec<(String, String)> {
                l.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect()
            };
            let want = strings(&la).cmp(&strings(&lb));
            proptest::prop_assert_eq!(la.cmp(&lb), want);
            let (ia, ib) = (interner.intern_labels(&la), interner.intern_labels(&lb));
            proptest::prop_assert_eq!(ia.cmp(&ib), want);
            proptest::prop_assert_eq!(ia.cmp(&lb), want);
            proptest::prop_assert_eq!(ia == ib, want == std::cmp::Ordering::Equal);
        }
    }
}
