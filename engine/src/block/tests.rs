//! Tests of blocks: a block written from a real head (through `Db::append`)
//! answers every query like the head, sample for sample and bit for bit;
//! publication (meta.json last, partial uploads ignored and cleaned); the
//! version check; the index codec against a reference model; and the size
//! of a block on a realistic fleet mix.

use std::sync::Arc;

use proptest::prelude::*;

use super::index::{self, IndexSeries};
use super::*;
use crate::db::{Db, DbOptions, WriteSeries};
use crate::labels::Labels;
use crate::matcher::{MatchOp, Matcher};
use crate::querier::Querier;
use crate::sample::{STALE_NAN_BITS, Sample};

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Start of the aligned 2 h block the tests cut.
const BASE: i64 = 1_700_006_400_000;
const SCRAPE_MS: i64 = 15_000;

/// Label sets of an LLM-serving fleet: 10 labels per series; counters,
/// gauges and histogram buckets. `pods` scales the series count.
fn fleet_labels(pods: usize) -> Vec<(Labels, Kind)> {
    let mut out = Vec::new();
    let buckets = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    for pod in 0..pods {
        let model = ["llama-70b", "mistral-7b", "qwen-32b"][pod % 3];
        let base = |name: &str| {
            vec![
                ("__name__", name.to_string()),
                ("cluster", format!("c{}", pod % 2)),
                ("region", ["us-east-1", "eu-west-1"][pod % 2].to_string()),
                ("namespace", "inference".to_string()),
                ("job", "vllm".to_string()),
                ("pod", format!("vllm-{model}-{pod:04}")),
                ("instance", format!("10.0.{}.{}:8000", pod / 250, pod % 250)),
                ("model", model.to_string()),
            ]
        };
        for route in ["/v1/chat/completions", "/v1/completions"] {
            let mut l = base("vllm_requests_total");
            l.push(("route", route.to_string()));
            l.push(("status", "200".to_string()));
            out.push((Labels::from_pairs(l), Kind::Counter));
        }
        for gpu in 0..2 {
            let mut l = base("gpu_utilization_ratio");
            l.push(("gpu", gpu.to_string()));
            l.push(("vendor", "nvidia".to_string()));
            out.push((Labels::from_pairs(l), Kind::Gauge));
        }
        for le in buckets {
            let mut l = base("vllm_request_latency_seconds_bucket");
            l.push(("route", "/v1/chat/completions".to_string()));
            l.push(("le", le.to_string()));
            out.push((Labels::from_pairs(l), Kind::Counter));
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Samples of one series from `from` for `n` scrapes: 15 s apart with up
/// to 40 ms of jitter; counters grow by small integers, gauges are
/// percentages with two decimals.
fn series_samples(rng: &mut Rng, kind: Kind, from: i64, n: usize) -> Vec<Sample> {
    let mut v = 0.0f64;
    (0..n)
        .map(|i| {
            let t = from + i as i64 * SCRAPE_MS + rng.below(40) as i64;
            v = match kind {
                Kind::Counter => v + rng.below(20) as f64,
                Kind::Gauge => (rng.below(10_000) as f64) / 100.0,
            };
            Sample::new(t, v)
        })
        .collect()
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

/// A database holding 2 h 15 min of fleet data around the block [BASE,
/// BASE + 2 h), plus the awkward samples: out-of-order ones (merged into
/// the block), a stale marker, -0.0, a NaN with a payload, and a series
/// that only starts half-way.
fn fleet_db(dir: &std::path::Path) -> Db {
    let db = Db::open(dir, DbOptions::default()).unwrap();
    let mut rng = Rng(7);
    let series = fleet_labels(6);
    let scrapes = (2 * 3600 + 15 * 60) / 15;
    let from = BASE - 10 * 60 * 1000;
    let data: Vec<(Labels, Vec<Sample>)> = series
        .into_iter()
        .map(|(l, k)| {
            let s = series_samples(&mut rng, k, from, scrapes);
            (l, s)
        })
        .collect();
    for i in 0..scrapes {
        let batch: Vec<WriteSeries> = data
            .iter()
            .map(|(l, s)| WriteSeries {
                labels: l.clone(),
                samples: vec![s[i]],
            })
            .collect();
        let out = db.append(&batch).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    }
    let odd = |name: &str| Labels::from_pairs([("__name__", name), ("job", "odd")]);
    let late_start = BASE + 3600 * 1000;
    let special = vec![
        WriteSeries {
            labels: odd("special"),
            samples: vec![
                Sample::new(BASE + 1000, -0.0),
                Sample::new(BASE + 2000, f64::from_bits(0x7ff8_0000_0000_beef)),
                Sample::new(BASE + 3000, f64::from_bits(STALE_NAN_BITS)),
                Sample::new(BASE + 2 * 3600 * 1000 + 5 * 60 * 1000, 1.0),
            ],
        },
        WriteSeries {
            labels: odd("late"),
            samples: (0..100)
                .map(|i| Sample::new(late_start + i * SCRAPE_MS, i as f64 * 0.5))
                .collect(),
        },
    ];
    assert!(db.append(&special).unwrap().rejected.is_empty());
    // Out of order (within the 10 min window of the newest sample), off
    // the scrape grid, into the last minutes of the block.
    let ooo_t = BASE + 2 * 3600 * 1000 - 3 * 60 * 1000 + 7;
    let out = db
        .append(&[WriteSeries {
            labels: data[0].0.clone(),
            samples: vec![Sample::new(ooo_t, 12345.5)],
        }])
        .unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    db
}

type Dump = Vec<(String, Vec<(i64, u64)>)>;

fn dump(q: &dyn Querier, matchers: &[Matcher], mint: i64, maxt: i64) -> Dump {
    q.select(matchers, mint, maxt)
        .unwrap()
        .into_iter()
        .map(|s| {
            let v: Vec<(i64, u64)> = s.samples().iter().map(|x| (x.t, x.v.to_bits())).collect();
            (s.labels.to_string(), v)
        })
        // A series may be selected because a chunk spans the range while
        // none of its samples falls inside (both sources do this at chunk
        // granularity, with different chunk boundaries): compare samples.
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

const BLOCK_MAXT: i64 = BASE + DEFAULT_BLOCK_RANGE_MS - 1;

/// Queries (matchers, mint, maxt) that the block and the head must answer
/// alike; all inside the block's range.
fn query_table() -> Vec<(Vec<Matcher>, i64, i64)> {
    let all = || vec![m(MatchOp::RegexMatch, "__name__", ".*")];
    vec![
        (all(), BASE, BLOCK_MAXT),
        (all(), BASE + 600_000, BASE + 900_000),
        (all(), BASE + 3600 * 1000 + 1, BASE + 3600 * 1000 + 1),
        (
            vec![m(MatchOp::Equal, "__name__", "vllm_requests_total")],
            BASE,
            BLOCK_MAXT,
        ),
        (
            vec![
                m(
                    MatchOp::Equal,
                    "__name__",
                    "vllm_request_latency_seconds_bucket",
                ),
                m(MatchOp::RegexMatch, "le", "0\\..*"),
                m(MatchOp::NotEqual, "model", "qwen-32b"),
            ],
            BASE + 1234,
            BASE + 5_000_000,
        ),
        (vec![m(MatchOp::Equal, "job", "odd")], BASE, BLOCK_MAXT),
        (vec![m(MatchOp::Equal, "job", "odd")], BASE, BASE + 60_000),
        (
            vec![m(MatchOp::RegexNoMatch, "route", ".*chat.*")],
            BASE + 7_000_000,
            BLOCK_MAXT,
        ),
        (
            vec![m(MatchOp::Equal, "__name__", "absent")],
            BASE,
            BLOCK_MAXT,
        ),
    ]
}

fn check_block_matches_head(store: BlockStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = fleet_db(dir.path());
    let head = db.querier();
    let meta = writer::write_block(&store, &*head, BASE, BLOCK_MAXT, BlockOptions::default())
        .unwrap()
        .expect("the range has data");

    let head_all = dump(&*head, &query_table()[0].0, BASE, BLOCK_MAXT);
    let samples: usize = head_all.iter().map(|(_, s)| s.len()).sum();
    assert_eq!(meta.stats.num_series, head_all.len() as u64);
    assert_eq!(meta.stats.num_samples, samples as u64);
    assert!(meta.min_time >= BASE && meta.max_time <= BLOCK_MAXT);
    assert_eq!(meta.compaction.level, 1);
    assert_eq!(meta.compaction.sources, vec![meta.ulid.clone()]);

    let blocks = BlocksQuerier::open(store.clone()).unwrap();
    assert_eq!(blocks.metas(), vec![meta.clone()]);
    for (i, (matchers, mint, maxt)) in query_table().into_iter().enumerate() {
        let want = dump(&*head, &matchers, mint, maxt);
        let got = dump(&blocks, &matchers, mint, maxt);
        assert_eq!(got, want, "query {i}: select");
        // Series and label queries select series by their time span, as
        // the head does; a block knows each series' span inside the block.
        // Reference: the head's samples of the block range, by span.
        let want_labels: Vec<Labels> = head
            .select(&matchers, BASE, BLOCK_MAXT)
            .unwrap()
            .into_iter()
            .filter(|s| {
                let v = s.samples();
                matches!((v.first(), v.last()), (Some(lo), Some(hi)) if lo.t <= maxt && hi.t >= mint)
            })
            .map(|s| s.labels)
            .collect();
        assert_eq!(
            blocks.series(&matchers, mint, maxt).unwrap(),
            want_labels,
            "query {i}: series"
        );
        let mut names: Vec<String> = want_labels
            .iter()
            .flat_map(|l| l.iter().map(|x| x.name.to_string()))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(
            blocks.label_names(&matchers, mint, maxt).unwrap(),
            names,
            "query {i}: label names"
        );
        for name in ["__name__", "le", "route", "pod"] {
            let mut values: Vec<String> = want_labels
                .iter()
                .filter_map(|l| l.get(name).map(str::to_string))
                .collect();
            values.sort();
            values.dedup();
            assert_eq!(
                blocks.label_values(name, &matchers, mint, maxt).unwrap(),
                values,
                "query {i}: label values of {name}"
            );
        }
    }
    // Special values come back bit for bit, the stale marker included.
    let special = dump(
        &blocks,
        &[m(MatchOp::Equal, "__name__", "special")],
        BASE,
        BLOCK_MAXT,
    );
    assert_eq!(
        special[0].1,
        vec![
            (BASE + 1000, (-0.0f64).to_bits()),
            (BASE + 2000, 0x7ff8_0000_0000_beef),
            (BASE + 3000, STALE_NAN_BITS),
        ]
    );
    // Outside the block: nothing, and no read of the block's files needed.
    assert!(dump(&blocks, &query_table()[0].0, BLOCK_MAXT + 1, i64::MAX).is_empty());
    assert!(blocks.series(&[], i64::MIN, BASE - 1).unwrap().is_empty());
    db.close().unwrap();
}

#[test]
fn block_from_head_answers_like_the_head_in_memory() {
    check_block_matches_head(BlockStore::from_url("memory://").unwrap());
}

#[test]
fn block_from_head_answers_like_the_head_on_file_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("blocks").display());
    let store = BlockStore::from_url(&url).unwrap();
    check_block_matches_head(store);
    // The files are where the URL says, under the block's ULID.
    let blocks: Vec<_> = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(blocks.len(), 1);
    for f in [META_FILE, PARQUET_FILE, INDEX_FILE] {
        assert!(blocks[0].join(f).is_file(), "{f}");
    }
}

#[test]
fn block_from_head_answers_like_the_head_in_a_local_dir() {
    let dir = tempfile::tempdir().unwrap();
    check_block_matches_head(BlockStore::local(dir.path()).unwrap());
}

/// The head and a block cut from it, read together: every query answers
/// exactly like the head alone (samples in both are returned once), over
/// the block's range, across its edge, and past it.
#[test]
fn head_and_block_merged_answer_like_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let db = fleet_db(dir.path());
    let head = db.querier();
    let store = BlockStore::from_url("memory://").unwrap();
    writer::write_block(&store, &*head, BASE, BLOCK_MAXT, BlockOptions::default())
        .unwrap()
        .expect("data");
    let blocks: Arc<dyn Querier> = Arc::new(BlocksQuerier::open(store).unwrap());
    let merged = crate::querier::MergedQuerier::new(vec![blocks, Arc::clone(&head)]);
    let all = vec![m(MatchOp::RegexMatch, "__name__", ".*")];
    let mut queries = query_table();
    queries.push((all.clone(), i64::MIN, i64::MAX));
    queries.push((all.clone(), BLOCK_MAXT - 60_000, BLOCK_MAXT + 60_000));
    queries.push((vec![m(MatchOp::Equal, "job", "odd")], i64::MIN, i64::MAX));
    for (i, (matchers, mint, maxt)) in queries.into_iter().enumerate() {
        assert_eq!(
            dump(&merged, &matchers, mint, maxt),
            dump(&*head, &matchers, mint, maxt),
            "query {i}"
        );
        assert_eq!(
            merged.series(&matchers, mint, maxt).unwrap(),
            head.series(&matchers, mint, maxt).unwrap(),
            "query {i}: series"
        );
        assert_eq!(
            merged.label_values("pod", &matchers, mint, maxt).unwrap(),
            head.label_values("pod", &matchers, mint, maxt).unwrap(),
            "query {i}: label values"
        );
    }
    let every = dump(&merged, &all, i64::MIN, i64::MAX);
    let samples: usize = every.iter().map(|(_, v)| v.len()).sum();
    assert_eq!(
        samples as u64,
        db.stats().samples,
        "each sample exactly once"
    );
    db.close().unwrap();
}

/// `Db::cut_blocks` writes each frozen aligned range once, refuses later
/// samples for it, and head + blocks still answer like the head.
#[test]
fn db_cuts_frozen_ranges_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = fleet_db(dir.path());
    let store = BlockStore::from_url("memory://").unwrap();
    let all = vec![m(MatchOp::RegexMatch, "__name__", ".*")];
    let before = dump(&*db.querier(), &all, i64::MIN, i64::MAX);

    // Newest sample BASE + 2h05m, window 10 min: only [BASE - 2h, BASE) is
    // frozen (it holds the first 10 minutes of data).
    let cut = db
        .cut_blocks(&store, DEFAULT_BLOCK_RANGE_MS, BlockOptions::default())
        .unwrap();
    assert_eq!(cut.len(), 1);
    assert!(
        cut[0].min_time >= BASE - 10 * 60 * 1000 && cut[0].max_time < BASE,
        "{:?}",
        cut[0]
    );
    assert!(
        db.cut_blocks(&store, DEFAULT_BLOCK_RANGE_MS, BlockOptions::default())
            .unwrap()
            .is_empty()
    );

    // The range is closed: even a new series cannot add to it.
    let out = db
        .append(&[WriteSeries {
            labels: Labels::from_pairs([("__name__", "newcomer")]),
            samples: vec![Sample::new(BASE - 1, 1.0)],
        }])
        .unwrap();
    assert_eq!(out.samples_rejected(), 1);

    let blocks: Arc<dyn Querier> = Arc::new(BlocksQuerier::open(store.clone()).unwrap());
    let merged = crate::querier::MergedQuerier::new(vec![blocks, db.querier()]);
    assert_eq!(dump(&merged, &all, i64::MIN, i64::MAX), before);
    let in_block = dump(
        &BlocksQuerier::open(store.clone()).unwrap(),
        &all,
        i64::MIN,
        i64::MAX,
    );
    let n: usize = in_block.iter().map(|(_, v)| v.len()).sum();
    assert_eq!(n as u64, cut[0].stats.num_samples);
    assert_eq!(
        in_block,
        dump(&*db.querier(), &all, i64::MIN, BASE - 1),
        "the block holds exactly the head's samples of its range"
    );

    // Time moves on: the next range freezes and is cut.
    let late = Labels::from_pairs([("__name__", "late"), ("job", "odd")]);
    let t = BASE + DEFAULT_BLOCK_RANGE_MS + 10 * 60 * 1000;
    assert!(
        db.append(&[WriteSeries {
            labels: late,
            samples: vec![Sample::new(t, 1.0)]
        }])
        .unwrap()
        .rejected
        .is_empty()
    );
    let cut2 = db
        .cut_blocks(&store, DEFAULT_BLOCK_RANGE_MS, BlockOptions::default())
        .unwrap();
    assert_eq!(cut2.len(), 1);
    assert!(cut2[0].min_time >= BASE && cut2[0].max_time <= BLOCK_MAXT);
    db.close().unwrap();
}

/// A store holding one block of a few series, and its meta.
fn small_block(store: &BlockStore) -> EncodedBlock {
    let mut w = BlockWriter::new(BlockOptions::default());
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let samples: Vec<Sample> = (0..10)
            .map(|j| Sample::new(BASE + j * SCRAPE_MS, (i * 10) as f64 + j as f64))
            .collect();
        w.add_series(Labels::from_pairs([("__name__", *name)]), &samples);
    }
    let b = w.encode(1, Vec::new()).unwrap();
    b.upload(store).unwrap();
    b
}

