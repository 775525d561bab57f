//! The string interner: each distinct label name and value is stored once as
//! an `Arc<str>`, shared by every series' [`Labels`] and by the postings.
//!
//! A million series with ten labels each hold ten million label pairs but
//! only a few thousand distinct strings; interning turns each pair into two
//! pointer-sized handles. The table is split into shards by string hash, each
//! behind its own `RwLock`, so concurrent writers interning known strings
//! only share read locks.
//!
//! Strings are released by [`Interner::purge`]: a string whose only holder is
//! the interner itself (strong count 1) belongs to no live series any more.
//! The head calls it after removing series (head truncation), not on every
//! removal, because one purge pass is cheaper than reference tracking.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::RwLock;

use crate::labels::{Label, Labels};

/// Number of shards; a power of two so the shard is a mask of the hash.
const SHARDS: usize = 32;
/// The hash bits that pick the shard: above the bits a table of fewer than
/// 2^32 entries uses for its buckets and below the 7 top bits it keeps as
/// tags, so sharding does not weaken either.
const SHARD_SHIFT: u32 = 32;

/// Bytes of an `Arc<str>` allocation besides the string: the two reference
/// counts.
const ARC_HEADER_BYTES: usize = 16;
/// Bytes of one hash-table slot: the fat pointer plus the control byte.
const SLOT_BYTES: usize = std::mem::size_of::<Arc<str>>() + 1;

/// Deduplicates strings into shared `Arc<str>`s. `Send + Sync`.
///
/// Each string is hashed once (a seeded, per-process random hasher, so
/// label values sent over the network cannot be chosen to collide); the
/// hash picks the shard and the slot in it.
pub struct Interner {
    hasher: DefaultHashBuilder,
    shards: Box<[RwLock<HashTable<Arc<str>>>]>,
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

impl Interner {
    pub fn new() -> Self {
        Interner {
            hasher: DefaultHashBuilder::default(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
        }
    }

    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    fn shard(&self, hash: u64) -> &RwLock<HashTable<Arc<str>>> {
        &self.shards[(hash >> SHARD_SHIFT) as usize & (SHARDS - 1)]
    }

    /// The shared copy of `s`, made from `make` on first sight.
    fn get_or_insert(&self, s: &str, make: impl FnOnce() -> Arc<str>) -> Arc<str> {
        let h = self.hash(s);
        let shard = self.shard(h);
        if let Some(a) = shard.read().find(h, |a| **a == *s) {
            return Arc::clone(a);
        }
        let mut table = shard.write();
        // Another writer may have stored it between the two locks.
        let entry = table.entry(h, |a| **a == *s, |a| self.hasher.hash_one(&**a));
        Arc::clone(entry.or_insert_with(make).get())
    }

    /// The shared copy of `s`, stored on first sight.
    pub fn intern(&self, s: &str) -> Arc<str> {
        self.get_or_insert(s, || Arc::from(s))
    }

    /// Like [`Interner::intern`], but reuses `s`'s allocation when the string
    /// is new (the caller already holds an `Arc<str>`).
    pub fn intern_arc(&self, s: &Arc<str>) -> Arc<str> {
        self.get_or_insert(s, || Arc::clone(s))
    }

    /// A copy of `l` whose names and values are the interned strings.
    pub fn intern_labels(&self, l: &Labels) -> Labels {
        Labels::from_sorted(
            l.iter()
                .map(|x| Label {
                    name: self.intern_arc(&x.name),
                    value: self.intern_arc(&x.value),
                })
                .collect(),
        )
    }

    /// Number of distinct strings held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the strings nobody but the interner holds; returns how many.
    ///
    /// Safe against concurrent [`Interner::intern`]: a string can only gain a
    /// holder through its shard's lock, which the purge holds while it
    /// checks the count.
    pub fn purge(&self) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut table = shard.write();
            let before = table.len();
            table.retain(|a| Arc::strong_count(a) > 1);
            removed += before - table.len();
            if table.capacity() > 4 * table.len().max(16) {
                table.shrink_to_fit(|a| self.hasher.hash_one(&**a));
            }
        }
        removed
    }

    /// Estimated heap bytes: the string allocations and the hash tables.
    pub fn memory_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let table = s.read();
                let strings: usize = table.iter().map(|a| ARC_HEADER_BYTES + a.len()).sum();
                strings + table.capacity() * SLOT_BYTES
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_allocation() {
        let i = Interner::new();
        let a = i.intern("model");
        let b = i.intern(&String::from("model"));
        assert!(Arc::ptr_eq(&a, &b));
        let c = i.intern("route");
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn intern_labels_shares_names_and_values_across_label_sets() {
        let i = Interner::new();
        let l1 = i.intern_labels(&Labels::from_pairs([("job", "api"), ("model", "m1")]));
        let l2 = i.intern_labels(&Labels::from_pairs([("job", "api"), ("model", "m2")]));
        assert_eq!(l1.to_string(), r#"{job="api", model="m1"}"#);
        assert!(Arc::ptr_eq(&l1.as_slice()[0].name, &l2.as_slice()[0].name));
        assert!(Arc::ptr_eq(
            &l1.as_slice()[0].value,
            &l2.as_slice()[0].value
        ));
        assert!(Arc::ptr_eq(&l1.as_slice()[1].name, &l2.as_slice()[1].name));
        assert_eq!(i.len(), 5);
    }

    #[test]
    fn purge_drops_only_unreferenced_strings() {
        let i = Interner::new();
        let kept = i.intern("kept");
        let _ = i.intern("dropped");
        let before = i.memory_bytes();
        assert_eq!(i.purge(), 1);
        assert_eq!(i.len(), 1);
        assert!(i.memory_bytes() < before);
        // The kept string is still the shared one.
        assert!(Arc::ptr_eq(&kept, &i.intern("kept")));
        drop(kept);
        assert_eq!(i.purge(), 1);
        assert!(i.is_empty());
    }

    #[test]
    fn concurrent_interning_yields_one_copy_per_string() {
        let i = Arc::new(Interner::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let i = Arc::clone(&i);
                std::thread::spawn(move || {
                    (0..500)
                        .map(|n| i.intern(&format!("v{n}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Vec<Arc<str>>> = handles
            .into_iter()
            .map(|h| h.join().expect("interning thread panicked"))
            .collect();
        assert_eq!(i.len(), 500);
        for r in &results[1..] {
            for (a, b) in r.iter().zip(&results[0]) {
                assert!(Arc::ptr_eq(a, b));
            }
        }
    }
}
