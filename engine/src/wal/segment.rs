//! WAL segment files: naming, the 8-byte header, and reading a segment's
//! records with the position of the first bad one.
//!
//! A segment is `magic "CWAL" | version u8 = 1 | 3 zero bytes` followed by
//! framed records (see `record.rs`). Segments are named by their number,
//! eight decimal digits, so that a directory listing sorts them.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::record::{FRAME_HEADER_LEN, FrameError, MAX_PAYLOAD_LEN, Record, decode_frame};
use crate::error::{Error, Result};

pub const SEGMENT_MAGIC: [u8; 4] = *b"CWAL";
pub const SEGMENT_VERSION: u8 = 1;
pub const SEGMENT_HEADER_LEN: usize = 8;

pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..4].copy_from_slice(&SEGMENT_MAGIC);
    h[4] = SEGMENT_VERSION;
    h
}

pub fn segment_name(n: u32) -> String {
    format!("{n:08}")
}

pub fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(segment_name(n))
}

/// Parses a segment file name (exactly eight digits).
pub fn parse_segment_name(name: &str) -> Option<u32> {
    if name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

/// Segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u32>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        let Some(n) = e.file_name().to_str().and_then(parse_segment_name) else {
            continue;
        };
        if e.file_type()
            .map_err(|err| io_err(&e.path(), err))?
            .is_file()
        {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// Creates a new segment with its header, fsyncs it and the directory.
pub fn create_segment(dir: &Path, n: u32) -> Result<File> {
    let path = segment_path(dir, n);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    f.write_all(&segment_header())
        .map_err(|e| io_err(&path, e))?;
    f.sync_all().map_err(|e| io_err(&path, e))?;
    sync_dir(dir)?;
    Ok(f)
}

/// What reading a segment found.
pub struct SegmentRead {
    pub records: Vec<Record>,
    /// Where the first undecodable byte is and why, if any.
    pub bad: Option<BadSpot>,
    pub len: u64,
}

pub struct BadSpot {
    pub offset: u64,
    pub reason: String,
    /// True when valid records follow the bad one up to the end of the file:
    /// a damaged record in the middle, not a torn tail.
    pub valid_records_follow: bool,
}

/// Reads every record of a segment, stopping at the first bad one.
pub fn read_segment(path: &Path) -> Result<SegmentRead> {
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    let len = bytes.len() as u64;
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Ok(SegmentRead {
            records: Vec::new(),
            bad: Some(BadSpot {
                offset: 0,
                reason: format!("segment header truncated ({} bytes)", bytes.len()),
                valid_records_follow: false,
            }),
            len,
        });
    }
    if bytes[..4] != SEGMENT_MAGIC || bytes[4] != SEGMENT_VERSION {
        return Ok(SegmentRead {
            records: Vec::new(),
            bad: Some(BadSpot {
                offset: 0,
                reason: "bad segment magic or version".into(),
                valid_records_follow: bytes[SEGMENT_HEADER_LEN..].iter().any(|&b| b != 0),
            }),
            len,
        });
    }
    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < bytes.len() {
        match decode_frame(&bytes[pos..]) {
            Ok((rec, n)) => {
                records.push(rec);
                pos += n;
            }
            Err(e) => {
                let follow = valid_records_follow(&bytes[pos..], &e);
                return Ok(SegmentRead {
                    records,
                    bad: Some(BadSpot {
                        offset: pos as u64,
                        reason: e.to_string(),
                        valid_records_follow: follow,
                    }),
                    len,
                });
            }
        }
    }
    Ok(SegmentRead {
        records,
        bad: None,
        len,
    })
}

/// A torn write leaves a prefix of what was written, so nothing decodable
/// follows the bad record. If the bad record's own header is plausible and
/// the records after it decode cleanly to the end of the file, the damage
/// is in the middle of acknowledged data and must not be truncated away
/// silently.
fn valid_records_follow(rest: &[u8], err: &FrameError) -> bool {
    if !matches!(err, FrameError::Checksum { .. } | FrameError::Payload(_)) {
        return false;
    }
    if rest.len() < FRAME_HEADER_LEN {
        return false;
    }
    let len = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]);
    if len > MAX_PAYLOAD_LEN {
        return false;
    }
    let mut pos = FRAME_HEADER_LEN + len as usize;
    if pos >= rest.len() {
        return false;
    }
    while pos < rest.len() {
        match decode_frame(&rest[pos..]) {
            Ok((_, n)) => pos += n,
            Err(_) => return false,
        }
    }
    true
}

/// Cuts a file to `len` bytes and fsyncs it.
pub fn truncate_file(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.set_len(len).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

pub fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