#[test]
fn unknown_format_version_is_refused_with_a_clear_error() {
    let store = BlockStore::from_url("memory://").unwrap();
    let b = small_block(&store);
    let mut meta: serde_json::Value =
        serde_json::from_slice(&serde_json::to_vec(&b.meta).unwrap()).unwrap();
    meta["version"] = serde_json::json!(99);
    let key = format!("{}/{META_FILE}", b.meta.ulid);
    store
        .put(&key, bytes::Bytes::from(serde_json::to_vec(&meta).unwrap()))
        .unwrap();
    let err = BlocksQuerier::open(store).err().expect("refused");
    match &err {
        Error::UnsupportedBlockVersion {
            version,
            max_supported,
            ..
        } => {
            assert_eq!((*version, *max_supported), (99, FORMAT_VERSION));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("format version 99"), "{err}");
}

#[test]
fn index_of_an_unknown_version_is_refused() {
    let store = BlockStore::from_url("memory://").unwrap();
    let b = small_block(&store);
    let mut idx = b.index.to_vec();
    idx[4] = 3;
    let n = idx.len();
    let crc = crc32c::crc32c(&idx[..n - 4]);
    idx[n - 4..].copy_from_slice(&crc.to_le_bytes());
    store
        .put(
            &format!("{}/{INDEX_FILE}", b.meta.ulid),
            bytes::Bytes::from(idx),
        )
        .unwrap();
    let q = BlocksQuerier::open(store).unwrap();
    let err = q
        .select(&[m(MatchOp::Equal, "__name__", "a")], BASE, BLOCK_MAXT)
        .expect_err("refused");
    assert!(
        matches!(err, Error::UnsupportedBlockVersion { version: 3, .. }),
        "{err:?}"
    );
}

#[test]
fn block_without_meta_is_ignored_and_cleaned_on_open() {
    let store = BlockStore::from_url("memory://").unwrap();
    let published = small_block(&store);
    // An interrupted upload: data files, no meta.json.
    let mut w = BlockWriter::new(BlockOptions::default());
    w.add_series(
        Labels::from_pairs([("__name__", "a")]),
        &[Sample::new(BASE + 7, 1.0)],
    );
    let partial = w.encode(1, Vec::new()).unwrap();
    store
        .put(
            &format!("{}/{PARQUET_FILE}", partial.meta.ulid),
            partial.parquet.clone(),
        )
        .unwrap();
    store
        .put(
            &format!("{}/{INDEX_FILE}", partial.meta.ulid),
            partial.index.clone(),
        )
        .unwrap();

    let q = BlocksQuerier::open(store.clone()).unwrap();
    assert_eq!(q.metas(), vec![published.meta.clone()]);
    let got = dump(&q, &[m(MatchOp::Equal, "__name__", "a")], BASE, BLOCK_MAXT);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].1.iter().all(|&(t, _)| t != BASE + 7),
        "unpublished sample visible"
    );

    assert_eq!(
        clean_partial_blocks(&store).unwrap(),
        vec![partial.meta.ulid.clone()]
    );
    assert!(store.list(&partial.meta.ulid).unwrap().is_empty());
    assert_eq!(store.list(&published.meta.ulid).unwrap().len(), 3);
    assert!(clean_partial_blocks(&store).unwrap().is_empty());
}

