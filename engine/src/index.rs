//! The label index: which series have which labels.
//!
//! The head gives every series a dense [`SeriesRef`] and registers its label
//! set here. [`Postings`] maps label name -> value -> roaring bitmap of
//! series refs and resolves label matchers to a bitmap of refs with
//! Prometheus's semantics; it also answers label-name and label-value
//! look-ups and cardinality statistics. [`Interner`] makes each distinct
//! name and value one shared `Arc<str>`, so the index and every series'
//! labels share strings.
//!
//! **API Boundary:** the head owns the ref -> labels registry and calls
//! `add`/`remove`; nothing else writes the index. The index never allocates
//! refs itself.
//!
//! **Architecture Invariant:** a ref is in a value's bitmap exactly when it
//! was added with that label and not removed since; empty bitmaps and
//! empty names are dropped at once, so every name and value listed has at
//! least one series.

mod cardinality;
mod interner;
mod postings;

pub use cardinality::{CardinalityStats, Stat};
pub use interner::Interner;
pub use postings::Postings;

/// A series' id in the head: dense, so sets of them fit roaring bitmaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesRef(pub u32);

impl From<u32> for SeriesRef {
    fn from(v: u32) -> Self {
        SeriesRef(v)
    }
}

#[cfg(test)]
mod tests;
