//! Tests of the WAL: replay round trips, group commit from many threads,
//! torn and corrupt tails, corruption in the middle, checkpoints.

use super::*;
use crate::labels::Labels;
use crate::sample::STALE_NAN_BITS;

fn opts() -> WalOptions {
    WalOptions::default()
}

fn open_collect(dir: &Path, o: WalOptions) -> Result<(Wal, ReplayReport, Vec<Record>)> {
    let mut recs = Vec::new();
    let (w, rep) = Wal::open(dir, o, |r| {
        recs.push(r);
        Ok(())
    })?;
    Ok((w, rep, recs))
}

fn samples_of(recs: &[Record]) -> Vec<RefSample> {
    recs.iter()
        .flat_map(|r| match r {
            Record::Samples(s) => s.clone(),
            Record::Series(_) => Vec::new(),
        })
        .collect()
}

fn batch(r: u32, t: i64, v: f64) -> RecordBuf {
    let mut b = RecordBuf::new();
    b.push_samples(&[RefSample {
        series_ref: r,
        t,
        v,
    }]);
    b
}

#[test]
fn replay_round_trip_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
    let written = vec![
        RefSample {
            series_ref: 1,
            t: 10,
            v: 1.0,
        },
        RefSample {
            series_ref: 1,
            t: 20,
            v: f64::from_bits(STALE_NAN_BITS),
        },
        RefSample {
            series_ref: 1,
            t: 30,
            v: -0.0,
        },
    ];
    {
        let (w, rep, recs) = open_collect(dir.path(), opts()).unwrap();
        assert_eq!(rep, ReplayReport::default());
        assert!(recs.is_empty());
        let mut b = RecordBuf::new();
        b.push_series([(1, &l)]);
        b.push_samples(&written);
        w.log(b).unwrap();
        assert_eq!(w.stats().fsyncs, 1);
        w.close().unwrap();
    }
    let (_w, rep, recs) = open_collect(dir.path(), opts()).unwrap();
    assert_eq!(rep.records, 2);
    assert_eq!(rep.bytes_dropped, 0);
    assert_eq!(recs[0], Record::Series(vec![(1, l)]));
    assert_eq!(samples_of(&recs), written);
}

