//! `Db::run_maintenance` end to end: a head cut into 2 h blocks, then
//! compacted and expired, read back through the blocks.

use super::*;
use crate::block::{BlockOptions, BlocksQuerier, list_blocks};
use crate::db::{DbOptions, WriteSeries};
use crate::labels::Labels;
use crate::matcher::{MatchOp, Matcher};
use crate::querier::Querier;
use crate::sample::Sample;

const H: i64 = 3_600_000;
const STEP: i64 = 60_000;

fn read_all(store: &BlockStore) -> Vec<(Labels, Vec<Sample>)> {
    let q = BlocksQuerier::open(store.clone()).unwrap();
    let all = Matcher::new(MatchOp::RegexMatch, "__name__", ".*").unwrap();
    let mut out: Vec<_> = q
        .select(&[all], i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| {
            let v = s.samples();
            (s.labels, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn maintenance_compacts_then_expires() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    let store = BlockStore::from_url("memory://").unwrap();
    // 28 h of two series, one sample a minute, appended an hour at a time.
    let series: Vec<Labels> = ["a", "b"]
        .iter()
        .map(|j| Labels::from_pairs([("__name__", "up"), ("job", *j)]))
        .collect();
    for hour in 0..28 {
        let batch: Vec<WriteSeries> = series
            .iter()
            .map(|l| WriteSeries {
                labels: l.clone(),
                samples: (0..H / STEP)
                    .map(|i| {
                        let t = hour * H + i * STEP;
                        Sample::new(t, (t / STEP) as f64)
                    })
                    .collect(),
            })
            .collect();
        db.append(&batch).unwrap();
    }
    let cut = db
        .cut_blocks(&store, 2 * H, BlockOptions::default())
        .unwrap();
    assert!(cut.len() >= 12, "{} blocks cut", cut.len());
    let before = read_all(&store);

    // Blocks are cut up to 26 h (the out-of-order window keeps the last
    // range open). Compaction: [0, 12 h) and [12 h, 24 h) become one block
    // each, the newest 2 h block waits, no sample is lost or doubled.
    let report = db
        .run_maintenance(&store, &MaintenanceOptions::default())
        .unwrap();
    assert_eq!(report.compaction.created.len(), 2, "{report:?}");
    assert!(report.retention_deleted.is_empty());
    let metas = list_blocks(&store).unwrap();
    let levels: Vec<u32> = metas.iter().map(|m| m.compaction.level).collect();
    assert_eq!(levels.iter().filter(|l| **l == 2).count(), 2, "{levels:?}");
    assert_eq!(read_all(&store), before);

    // The head still holds the compacted ranges (it is not truncated):
    // cutting again must not write them a second time as level-1 blocks.
    let again = db
        .cut_blocks(&store, 2 * H, BlockOptions::default())
        .unwrap();
    assert!(again.is_empty(), "re-cut {} blocks", again.len());
    assert_eq!(list_blocks(&store).unwrap().len(), metas.len());

    // Retention of 10 h from the newest block's max time (26 h - 1 min):
    // the [0, 12 h) block ends 14 h before it and goes; the rest stays.
    let opts = MaintenanceOptions {
        retention: RetentionOptions {
            retention_ms: Some(10 * H),
            max_bytes: None,
        },
        ..Default::default()
    };
    let report = db.run_maintenance(&store, &opts).unwrap();
    assert!(report.compaction.created.is_empty(), "{report:?}");
    assert_eq!(report.retention_deleted.len(), 1, "{report:?}");
    let after = read_all(&store);
    for ((l0, s0), (l1, s1)) in before.iter().zip(&after) {
        assert_eq!(l0, l1);
        let kept: Vec<Sample> = s0.iter().copied().filter(|s| s.t >= 12 * H).collect();
        assert_eq!(s1, &kept);
    }
}

/// Every sample the database returns, keyed by (labels, t), checking that
/// no timestamp repeats within a series.
fn dump(db: &Db) -> std::collections::BTreeMap<(String, i64), u64> {
    let all = Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap();
    let mut out = std::collections::BTreeMap::new();
    for s in db.querier().select(&[all], i64::MIN, i64::MAX).unwrap() {
        for x in s.samples() {
            let prev = out.insert((s.labels.to_string(), x.t), x.v.to_bits());
            assert!(prev.is_none(), "{} has two samples at {}", s.labels, x.t);
        }
    }
    out
}

fn wal_segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().bytes().all(|b| b.is_ascii_digit())
        })
        .count()
}

