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

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload};

use crate::error::{Error, Result};

/// A bucket (or directory) of blocks: an object store plus a key prefix.
#[derive(Clone)]
pub struct BlockStore {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    rt: Arc<tokio::runtime::Runtime>,
    /// How the store was named, for errors and logs.
    location: Arc<str>,
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
        BlockStore::new(store, prefix, url)
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
        })
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
        match futures::executor::block_on(self.rt.spawn(fut)) {
            Ok(r) => r,
            Err(join) => Err(object_store::Error::JoinError { source: join }),
        }
    }

    /// Writes one object whole (atomically: readers see the old object, or
    /// none, or the new one).
    pub fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        self.run(async move { store.put(&path, PutPayload::from(data)).await })
            .map(|_| ())
            .map_err(|e| self.err(key, e))
    }

    /// Reads one object whole.
    pub fn get(&self, key: &str) -> Result<Bytes> {
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        self.run(async move { store.get(&path).await?.bytes().await })
            .map_err(|e| self.err(key, e))
    }

    /// Reads a byte range of one object.
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        self.run(async move { store.get_range(&path, range).await })
            .map_err(|e| self.err(key, e))
    }

    /// Whether an object exists.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let (store, path) = (Arc::clone(&self.store), self.path(key));
        match self.run(async move { store.head(&path).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Every object under `dir` (recursively), keys relative to the store.
    pub fn list(&self, dir: &str) -> Result<Vec<ObjectEntry>> {
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