#[test]
fn storage_urls_are_checked() {
    for (url, ok) in [
        ("memory://", true),
        ("file:///tmp", true),
        ("not a url", false),
        ("ftp://host/x", false),
        ("file://relative-host/x", false),
    ] {
        assert_eq!(BlockStore::from_url(url).is_ok(), ok, "{url}");
    }
    #[cfg(not(feature = "cloud"))]
    assert!(matches!(
        BlockStore::from_url("s3://bucket/prefix"),
        Err(Error::InvalidStorageUrl { .. })
    ));
    // With the cloud clients, a cloud URL opens (nothing is requested
    // until the first read; tests/s3.rs talks to a real S3 server).
    #[cfg(feature = "cloud")]
    for url in ["s3://bucket/prefix", "s3://bucket"] {
        let store = BlockStore::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(store.location(), url);
    }
}

#[test]
fn rows_outside_the_query_are_not_decoded_and_chunks_are_split() {
    // One series of 1000 samples in chunks of 240: a narrow query returns
    // exactly its samples; chunk counts are recorded.
    let store = BlockStore::from_url("memory://").unwrap();
    let mut w = BlockWriter::new(BlockOptions::default());
    let samples: Vec<Sample> = (0..1000)
        .map(|j| Sample::new(BASE + j * 1000, j as f64))
        .collect();
    w.add_series(Labels::from_pairs([("__name__", "x")]), &samples);
    let b = w.encode(1, Vec::new()).unwrap();
    b.upload(&store).unwrap();
    assert_eq!(b.meta.stats.num_chunks, 5);
    let q = BlocksQuerier::open(store).unwrap();
    let got = dump(
        &q,
        &[m(MatchOp::Equal, "__name__", "x")],
        BASE + 300_500,
        BASE + 310_000,
    );
    let want: Vec<(i64, u64)> = (301..=310)
        .map(|j| (BASE + j * 1000, (j as f64).to_bits()))
        .collect();
    assert_eq!(got[0].1, want);
}

