//! WAL checkpoints: when the head drops old data, the closed segments are
//! condensed into `checkpoint.NNNNNNNN/` (the series still live and their
//! samples still in the head) and then deleted, so the WAL does not grow
//! without bound and replay stays short.
//!
//! A checkpoint is built in `checkpoint.NNNNNNNN.tmp/`, fsynced, and renamed
//! into place; only then are the segments it covers and the previous
//! checkpoint deleted. A crash at any step leaves either the old state or the
//! new one, and `Wal::open` removes the leftovers.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::{Record, RecordBuf, RefSample};
use super::segment::{self, io_err, list_segments, read_segment, segment_path, sync_dir};
use crate::error::{Error, Result};

const PREFIX: &str = "checkpoint.";
const TMP_SUFFIX: &str = ".tmp";
/// Records per checkpoint write, to bound the buffer.
const FLUSH_BYTES: usize = 1 << 20;

/// What a checkpoint kept and removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The last segment the checkpoint covers.
    pub upto_segment: u32,
    pub series_kept: u64,
    pub samples_kept: u64,
    pub samples_dropped: u64,
    pub segments_deleted: u64,
}

/// The newest finished checkpoint in `dir`, after deleting unfinished ones.
pub fn latest(dir: &Path) -> Result<Option<(u32, PathBuf)>> {
    let mut best: Option<(u32, PathBuf)> = None;
    for e in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if rest.ends_with(TMP_SUFFIX) {
            let p = e.path();
            fs::remove_dir_all(&p).map_err(|err| io_err(&p, err))?;
            continue;
        }
        if let Some(n) = segment::parse_segment_name(rest)
            && best.as_ref().is_none_or(|(b, _)| n > *b)
        {
            best = Some((n, e.path()));
        }
    }
    Ok(best)
}

/// Every record of a checkpoint. A checkpoint was fsynced before it was
/// renamed into place, so any damage in it is an error, never a truncation.
pub fn read(cp_dir: &Path) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for n in list_segments(cp_dir)? {
        let path = segment_path(cp_dir, n);
        let r = read_segment(&path)?;
        if let Some(bad) = r.bad {
            return Err(Error::Corrupted {
                path,
                offset: bad.offset,
                reason: format!("checkpoint record: {}", bad.reason),
            });
        }
        out.extend(r.records);
    }
    Ok(out)
}

/// Condenses the previous checkpoint and segments `..= upto` into a new
/// checkpoint, then deletes what it replaces.
pub fn create(
    dir: &Path,
    upto: u32,
    keep_series: &dyn Fn(u32) -> bool,
    mint: i64,
) -> Result<CheckpointStats> {
    let mut stats = CheckpointStats {
        upto_segment: upto,
        ..Default::default()
    };
    let prev = latest(dir)?;
    let segs: Vec<u32> = list_segments(dir)?
        .into_iter()
        .filter(|&s| s <= upto && prev.as_ref().is_none_or(|(p, _)| s > *p))
        .collect();

    let name = format!("{PREFIX}{}", segment::segment_name(upto));
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    let out_path = segment_path(&tmp, 0);
    let mut out = segment::create_segment(&tmp, 0)?;
    let mut buf = RecordBuf::new();

    let mut handle = |rec: Record, buf: &mut RecordBuf| match rec {
        Record::Series(series) => {
            let kept: Vec<_> = series.iter().filter(|(r, _)| keep_series(*r)).collect();
            stats.series_kept += kept.len() as u64;
            if !kept.is_empty() {
                buf.push_series(kept.into_iter().map(|(r, l)| (*r, l)));
            }
        }
        Record::Samples(samples) => {
            let kept: Vec<RefSample> = samples
                .iter()
                .filter(|s| s.t >= mint && keep_series(s.series_ref))
                .copied()
                .collect();
            stats.samples_kept += kept.len() as u64;
            stats.samples_dropped += (samples.len() - kept.len()) as u64;
            buf.push_samples(&kept);
        }
    };
    let mut flush = |buf: &mut RecordBuf| -> Result<()> {
        out.write_all(buf.as_bytes())
            .map_err(|e| io_err(&out_path, e))?;
        *buf = RecordBuf::new();
        Ok(())
    };

    if let Some((_, p)) = &prev {
        for rec in read(p)? {
            handle(rec, &mut buf);
            if buf.len() >= FLUSH_BYTES {
                flush(&mut buf)?;
            }
        }
    }
    for &s in &segs {
        let path = segment_path(dir, s);
        let r = read_segment(&path)?;
        if let Some(bad) = r.bad {
            // Closed segments were checked by replay or written since; damage
            // now is new and must not be condensed away.
            return Err(Error::Corrupted {
                path,
                offset: bad.offset,
                reason: format!("while checkpointing: {}", bad.reason),
            });
        }
        for rec in r.records {
            handle(rec, &mut buf);
            if buf.len() >= FLUSH_BYTES {
                flush(&mut buf)?;
            }
        }
    }
    flush(&mut buf)?;
    out.sync_all().map_err(|e| io_err(&out_path, e))?;
    drop(out);
    sync_dir(&tmp)?;
    let final_dir = dir.join(&name);
    fs::rename(&tmp, &final_dir).map_err(|e| io_err(&final_dir, e))?;
    sync_dir(dir)?;

    for &s in &segs {
        let p = segment_path(dir, s);
        fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
        stats.segments_deleted += 1;
    }
    if let Some((n, p)) = prev
        && n != upto
    {
        fs::remove_dir_all(&p).map_err(|e| io_err(&p, e))?;
    }
    sync_dir(dir)?;
    Ok(stats)
}
