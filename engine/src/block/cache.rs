//! A local disk cache of object-store bytes, so that a repeated query over
//! a remote store (S3, GCS, Azure) does not download the same block bytes
//! again, also after a restart.
//!
//! Entries are whole objects or byte ranges of one, keyed by object key and
//! range. Block objects are immutable and their keys (ULIDs) never reused,
//! so an entry never goes stale; entries of deleted blocks are evicted like
//! any other. Each entry is one file, written to a temporary name and
//! renamed, and checked for its length when read: a crash leaves no torn
//! entry that could be served. The total size is kept under a budget by
//! evicting the least recently used entries.

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::{Error, Result};

/// An entry's size and when it was last used (a logical clock).
struct Entry {
    size: u64,
    used: u64,
}

/// The disk cache.
pub struct DiskCache {
    dir: PathBuf,
    budget: u64,
    entries: Mutex<Entries>,
    clock: AtomicU64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    total: u64,
}

impl DiskCache {
    /// Opens (creating) the cache in `dir`, keeping at most `budget` bytes.
    /// Entries already there are kept, oldest-modified first in line for
    /// eviction; leftover temporary files are removed.
    pub fn open(dir: &Path, budget: u64) -> Result<DiskCache> {
        let io = |e| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut found = Vec::new();
        for e in fs::read_dir(dir).map_err(io)? {
            let e = e.map_err(io)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
                continue;
            }
            let modified = meta.modified().ok();
            found.push((modified, name, meta.len()));
        }
        found.sort();
        let mut entries = Entries::default();
        for (i, (_, name, size)) in found.into_iter().enumerate() {
            entries.total += size;
            entries.map.insert(
                name,
                Entry {
                    size,
                    used: i as u64,
                },
            );
        }
        let clock = entries.map.len() as u64;
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            budget,
            entries: Mutex::new(entries),
            clock: AtomicU64::new(clock),
        };
        cache.evict();
        Ok(cache)
    }

    /// The file name of an entry: the key with `/` escaped, and the range.
    fn name(key: &str, range: Option<&Range<u64>>) -> String {
        let mut name: String = key
            .chars()
            .map(|c| match c {
                '/' => '!',
                c if c.is_ascii_alphanumeric() || "-_.".contains(c) => c,
                _ => '~',
            })
            .collect();
        match range {
            Some(r) => name.push_str(&format!("@{}-{}", r.start, r.end)),
            None => name.push_str("@all"),
        }
        name
    }

    /// The cached bytes of `key` (`range`, or the whole object), if any.
    pub fn get(&self, key: &str, range: Option<&Range<u64>>) -> Option<Bytes> {
        let name = DiskCache::name(key, range);
        let size = {
            let mut e = self.entries.lock();
            let entry = e.map.get_mut(&name)?;
            entry.used = self.clock.fetch_add(1, Ordering::Relaxed);
            entry.size
        };
        match fs::read(self.dir.join(&name)) {
            Ok(bytes)
                if bytes.len() as u64 == size && range.is_none_or(|r| r.end - r.start == size) =>
            {
                Some(Bytes::from(bytes))
            }
            _ => {
                // Gone or damaged (removed by hand, a full disk): forget it.
                self.forget(&name);
                None
            }
        }
    }

    /// Stores the bytes of `key` (`range`, or the whole object). Failing to
    /// write only costs a later download: errors are logged, not returned.
    pub fn put(&self, key: &str, range: Option<&Range<u64>>, bytes: &[u8]) {
        let size = bytes.len() as u64;
        if size > self.budget / 4 {
            return;
        }
        let name = DiskCache::name(key, range);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        if let Err(e) = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, &path)) {
            tracing::warn!(file = %path.display(), error = %e, "object cache: could not store an entry");
            let _ = fs::remove_file(&tmp);
            return;
        }
        {
            let mut e = self.entries.lock();
            let used = self.clock.fetch_add(1, Ordering::Relaxed);
            if let Some(old) = e.map.insert(name, Entry { size, used }) {
                e.total -= old.size;
            }
            e.total += size;
        }
        self.evict();
    }

    fn forget(&self, name: &str) {
        let mut e = self.entries.lock();
        if let Some(old) = e.map.remove(name) {
            e.total -= old.size;
        }
        let _ = fs::remove_file(self.dir.join(name));
    }

    /// Evicts least recently used entries until the total is at most 90%
    /// of the budget (if it is over the budget).
    fn evict(&self) {
        let victims: Vec<String> = {
            let mut e = self.entries.lock();
            if e.total <= self.budget {
                return;
            }
            let mut by_age: Vec<(u64, String, u64)> = e
                .map
                .iter()
                .map(|(n, x)| (x.used, n.clone(), x.size))
                .collect();
            by_age.sort_unstable();
            let target = self.budget / 10 * 9;
            let mut out = Vec::new();
            for (_, name, size) in by_age {
                if e.total <= target {
                    break;
                }
                e.map.remove(&name);
                e.total -= size;
                out.push(name);
            }
            out
        };
        for name in victims {
            let _ = fs::remove_file(self.dir.join(name));
        }
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> u64 {
        self.entries.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_survive_reopen_and_are_evicted_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 1000).unwrap();
        assert!(c.get("b/x", None).is_none());
        c.put("b/x", None, &[1; 100]);
        c.put("b/x", Some(&(10..60)), &[2; 50]);
        assert_eq!(c.get("b/x", None).unwrap(), Bytes::from(vec![1; 100]));
        assert_eq!(
            c.get("b/x", Some(&(10..60))).unwrap(),
            Bytes::from(vec![2; 50])
        );
        assert!(c.get("b/x", Some(&(10..61))).is_none());
        assert_eq!(c.size_bytes(), 150);
        drop(c);

        let c = DiskCache::open(dir.path(), 1000).unwrap();
        assert_eq!(c.size_bytes(), 150);
        assert_eq!(c.get("b/x", Some(&(10..60))).unwrap().len(), 50);
        // Over the budget: the least recently used go first (the whole
        // object was last used before the range was read again).
        for i in 0..5 {
            c.put(&format!("b/y{i}"), None, &[3; 200]);
        }
        assert!(c.size_bytes() <= 1000, "{}", c.size_bytes());
        assert!(c.get("b/x", None).is_none(), "oldest evicted");
        assert!(c.get("b/y4", None).is_some(), "newest kept");
        // Entries larger than a quarter of the budget are not cached.
        c.put("b/big", None, &[4; 300]);
        assert!(c.get("b/big", None).is_none());
    }

    #[test]
    fn a_damaged_entry_is_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 1000).unwrap();
        c.put("k", Some(&(0..10)), &[9; 10]);
        let name = DiskCache::name("k", Some(&(0..10)));
        fs::write(dir.path().join(&name), [9; 4]).unwrap();
        assert!(c.get("k", Some(&(0..10))).is_none());
        assert_eq!(c.size_bytes(), 0);
        fs::write(dir.path().join("x.tmp"), [0; 3]).unwrap();
        let c = DiskCache::open(dir.path(), 1000).unwrap();
        assert!(!dir.path().join("x.tmp").exists());
        assert_eq!(c.size_bytes(), 0);
    }
}