#[test]
fn overlapping_blocks_return_a_shared_sample_once() {
    let store = BlockStore::from_url("memory://").unwrap();
    let l = Labels::from_pairs([("__name__", "x")]);
    for ts in [[1, 3, 5], [2, 3, 4]] {
        let mut w = BlockWriter::new(BlockOptions::default());
        let s: Vec<Sample> = ts
            .iter()
            .map(|&t| Sample::new(BASE + t, t as f64))
            .collect();
        w.add_series(l.clone(), &s);
        w.encode(1, Vec::new()).unwrap().upload(&store).unwrap();
    }
    let q = BlocksQuerier::open(store).unwrap();
    let got = dump(&q, &[m(MatchOp::Equal, "__name__", "x")], BASE, BLOCK_MAXT);
    let ts: Vec<i64> = got[0].1.iter().map(|&(t, _)| t - BASE).collect();
    assert_eq!(ts, vec![1, 2, 3, 4, 5]);
}

/// Size of a block on the fleet mix: 1000 pods x 11 series, 2 h of 15 s
/// scrapes. Prints bytes per sample (run with `--nocapture`).
#[test]
fn block_bytes_per_sample_on_the_fleet_mix() {
    let series = fleet_labels(1000);
    let per_pod = series.len() / 1000;
    let scrapes = 2 * 3600 / 15;
    let data: Vec<(Labels, Vec<Sample>)> = {
        let mut rng = Rng(42);
        // Every series of one pod is scraped at once: they share the
        // scrape's (jittered) timestamps, as in a real fleet.
        let mut pod_times = Vec::new();
        series
            .into_iter()
            .enumerate()
            .map(|(i, (l, k))| {
                let mut s = series_samples(&mut rng, k, BASE, scrapes);
                if i % per_pod == 0 {
                    pod_times = s.iter().map(|x| x.t).collect();
                }
                for (x, &t) in s.iter_mut().zip(&pod_times) {
                    x.t = t;
                }
                (l, s)
            })
            .collect()
    };
    let mut default_total = f64::NAN;
    for chunk_max_samples in [120, 240, 480] {
        let mut w = BlockWriter::new(BlockOptions {
            chunk_max_samples,
            ..BlockOptions::default()
        });
        for (l, s) in &data {
            w.add_series(l.clone(), s);
        }
        let b = w.encode(1, Vec::new()).unwrap();
        let chunk_bytes: usize = w_chunk_bytes(&b);
        let samples = b.meta.stats.num_samples as f64;
        let parquet = b.parquet.len() as f64;
        let index = b.index.len() as f64;
        println!(
            "fleet mix, chunks of {chunk_max_samples}: {} series, {} samples, {} chunks; parquet {} B ({:.3} B/sample), index {} B ({:.3} B/sample), total {:.3} B/sample; chunk bytes alone {:.3} B/sample",
            b.meta.stats.num_series,
            samples,
            b.meta.stats.num_chunks,
            parquet,
            parquet / samples,
            index,
            index / samples,
            (parquet + index) / samples,
            chunk_bytes as f64 / samples
        );
        if chunk_max_samples == BlockOptions::default().chunk_max_samples {
            default_total = (parquet + index) / samples;
        }
    }
    // A regression guard above the measured figure (see docs/format.md):
    // the values here are random, so they are near their entropy.
    assert!(default_total < 1.05, "{default_total}");
}

