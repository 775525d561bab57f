//! Tests of the database façade: append outcomes, the querier, replay after
//! reopen, checkpoints, stats, the directory lock and WAL corruption.

use super::*;
use crate::matcher::MatchOp;
use crate::sample::STALE_NAN_BITS;

fn ls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn ws(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> WriteSeries {
    WriteSeries {
        labels: ls(pairs),
        samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

/// Every series of the database with its samples as (t, value bits).
fn dump(db: &Db) -> Vec<(String, Vec<(i64, u64)>)> {
    let q = db.querier();
    let all = [m(MatchOp::RegexMatch, "__name__", ".+")];
    q.select(&all, i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| {
            let v = s.samples().iter().map(|x| (x.t, x.v.to_bits())).collect();
            (s.labels.to_string(), v)
        })
        .collect()
}

fn fixture(db: &Db) {
    let out = db
        .append(&[
            ws(
                &[("__name__", "up"), ("job", "b"), ("instance", "1")],
                &[(1000, 1.0), (2000, 0.0)],
            ),
            ws(
                &[("__name__", "up"), ("job", "a"), ("instance", "1")],
                &[(1000, 1.0), (3000, 1.0)],
            ),
            ws(
                &[("__name__", "cost"), ("model", "m1")],
                &[(1500, 0.25), (2500, f64::from_bits(STALE_NAN_BITS))],
            ),
        ])
        .unwrap();
    assert_eq!(out.samples_appended, 6);
    assert_eq!(out.series_created, 3);
    assert!(out.rejected.is_empty());
}

#[test]
fn select_filters_by_matchers_and_time_and_sorts_by_labels() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    fixture(&db);
    let q = db.querier();

    let got = q
        .select(&[m(MatchOp::Equal, "__name__", "up")], 0, 10_000)
        .unwrap();
    let names: Vec<String> = got.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(
        names,
        vec![
            r#"up{instance="1", job="a"}"#,
            r#"up{instance="1", job="b"}"#
        ]
    );
    assert_eq!(
        got[0].samples(),
        vec![Sample::new(1000, 1.0), Sample::new(3000, 1.0)]
    );

    // A time range that misses job="b" entirely drops the series.
    let got = q
        .select(&[m(MatchOp::Equal, "__name__", "up")], 2500, 3500)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels.get("job"), Some("a"));
    assert_eq!(got[0].samples(), vec![Sample::new(3000, 1.0)]);
    // read_samples never returns samples outside the selected range.
    let mut out = Vec::new();
    got[0].read_samples(0, 10_000, &mut out);
    assert_eq!(out, vec![Sample::new(3000, 1.0)]);

    // Stale markers come back bit-exactly.
    let got = q
        .select(&[m(MatchOp::Equal, "model", "m1")], 0, 10_000)
        .unwrap();
    let s = got[0].samples();
    assert_eq!(s[1].v.to_bits(), STALE_NAN_BITS);

    // An empty matcher list selects nothing (Prometheus semantics).
    assert!(q.select(&[], 0, 10_000).unwrap().is_empty());
    // Outside the head's time range: nothing.
    assert!(
        q.select(&[m(MatchOp::Equal, "__name__", "up")], 5000, 6000)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn label_names_values_and_series() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    fixture(&db);
    let q = db.querier();
    assert_eq!(
        q.label_names(&[], 0, 10_000).unwrap(),
        vec!["__name__", "instance", "job", "model"]
    );
    assert_eq!(
        q.label_names(&[m(MatchOp::Equal, "__name__", "cost")], 0, 10_000)
            .unwrap(),
        vec!["__name__", "model"]
    );
    assert_eq!(
        q.label_values("job", &[], 0, 10_000).unwrap(),
        vec!["a", "b"]
    );
    // job="b" has no sample after 2000.
    assert_eq!(q.label_values("job", &[], 2500, 10_000).unwrap(), vec!["a"]);
    assert_eq!(
        q.label_values("__name__", &[m(MatchOp::NotEqual, "job", "a")], 0, 10_000)
            .unwrap(),
        vec!["cost", "up"]
    );
    assert!(
        q.label_values("job", &[], 20_000, 30_000)
            .unwrap()
            .is_empty()
    );
    let series = q
        .series(&[m(MatchOp::RegexMatch, "job", "a|b")], 0, 10_000)
        .unwrap();
    let names: Vec<String> = series.iter().map(|l| l.to_string()).collect();
    assert_eq!(
        names,
        vec![
            r#"up{instance="1", job="a"}"#,
            r#"up{instance="1", job="b"}"#
        ]
    );
    assert_eq!(q.series(&[], 0, 10_000).unwrap().len(), 3);
}

#[test]
fn rejections_are_reported_per_series() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        DbOptions {
            ooo_window_ms: 1000,
            ..DbOptions::default()
        },
    )
    .unwrap();
    db.append(&[ws(&[("__name__", "a")], &[(10_000, 1.0)])])
        .unwrap();
    let out = db
        .append(&[
            ws(
                &[("__name__", "a")],
                &[(10_000, 2.0), (9_500, 1.0), (8_000, 1.0), (10_000, 1.0)],
            ),
            WriteSeries {
                labels: Labels::empty(),
                samples: vec![Sample::new(1, 1.0)],
            },
            ws(&[("", "x")], &[(1, 1.0)]),
            ws(&[("__name__", "b")], &[]),
        ])
        .unwrap();
    assert_eq!(out.samples_appended, 1);
    assert_eq!(out.samples_duplicate, 1);
    assert_eq!(out.series_created, 0);
    let reasons: Vec<(usize, String, u64)> = out
        .rejected
        .iter()
        .map(|r| (r.index, r.reason.to_string(), r.samples))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (0, "too old sample".to_string(), 1),
            (0, "duplicate sample for timestamp".to_string(), 1),
            (1, "invalid labels: empty label set".to_string(), 1),
            (
                2,
                r#"invalid labels: empty label name in {="x"}"#.to_string(),
                1
            ),
        ]
    );
    assert_eq!(out.samples_rejected(), 4);
    assert_eq!(db.stats().series, 1);
}

