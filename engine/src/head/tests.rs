//! Tests of the head: the append rules as a table, out-of-order merging
//! against a sorted reference (proptest), chunk cutting, the registry's
//! collision handling and concurrent appends.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::series::{ChunkPolicy, SeriesData};
use super::*;
use crate::querier::Series;
use crate::sample::STALE_NAN_BITS;

const POLICY: ChunkPolicy = ChunkPolicy {
    max_samples: 120,
    range_ms: 7_200_000,
};

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Every sample of a series as a query would read it.
fn read_all(d: &SeriesData) -> Vec<Sample> {
    match d.snapshot(i64::MIN, i64::MAX) {
        None => Vec::new(),
        Some(snap) => Series::from_chunks(
            Labels::empty(),
            snap.chunks,
            snap.tail,
            !snap.needs_sort,
            i64::MIN,
            i64::MAX,
        )
        .samples(),
    }
}

fn bits(v: &[Sample]) -> Vec<(i64, u64)> {
    v.iter().map(|s| (s.t, s.v.to_bits())).collect()
}

/// Applies `steps` to a fresh series with a window of `window` ms measured
/// against the newest sample so far, and checks each outcome.
fn check(window: i64, steps: &[(i64, f64, SampleOutcome)]) -> SeriesData {
    let mut d = SeriesData::default();
    let mut newest = i64::MIN;
    for (i, &(t, v, want)) in steps.iter().enumerate() {
        let got = d.append(
            Sample::new(t, v),
            newest.saturating_sub(window),
            i64::MIN,
            POLICY,
        );
        assert_eq!(got, want, "step {i}: sample ({t}, {v})");
        if got == SampleOutcome::Appended {
            newest = newest.max(t);
        }
    }
    d
}

#[test]
fn append_rules() {
    use SampleOutcome::*;
    let d = check(
        100,
        &[
            (1000, 1.0, Appended),
            (1010, 2.0, Appended),
            (1010, 2.0, Duplicate),          // resent: no-op
            (1010, 3.0, DuplicateTimestamp), // same t, other value
            (950, 0.5, Appended),            // out of order within the window
            (950, 0.5, Duplicate),           // resent out-of-order sample
            (950, 0.7, DuplicateTimestamp),
            (1000, 1.0, Duplicate), // duplicate of an in-order sample, out of order
            (1000, 9.0, DuplicateTimestamp),
            (909, 1.0, TooOld), // 1010 - 100 = 910 is the bound
            (910, 1.0, Appended),
            (1020, stale(), Appended),            // stale marker
            (1020, f64::NAN, DuplicateTimestamp), // an ordinary NaN is not the stale marker
            (1020, stale(), Duplicate),
            (1030, -0.0, Appended),
            (1030, 0.0, DuplicateTimestamp), // -0.0 and 0.0 differ in bits
        ],
    );
    let got = read_all(&d);
    assert_eq!(
        bits(&got),
        bits(&[
            Sample::new(910, 1.0),
            Sample::new(950, 0.5),
            Sample::new(1000, 1.0),
            Sample::new(1010, 2.0),
            Sample::new(1020, stale()),
            Sample::new(1030, -0.0),
        ])
    );
    assert_eq!(d.min_time(), Some(910));
    assert_eq!(d.max_time(), Some(1030));
}

#[test]
fn min_valid_time_rejects_even_in_order_samples() {
    let mut d = SeriesData::default();
    assert_eq!(
        d.append(Sample::new(5, 1.0), i64::MIN, 10, POLICY),
        SampleOutcome::TooOld
    );
    assert_eq!(
        d.append(Sample::new(10, 1.0), i64::MIN, 10, POLICY),
        SampleOutcome::Appended
    );
}