/// An in-memory cache of object-store bytes (the hot column chunks of
/// blocks), least recently used entries evicted past a budget. In front
/// of the [`DiskCache`], for local and remote stores alike.
pub struct MemoryCache {
    budget: u64,
    inner: Mutex<MemoryEntries>,
}

#[derive(Default)]
struct MemoryEntries {
    map: HashMap<(String, u64, u64), (Bytes, u64)>,
    total: u64,
    clock: u64,
}

impl MemoryCache {
    pub fn new(budget: u64) -> MemoryCache {
        MemoryCache {
            budget,
            inner: Mutex::default(),
        }
    }

    pub fn get(&self, key: &str, range: &Range<u64>) -> Option<Bytes> {
        let mut e = self.inner.lock();
        e.clock += 1;
        let clock = e.clock;
        let (bytes, used) = e.map.get_mut(&(key.to_string(), range.start, range.end))?;
        *used = clock;
        Some(bytes.clone())
    }

    /// Stores `bytes` (entries over a quarter of the budget are not kept),
    /// evicting the least recently used past the budget.
    pub fn put(&self, key: &str, range: &Range<u64>, bytes: Bytes) {
        let size = bytes.len() as u64;
        if size > self.budget / 4 {
            return;
        }
        let mut e = self.inner.lock();
        e.clock += 1;
        let clock = e.clock;
        if let Some((old, _)) = e
            .map
            .insert((key.to_string(), range.start, range.end), (bytes, clock))
        {
            e.total -= old.len() as u64;
        }
        e.total += size;
        if e.total > self.budget {
            let mut by_age: Vec<(u64, (String, u64, u64))> = e
                .map
                .iter()
                .map(|(k, (_, used))| (*used, k.clone()))
                .collect();
            by_age.sort_unstable();
            for (_, k) in by_age {
                if e.total <= self.budget / 10 * 9 {
                    break;
                }
                if let Some((b, _)) = e.map.remove(&k) {
                    e.total -= b.len() as u64;
                }
            }
        }
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> u64 {
        self.inner.lock().total
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    #[test]
    fn memory_cache_keeps_recent_entries_within_its_budget() {
        let c = MemoryCache::new(1000);
        c.put("a", &(0..200), Bytes::from(vec![1; 200]));
        c.put("a", &(200..400), Bytes::from(vec![2; 200]));
        assert_eq!(c.get("a", &(0..200)).unwrap()[0], 1);
        for i in 0..4u64 {
            c.put("b", &(i * 200..i * 200 + 200), Bytes::from(vec![3; 200]));
        }
        assert!(c.size_bytes() <= 1000);
        // (0..200) was used after (200..400): the latter went first.
        assert!(c.get("a", &(200..400)).is_none());
        assert!(c.get("b", &(600..800)).is_some());
        c.put("big", &(0..300), Bytes::from(vec![0; 300]));
        assert!(c.get("big", &(0..300)).is_none());
    }
}
