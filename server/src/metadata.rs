//! The metric metadata store: TYPE, HELP and UNIT per metric family, as
//! remote-write senders report them, served by `/api/v1/metadata`.
//!
//! Kept in memory (a few hundred bytes per family) and persisted as one
//! JSON file in the data directory, rewritten atomically (write to a
//! temporary file, fsync, rename) when it changed; it is loaded at start.
//! Losing the last few seconds of metadata changes in a crash is harmless:
//! senders resend metadata periodically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::remote_write::Metadata;

/// The file name inside the data directory.
pub const FILE_NAME: &str = "metadata.json";

/// Distinct metadata entries kept per metric family (senders may disagree).
const MAX_PER_FAMILY: usize = 4;

/// One metadata entry as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(rename = "type")]
    pub kind: String,
    pub help: String,
    pub unit: String,
}

impl From<&Metadata> for Entry {
    fn from(m: &Metadata) -> Self {
        Entry {
            kind: m.kind.to_string(),
            help: m.help.clone(),
            unit: m.unit.clone(),
        }
    }
}

/// Metadata of every metric family, newest entry first per family.
#[derive(Default)]
pub struct MetadataStore {
    families: RwLock<BTreeMap<String, Vec<Entry>>>,
    dirty: AtomicBool,
}

impl MetadataStore {
    /// Loads the persisted store; a missing file is an empty store, an
    /// unreadable one is logged and ignored (metadata is resent by senders).
    pub fn load(dir: &Path) -> MetadataStore {
        let path = dir.join(FILE_NAME);
        let families = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable metadata file");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read metadata file");
                BTreeMap::new()
            }
        };
        MetadataStore {
            families: RwLock::new(families),
            dirty: AtomicBool::new(false),
        }
    }

    /// Records metadata; returns true if anything changed.
    pub fn record(&self, items: &[(String, Metadata)]) -> bool {
        if items.is_empty() {
            return false;
        }
        // Most writes repeat what is known: check under the read lock first.
        {
            let f = self.families.read();
            let known = items.iter().all(|(name, m)| {
                f.get(name)
                    .and_then(|v| v.first())
                    .is_some_and(|e| *e == Entry::from(m))
            });
            if known {
                return false;
            }
        }
        let mut f = self.families.write();
        for (name, m) in items {
            let entry = Entry::from(m);
            let list = f.entry(name.clone()).or_default();
            if list.first() == Some(&entry) {
                continue;
            }
            list.retain(|e| *e != entry);
            list.insert(0, entry);
            list.truncate(MAX_PER_FAMILY);
        }
        self.dirty.store(true, Ordering::Release);
        true
    }

    /// Families and their entries; `metric` selects one family, `limit`
    /// caps the number of families and `limit_per_metric` the entries of
    /// each (0 = no limit), as Prometheus's `/api/v1/metadata`.
    pub fn query(
        &self,
        metric: Option<&str>,
        limit: usize,
        limit_per_metric: usize,
    ) -> BTreeMap<String, Vec<Entry>> {
        let f = self.families.read();
        let per = |v: &Vec<Entry>| {
            let mut v = v.clone();
            if limit_per_metric > 0 {
                v.truncate(limit_per_metric);
            }
            v
        };
        match metric {
            Some(m) => f
                .get(m)
                .map(|v| BTreeMap::from([(m.to_string(), per(v))]))
                .unwrap_or_default(),
            None => f
                .iter()
                .take(if limit == 0 { usize::MAX } else { limit })
                .map(|(k, v)| (k.clone(), per(v)))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.families.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the store to `dir` if it changed since the last save.
    pub fn save_if_dirty(&self, dir: &Path) -> std::io::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let bytes = {
            let f = self.families.read();
            serde_json::to_vec(&*f).map_err(std::io::Error::other)?
        };
        let result = write_atomically(&dir.join(FILE_NAME), &bytes);
        if result.is_err() {
            // Try again on the next save.
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        // Make the rename durable; not all platforms allow fsync on a dir.
        let _ = d.sync_all();
    }
    Ok(())
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
    fn record_query_and_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = MetadataStore::load(dir.path());
        assert!(s.is_empty());
        assert!(s.record(&[
            ("a".into(), md("counter", "A.")),
            ("b".into(), md("gauge", "B."))
        ]));
        // The same again changes nothing.
        assert!(!s.record(&[("a".into(), md("counter", "A."))]));
        // A different HELP becomes the newest entry.
        assert!(s.record(&[("a".into(), md("counter", "A, newer."))]));
        let all = s.query(None, 0, 0);
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"].len(), 2);
        assert_eq!(all["a"][0].help, "A, newer.");
        assert_eq!(s.query(None, 1, 0).len(), 1);
        assert_eq!(s.query(Some("a"), 0, 1)["a"].len(), 1);
        assert!(s.query(Some("zzz"), 0, 0).is_empty());

        s.save_if_dirty(dir.path()).expect("save");
        let again = MetadataStore::load(dir.path());
        assert_eq!(again.query(None, 0, 0), all);
    }

    #[test]
    fn unreadable_file_is_an_empty_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").expect("write");
        assert!(MetadataStore::load(dir.path()).is_empty());
    }
}
