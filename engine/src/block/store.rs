//! The object store that blocks live in, behind a small synchronous API.
//!
//! Every block byte goes through the `object_store` crate: a local directory
//! (the default, under the data dir), `file://`, `memory://`, and, with the
//! `cloud` cargo feature, `s3://bucket/prefix`, `gs://bucket/prefix` and
//! `az://container/prefix` (credentials, region and endpoint from the
//! standard environment variables of each cloud, e.g. `AWS_ACCESS_KEY_ID`,
//! `AWS_REGION`, `AWS_ENDPOINT` for a local S3 server).
//!
//! **Sync over async.** The engine is synchronous (the server runs the `Db`
//! on blocking threads), `object_store` is async. A [`BlockStore`] owns a
//! one-worker tokio runtime; each call is spawned onto it and the calling
//! thread waits for the result with `futures::executor::block_on` on the
//! task's join handle. Spawning (rather than `Runtime::block_on` on the
//! caller's thread) keeps the cloud clients' I/O on a runtime that is always
//! driven, and never panics when the caller is itself inside a tokio
//! context (an async worker thread): the caller only blocks.
//!
//! **Reads.** Every request is counted ([`BlockStore::requests`]). Object
//! reads (`get`, `get_ranges`) go through an optional [`DiskCache`] (for
//! remote stores: [`BlockStore::with_cache`]); the ranges a read needs that
//! the cache does not hold are coalesced (gaps under 1 MiB) and fetched
//! concurrently.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload};

use super::cache::{DiskCache, MemoryCache};
use crate::error::{Error, Result};

/// Ranges of one read closer than this are fetched as one request (as
/// `object_store`'s own coalescing does).
const COALESCE_GAP: u64 = 1 << 20;

/// A bucket (or directory) of blocks: an object store plus a key prefix.
#[derive(Clone)]
pub struct BlockStore {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    rt: Arc<tokio::runtime::Runtime>,
    /// How the store was named, for errors and logs.
    location: Arc<str>,
    cache: Option<Arc<DiskCache>>,
    memory: Option<Arc<MemoryCache>>,
    counters: Arc<Counters>,
    /// A cloud store (S3, GCS, Azure), reached over the network.
    remote: bool,
}

#[derive(Default)]
struct Counters {
    gets: AtomicU64,
    range_gets: AtomicU64,
    puts: AtomicU64,
    lists: AtomicU64,
    heads: AtomicU64,
    deletes: AtomicU64,
    bytes_fetched: AtomicU64,
    cache_hits: AtomicU64,
    errors: AtomicU64,
    latency_buckets: [AtomicU64; 15],
    latency_nanos: AtomicU64,
}

/// Requests made to the object store since it was opened, by kind, and the
/// reads the disk cache answered instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreRequests {
    /// Whole-object GETs.
    pub gets: u64,
    /// Ranged GETs (after coalescing).
    pub range_gets: u64,
    pub puts: u64,
    pub lists: u64,
    /// HEADs (existence checks).
    pub heads: u64,
    pub deletes: u64,
    /// Bytes the GETs returned.
    pub bytes_fetched: u64,
    /// Reads (objects or ranges) served from the disk cache.
    pub cache_hits: u64,
    /// Requests that failed (after the client's retries; a missing object
    /// where one may be missing is not a failure).
    pub errors: u64,
    /// Latency of every request (a fixed-bucket histogram, the WAL fsync
    /// histogram's buckets).
    pub latency: crate::wal::FsyncLatency,
}

impl StoreRequests {
    /// Every request sent to the store.
    pub fn total(&self) -> u64 {
        self.gets + self.range_gets + self.puts + self.lists + self.heads + self.deletes
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Sorted, merged ranges: ranges closer than `gap` become one.
fn coalesce(ranges: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.to_vec();
    sorted.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r),
        }
    }
    out
}

impl fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// An object's key relative to the store's prefix, and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub size_bytes: u64,
}