fn hour_batch(series: &[Labels], from: i64, to: i64) -> Vec<WriteSeries> {
    series
        .iter()
        .map(|l| WriteSeries {
            labels: l.clone(),
            samples: (from / STEP..to / STEP)
                .map(|i| Sample::new(i * STEP, (i * 7) as f64 + 0.25))
                .collect(),
        })
        .collect()
}

#[test]
fn maintain_cuts_blocks_truncates_the_head_and_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        wal_segment_max_bytes: 16 * 1024,
        ..Default::default()
    };
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let live: Vec<Labels> = (0..20)
        .map(|i| Labels::from_pairs([("__name__", "m"), ("id", &i.to_string())]))
        .collect();
    let gone = vec![Labels::from_pairs([("__name__", "m"), ("id", "gone")])];
    // A series that stopped in the first hour, then 7 h of the others.
    db.append(&hour_batch(&gone, 0, H)).unwrap();
    for h in 0..7 {
        db.append(&hour_batch(&live, h * H, (h + 1) * H)).unwrap();
    }
    let want = dump(&db);
    assert_eq!(want.len(), 60 + 20 * 7 * 60);
    let segments_before = wal_segments(dir.path());
    assert!(segments_before > 3, "{segments_before} segments");

    // [0, 2 h), [2 h, 4 h), [4 h, 6 h) are frozen (the newest sample is
    // at 7 h - 1 min, the out-of-order window 10 min).
    let report = db.maintain().unwrap();
    assert_eq!(report.blocks_cut.len(), 3, "{report:?}");
    assert_eq!(report.head_truncated.series_removed, 1, "{report:?}");
    assert_eq!(
        report.head_truncated.samples_removed,
        60 + 20 * 6 * 60,
        "{report:?}"
    );
    assert!(report.wal_segments_deleted > 0, "{report:?}");
    assert!(wal_segments(dir.path()) < segments_before);
    assert_eq!(db.blocks().len(), 3);
    let st = db.stats();
    assert_eq!((st.series, st.samples), (20, 20 * 60));

    // Every sample once, from the blocks and the head; the removed series
    // is still found through the blocks.
    assert_eq!(dump(&db), want);
    let q = db.querier();
    let ids = q.label_values("id", &[], i64::MIN, i64::MAX).unwrap();
    assert!(ids.contains(&"gone".to_string()), "{ids:?}");
    assert_eq!(ids.len(), 21);
    // A query across the boundary joins block and head chunks.
    let one = Matcher::new(MatchOp::Equal, "id", "3").unwrap();
    let s = q.select(&[one], 5 * H, 6 * H + 30 * STEP).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].samples().len(), 60 + 31);

    // The cut ranges are closed: a late sample for them is too old.
    let late = db
        .append(&hour_batch(&live[..1], 5 * H, 5 * H + STEP))
        .unwrap();
    assert_eq!(late.samples_rejected(), 1, "{late:?}");
    // A second pass has nothing to cut.
    let again = db.maintain().unwrap();
    assert!(again.blocks_cut.is_empty(), "{again:?}");

    // After a restart the WAL replays only what the blocks do not hold.
    db.close().unwrap();
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(db.stats().samples, 20 * 60);
    assert_eq!(dump(&db), want);
    let late = db
        .append(&hour_batch(&live[..1], 5 * H, 5 * H + STEP))
        .unwrap();
    assert_eq!(late.samples_rejected(), 1, "{late:?}");
}