#[test]
fn concurrent_appenders_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _, _) = open_collect(dir.path(), opts()).unwrap();
    let w = Arc::new(w);
    let threads: Vec<_> = (0..8u32)
        .map(|th| {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    w.log(batch(th, i, i as f64)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = w.stats();
    assert_eq!(st.bytes_written, 400 * batch(0, 0, 0.0).len() as u64);
    assert!(st.fsyncs <= 400, "{st:?}");
    // Every group-commit fsync is in the latency histogram.
    assert_eq!(st.fsync_latency.count(), st.fsyncs, "{st:?}");
    assert!(st.fsync_latency.sum_nanos > 0, "{st:?}");
    w.close().unwrap();
    drop(w);
    let (_w, _, recs) = open_collect(dir.path(), opts()).unwrap();
    let mut got: Vec<(u32, i64)> = samples_of(&recs)
        .iter()
        .map(|s| (s.series_ref, s.t))
        .collect();
    got.sort_unstable();
    let want: Vec<(u32, i64)> = (0..8)
        .flat_map(|th| (0..50).map(move |i| (th, i)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn segments_rotate_and_replay_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_max_bytes: 4096,
        repair: false,
    };
    {
        let (w, _, _) = open_collect(dir.path(), o.clone()).unwrap();
        for i in 0..1000 {
            w.log(batch(1, i, i as f64)).unwrap();
        }
    }
    let segs = list_segments(dir.path()).unwrap();
    assert!(segs.len() > 3, "{segs:?}");
    let (_w, rep, recs) = open_collect(dir.path(), o).unwrap();
    assert_eq!(rep.segments, segs.len());
    let ts: Vec<i64> = samples_of(&recs).iter().map(|s| s.t).collect();
    assert_eq!(ts, (0..1000).collect::<Vec<_>>());
}

/// Writes `n` one-sample batches into a fresh WAL and returns the path of
/// the segment holding them.
fn wal_with(dir: &Path, n: i64) -> PathBuf {
    let (w, _, _) = open_collect(dir, opts()).unwrap();
    for i in 0..n {
        w.log(batch(1, i, i as f64)).unwrap();
    }
    w.close().unwrap();
    segment_path(dir, 0)
}

#[test]
fn torn_tail_is_truncated_at_last_good_record() {
    let rec_len = batch(1, 0, 0.0).len() as u64;
    let header = segment::SEGMENT_HEADER_LEN as u64;
    // Cut the file at every length inside the last record and inside the header.
    for cut in [1, 2, rec_len / 2, rec_len - 1] {
        let dir = tempfile::tempdir().unwrap();
        let p = wal_with(dir.path(), 5);
        let full = fs::metadata(&p).unwrap().len();
        assert_eq!(full, header + 5 * rec_len);
        truncate_file(&p, full - cut).unwrap();
        let (_w, rep, recs) = open_collect(dir.path(), opts()).unwrap();
        assert_eq!(samples_of(&recs).len(), 4, "cut {cut}");
        assert_eq!(rep.bytes_dropped, rec_len - cut);
        assert_eq!(fs::metadata(&p).unwrap().len(), header + 4 * rec_len);
    }
}

#[test]
fn flipped_bytes_in_the_tail_are_truncated_and_earlier_records_kept() {
    let rec_len = batch(1, 0, 0.0).len();
    let header = segment::SEGMENT_HEADER_LEN;
    for byte in 0..rec_len {
        let dir = tempfile::tempdir().unwrap();
        let p = wal_with(dir.path(), 3);
        let mut bytes = fs::read(&p).unwrap();
        let at = header + 2 * rec_len + byte;
        bytes[at] ^= 0x5a;
        fs::write(&p, &bytes).unwrap();
        let (w, rep, recs) = open_collect(dir.path(), opts()).unwrap();
        let ts: Vec<i64> = samples_of(&recs).iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![0, 1], "flip at byte {byte}");
        assert_eq!(rep.bytes_dropped, rec_len as u64);
        // The WAL keeps working after the repair.
        w.log(batch(1, 100, 1.0)).unwrap();
        w.close().unwrap();
        drop(w);
        let (_w, _, recs) = open_collect(dir.path(), opts()).unwrap();
        let ts: Vec<i64> = samples_of(&recs).iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![0, 1, 100]);
    }
}

#[test]
fn zero_filled_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let p = wal_with(dir.path(), 3);
    let mut bytes = fs::read(&p).unwrap();
    let good = bytes.len() as u64;
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&p, &bytes).unwrap();
    let (_w, rep, recs) = open_collect(dir.path(), opts()).unwrap();
    assert_eq!(samples_of(&recs).len(), 3);
    assert_eq!(rep.bytes_dropped, 4096);
    assert_eq!(fs::metadata(&p).unwrap().len(), good);
}

