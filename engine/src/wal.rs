//! The write-ahead log: every accepted sample and every new series is
//! written here and fsynced before an append is acknowledged, and replayed
//! into the head on open.
//!
//! Layout of the WAL directory (bytes in `docs/format.md`, "WAL"):
//!
//! ```text
//! wal/
//!   00000000 00000001 ...        segments, append-only, at most `segment_max_bytes` each
//!   checkpoint.00000041/         the live series and recent samples of segments <= 41
//!     00000000
//! ```
//!
//! **Group commit.** One writer thread owns the open segment. Appenders frame
//! their records (CRC included) on their own thread and send the bytes over a
//! channel; the writer drains everything queued, writes it with one `write`,
//! calls `fdatasync` once and then wakes every appender of the group. While
//! it waits for the disk the next group queues up, so the number of fsyncs
//! per second stays bounded by the disk and not by the number of appenders.
//!
//! **Failure.** After a failed write or fsync the page cache can no longer
//! be trusted to reach the disk, so the WAL refuses every later write; the
//! process must be restarted, which replays what is durable.

pub mod checkpoint;
pub mod record;
pub mod segment;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::error::{Error, Result};
pub use record::{Record, RecordBuf, RefSample};
use segment::{io_err, list_segments, read_segment, segment_path, truncate_file};

/// Default size at which a segment is closed and the next one started.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 128 << 20;

/// Most bytes the writer gathers into one group before it writes and syncs.
const MAX_GROUP_BYTES: usize = 32 << 20;

/// How the WAL behaves.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is closed once it reaches this size.
    pub segment_max_bytes: u64,
    /// Truncate the WAL at a corrupt record found in the middle (not the tail
    /// of the last segment) instead of refusing to open. Everything after
    /// that record is dropped, and the amount is logged.
    pub repair: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            repair: false,
        }
    }
}

/// What replay found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub checkpoint: Option<u32>,
    pub segments: usize,
    pub records: u64,
    /// Bytes cut from a torn or corrupt tail, or dropped by repair.
    pub bytes_dropped: u64,
}

/// Counters of the writer, for stats and benches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalStats {
    pub fsyncs: u64,
    pub bytes_written: u64,
    pub writes: u64,
    /// Latency of the successful group-commit fsyncs.
    pub fsync_latency: FsyncLatency,
}

/// Upper bounds, in seconds, of [`FsyncLatency`]'s buckets (a last,
/// unbounded bucket follows).
pub const FSYNC_BUCKETS_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket histogram of fsync latencies: `counts[i]` fsyncs took at
/// most `FSYNC_BUCKETS_SECONDS[i]` and more than the bucket before (not
/// cumulative); `counts[14]` took longer than the last bound.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FsyncLatency {
    pub counts: [u64; 15],
    pub sum_nanos: u64,
}

impl FsyncLatency {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }

    /// The bucket an fsync of `elapsed` falls in.
    pub fn bucket(elapsed: std::time::Duration) -> usize {
        let secs = elapsed.as_secs_f64();
        FSYNC_BUCKETS_SECONDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(FSYNC_BUCKETS_SECONDS.len())
    }
}

enum Cmd {
    Write(Vec<u8>, Sender<Result<()>>),
    Cut(Sender<Result<u32>>),
    Close(Sender<Result<()>>),
}

#[derive(Default)]
struct Counters {
    /// Set once the WAL stops taking writes (closed or failed).
    unavailable: std::sync::atomic::AtomicBool,
    fsyncs: AtomicU64,
    bytes_written: AtomicU64,
    writes: AtomicU64,
    /// [`FsyncLatency`], one relaxed add per bucket and for the sum.
    fsync_buckets: [AtomicU64; 15],
    fsync_nanos: AtomicU64,
    /// Bytes of the WAL directory when last counted, and `bytes_written`
    /// then: [`Wal::disk_bytes`] adds what was written since.
    disk_counted: AtomicU64,
    disk_counted_written: AtomicU64,
}