#[test]
fn chunks_are_cut_by_count_and_by_aligned_time() {
    let mut d = SeriesData::default();
    for i in 0..250 {
        d.append(Sample::new(i, i as f64), i64::MIN, i64::MIN, POLICY);
    }
    // 120 + 120 sealed, 10 open.
    assert_eq!(d.num_chunks(), 3);
    assert_eq!(d.num_samples(), 250);

    let policy = ChunkPolicy {
        max_samples: 1000,
        range_ms: 100,
    };
    let mut d = SeriesData::default();
    for t in [-30, -1, 0, 50, 99, 100, 250] {
        d.append(Sample::new(t, 1.0), i64::MIN, i64::MIN, policy);
    }
    // Ranges [-100,0) [0,100) [100,200) [200,300): four chunks.
    assert_eq!(d.num_chunks(), 4);
    let snap = d.snapshot(0, 99).unwrap();
    assert_eq!(snap.chunks.len(), 1);
    assert!(
        snap.chunks
            .iter()
            .all(|c| c.min_time() >= 0 && c.max_time() < 100)
    );
    assert_eq!(read_all(&d).len(), 7);
}

#[test]
fn many_out_of_order_samples_are_sealed_into_chunks_and_merged() {
    let mut d = SeriesData::default();
    d.append(Sample::new(10_000, 0.0), i64::MIN, i64::MIN, POLICY);
    // 100 samples in descending order, all out of order.
    for i in (0..100).rev() {
        let out = d.append(Sample::new(i * 10, i as f64), i64::MIN, i64::MIN, POLICY);
        assert_eq!(out, SampleOutcome::Appended);
    }
    assert!(d.num_chunks() >= 4, "{}", d.num_chunks());
    let got = read_all(&d);
    let mut want: Vec<Sample> = (0..100).map(|i| Sample::new(i * 10, i as f64)).collect();
    want.push(Sample::new(10_000, 0.0));
    assert_eq!(bits(&got), bits(&want));
    // Duplicates are found inside sealed out-of-order chunks too.
    assert_eq!(
        d.append(Sample::new(500, 50.0), i64::MIN, i64::MIN, POLICY),
        SampleOutcome::Duplicate
    );
    assert_eq!(
        d.append(Sample::new(500, 51.0), i64::MIN, i64::MIN, POLICY),
        SampleOutcome::DuplicateTimestamp
    );
    // A sub-range read is sorted and bounded.
    let snap = d.snapshot(95, 205).unwrap();
    let s = Series::from_chunks(
        Labels::empty(),
        snap.chunks,
        snap.tail,
        !snap.needs_sort,
        95,
        205,
    );
    let ts: Vec<i64> = s.samples().iter().map(|x| x.t).collect();
    assert_eq!(ts, (10..=20).map(|i| i * 10).collect::<Vec<_>>());
}