#[test]
fn appends_racing_maintenance_are_kept_exactly_once() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        wal_segment_max_bytes: 64 * 1024,
        ooo_window_ms: 0,
        maintenance: MaintenanceOptions {
            compaction: crate::block::compact::CompactionOptions {
                ranges_ms: vec![H, 4 * H],
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let db = Arc::new(Db::open(dir.path(), opts.clone()).unwrap());
    const STEP15: i64 = 15_000;
    const END: i64 = 9 * H;
    // Two writers, each with its own series, appending ten minutes at a
    // time; they drift apart, so one may find a range closed by the
    // other's progress: what it was told was stored must all be there.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let series: Vec<Labels> = (0..25)
                    .map(|i| {
                        Labels::from_pairs([
                            ("__name__", "race"),
                            ("w", &w.to_string()),
                            ("id", &i.to_string()),
                        ])
                    })
                    .collect();
                let mut stored = std::collections::BTreeMap::new();
                let mut t0 = 0;
                while t0 < END {
                    let batch: Vec<WriteSeries> = series
                        .iter()
                        .map(|l| WriteSeries {
                            labels: l.clone(),
                            samples: (0..40)
                                .map(|k| {
                                    let t = t0 + k * STEP15;
                                    Sample::new(t, (t / STEP15) as f64)
                                })
                                .collect(),
                        })
                        .collect();
                    let out = db.append(&batch).unwrap();
                    // In order per series: the rejected ones are a prefix.
                    let mut rejected = vec![0u64; batch.len()];
                    for r in &out.rejected {
                        assert_eq!(r.reason, crate::db::RejectReason::TooOld, "{out:?}");
                        rejected[r.index] += r.samples;
                    }
                    for (ws, n) in batch.iter().zip(rejected) {
                        for s in &ws.samples[n as usize..] {
                            stored.insert((ws.labels.to_string(), s.t), s.v.to_bits());
                        }
                    }
                    t0 += 40 * STEP15;
                }
                stored
            })
        })
        .collect();
    let mut passes = 0;
    while writers.iter().any(|w| !w.is_finished()) && passes < 1000 {
        db.maintain().unwrap();
        passes += 1;
    }
    let mut want = std::collections::BTreeMap::new();
    for w in writers {
        want.extend(w.join().unwrap());
    }
    db.maintain().unwrap();
    assert!(!db.blocks().is_empty());
    assert_eq!(dump(&db), want, "after {passes} passes");
    let db = Arc::into_inner(db).unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(dump(&db), want, "after a restart");
}

#[test]
fn a_handle_outlives_head_truncation_of_its_series() {
    use crate::db::{SeriesHandle, WriteTarget};
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    let live = vec![Labels::from_pairs([("__name__", "m"), ("id", "live")])];
    let gone = Labels::from_pairs([("__name__", "m"), ("id", "gone")]);
    let first = [Sample::new(0, 1.0)];
    let mut handles: Vec<(usize, SeriesHandle)> = Vec::new();
    db.append_series([(WriteTarget::Labels(&gone), &first[..])], |i, h| {
        handles.push((i, h))
    })
    .unwrap();
    assert_eq!(handles.len(), 1, "a look-up by labels hands out a handle");
    let old = handles.pop().unwrap().1;
    assert_eq!(db.handle_labels(&old), gone);

    // By handle: no look-up, nothing handed out, the sample stored.
    let second = [Sample::new(STEP, 2.0)];
    let out = db
        .append_series([(WriteTarget::Handle(&old), &second[..])], |i, h| {
            handles.push((i, h))
        })
        .unwrap();
    assert_eq!((out.samples_appended, out.series_created), (1, 0));
    assert!(handles.is_empty());

    for h in 0..7 {
        db.append(&hour_batch(&live, h * H, (h + 1) * H)).unwrap();
    }
    let report = db.maintain().unwrap();
    assert_eq!(report.head_truncated.series_removed, 1, "{report:?}");
    assert!(old.is_removed());

    // The stale handle recreates the series from its labels and hands the
    // replacement out; the sample is stored once, under the same labels.
    let third = [Sample::new(7 * H, 3.0)];
    let out = db
        .append_series([(WriteTarget::Handle(&old), &third[..])], |i, h| {
            handles.push((i, h))
        })
        .unwrap();
    assert_eq!((out.samples_appended, out.series_created), (1, 1));
    let (index, new) = handles.pop().expect("the replacement handle");
    assert_eq!(index, 0);
    assert!(new != old && !new.is_removed());
    assert_eq!(db.handle_labels(&new), gone);
    let q = db.querier();
    let m = Matcher::new(MatchOp::Equal, "id", "gone").unwrap();
    let s = q.select(&[m], i64::MIN, i64::MAX).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].samples(),
        vec![
            Sample::new(0, 1.0),
            Sample::new(STEP, 2.0),
            Sample::new(7 * H, 3.0)
        ]
    );
}
