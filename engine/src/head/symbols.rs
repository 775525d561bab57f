//! The head's symbol table: every distinct label string gets a dense `u32`
//! id, so a series stores its label set as ids instead of `Arc<str>`
//! pointers (16 bytes a string). The ids are packed as LEB128 varints
//! ([`LabelIds`]): label names and common values are among the first
//! hundred-odd symbols and take one byte, so 10 labels take about 25 bytes
//! per series instead of 320.
//!
//! Strings are interned by the index's [`Interner`] first; the table maps
//! the interned allocation's address to its id. Ids are only ever added,
//! so readers resolve an id to its string without taking a lock: the
//! strings live in buckets of doubling size that never move once made.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::index::Interner;
use crate::labels::{Label, Labels};

/// Bucket `b` holds ids `2^b - 1 ..= 2^(b+1) - 2`; 32 buckets cover every
/// `u32` id.
const BUCKETS: usize = 32;

/// A bucket of string slots, each filled once.
type Bucket = Box<[OnceLock<Arc<str>>]>;

pub struct SymbolTable {
    /// Interned allocation address -> id. Taken only when a series is
    /// created.
    ids: Mutex<HashMap<usize, u32>>,
    buckets: [OnceLock<Bucket>; BUCKETS],
}

impl Default for SymbolTable {
    fn default() -> Self {
        SymbolTable {
            ids: Mutex::new(HashMap::new()),
            buckets: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// A series' label set as symbol ids (name, value, name, value, ...),
/// each a LEB128 varint: seven bits a byte, low bits first, the high bit
/// set on every byte but an id's last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelIds(Box<[u8]>);

impl LabelIds {
    fn pack(ids: impl IntoIterator<Item = u32>) -> Self {
        let mut out = Vec::new();
        for mut id in ids {
            while id >= 0x80 {
                out.push((id as u8) | 0x80);
                id >>= 7;
            }
            out.push(id as u8);
        }
        LabelIds(out.into_boxed_slice())
    }

    /// The ids in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let mut bytes = self.0.iter();
        std::iter::from_fn(move || {
            let mut id = 0u32;
            let mut shift = 0;
            loop {
                let b = *bytes.next()?;
                id |= u32::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(id);
                }
                shift += 7;
            }
        })
    }

    /// (name id, value id) pairs.
    fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let mut ids = self.iter();
        std::iter::from_fn(move || Some((ids.next()?, ids.next()?)))
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

fn locate(id: u32) -> (usize, usize) {
    let n = u64::from(id) + 1;
    let b = 63 - n.leading_zeros() as usize;
    (b, (n - (1u64 << b)) as usize)
}

impl SymbolTable {
    /// The id of `s`, which must be the interner's canonical `Arc`.
    fn id_of(&self, ids: &mut HashMap<usize, u32>, s: &Arc<str>) -> u32 {
        let key = Arc::as_ptr(s) as *const u8 as usize;
        if let Some(&id) = ids.get(&key) {
            return id;
        }
        let id = ids.len() as u32;
        let (b, off) = locate(id);
        let bucket =
            self.buckets[b].get_or_init(|| (0..1usize << b).map(|_| OnceLock::new()).collect());
        // The table keeps a clone, so the address stays valid and unique.
        let _ = bucket[off].set(s.clone());
        ids.insert(key, id);
        id
    }

    /// Interns `labels` and returns their ids (name, value, name, value,
    /// ...) and the interned label set.
    pub fn encode(&self, interner: &Interner, labels: &Labels) -> (LabelIds, Labels) {
        let interned = interner.intern_labels(labels);
        let mut ids = self.ids.lock();
        let packed = LabelIds::pack(
            interned
                .iter()
                .flat_map(|l| [&l.name, &l.value])
                .map(|s| self.id_of(&mut ids, s)),
        );
        (packed, interned)
    }

    /// The string with id `id`. Ids come from [`SymbolTable::encode`] of
    /// this table, so the slot is always filled.
    pub fn get(&self, id: u32) -> &str {
        let (b, off) = locate(id);
        self.buckets[b]
            .get()
            .and_then(|bucket| bucket[off].get())
            .map_or("", |s| s)
    }

    fn get_arc(&self, id: u32) -> Option<&Arc<str>> {
        let (b, off) = locate(id);
        self.buckets[b].get().and_then(|bucket| bucket[off].get())
    }

    /// The label set that `ids` encode.
    pub fn decode(&self, ids: &LabelIds) -> Labels {
        let v: Vec<Label> = ids
            .pairs()
            .filter_map(|(n, v)| {
                Some(Label {
                    name: self.get_arc(n)?.clone(),
                    value: self.get_arc(v)?.clone(),
                })
            })
            .collect();
        Labels::from_sorted(v)
    }

    /// Whether `ids` encode exactly `labels`.
    pub fn equals(&self, ids: &LabelIds, labels: &Labels) -> bool {
        let mut pairs = ids.pairs();
        labels.iter().all(|l| {
            pairs
                .next()
                .is_some_and(|(n, v)| self.get(n) == &*l.name && self.get(v) == &*l.value)
        }) && pairs.next().is_none()
    }

    /// Heap bytes of the table (both maps and the slots made so far).
    pub fn memory_bytes(&self) -> usize {
        let map = self.ids.lock().capacity() * (std::mem::size_of::<(usize, u32)>() + 1);
        let slots: usize = self
            .buckets
            .iter()
            .filter_map(|b| b.get())
            .map(|b| b.len() * std::mem::size_of::<OnceLock<Arc<str>>>())
            .sum();
        map + slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_shared_and_round_trip() {
        let interner = Interner::new();
        let t = SymbolTable::default();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "b")]);
        let (ia, la) = t.encode(&interner, &a);
        let (ib, _) = t.encode(&interner, &b);
        assert_eq!(ia.iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(ib.iter().collect::<Vec<_>>(), [0, 1, 2, 4]);
        assert_eq!(t.decode(&ia), a);
        assert_eq!(la, a);
        assert!(t.equals(&ia, &a));
        assert!(!t.equals(&ia, &b));
        assert!(!t.equals(&ia, &Labels::from_pairs([("__name__", "up")])));
    }

    #[test]
    fn many_ids_cross_bucket_boundaries() {
        let interner = Interner::new();
        let t = SymbolTable::default();
        for i in 0..5000 {
            let l = Labels::from_pairs([("n", i.to_string())]);
            let (ids, _) = t.encode(&interner, &l);
            assert_eq!(ids.iter().nth(1), Some(i + 1));
            assert_eq!(t.decode(&ids), l);
        }
        for id in [0u32, 1, 2, 3, 6, 7, 14, 15, 4094, 4095] {
            let packed = LabelIds::pack([id, u32::MAX - id, 127, 128]);
            assert_eq!(
                packed.iter().collect::<Vec<_>>(),
                [id, u32::MAX - id, 127, 128]
            );
            let (b, off) = locate(id);
            assert!(off < 1 << b, "id {id}");
        }
    }
}
