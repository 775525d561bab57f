//! Where a script's `load` data lives while its evals run: a real
//! `cairn_engine::Db` in a directory the caller provides, read through its
//! querier, so the scripts exercise the same read path as the server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_engine::db::{Db, DbOptions, WriteSeries};
use cairn_engine::{Labels, Querier, Sample};

/// The storage a script runs against: loaded by `load`, emptied by
/// `clear`, read by the evaluator through a [`Querier`].
pub trait TestStorage {
    /// Appends series (samples sorted by time); additive across loads.
    fn load(&mut self, series: Vec<(Labels, Vec<Sample>)>) -> Result<(), String>;
    /// Removes all data.
    fn clear(&mut self) -> Result<(), String>;
    /// A reader over everything loaded so far.
    fn querier(&self) -> &dyn Querier;
}

/// A [`Db`] in `dir`; `clear` deletes the directory and opens a fresh one.
pub struct DbStorage {
    dir: PathBuf,
    db: Option<Db>,
    querier: Arc<dyn Querier>,
}

impl DbStorage {
    /// Opens a database in `dir` (created if missing; should be empty).
    pub fn open(dir: &Path) -> Result<Self, String> {
        let db = Self::open_db(dir)?;
        let querier = db.querier();
        Ok(DbStorage {
            dir: dir.to_path_buf(),
            db: Some(db),
            querier,
        })
    }

    fn open_db(dir: &Path) -> Result<Db, String> {
        let opts = DbOptions {
            // Scripts load older samples after newer ones freely.
            ooo_window_ms: i64::MAX / 4,
            ..DbOptions::default()
        };
        Db::open(dir, opts).map_err(|e| format!("opening test database in {}: {e}", dir.display()))
    }
}

impl TestStorage for DbStorage {
    fn load(&mut self, series: Vec<(Labels, Vec<Sample>)>) -> Result<(), String> {
        let db = self.db.as_ref().ok_or("database is closed")?;
        let batch: Vec<WriteSeries> = series
            .into_iter()
            .map(|(labels, samples)| WriteSeries { labels, samples })
            .collect();
        let out = db.append(&batch).map_err(|e| format!("load: {e}"))?;
        if let Some(r) = out.rejected.first() {
            return Err(format!(
                "load: {} samples of {} rejected: {}",
                r.samples, batch[r.index].labels, r.reason
            ));
        }
        Ok(())
    }

    fn clear(&mut self) -> Result<(), String> {
        self.db = None;
        std::fs::remove_dir_all(&self.dir)
            .map_err(|e| format!("clear: removing {}: {e}", self.dir.display()))?;
        let db = Self::open_db(&self.dir)?;
        self.querier = db.querier();
        self.db = Some(db);
        Ok(())
    }

    fn querier(&self) -> &dyn Querier {
        self.querier.as_ref()
    }
}