#[test]
fn resent_write_creates_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    let batch = [ws(&[("__name__", "a")], &[(1, 1.0), (2, f64::NAN)])];
    db.append(&batch).unwrap();
    let out = db.append(&batch).unwrap();
    assert_eq!((out.samples_appended, out.samples_duplicate), (0, 2));
    assert!(out.rejected.is_empty());
    drop(db);
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    assert_eq!(dump(&db)[0].1.len(), 2);
}

#[test]
fn reopen_replays_everything_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        fixture(&db);
        // Out-of-order, NaN payloads, -0.0, many chunks.
        let mut samples: Vec<(i64, f64)> = (0..300)
            .map(|i| (10_000 + i * 15, i as f64 * 0.1))
            .collect();
        samples.extend([
            (9_000, -0.0),
            (9_001, f64::from_bits(0x7ff8_0000_0000_0001)),
        ]);
        db.append(&[ws(&[("__name__", "g")], &samples)]).unwrap();
        db.append(&[ws(&[("__name__", "g")], &[(10_007, 5.0)])])
            .unwrap();
        before = dump(&db);
        let st = db.stats();
        assert_eq!(st.series, 4);
        assert_eq!(st.samples, 6 + 303);
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    assert_eq!(dump(&db), before);
    let st = db.stats();
    assert_eq!(st.series, 4);
    assert_eq!(st.samples, 6 + 303);
    assert_eq!(st.min_time, Some(1000));
    // New series after replay get fresh references and survive another reopen.
    db.append(&[ws(&[("__name__", "new")], &[(1, 1.0)])])
        .unwrap();
    drop(db);
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    let mut after = dump(&db);
    assert_eq!(after.len(), 5);
    after.retain(|(name, _)| name != "new");
    assert_eq!(after, before);
}

#[test]
fn checkpoint_then_reopen_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        wal_segment_max_bytes: 4096,
        ..DbOptions::default()
    };
    let before;
    {
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        for i in 0..200 {
            db.append(&[ws(
                &[("__name__", "a"), ("i", &(i % 7).to_string())],
                &[(i, i as f64)],
            )])
            .unwrap();
        }
        let st = db.checkpoint_wal(i64::MIN).unwrap();
        assert_eq!(st.series_kept, 7);
        assert_eq!(st.samples_kept, 200);
        assert!(st.segments_deleted > 1);
        db.append(&[ws(&[("__name__", "a"), ("i", "0")], &[(500, 1.0)])])
            .unwrap();
        before = dump(&db);
    }
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(dump(&db), before);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    let err = Db::open(dir.path(), DbOptions::default())
        .err()
        .expect("locked");
    assert!(matches!(err, Error::DirectoryLocked { .. }), "{err}");
    db.close().unwrap();
    Db::open(dir.path(), DbOptions::default()).unwrap();
}

#[test]
fn corrupt_wal_middle_refuses_to_open_and_repair_opens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        for i in 0..10 {
            db.append(&[ws(&[("__name__", "a")], &[(i, 1.0)])]).unwrap();
        }
    }
    let seg = dir.path().join("wal").join("00000000");
    let mut bytes = std::fs::read(&seg).unwrap();
    // The header is 8 bytes, the series record follows; damage a byte in
    // the middle of the samples records.
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let err = Db::open(dir.path(), DbOptions::default())
        .err()
        .expect("refuses");
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    assert!(err.to_string().contains("repair"), "{err}");
    let db = Db::open(
        dir.path(),
        DbOptions {
            wal_repair: true,
            ..DbOptions::default()
        },
    )
    .unwrap();
    let got = dump(&db);
    let n = got[0].1.len();
    assert!(n > 0 && n < 10, "{n}");
    // What survives is a prefix of what was written.
    let ts: Vec<i64> = got[0].1.iter().map(|x| x.0).collect();
    assert_eq!(ts, (0..n as i64).collect::<Vec<_>>());
}