proptest! {
    /// Random appends (in and out of order, duplicates, conflicting values)
    /// against a sorted reference model of the rules.
    #[test]
    fn out_of_order_merging_matches_reference(
        ops in proptest::collection::vec((0i64..400, 0u8..4), 1..400),
        window in prop_oneof![Just(0i64), Just(50), Just(1000)],
        max_samples in 2usize..40,
    ) {
        let policy = ChunkPolicy { max_samples, range_ms: 150 };
        let mut d = SeriesData::default();
        let mut model: BTreeMap<i64, u64> = BTreeMap::new();
        let mut newest: Option<i64> = None;
        for &(t, v) in &ops {
            let v = if v == 3 { stale() } else { f64::from(v) };
            let want = match newest {
                Some(max) if t < max && t < max - window => SampleOutcome::TooOld,
                _ => match model.get(&t) {
                    Some(&b) if b == v.to_bits() => SampleOutcome::Duplicate,
                    Some(_) => SampleOutcome::DuplicateTimestamp,
                    None => SampleOutcome::Appended,
                },
            };
            let ooo_min = newest.map_or(i64::MIN, |m| m - window);
            let got = d.append(Sample::new(t, v), ooo_min, i64::MIN, policy);
            prop_assert_eq!(got, want, "sample ({}, {})", t, v);
            if got == SampleOutcome::Appended {
                model.insert(t, v.to_bits());
                newest = Some(newest.map_or(t, |m| m.max(t)));
            }
        }
        let want: Vec<(i64, u64)> = model.iter().map(|(&t, &b)| (t, b)).collect();
        prop_assert_eq!(bits(&read_all(&d)), want.clone());
        prop_assert_eq!(d.num_samples(), want.len());
        // Every sub-range agrees with the model too.
        for (lo, hi) in [(0, 99), (100, 250), (37, 38), (390, 500)] {
            let got = match d.snapshot(lo, hi) {
                None => Vec::new(),
                Some(snap) => Series::from_chunks(Labels::empty(), snap.chunks, snap.tail, !snap.needs_sort, lo, hi).samples(),
            };
            let w: Vec<(i64, u64)> = want.iter().copied().filter(|&(t, _)| t >= lo && t <= hi).collect();
            prop_assert_eq!(bits(&got), w);
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

#[test]
fn registry_handles_hash_collisions() {
    let head = Head::with_hash(HeadOptions::default(), |_| 42);
    let a = labels(&[("__name__", "a")]);
    let b = labels(&[("__name__", "b")]);
    let c = labels(&[("__name__", "c")]);
    let (sa, created_a) = head.get_or_create(&a);
    let (sb, created_b) = head.get_or_create(&b);
    let (sc, _) = head.get_or_create(&c);
    assert!(created_a && created_b);
    assert_ne!(sa.series_ref, sb.series_ref);
    assert_ne!(sb.series_ref, sc.series_ref);
    for (l, s) in [(&a, &sa), (&b, &sb), (&c, &sc)] {
        let (again, created) = head.get_or_create(l);
        assert!(!created);
        assert_eq!(again.series_ref, s.series_ref);
        assert_eq!(&head.series_labels(&again), l);
        assert_eq!(head.series_labels(&head.series(s.series_ref).unwrap()), *l);
    }
    assert_eq!(head.num_series(), 3);
    // Replay under a recorded reference finds the existing series.
    let again = head.create_with_ref(SeriesRef(99), &b);
    assert_eq!(again.series_ref, sb.series_ref);
    let d = head.create_with_ref(SeriesRef(99), &labels(&[("__name__", "d")]));
    assert_eq!(d.series_ref, SeriesRef(99));
    // New references continue after the highest replayed one.
    let (e, _) = head.get_or_create(&labels(&[("__name__", "e")]));
    assert_eq!(e.series_ref, SeriesRef(100));
}

#[test]
fn labels_are_interned_and_indexed_on_creation() {
    let head = Head::new(HeadOptions::default());
    let (s1, _) = head.get_or_create(&labels(&[("__name__", "up"), ("job", "a")]));
    let (s2, _) = head.get_or_create(&labels(&[("__name__", "up"), ("job", "b")]));
    // Same name string shared by both series.
    let (l1, l2) = (head.series_labels(&s1), head.series_labels(&s2));
    let n1 = &l1.as_slice()[0].value;
    let n2 = &l2.as_slice()[0].value;
    assert!(std::sync::Arc::ptr_eq(n1, n2));
    // The name and the job label are shared symbols: 3 distinct strings
    // besides the two job values.
    let (i1, i2): (Vec<u32>, Vec<u32>) =
        (s1.label_ids.iter().collect(), s2.label_ids.iter().collect());
    assert_eq!(i1[..3], i2[..3]);
    assert_ne!(i1[3], i2[3]);
    let m = crate::matcher::Matcher::new(crate::matcher::MatchOp::Equal, "job", "b").unwrap();
    let bm = head.postings().select(&[m]);
    assert_eq!(bm.iter().collect::<Vec<_>>(), vec![s2.series_ref.0]);
}

#[test]
fn window_is_measured_against_the_newest_sample_of_the_whole_head() {
    let head = Head::new(HeadOptions {
        ooo_window_ms: 100,
        ..HeadOptions::default()
    });
    let (a, _) = head.get_or_create(&labels(&[("__name__", "a")]));
    let (b, _) = head.get_or_create(&labels(&[("__name__", "b")]));
    head.append_samples(&a, &[Sample::new(1000, 1.0)], |_| {});
    // Series b's own newest sample is 500; its out-of-order sample at 450 is
    // judged against the head's newest (1000), so it is too old.
    let r = head
        .append_samples(&b, &[Sample::new(500, 1.0), Sample::new(450, 1.0)], |_| {})
        .unwrap();
    assert_eq!(r.appended, 1);
    assert_eq!(r.too_old, 1);
    assert_eq!(r.first_rejected_t, Some(450));
    // In-order samples of a series are accepted however old (history import).
    let mut logged = Vec::new();
    let r = head
        .append_samples(&b, &[Sample::new(600, 1.0), Sample::new(600, 1.0)], |s| {
            logged.push(s.t)
        })
        .unwrap();
    assert_eq!((r.appended, r.duplicates), (1, 1));
    // Exact duplicates are logged again (their first copy may not be durable yet).
    assert_eq!(logged, vec![600, 600]);
    assert_eq!(head.max_time(), Some(1000));
    assert_eq!(head.min_time(), Some(500));
    assert_eq!(head.num_samples(), 3);
}

#[test]
fn concurrent_appenders_to_shared_series_lose_nothing() {
    let head = std::sync::Arc::new(Head::new(HeadOptions::default()));
    let threads: Vec<_> = (0..4i64)
        .map(|th| {
            let head = head.clone();
            std::thread::spawn(move || {
                for i in 0..500i64 {
                    let l = labels(&[("__name__", "m"), ("s", &(i % 10).to_string())]);
                    let (s, _) = head.get_or_create(&l);
                    // Each thread owns timestamps congruent to th mod 4.
                    head.append_samples(&s, &[Sample::new(i * 4 + th, 1.0)], |_| {});
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(head.num_series(), 10);
    let mut total = 0;
    head.for_each_series(|s| total += s.data.lock().num_samples());
    // Out-of-order ones older than 10 minutes cannot occur here (timestamps
    // span 2000 ms), so every sample is stored.
    assert_eq!(total, 2000);
    assert_eq!(head.num_samples(), 2000);
}

#[test]
fn labels_hash_separates_strings_and_is_stable() {
    // Moving a byte from a name to its value, or from one label to the
    // next, must change the hash (lengths are hashed with the bytes).
    let base = labels_hash(&labels(&[("ab", "c"), ("d", "e")]));
    for other in [
        labels(&[("a", "bc"), ("d", "e")]),
        labels(&[("ab", "cd"), ("e", "")]),
        labels(&[("ab", "c")]),
    ] {
        assert_ne!(labels_hash(&other), base, "{other:?}");
    }
    // A fixed seed: the same label set hashes alike in every head.
    assert_eq!(labels_hash(&labels(&[("ab", "c"), ("d", "e")])), base);
}

#[test]
fn sealed_chunk_list_grows_exactly() {
    // Head memory per series counts every slot of the sealed chunk list:
    // it must not double (5 sealed chunks would take 8 slots).
    let head = Head::new(HeadOptions::default());
    let per_chunk = HeadOptions::default().chunk.max_samples as i64;
    let (s, _) = head.get_or_create(&labels(&[("__name__", "up")]));
    for i in 0..(5 * per_chunk + 1) {
        head.append_samples(&s, &[Sample::new(i * 1_000, i as f64)], |_| {});
    }
    let data = s.data.lock();
    assert_eq!(data.num_chunks(), 6);
    assert_eq!(data.sealed_capacity(), 5);
}

#[test]
fn truncation_drops_old_chunks_and_removes_emptied_series() {
    // Collisions on purpose: removing one series of a shared slot must
    // leave the others findable.
    let head = Head::with_hash(
        HeadOptions {
            ooo_window_ms: 10_000,
            chunk: ChunkPolicy {
                max_samples: 10,
                range_ms: 1_000_000,
            },
        },
        |l| if l.get("keep").is_some() { 7 } else { 42 },
    );
    let old = labels(&[("__name__", "m"), ("job", "old")]);
    let both = labels(&[("__name__", "m"), ("job", "both")]);
    let other = labels(&[("__name__", "m"), ("job", "other")]);
    let (s_old, _) = head.get_or_create(&old);
    let (s_both, _) = head.get_or_create(&both);
    let (s_other, _) = head.get_or_create(&other);
    let _g = head.append_guard();
    let run = |from: i64, to: i64| -> Vec<Sample> {
        (from..to)
            .map(|i| Sample::new(i * 1_000, i as f64))
            .collect()
    };
    head.append_samples(&s_old, &run(0, 30), |_| {}).unwrap();
    head.append_samples(&s_both, &run(0, 60), |_| {}).unwrap();
    head.append_samples(&s_other, &run(0, 25), |_| {}).unwrap();
    drop(_g);
    assert_eq!(head.num_series(), 3);
    assert_eq!(head.num_samples(), 115);

    // Everything before 30 s is in blocks now.
    head.raise_min_valid_time(30_000);
    let st = head.truncate(30_000);
    assert_eq!(st.series_removed, 2, "{st:?}");
    assert_eq!(st.samples_removed, 30 + 30 + 25, "{st:?}");
    assert_eq!(head.num_series(), 1);
    assert_eq!(head.num_samples(), 30);
    assert_eq!(head.min_time(), Some(30_000));
    // The kept series holds exactly its samples from 30 s on.
    let data = s_both.data.lock();
    assert_eq!(bits(&read_all(&data)), bits(&run(30, 60)));
    drop(data);

    // Removed series leave the registry, the reference map and the
    // postings; the kept one is still found through all three.
    assert!(head.series(s_old.series_ref).is_none());
    assert!(head.series(s_other.series_ref).is_none());
    assert!(head.series(s_both.series_ref).is_some());
    let job =
        |v: &str| crate::matcher::Matcher::new(crate::matcher::MatchOp::Equal, "job", v).unwrap();
    assert!(head.postings().select(&[job("old")]).is_empty());
    assert_eq!(
        head.postings()
            .select(&[job("both")])
            .iter()
            .collect::<Vec<_>>(),
        vec![s_both.series_ref.0]
    );
    assert_eq!(head.postings().label_values("job", None), vec!["both"]);
    let (again, created) = head.get_or_create(&both);
    assert!(!created);
    assert_eq!(again.series_ref, s_both.series_ref);

    // An appender still holding a removed series stores nothing and is
    // told to look the labels up again, which creates a new series.
    let _g = head.append_guard();
    assert!(
        head.append_samples(&s_old, &[Sample::new(40_000, 1.0)], |_| {})
            .is_none()
    );
    let (fresh, created) = head.get_or_create(&old);
    assert!(created);
    assert_ne!(fresh.series_ref, s_old.series_ref);
    let r = head
        .append_samples(
            &fresh,
            &[Sample::new(40_000, 1.0), Sample::new(20_000, 1.0)],
            |_| {},
        )
        .unwrap();
    // Below the head's lower bound: too old, even for a new series.
    assert_eq!((r.appended, r.too_old), (1, 1));
    assert_eq!(
        head.postings().label_values("job", None),
        vec!["both", "old"]
    );
}

#[test]
fn raising_the_lower_bound_waits_for_appends_in_flight() {
    use std::sync::atomic::AtomicBool;
    let head = Arc::new(Head::new(HeadOptions::default()));
    let (s, _) = head.get_or_create(&labels(&[("__name__", "m")]));
    let guard = head.append_guard();
    let raised = Arc::new(AtomicBool::new(false));
    let t = {
        let (head, raised) = (head.clone(), raised.clone());
        std::thread::spawn(move || {
            head.raise_min_valid_time(1_000);
            raised.store(true, Ordering::SeqCst);
        })
    };
    // The raiser has published the bound but waits for this append.
    while head.min_valid_time() < 1_000 {
        std::thread::yield_now();
    }
    assert!(!raised.load(Ordering::SeqCst));
    head.append_samples(&s, &[Sample::new(500, 1.0)], |_| {})
        .unwrap();
    drop(guard);
    t.join().unwrap();
    assert!(raised.load(Ordering::SeqCst));
}