/// Sum of the chunk column's bytes, read back through the Querier.
fn w_chunk_bytes(b: &EncodedBlock) -> usize {
    let store = BlockStore::from_url("memory://").unwrap();
    b.upload(&store).unwrap();
    let r = BlockReader::new(store, b.meta.clone());
    let all = [m(MatchOp::RegexMatch, "__name__", ".*")];
    r.select_chunks(&all, i64::MIN, i64::MAX, 0)
        .unwrap()
        .iter()
        .flat_map(|(_, c)| c.iter().map(|c| c.as_bytes().len()))
        .sum()
}

fn arb_series() -> impl Strategy<Value = Vec<IndexSeries>> {
    let labels = proptest::collection::btree_map(
        prop_oneof!["__name__", "a", "b", "job"].prop_map(String::from),
        "[a-c]{1,2}",
        1..4,
    );
    proptest::collection::vec((labels, -1000i64..1000, 0i64..1000, 1u32..4), 0..30).prop_map(|v| {
        let mut seen = std::collections::BTreeSet::new();
        let mut row = 0;
        v.into_iter()
            .filter(|(l, ..)| seen.insert(l.clone()))
            .map(|(l, min, span, chunks)| {
                let s = IndexSeries {
                    labels: Labels::from_pairs(l),
                    min_time: min,
                    max_time: min + span,
                    num_chunks: chunks,
                    num_samples: u64::from(chunks) * 3,
                    first_row: row,
                };
                row += u64::from(chunks);
                s
            })
            .collect()
    })
}