#[test]
fn stats_report_cardinality_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    fixture(&db);
    let st = db.stats();
    assert_eq!(st.series, 3);
    assert_eq!(st.samples, 6);
    assert_eq!(st.chunks, 3);
    assert!(st.memory_bytes > 3 * std::mem::size_of::<MemSeries>() as u64);
    assert_eq!((st.min_time, st.max_time), (Some(1000), Some(3000)));
    assert!(st.wal.fsyncs >= 1);
    let card = format!("{:?}", st.cardinality);
    assert!(card.contains("__name__"), "{card}");
}

#[test]
fn concurrent_appends_through_the_db_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let db = Arc::new(Db::open(dir.path(), DbOptions::default()).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|th| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0..100i64 {
                        // All threads share series, created by whichever
                        // thread comes first.
                        let batch: Vec<WriteSeries> = (0..5)
                            .map(|s| {
                                ws(
                                    &[("__name__", "c"), ("s", &s.to_string())],
                                    &[(i * 4 + th, 1.0)],
                                )
                            })
                            .collect();
                        let out = db.append(&batch).unwrap();
                        assert!(out.rejected.is_empty());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        before = dump(&db);
        assert_eq!(before.len(), 5);
        assert!(before.iter().all(|(_, s)| s.len() == 400));
        let st = db.stats();
        assert!(st.wal.fsyncs <= 400, "{:?}", st.wal);
    }
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    assert_eq!(dump(&db), before);
}

#[test]
fn shutdown_through_a_shared_reference_stops_appends_and_keeps_reads() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), DbOptions::default()).unwrap());
    fixture(&db);
    db.shutdown().unwrap();
    let err = db
        .append(&[ws(&[("__name__", "late")], &[(1, 1.0)])])
        .unwrap_err();
    assert!(matches!(err, Error::WalUnavailable { .. }), "{err}");
    // The refused append did not touch the head.
    assert_eq!(dump(&db).len(), 3);
    assert_eq!(db.stats().series, 3);
    drop(db);
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    assert_eq!(dump(&db).len(), 3);
}

mod replay_model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
        /// Random appends (in and out of order, duplicates, conflicts, stale
        /// markers, several series, small chunks) give the same data before
        /// and after a reopen, and that data matches a sorted reference of
        /// the accepted samples.
        #[test]
        fn reopen_equals_reference(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u8..4, 0i64..2_000, 0u8..5), 1..30),
                1..12,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let opts = DbOptions { ooo_window_ms: 500, chunk_max_samples: 7, chunk_range_ms: 300, ..DbOptions::default() };
            let mut model: BTreeMap<(u8, i64), u64> = BTreeMap::new();
            let before;
            {
                let db = Db::open(dir.path(), opts.clone()).unwrap();
                for b in &batches {
                    let batch: Vec<WriteSeries> = b.iter().map(|&(s, t, v)| {
                        let v = if v == 4 { f64::from_bits(STALE_NAN_BITS) } else { f64::from(v) };
                        ws(&[("__name__", "p"), ("s", &s.to_string())], &[(t, v)])
                    }).collect();
                    let out = db.append(&batch).unwrap();
                    // Apply the outcome to the model: a sample is stored iff
                    // it was not rejected and not a duplicate.
                    let rejected: std::collections::HashSet<usize> = out.rejected.iter().map(|r| r.index).collect();
                    for (i, w) in batch.iter().enumerate() {
                        let s: u8 = w.labels.get("s").unwrap().parse().unwrap();
                        let x = w.samples[0];
                        match model.get(&(s, x.t)) {
                            // An exact duplicate is a no-op (or too old);
                            // another value at a stored timestamp must be
                            // rejected.
                            Some(&bits) => prop_assert!(
                                bits == x.v.to_bits() || rejected.contains(&i),
                                "conflicting value accepted"
                            ),
                            None if !rejected.contains(&i) => {
                                model.insert((s, x.t), x.v.to_bits());
                            }
                            None => {}
                        }
                    }
                }
                before = dump(&db);
            }
            let want: Vec<(String, Vec<(i64, u64)>)> = {
                let mut per: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
                for (&(s, t), &bits) in &model {
                    per.entry(ls(&[("__name__", "p"), ("s", &s.to_string())]).to_string()).or_default().push((t, bits));
                }
                per.into_iter().collect()
            };
            prop_assert_eq!(&before, &want);
            let db = Db::open(dir.path(), opts).unwrap();
            prop_assert_eq!(dump(&db), before);
        }
    }
}