#[test]
fn corruption_in_the_middle_refuses_to_open_without_repair() {
    let rec_len = batch(1, 0, 0.0).len();
    let header = segment::SEGMENT_HEADER_LEN;
    let dir = tempfile::tempdir().unwrap();
    let p = wal_with(dir.path(), 5);
    let mut bytes = fs::read(&p).unwrap();
    let bad_at = header + rec_len; // second record
    bytes[bad_at + rec_len - 1] ^= 0xff; // a value byte: CRC mismatch
    fs::write(&p, &bytes).unwrap();

    let err = open_collect(dir.path(), opts()).err().expect("must refuse");
    match err {
        Error::Corrupted {
            path,
            offset,
            reason,
        } => {
            assert_eq!(path, p);
            assert_eq!(offset, bad_at as u64);
            assert!(reason.contains("CRC32C mismatch"), "{reason}");
        }
        other => panic!("unexpected error {other}"),
    }
    // Refusing must not have changed the file.
    assert_eq!(fs::read(&p).unwrap(), bytes);

    let (_w, rep, recs) = open_collect(
        dir.path(),
        WalOptions {
            repair: true,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(samples_of(&recs).len(), 1);
    assert_eq!(rep.bytes_dropped, 4 * rec_len as u64);
}

#[test]
fn corruption_in_an_older_segment_refuses_to_open_and_repair_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_max_bytes: 4096,
        repair: false,
    };
    {
        let (w, _, _) = open_collect(dir.path(), o.clone()).unwrap();
        for i in 0..1000 {
            w.log(batch(1, i, i as f64)).unwrap();
        }
    }
    let segs = list_segments(dir.path()).unwrap();
    let p = segment_path(dir.path(), segs[0]);
    let mut bytes = fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1; // the last record of the first segment
    fs::write(&p, &bytes).unwrap();
    let err = open_collect(dir.path(), o.clone())
        .err()
        .expect("must refuse");
    assert!(
        matches!(err, Error::Corrupted { ref path, .. } if *path == p),
        "{err}"
    );

    let (_w, rep, recs) = open_collect(dir.path(), WalOptions { repair: true, ..o }).unwrap();
    let ts: Vec<i64> = samples_of(&recs).iter().map(|s| s.t).collect();
    let kept = ts.len() as i64;
    assert_eq!(ts, (0..kept).collect::<Vec<_>>());
    assert!(kept > 0 && kept < 1000);
    assert!(rep.bytes_dropped > 0);
    // The later segments are gone; only the repaired one and the new one remain.
    assert_eq!(
        list_segments(dir.path()).unwrap(),
        vec![segs[0], segs[0] + 1]
    );
}

#[test]
fn missing_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_max_bytes: 4096,
        repair: false,
    };
    {
        let (w, _, _) = open_collect(dir.path(), o.clone()).unwrap();
        for i in 0..1000 {
            w.log(batch(1, i, i as f64)).unwrap();
        }
    }
    let segs = list_segments(dir.path()).unwrap();
    fs::remove_file(segment_path(dir.path(), segs[1])).unwrap();
    let err = open_collect(dir.path(), o).err().expect("must refuse");
    assert!(err.to_string().contains("is missing"), "{err}");
}

#[test]
fn checkpoint_keeps_live_series_and_recent_samples_and_deletes_segments() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_max_bytes: 4096,
        repair: false,
    };
    let l1 = Labels::from_pairs([("__name__", "a")]);
    let l2 = Labels::from_pairs([("__name__", "b")]);
    {
        let (w, _, _) = open_collect(dir.path(), o.clone()).unwrap();
        let mut b = RecordBuf::new();
        b.push_series([(1, &l1), (2, &l2)]);
        w.log(b).unwrap();
        for i in 0..500 {
            let mut b = RecordBuf::new();
            b.push_samples(&[
                RefSample {
                    series_ref: 1,
                    t: i,
                    v: 1.0,
                },
                RefSample {
                    series_ref: 2,
                    t: i,
                    v: 2.0,
                },
            ]);
            w.log(b).unwrap();
        }
        let before = list_segments(dir.path()).unwrap();
        let st = w.checkpoint(|r| r == 1, 400).unwrap();
        assert_eq!(st.series_kept, 1);
        assert_eq!(st.samples_kept, 100);
        assert_eq!(st.samples_dropped, 900);
        assert_eq!(st.segments_deleted as usize, before.len());
        // Writes after the checkpoint land in the new segment.
        w.log(batch(1, 1000, 3.0)).unwrap();
        // A second checkpoint folds the first one in.
        let st2 = w.checkpoint(|_| true, 450).unwrap();
        assert_eq!(st2.samples_kept, 51);
        assert_eq!(st2.series_kept, 1);
        w.log(batch(1, 1001, 4.0)).unwrap();
    }
    let cps: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("checkpoint."))
        .collect();
    assert_eq!(cps.len(), 1);
    let (_w, rep, recs) = open_collect(dir.path(), o).unwrap();
    assert!(rep.checkpoint.is_some());
    assert_eq!(recs[0], Record::Series(vec![(1, l1)]));
    let ts: Vec<i64> = samples_of(&recs).iter().map(|s| s.t).collect();
    let mut want: Vec<i64> = (450..500).collect();
    want.extend([1000, 1001]);
    assert_eq!(ts, want);
}

