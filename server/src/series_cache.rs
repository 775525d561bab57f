//! Remote-write's series cache: the raw bytes a sender encodes a series'
//! labels as (the `Label` fields of a `prometheus.TimeSeries`, tags and
//! lengths included) -> the engine's [`SeriesHandle`] for that series.
//!
//! A remote-write sender sends the same series every scrape interval, with
//! its labels encoded the same way each time. On a hit the decoder skips
//! building the label set (string look-ups, `Arc` counts, sorting,
//! validation) and the engine skips its label look-up: profiles showed
//! those as half of ingest CPU. This is Prometheus's scrape cache idea
//! (raw series text -> series reference) applied on the receiving side.
//!
//! **Architecture Invariant:** an entry is only made from a series that
//! was validated and appended under exactly these bytes, so a hit stands
//! for the same label set the slow path would build. A handle whose
//! series head truncation removed stays correct: the engine recreates the
//! series from it and hands back the replacement, which replaces the entry.
//!
//! Memory is bounded by `remote_write.series_cache_bytes`: each shard keeps
//! two generations; when the current one's keys pass the shard's half of
//! the budget it becomes the previous one and the old previous one is
//! dropped. A hit in the previous generation moves the entry forward, so
//! series still being written survive and churned-away series age out.

use std::hash::BuildHasher;

use cairn_engine::SeriesHandle;
use hashbrown::HashTable;
use parking_lot::Mutex;

const SHARDS: usize = 16;

/// Bytes an entry costs besides its key: the hash, the boxed slice's
/// pointer and length, the handle and the table's control byte.
const ENTRY_OVERHEAD: usize = 8 + 16 + 8 + 1;

struct Entry {
    hash: u64,
    key: Box<[u8]>,
    handle: SeriesHandle,
}

#[derive(Default)]
struct Shard {
    current: HashTable<Entry>,
    current_bytes: usize,
    previous: HashTable<Entry>,
    previous_bytes: usize,
}

/// See the module docs.
pub struct SeriesCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Budget of one shard's current generation.
    generation_bytes: usize,
}

impl SeriesCache {
    /// A cache holding about `budget_bytes` of entries at most.
    pub fn new(budget_bytes: u64) -> Self {
        let budget = usize::try_from(budget_bytes).unwrap_or(usize::MAX);
        SeriesCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            generation_bytes: budget / SHARDS / 2,
        }
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // The table uses the low bits; shard by the high ones.
        &self.shards[(hash >> 59) as usize % SHARDS]
    }

    /// The handle kept for these raw label bytes. An entry whose series
    /// head truncation removed is dropped (the caller then appends by
    /// labels and inserts the new series).
    pub fn get(&self, key: &[u8]) -> Option<SeriesHandle> {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash).lock();
        if let Ok(e) = shard.current.find_entry(hash, |e| *e.key == *key) {
            if !e.get().handle.is_removed() {
                return Some(e.get().handle.clone());
            }
            let gone = e.remove().0;
            shard.current_bytes -= gone.key.len() + ENTRY_OVERHEAD;
            return None;
        }
        let found = shard
            .previous
            .find_entry(hash, |e| *e.key == *key)
            .ok()?
            .remove()
            .0;
        shard.previous_bytes -= found.key.len() + ENTRY_OVERHEAD;
        if found.handle.is_removed() {
            return None;
        }
        let handle = found.handle.clone();
        self.insert_entry(&mut shard, found);
        Some(handle)
    }

    /// Keeps `handle` under `key`, replacing an entry for the same key.
    pub fn insert(&self, key: Box<[u8]>, handle: SeriesHandle) {
        let hash = self.hasher.hash_one(&*key);
        let mut shard = self.shard(hash).lock();
        if let Ok(e) = shard.previous.find_entry(hash, |e| *e.key == *key) {
            let gone = e.remove().0;
            shard.previous_bytes -= gone.key.len() + ENTRY_OVERHEAD;
        }
        if let Some(e) = shard.current.find_mut(hash, |e| *e.key == *key) {
            e.handle = handle;
            return;
        }
        self.insert_entry(&mut shard, Entry { hash, key, handle });
    }

    /// Adds an entry known to be in neither generation.
    fn insert_entry(&self, shard: &mut Shard, e: Entry) {
        let size = e.key.len() + ENTRY_OVERHEAD;
        if shard.current_bytes + size > self.generation_bytes {
            shard.previous = std::mem::take(&mut shard.current);
            shard.previous_bytes = std::mem::take(&mut shard.current_bytes);
            if size > self.generation_bytes {
                return;
            }
        }
        shard.current_bytes += size;
        shard.current.insert_unique(e.hash, e, |e| e.hash);
    }

    /// Entries held now (both generations).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.current.len() + s.previous.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the entries take, approximately.
    pub fn memory_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.current_bytes + s.previous_bytes
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_engine::{Db, DbOptions, Labels, Sample, WriteTarget};

    /// `n` series of a fresh database and their handles.
    fn handles(db: &Db, n: usize) -> Vec<SeriesHandle> {
        let labels: Vec<Labels> = (0..n)
            .map(|i| Labels::from_pairs([("__name__", "m"), ("id", &i.to_string())]))
            .collect();
        let samples = [Sample::new(0, 1.0)];
        let mut out = vec![None; n];
        db.append_series(
            labels
                .iter()
                .map(|l| (WriteTarget::Labels(l), &samples[..])),
            |i, h| out[i] = Some(h),
        )
        .unwrap();
        out.into_iter().map(Option::unwrap).collect()
    }

    fn key(i: usize) -> Box<[u8]> {
        format!("series-key-{i:06}").into_bytes().into()
    }

    #[test]
    fn hits_what_was_inserted_under_the_same_bytes_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let h = handles(&db, 2);
        let cache = SeriesCache::new(1 << 20);
        assert!(cache.is_empty());
        cache.insert(key(0), h[0].clone());
        cache.insert(key(1), h[1].clone());
        assert_eq!(cache.get(&key(0)), Some(h[0].clone()));
        assert_eq!(cache.get(&key(1)), Some(h[1].clone()));
        assert_eq!(cache.get(&key(2)), None);
        assert_eq!(cache.get(b"series-key-00000"), None, "a prefix");
        // A new handle for the same bytes replaces the old one.
        cache.insert(key(0), h[1].clone());
        assert_eq!(cache.get(&key(0)), Some(h[1].clone()));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.memory_bytes(), 2 * (key(0).len() + ENTRY_OVERHEAD));
    }

    #[test]
    fn memory_stays_within_the_budget_and_hot_entries_survive() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let h = handles(&db, 1);
        let entry = key(0).len() + ENTRY_OVERHEAD;
        // Room for about 20 entries a shard in each generation.
        let budget = (SHARDS * 2 * 20 * entry) as u64;
        let cache = SeriesCache::new(budget);
        for i in 0..100_000 {
            cache.insert(key(i), h[0].clone());
            // Key 7 is sent all the time: it is never aged out.
            assert!(cache.get(&key(7)).is_some() || i < 7, "lost at {i}");
            assert!(cache.memory_bytes() as u64 <= budget, "at {i}");
        }
        assert!(cache.len() < 2 * SHARDS * 21, "{} entries", cache.len());
        assert_eq!(cache.get(&key(3)), None, "aged out");
        assert!(cache.get(&key(99_999)).is_some());
        // A budget of nothing keeps nothing.
        let none = SeriesCache::new(0);
        none.insert(key(1), h[0].clone());
        assert_eq!(none.get(&key(1)), None);
        assert_eq!(none.memory_bytes(), 0);
    }
}