fn arb_time_streams() -> impl Strategy<Value = Vec<index::TimeStream>> {
    proptest::collection::vec(
        (
            any::<i64>(),
            0i64..1_000_000,
            1u32..500,
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(first, span, count, stream)| index::TimeStream {
                first,
                last: first.wrapping_add(span),
                count,
                stream,
            }),
        0..8,
    )
}

proptest! {
    /// The index decodes to what was encoded, and its postings select
    /// exactly the series a brute-force scan of the labels selects.
    #[test]
    fn index_round_trips_and_postings_match_a_scan(
        series in arb_series(),
        name in prop_oneof!["__name__", "a", "job", "zz"],
        value in "[a-c]{0,2}",
        op in prop_oneof![Just(MatchOp::Equal), Just(MatchOp::NotEqual), Just(MatchOp::RegexMatch)],
        times in arb_time_streams(),
    ) {
        let bytes = index::encode(&series, &times).unwrap();
        let decoded = index::decode(&bytes, "test").unwrap();
        prop_assert_eq!(&decoded.series, &series);
        prop_assert_eq!(&decoded.time_streams, &times);
        let matcher = Matcher::new(op, name.as_str(), value.as_str()).unwrap();
        let got: Vec<u32> = decoded.postings.select(std::slice::from_ref(&matcher)).iter().collect();
        let want: Vec<u32> = series
            .iter()
            .enumerate()
            .filter(|(_, s)| matcher.matches(s.labels.get(&name).unwrap_or("")))
            .map(|(i, _)| i as u32)
            .collect();
        prop_assert_eq!(got, want);
    }

    /// Corrupt index bytes are an error, never a panic.
    #[test]
    fn corrupt_index_bytes_do_not_panic(series in arb_series(), times in arb_time_streams(), flip in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = index::encode(&series, &times).unwrap();
        let i = flip.index(bytes.len());
        bytes[i] ^= byte | 1;
        prop_assert!(index::decode(&bytes, "test").is_err());
        let cut = flip.index(bytes.len());
        let _ = index::decode(&bytes[..cut], "test");
    }
}

#[test]
fn aligned_range_start() {
    for (t, want) in [
        (0, 0),
        (DEFAULT_BLOCK_RANGE_MS - 1, 0),
        (DEFAULT_BLOCK_RANGE_MS, DEFAULT_BLOCK_RANGE_MS),
        (-1, -DEFAULT_BLOCK_RANGE_MS),
        (BASE + 5, BASE),
    ] {
        assert_eq!(range_start(t, DEFAULT_BLOCK_RANGE_MS), want, "{t}");
    }
}