#[test]
fn unfinished_checkpoint_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    wal_with(dir.path(), 3);
    let tmp = dir.path().join("checkpoint.00000000.tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::write(tmp.join("00000000"), b"garbage").unwrap();
    let (_w, rep, recs) = open_collect(dir.path(), opts()).unwrap();
    assert_eq!(rep.checkpoint, None);
    assert_eq!(samples_of(&recs).len(), 3);
    assert!(!tmp.exists());
}

#[test]
fn writes_after_close_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _, _) = open_collect(dir.path(), opts()).unwrap();
    w.close().unwrap();
    let err = w.log(batch(1, 1, 1.0)).unwrap_err();
    assert!(matches!(err, Error::WalUnavailable { .. }), "{err}");
}

#[test]
fn fsync_latencies_fall_in_the_bucket_of_their_upper_bound() {
    use std::time::Duration;
    let table = [
        (Duration::ZERO, 0),
        (Duration::from_micros(100), 0),
        (Duration::from_micros(101), 1),
        (Duration::from_micros(900), 3),
        (Duration::from_millis(1), 3),
        (Duration::from_millis(30), 8),
        (Duration::from_millis(2500), 13),
        (Duration::from_secs(3), 14),
        (Duration::from_secs(1 << 40), 14),
    ];
    for (elapsed, bucket) in table {
        assert_eq!(FsyncLatency::bucket(elapsed), bucket, "{elapsed:?}");
    }
    let c = Counters::default();
    c.record_fsync(Duration::from_micros(700));
    c.record_fsync(Duration::from_secs(5));
    assert_eq!(c.fsync_buckets[3].load(Ordering::Relaxed), 1);
    assert_eq!(c.fsync_buckets[14].load(Ordering::Relaxed), 1);
    assert_eq!(c.fsync_nanos.load(Ordering::Relaxed), 5_000_700_000);
}

/// `disk_bytes` follows the directory: counted on open, grown by writes
/// across segment rotations, recounted after a checkpoint shrinks it.
#[test]
fn disk_bytes_follow_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_max_bytes: 4096,
        repair: false,
    };
    let segment_header = segment::SEGMENT_HEADER_LEN as u64;
    let close_to = |w: &Wal, what: &str| {
        let (got, actual) = (w.disk_bytes(), dir_bytes(dir.path()));
        let segments = list_segments(dir.path()).unwrap().len() as u64;
        // Segment headers written by rotations are not counted as writes.
        assert!(
            got <= actual && actual - got <= segments * segment_header,
            "{what}: counted {got}, on disk {actual}"
        );
    };
    {
        let (w, _, _) = open_collect(dir.path(), o.clone()).unwrap();
        close_to(&w, "empty");
        for i in 0..1000 {
            w.log(batch(1, i, i as f64)).unwrap();
        }
        close_to(&w, "after writes");
        assert!(w.disk_bytes() > 10_000, "{}", w.disk_bytes());
    }
    let (w, _, _) = open_collect(dir.path(), o).unwrap();
    let grown = w.disk_bytes();
    assert_eq!(grown, dir_bytes(dir.path()), "counted on open");
    w.checkpoint(|_| true, 990).unwrap();
    close_to(&w, "after a checkpoint");
    assert!(w.disk_bytes() < grown / 4, "{} of {grown}", w.disk_bytes());
}