impl Counters {
    fn record_fsync(&self, elapsed: std::time::Duration) {
        self.fsync_buckets[FsyncLatency::bucket(elapsed)].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Bytes of the regular files in `dir` and its subdirectories (one level
/// deep: segments and a checkpoint directory); unreadable entries count 0.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => fs::read_dir(e.path())
                .map(|sub| {
                    sub.filter_map(|f| f.ok()?.metadata().ok())
                        .filter(|m| m.is_file())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The open WAL. `Send + Sync`; appenders call [`Wal::log`] concurrently.
pub struct Wal {
    dir: PathBuf,
    tx: Sender<Cmd>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    checkpoint_lock: Mutex<()>,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`, replays the latest
    /// checkpoint and every later segment through `on_record` in write
    /// order, repairs a torn tail, and starts a fresh segment for writes.
    pub fn open(
        dir: &Path,
        opts: WalOptions,
        mut on_record: impl FnMut(Record) -> Result<()>,
    ) -> Result<(Wal, ReplayReport)> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut report = ReplayReport::default();
        let cp = checkpoint::latest(dir)?;
        if let Some((n, cp_dir)) = &cp {
            report.checkpoint = Some(*n);
            for rec in checkpoint::read(cp_dir)? {
                report.records += 1;
                on_record(rec)?;
            }
        }
        let mut segs = list_segments(dir)?;
        // Segments a finished checkpoint covers are leftovers of an
        // interrupted deletion.
        if let Some((n, _)) = &cp {
            for &s in segs.iter().filter(|&&s| s <= *n) {
                let p = segment_path(dir, s);
                fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
            }
            segs.retain(|&s| s > *n);
        }
        let mut i = 0;
        while i < segs.len() {
            let n = segs[i];
            let path = segment_path(dir, n);
            if i > 0 && n != segs[i - 1] + 1 {
                let reason = format!("segment {} is missing", segs[i - 1] + 1);
                if !opts.repair {
                    return Err(Error::Corrupted {
                        path,
                        offset: 0,
                        reason,
                    });
                }
                report.bytes_dropped += drop_segments(dir, &segs[i..], &reason)?;
                segs.truncate(i);
                break;
            }
            let read = read_segment(&path)?;
            report.segments += 1;
            for rec in read.records {
                report.records += 1;
                on_record(rec)?;
            }
            if let Some(bad) = read.bad {
                let is_last = i + 1 == segs.len();
                let tail = is_last && !bad.valid_records_follow;
                if !tail && !opts.repair {
                    return Err(Error::Corrupted {
                        path,
                        offset: bad.offset,
                        reason: format!(
                            "{} (in the middle of the WAL; start with the WAL repair option \
                             to truncate here and drop everything after it)",
                            bad.reason
                        ),
                    });
                }
                let dropped = read.len - bad.offset;
                if bad.offset < segment::SEGMENT_HEADER_LEN as u64 {
                    // The header itself is torn: rewrite an empty segment.
                    segment::create_segment(dir, n)?;
                } else {
                    truncate_file(&path, bad.offset)?;
                }
                report.bytes_dropped += dropped;
                if tail {
                    tracing::warn!(
                        file = %path.display(),
                        offset = bad.offset,
                        bytes_dropped = dropped,
                        reason = %bad.reason,
                        "WAL: truncated a torn or corrupt tail at the last good record"
                    );
                } else {
                    let later = drop_segments(dir, &segs[i + 1..], &bad.reason)?;
                    report.bytes_dropped += later;
                    tracing::warn!(
                        file = %path.display(),
                        offset = bad.offset,
                        bytes_dropped = dropped + later,
                        segments_dropped = segs.len() - i - 1,
                        reason = %bad.reason,
                        "WAL repair: truncated at a corrupt record in the middle of the WAL; \
                         everything after it is lost"
                    );
                    segs.truncate(i + 1);
                }
                break;
            }
            i += 1;
        }
        let next = match (segs.last(), &cp) {
            (Some(&s), _) => s + 1,
            (None, Some((n, _))) => n + 1,
            (None, None) => 0,
        };
        let wal = Wal::start_writer(dir, next, opts.segment_max_bytes)?;
        wal.count_disk_bytes();
        Ok((wal, report))
    }

    fn start_writer(dir: &Path, first_segment: u32, segment_max_bytes: u64) -> Result<Wal> {
        let file = segment::create_segment(dir, first_segment)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let counters = Arc::new(Counters::default());
        let mut w = Writer {
            dir: dir.to_path_buf(),
            segment: first_segment,
            file,
            size: segment::SEGMENT_HEADER_LEN as u64,
            segment_max_bytes: segment_max_bytes.max(4096),
            buf: Vec::new(),
            waiters: Vec::new(),
            failed: None,
            counters: counters.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("cairn-wal".into())
            .spawn(move || w.run(rx))
            .map_err(|e| io_err(dir, e))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            tx,
            writer: Mutex::new(Some(handle)),
            counters,
            checkpoint_lock: Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the WAL takes on disk (segments and checkpoint): counted on
    /// open and after each checkpoint, plus the bytes written since.
    pub fn disk_bytes(&self) -> u64 {
        let written = self.counters.bytes_written.load(Ordering::Relaxed);
        let since =
            written.saturating_sub(self.counters.disk_counted_written.load(Ordering::Relaxed));
        self.counters.disk_counted.load(Ordering::Relaxed) + since
    }

    /// Counts the WAL directory's bytes (a write racing the count may be
    /// counted twice until the next count: an overestimate, never an
    /// under-).
    fn count_disk_bytes(&self) {
        let written = self.counters.bytes_written.load(Ordering::Relaxed);
        let bytes = dir_bytes(&self.dir);
        self.counters.disk_counted.store(bytes, Ordering::Relaxed);
        self.counters
            .disk_counted_written
            .store(written, Ordering::Relaxed);
    }

    /// Writes framed records and returns once they are fsynced. Concurrent
    /// callers share one fsync. An empty buffer returns at once.
    pub fn log(&self, records: RecordBuf) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Cmd::Write(records.into_bytes(), tx))
            .map_err(|_| closed())?;
        rx.recv().map_err(|_| closed())?
    }

    /// Closes the current segment (after an fsync) and starts the next;
    /// returns the new segment's number. Every segment below it is closed
    /// for good.
    pub fn cut_segment(&self) -> Result<u32> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx.send(Cmd::Cut(tx)).map_err(|_| closed())?;
        rx.recv().map_err(|_| closed())?
    }

    /// Writes a checkpoint of every closed segment: series for which
    /// `keep_series` holds and their samples at or after `mint`, then
    /// deletes the segments and the older checkpoint it replaces.
    pub fn checkpoint(
        &self,
        keep_series: impl Fn(u32) -> bool,
        mint: i64,
    ) -> Result<checkpoint::CheckpointStats> {
        let _one_at_a_time = self.checkpoint_lock.lock();
        let open = self.cut_segment()?;
        let stats = checkpoint::create(&self.dir, open - 1, &keep_series, mint);
        self.count_disk_bytes();
        stats
    }

    /// False once the WAL was closed or a write failed: every later
    /// [`Wal::log`] fails. Appenders check it first so that they do not
    /// change the head for a write that cannot become durable.
    pub fn is_available(&self) -> bool {
        !self.counters.unavailable.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> WalStats {
        WalStats {
            fsyncs: self.counters.fsyncs.load(Ordering::Relaxed),
            bytes_written: self.counters.bytes_written.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            fsync_latency: FsyncLatency {
                counts: std::array::from_fn(|i| {
                    self.counters.fsync_buckets[i].load(Ordering::Relaxed)
                }),
                sum_nanos: self.counters.fsync_nanos.load(Ordering::Relaxed),
            },
        }
    }

    /// Flushes, fsyncs and stops the writer.
    pub fn close(&self) -> Result<()> {
        self.counters.unavailable.store(true, Ordering::Release);
        let Some(handle) = self.writer.lock().take() else {
            return Ok(());
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let res = match self.tx.send(Cmd::Close(tx)) {
            Ok(()) => rx.recv().map_err(|_| closed())?,
            Err(_) => Err(closed()),
        };
        let _ = handle.join();
        res
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "WAL: close on drop failed");
        }
    }
}

fn closed() -> Error {
    Error::WalUnavailable {
        reason: "the WAL writer has stopped".into(),
    }
}

fn drop_segments(dir: &Path, segs: &[u32], reason: &str) -> Result<u64> {
    let mut bytes = 0;
    for &s in segs {
        let p = segment_path(dir, s);
        bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
        tracing::warn!(file = %p.display(), reason, "WAL repair: deleted segment");
    }
    Ok(bytes)
}

/// The writer thread's state: the open segment and the group being built.
struct Writer {
    dir: PathBuf,
    segment: u32,
    file: File,
    size: u64,
    segment_max_bytes: u64,
    buf: Vec<u8>,
    waiters: Vec<Sender<Result<()>>>,
    /// Set after the first failed write or fsync; every later command fails.
    failed: Option<(std::io::ErrorKind, String)>,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Cmd>) {
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Write(bytes, done) => {
                        if let Some(err) = self.failure() {
                            let _ = done.send(Err(err));
                        } else {
                            let would_be = self.size + (self.buf.len() + bytes.len()) as u64;
                            if would_be > self.segment_max_bytes
                                && self.size + self.buf.len() as u64
                                    > segment::SEGMENT_HEADER_LEN as u64
                            {
                                self.commit();
                                self.rotate();
                            }
                            self.buf.extend_from_slice(&bytes);
                            self.waiters.push(done);
                        }
                    }
                    Cmd::Cut(done) => {
                        self.commit();
                        self.rotate();
                        let res = match self.failure() {
                            Some(e) => Err(e),
                            None => Ok(self.segment),
                        };
                        let _ = done.send(res);
                    }
                    Cmd::Close(done) => {
                        self.commit();
                        let res = match self.failure() {
                            Some(e) => Err(e),
                            None => self.file.sync_all().map_err(|e| io_err(&self.path(), e)),
                        };
                        let _ = done.send(res);
                        // Anything queued after close fails: the channel's
                        // receiver is dropped when this thread returns.
                        return;
                    }
                }
                if self.buf.len() < MAX_GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            self.commit();
        }
        self.commit();
    }

    fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.segment)
    }

    fn failure(&self) -> Option<Error> {
        self.failed.as_ref().map(|(kind, msg)| Error::Io {
            path: self.path(),
            source: std::io::Error::new(*kind, format!("earlier WAL write failed: {msg}")),
        })
    }

    /// Writes the group, fsyncs once, and answers every waiter.
    fn commit(&mut self) {
        if self.waiters.is_empty() && self.buf.is_empty() {
            return;
        }
        if self.failed.is_none() {
            let res = self.file.write_all(&self.buf).and_then(|()| {
                let start = std::time::Instant::now();
                self.file.sync_data()?;
                self.counters.record_fsync(start.elapsed());
                Ok(())
            });
            match res {
                Ok(()) => {
                    self.size += self.buf.len() as u64;
                    self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                    self.counters.writes.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .bytes_written
                        .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(
                        file = %self.path().display(),
                        error = %e,
                        "WAL write failed; refusing all further writes until restart"
                    );
                    self.failed = Some((e.kind(), e.to_string()));
                    self.counters.unavailable.store(true, Ordering::Release);
                }
            }
        }
        self.buf.clear();
        let failure = self.failure();
        for w in self.waiters.drain(..) {
            let _ = w.send(match &failure {
                None => Ok(()),
                Some(Error::Io { path, source }) => Err(Error::Io {
                    path: path.clone(),
                    source: std::io::Error::new(source.kind(), source.to_string()),
                }),
                Some(_) => Err(closed()),
            });
        }
    }

    fn rotate(&mut self) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.file.sync_all() {
            self.failed = Some((e.kind(), e.to_string()));
            self.counters.unavailable.store(true, Ordering::Release);
            return;
        }
        match segment::create_segment(&self.dir, self.segment + 1) {
            Ok(f) => {
                self.file = f;
                self.segment += 1;
                self.size = segment::SEGMENT_HEADER_LEN as u64;
            }
            Err(e) => {
                tracing::error!(error = %e, "WAL: cannot start a new segment");
                self.failed = Some((std::io::ErrorKind::Other, e.to_string()));
                self.counters.unavailable.store(true, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests;