/// The series of the checked-in version-1 block under
/// `src/block/testdata/v1/` (regenerated here from a fixed seed): two pods
/// of the fleet mix over one hour, and the special values.
fn v1_fixture_series() -> Vec<(Labels, Vec<Sample>)> {
    let mut rng = Rng(11);
    let mut out: Vec<(Labels, Vec<Sample>)> = fleet_labels(2)
        .into_iter()
        .map(|(l, k)| {
            let s = series_samples(&mut rng, k, BASE, 240);
            (l, s)
        })
        .collect();
    out.push((
        Labels::from_pairs([("__name__", "special"), ("job", "odd")]),
        vec![
            Sample::new(BASE + 1000, -0.0),
            Sample::new(BASE + 2000, f64::from_bits(0x7ff8_0000_0000_beef)),
            Sample::new(BASE + 3000, f64::from_bits(STALE_NAN_BITS)),
            Sample::new(BASE + 4000, f64::INFINITY),
        ],
    ));
    out
}

/// Blocks written by earlier releases stay readable: the checked-in
/// version-1 block answers with exactly the samples it was written from.
#[test]
fn v1_blocks_stay_readable() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/block/testdata/v1");
    let q = BlocksQuerier::open(BlockStore::local(&dir).unwrap()).unwrap();
    let metas = q.metas();
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].version, 1);
    let mut want: Vec<(String, Vec<(i64, u64)>)> = v1_fixture_series()
        .into_iter()
        .map(|(l, s)| {
            (
                l.to_string(),
                s.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect();
    want.sort();
    let mut got = dump(
        &q,
        &[m(MatchOp::RegexMatch, "__name__", ".*")],
        i64::MIN,
        i64::MAX,
    );
    got.sort();
    assert_eq!(got, want);
}

/// Opened blocks stay within the memory budget: least recently used
/// ones are closed (their index is read again by the next query that
/// needs them), and answers do not change.
#[test]
fn opened_blocks_stay_within_the_memory_budget() {
    let store = BlockStore::from_url("memory://").unwrap();
    for b in 0..3i64 {
        let mut w = BlockWriter::new(BlockOptions::default());
        for s in 0..50 {
            let samples: Vec<Sample> = (0..100)
                .map(|j| Sample::new(BASE + b * DEFAULT_BLOCK_RANGE_MS + j * SCRAPE_MS, j as f64))
                .collect();
            w.add_series(
                Labels::from_pairs([("__name__", "m".to_string()), ("s", s.to_string())]),
                &samples,
            );
        }
        w.encode(1, Vec::new()).unwrap().upload(&store).unwrap();
    }
    let q = BlocksQuerier::open(store.clone()).unwrap();
    let all = [m(MatchOp::RegexMatch, "__name__", ".*")];
    let range = |b: i64| {
        let lo = BASE + b * DEFAULT_BLOCK_RANGE_MS;
        (lo, lo + DEFAULT_BLOCK_RANGE_MS - 1)
    };
    // Unbounded: every block stays open.
    let want: Vec<Dump> = (0..3)
        .map(|b| {
            let (lo, hi) = range(b);
            dump(&q, &all, lo, hi)
        })
        .collect();
    let one_block = q.opened_bytes() / 3;
    assert!(one_block > 1000, "{one_block}");
    let gets_before = store.requests().gets;

    // Room for about one and a half blocks.
    q.set_memory_budget(one_block * 3 / 2);
    assert!(q.opened_bytes() <= one_block * 3 / 2);
    for round in 0..2 {
        for b in 0..3 {
            let (lo, hi) = range(b);
            assert_eq!(
                dump(&q, &all, lo, hi),
                want[b as usize],
                "round {round}, block {b}"
            );
            assert!(
                q.opened_bytes() <= one_block * 3 / 2,
                "{}",
                q.opened_bytes()
            );
            assert!(q.opened_bytes() > 0, "the block just read stays open");
        }
    }
    // Closed blocks were opened again: their indexes read again.
    assert!(
        store.requests().gets > gets_before,
        "{:?}",
        store.requests()
    );
}

/// A select reads the index once, the footer in one request and the
/// column chunks it needs in one coalesced request, never the rest of the
/// file (a regression: page headers were once read to the end of the
/// file).
#[test]
fn a_select_fetches_only_what_it_reads_in_few_requests() {
    let store = BlockStore::from_url("memory://").unwrap();
    let mut w = BlockWriter::new(BlockOptions {
        row_group_target_rows: 1,
        ..BlockOptions::default()
    });
    let mut rng = Rng(3);
    for name in ["a", "b", "c", "d"] {
        for s in 0..200 {
            let samples = series_samples(&mut rng, Kind::Gauge, BASE, 480);
            w.add_series(
                Labels::from_pairs([("__name__", name.to_string()), ("s", s.to_string())]),
                &samples,
            );
        }
    }
    let b = w.encode(1, Vec::new()).unwrap();
    b.upload(&store).unwrap();
    let q = BlocksQuerier::open(store.clone()).unwrap();
    let before = store.requests();
    let got = dump(&q, &[m(MatchOp::Equal, "__name__", "c")], BASE, BLOCK_MAXT);
    assert_eq!(got.len(), 200);
    let r = store.requests();
    assert_eq!(r.gets - before.gets, 1, "the index: {r:?}");
    assert_eq!(
        r.range_gets - before.range_gets,
        2,
        "footer, column chunks: {r:?}"
    );
    let fetched = r.bytes_fetched - before.bytes_fetched;
    let file = b.parquet.len() as u64;
    assert!(
        fetched < b.index.len() as u64 + file / 2,
        "fetched {fetched} of a {file}-byte file for a quarter of its rows"
    );
}

/// Listing blocks is one listing request (no HEAD per block), and skips
/// what is not a published block.
#[test]
fn listing_blocks_takes_one_list_request() {
    let store = BlockStore::from_url("memory://").unwrap();
    let mut ulids = Vec::new();
    for i in 0..3 {
        let mut w = BlockWriter::new(BlockOptions::default());
        w.add_series(
            Labels::from_pairs([("__name__", "x")]),
            &[Sample::new(BASE + i, 1.0)],
        );
        let b = w.encode(1, Vec::new()).unwrap();
        b.upload(&store).unwrap();
        ulids.push(b.meta.ulid.clone());
    }
    // An unpublished block and a non-block object are not listed.
    store
        .put(
            "01ARZ3NDEKTSV4RRFFQ69G5FAV/index",
            bytes::Bytes::from_static(b"x"),
        )
        .unwrap();
    store
        .put("tombstones/x.json", bytes::Bytes::from_static(b"{}"))
        .unwrap();
    let before = store.requests();
    let metas = list_blocks(&store).unwrap();
    let after = store.requests();
    ulids.sort();
    assert_eq!(
        metas.iter().map(|m| m.ulid.clone()).collect::<Vec<_>>(),
        ulids
    );
    assert_eq!(after.lists - before.lists, 1);
    assert_eq!(after.heads - before.heads, 0);
    assert_eq!(after.gets - before.gets, 3, "the three meta.json");
}

/// A series read once is served from the block's chunk cache: selects of
/// the same or a narrower range fetch nothing from the store and answer as
/// an uncached reader does; the cache counts in the opened block's memory
/// and goes with the block when the budget closes it.
#[test]
fn repeated_selects_are_served_from_the_chunk_cache() {
    let store = BlockStore::from_url("memory://").unwrap();
    let mut w = BlockWriter::new(BlockOptions::default());
    for s in 0..40 {
        let samples: Vec<Sample> = (0..400)
            .map(|j| Sample::new(BASE + j * SCRAPE_MS, (j * (s + 1)) as f64))
            .collect();
        w.add_series(
            Labels::from_pairs([("__name__", "m".to_string()), ("s", s.to_string())]),
            &samples,
        );
    }
    w.encode(1, Vec::new()).unwrap().upload(&store).unwrap();
    let all = [m(MatchOp::RegexMatch, "__name__", ".*")];
    let some = [m(MatchOp::RegexMatch, "s", "1.*")];
    let end = BASE + 400 * SCRAPE_MS;
    let ranges = [
        (BASE, end),
        (BASE + 100 * SCRAPE_MS, BASE + 130 * SCRAPE_MS),
        (BASE + 390 * SCRAPE_MS, end),
    ];
    // Uncached: a budget of nothing closes the block after every read.
    let uncached = BlocksQuerier::open(store.clone()).unwrap();
    uncached.set_memory_budget(0);
    let want: Vec<Dump> = ranges
        .iter()
        .flat_map(|&(lo, hi)| {
            [
                dump(&uncached, &all, lo, hi),
                dump(&uncached, &some, lo, hi),
            ]
        })
        .collect();
    assert_eq!(uncached.opened_bytes(), 0);

    let q = BlocksQuerier::open(store.clone()).unwrap();
    // A narrow first read caches whole series, not only the range's chunks.
    assert_eq!(dump(&q, &some, ranges[1].0, ranges[1].1), want[3]);
    let after_some = q.opened_bytes();
    assert_eq!(dump(&q, &all, BASE, end), want[0]);
    let after_all = q.opened_bytes();
    assert!(
        after_all > after_some + 40 * 100,
        "{after_some} -> {after_all}"
    );
    let fetches = store.requests();
    for round in 0..2 {
        let got: Vec<Dump> = ranges
            .iter()
            .flat_map(|&(lo, hi)| [dump(&q, &all, lo, hi), dump(&q, &some, lo, hi)])
            .collect();
        assert_eq!(got, want, "round {round}");
    }
    assert_eq!(store.requests(), fetches, "served from the cache");
    assert_eq!(q.opened_bytes(), after_all);
    // Closed by the budget: the cache goes, answers stay.
    q.set_memory_budget(0);
    assert_eq!(q.opened_bytes(), 0);
    assert_eq!(dump(&q, &all, BASE, end), want[0]);
}