impl BlockStore {
    /// A store in a local directory (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<BlockStore> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
            Error::ObjectStore {
                location: dir.display().to_string(),
                source: e,
            }
        })?;
        BlockStore::new(
            Arc::new(fs),
            ObjectPath::default(),
            &dir.display().to_string(),
        )
    }

    /// A store named by a URL: `file:///abs/dir`, `memory://`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
    pub fn from_url(url: &str) -> Result<BlockStore> {
        let invalid = |reason: String| Error::InvalidStorageUrl {
            url: url.to_string(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        let (scheme, prefix) =
            ObjectStoreScheme::parse(&parsed).map_err(|e| invalid(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::Local => {
                // The URL's path is the root directory, not a key prefix.
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| invalid("not an absolute file path".into()))?;
                return BlockStore::local(&dir).map(|mut s| {
                    s.location = url.into();
                    s
                });
            }
            ObjectStoreScheme::Memory => Arc::new(object_store::memory::InMemory::new()),
            #[cfg(feature = "cloud")]
            ObjectStoreScheme::AmazonS3 => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            #[cfg(feature = "cloud")]
            ObjectStoreScheme::GoogleCloudStorage => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            #[cfg(feature = "cloud")]
            ObjectStoreScheme::MicrosoftAzure => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            #[cfg(not(feature = "cloud"))]
            ObjectStoreScheme::AmazonS3
            | ObjectStoreScheme::GoogleCloudStorage
            | ObjectStoreScheme::MicrosoftAzure => {
                return Err(invalid(
                    "cloud object stores need cairn-engine's `cloud` feature".into(),
                ));
            }
            other => return Err(invalid(format!("unsupported scheme {other:?}"))),
        };
        // Local and memory stores returned above or are not remote.
        let remote = !matches!(scheme, ObjectStoreScheme::Memory);
        BlockStore::new(store, prefix, url).map(|mut s| {
            s.remote = remote;
            s
        })
    }

    /// Wraps an existing object store (tests, embedding).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: ObjectPath, location: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cairn-objstore")
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                path: "<object store runtime>".into(),
                source,
            })?;
        Ok(BlockStore {
            store,
            prefix,
            rt: Arc::new(rt),
            location: location.into(),
            cache: None,
            memory: None,
            counters: Arc::default(),
            remote: false,
        })
    }

    /// The same store, reading through a disk cache.
    pub fn with_cache(mut self, cache: Arc<DiskCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The same store, keeping hot byte ranges (blocks' column chunks) in
    /// memory, in front of the disk cache if any.
    pub fn with_memory_cache(mut self, cache: Arc<MemoryCache>) -> Self {
        self.memory = Some(cache);
        self
    }

    /// Bytes held by the memory cache.
    pub fn memory_cache_bytes(&self) -> u64 {
        self.memory.as_ref().map_or(0, |m| m.size_bytes())
    }

    /// Whether the store is remote (not a local directory nor memory): the
    /// stores worth a disk cache.
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// The requests made so far.
    pub fn requests(&self) -> StoreRequests {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreRequests {
            gets: g(&c.gets),
            range_gets: g(&c.range_gets),
            puts: g(&c.puts),
            lists: g(&c.lists),
            heads: g(&c.heads),
            deletes: g(&c.deletes),
            bytes_fetched: g(&c.bytes_fetched),
            cache_hits: g(&c.cache_hits),
            errors: g(&c.errors),
            latency: crate::wal::FsyncLatency {
                counts: std::array::from_fn(|i| g(&c.latency_buckets[i])),
                sum_nanos: g(&c.latency_nanos),
            },
        }
    }

    /// The disk cache, if any.
    pub fn cache(&self) -> Option<&Arc<DiskCache>> {
        self.cache.as_ref()
    }

    /// Where this store is, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, key: &str) -> ObjectPath {
        key.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    fn err(&self, key: &str, source: object_store::Error) -> Error {
        Error::ObjectStore {
            location: format!("{}/{}", self.location.trim_end_matches('/'), key),
            source,
        }
    }

    /// Runs a future on the store's runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> object_store::Result<T> {
        let started = std::time::Instant::now();
        let result = match futures::executor::block_on(self.rt.spawn(fut)) {
            Ok(r) => r,
            Err(join) => Err(object_store::Error::JoinError { source: join }),
        };
        let elapsed = started.elapsed();
        let c = &self.counters;
        bump(
            &c.latency_buckets[crate::wal::FsyncLatency::bucket(elapsed)],
            1,
        );
        bump(
            &c.latency_nanos,
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
        );
        if matches!(&result, Err(e) if !matches!(e, object_store::Error::NotFound { .. })) {
            bump(&c.errors, 1);
        }
        result
    }

    /// Writes one object whole (atomically: readers see the old object, or
    /// none, or the new one).
    pub fn put(&self, key: &str, data: Bytes) -> Result<()> {
        bump(&self.counters.puts, 1);
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        self.run(async move { store.put(&path, PutPayload::from(data)).await })
            .map(|_| ())
            .map_err(|e| self.err(key, e))
    }

    /// Reads one object whole (from the disk cache when it has it).
    pub fn get(&self, key: &str) -> Result<Bytes> {
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(key, None)) {
            bump(&self.counters.cache_hits, 1);
            return Ok(hit);
        }
        bump(&self.counters.gets, 1);
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        let bytes = self
            .run(async move { store.get(&path).await?.bytes().await })
            .map_err(|e| self.err(key, e))?;
        bump(&self.counters.bytes_fetched, bytes.len() as u64);
        if let Some(c) = &self.cache {
            c.put(key, None, &bytes);
        }
        Ok(bytes)
    }

    /// Reads a byte range of one object.
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let mut v = self.get_ranges(key, std::slice::from_ref(&range))?;
        Ok(v.pop().unwrap_or_default())
    }

    /// Reads byte ranges of one object, in the order given: those the disk
    /// cache holds from it, the others coalesced and fetched concurrently
    /// (then cached).
    pub fn get_ranges(&self, key: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut out: Vec<Option<Bytes>> = ranges
            .iter()
            .map(|r| {
                if let Some(hit) = self.memory.as_ref().and_then(|m| m.get(key, r)) {
                    return Some(hit);
                }
                let hit = self.cache.as_ref().and_then(|c| c.get(key, Some(r)));
                if let Some(h) = &hit {
                    bump(&self.counters.cache_hits, 1);
                    if let Some(m) = &self.memory {
                        m.put(key, r, h.clone());
                    }
                }
                hit
            })
            .collect();
        let missing: Vec<Range<u64>> = ranges
            .iter()
            .zip(&out)
            .filter(|(_, hit)| hit.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        if !missing.is_empty() {
            let fetch = coalesce(&missing, COALESCE_GAP);
            bump(&self.counters.range_gets, fetch.len() as u64);
            let (store, path) = (Arc::clone(&self.store), self.path(key));
            let wanted = fetch.clone();
            let fetched: Vec<Bytes> = self
                .run(async move {
                    futures::future::try_join_all(
                        wanted.into_iter().map(|r| store.get_range(&path, r)),
                    )
                    .await
                })
                .map_err(|e| self.err(key, e))?;
            bump(
                &self.counters.bytes_fetched,
                fetched.iter().map(|b| b.len() as u64).sum(),
            );
            for (slot, r) in out.iter_mut().zip(ranges) {
                if slot.is_some() {
                    continue;
                }
                let Some((f, bytes)) = fetch
                    .iter()
                    .zip(&fetched)
                    .find(|(f, _)| f.start <= r.start && r.end <= f.end)
                else {
                    continue;
                };
                let lo = (r.start - f.start) as usize;
                let hi = (r.end - f.start) as usize;
                if hi > bytes.len() {
                    return Err(Error::Corrupted {
                        path: format!("{}/{key}", self.location).into(),
                        offset: r.start,
                        reason: format!(
                            "the object ends before byte {} (read {}..{})",
                            r.end, r.start, r.end
                        ),
                    });
                }
                let part = bytes.slice(lo..hi);
                if let Some(c) = &self.cache {
                    c.put(key, Some(r), &part);
                }
                if let Some(m) = &self.memory {
                    m.put(key, r, part.clone());
                }
                *slot = Some(part);
            }
        }
        out.into_iter()
            .zip(ranges)
            .map(|(b, r)| {
                b.ok_or_else(|| Error::Corrupted {
                    path: format!("{}/{key}", self.location).into(),
                    offset: r.start,
                    reason: "a range was not fetched".into(),
                })
            })
            .collect()
    }

    /// Whether an object exists.
    pub fn exists(&self, key: &str) -> Result<bool> {
        bump(&self.counters.heads, 1);
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        match self.run(async move { store.head(&path).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Every object under `dir` (recursively), keys relative to the store.
    pub fn list(&self, dir: &str) -> Result<Vec<ObjectEntry>> {
        bump(&self.counters.lists, 1);
        let store = Arc::clone(&self.store);
        let base = self.path(dir);
        let list_base = (!base.as_ref().is_empty()).then(|| base.clone());
        let objects = self
            .run(async move { store.list(list_base.as_ref()).try_collect::<Vec<_>>().await })
            .map_err(|e| self.err(dir, e))?;
        Ok(objects
            .into_iter()
            .filter_map(|m| {
                let key = self.relative(&m.location)?;
                Some(ObjectEntry {
                    key,
                    size_bytes: m.size,
                })
            })
            .collect())
    }

    /// The names of the "directories" directly under the store's prefix.
    pub fn list_dirs(&self) -> Result<Vec<String>> {
        bump(&self.counters.lists, 1);
        let store = Arc::clone(&self.store);
        let base = (!self.prefix.as_ref().is_empty()).then(|| self.prefix.clone());
        let listed = self
            .run(async move { store.list_with_delimiter(base.as_ref()).await })
            .map_err(|e| self.err("", e))?;
        let mut dirs: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    /// Deletes one object; a missing object is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        bump(&self.counters.deletes, 1);
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        match self.run(async move { store.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn relative(&self, location: &ObjectPath) -> Option<String> {
        let parts: Vec<String> = match location.prefix_match(&self.prefix) {
            Some(parts) => parts.map(|p| p.as_ref().to_string()).collect(),
            None => return None,
        };
        Some(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_coalesced_fetched_once_and_then_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(DiskCache::open(dir.path(), 64 << 20).unwrap());
        let store = BlockStore::from_url("memory://")
            .unwrap()
            .with_cache(Arc::clone(&cache));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        store.put("b/x", Bytes::from(data.clone())).unwrap();
        let ranges = [0..10, 2_500_000..2_500_100, 20..30];
        let want: Vec<Bytes> = ranges
            .iter()
            .map(|r| Bytes::copy_from_slice(&data[r.start as usize..r.end as usize]))
            .collect();
        assert_eq!(store.get_ranges("b/x", &ranges).unwrap(), want);
        let r = store.requests();
        // 0..10 and 20..30 are one request; the far range another.
        assert_eq!((r.range_gets, r.cache_hits, r.puts), (2, 0, 1));
        assert_eq!(r.bytes_fetched, 30 + 100);
        assert_eq!(store.get_ranges("b/x", &ranges).unwrap(), want);
        let r = store.requests();
        assert_eq!((r.range_gets, r.cache_hits), (2, 3));
        // A range past the end of the object is an error, not short data.
        assert!(store.get_range("b/x", 2_999_990..3_000_010).is_err());
        // Whole objects too, also for a new store sharing the cache (a
        // restart).
        assert_eq!(store.get("b/x").unwrap().len(), data.len());
        let again = BlockStore::from_url("memory://").unwrap().with_cache(cache);
        assert_eq!(again.get("b/x").unwrap().len(), data.len());
        assert_eq!(again.requests().gets, 0);
        assert_eq!(store.requests().total(), 2 + 1 + 1 + 1);
    }

    #[test]
    fn only_cloud_stores_are_remote() {
        let dir = tempfile::tempdir().unwrap();
        // A relative local path (the default `./data/blocks`) is local.
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(dir.path(), &cwd);
        assert!(!BlockStore::local(&rel).unwrap().is_remote());
        assert!(!BlockStore::local(dir.path()).unwrap().is_remote());
        assert!(!BlockStore::from_url("memory://").unwrap().is_remote());
        let url = format!("file://{}", dir.path().display());
        assert!(!BlockStore::from_url(&url).unwrap().is_remote());
        #[cfg(feature = "cloud")]
        assert!(
            BlockStore::from_url("s3://bucket/prefix")
                .unwrap()
                .is_remote()
        );
    }

    /// `path` relative to `base` (both absolute), with `..` steps.
    fn pathdiff(path: &std::path::Path, base: &std::path::Path) -> std::path::PathBuf {
        let up = base.components().count().saturating_sub(1);
        let mut out = std::path::PathBuf::new();
        for _ in 0..up {
            out.push("..");
        }
        out.extend(path.components().skip(1));
        out
    }

    #[test]
    fn coalescing_merges_near_and_overlapping_ranges() {
        assert_eq!(
            coalesce(&[10..20, 0..5, 30..40, 100..110], 9),
            vec![0..20, 30..40, 100..110]
        );
        assert_eq!(
            coalesce(&[10..20, 0..5, 30..40, 100..110], 10),
            vec![0..40, 100..110]
        );
        assert_eq!(coalesce(&[0..50, 10..20], 0), vec![0..50]);
        assert!(coalesce(&[], 5).is_empty());
    }
}
