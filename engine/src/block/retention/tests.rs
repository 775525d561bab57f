//! Retention planner tables and one run over a real in-memory store.

use super::*;
use crate::block::{BlockFile, BlockOptions, BlockStats, BlockWriter, Compaction};
use crate::labels::Labels;
use crate::sample::Sample;

const H: i64 = 3_600_000;

fn meta(ulid: &str, min_h: i64, max_h: i64, size: u64) -> BlockMeta {
    BlockMeta {
        version: crate::block::FORMAT_VERSION,
        ulid: ulid.into(),
        min_time: min_h * H,
        max_time: max_h * H - 1,
        stats: BlockStats {
            num_series: 1,
            num_samples: 1,
            num_chunks: 1,
        },
        compaction: Compaction {
            level: 1,
            sources: vec![ulid.into()],
        },
        files: vec![
            BlockFile {
                name: "series.parquet".into(),
                size_bytes: size - 10,
            },
            BlockFile {
                name: "index".into(),
                size_bytes: 10,
            },
        ],
    }
}

fn check(metas: &[BlockMeta], opts: RetentionOptions, expect: &[&str]) {
    let got: Vec<String> = plan(metas, &opts).into_iter().map(|m| m.ulid).collect();
    assert_eq!(got, expect, "{opts:?}");
}

#[test]
fn retention_plan() {
    let blocks = [
        meta("a", 0, 12, 500),
        meta("b", 12, 14, 100),
        meta("c", 14, 16, 100),
        meta("d", 16, 18, 100),
    ];
    let time = |h: i64| RetentionOptions {
        retention_ms: Some(h * H),
        max_bytes: None,
    };
    let size = |b: u64| RetentionOptions {
        retention_ms: None,
        max_bytes: Some(b),
    };
    check(&blocks, RetentionOptions::default(), &[]);
    // Measured from the newest block's max time (18 h), not the clock.
    check(&blocks, time(100), &[]);
    check(&blocks, time(6), &[]);
    check(&blocks, time(5), &["a"]);
    // Exactly the retention apart is kept.
    check(&blocks, time(4), &["a"]);
    check(&blocks, time(3), &["a", "b"]);
    // The newest block is never deleted by time.
    check(&blocks, time(0), &["a", "b", "c"]);
    // By size: newest first until the sum passes the limit.
    check(&blocks, size(800), &[]);
    check(&blocks, size(799), &["a"]);
    check(&blocks, size(300), &["a"]);
    check(&blocks, size(299), &["a", "b"]);
    // A limit below the newest block deletes everything.
    check(&blocks, size(99), &["a", "b", "c", "d"]);
    // Both: the union.
    check(
        &blocks,
        RetentionOptions {
            retention_ms: Some(3 * H),
            max_bytes: Some(10_000),
        },
        &["a", "b"],
    );
    check(&[], time(0), &[]);
}

#[test]
fn retention_run_deletes_whole_blocks() {
    let store = BlockStore::from_url("memory://").unwrap();
    let mut ulids = Vec::new();
    for i in 0..4 {
        let mut w = BlockWriter::new(BlockOptions::default());
        let samples: Vec<Sample> = (0..480)
            .map(|j| Sample::new(i * 2 * H + j * 15_000, j as f64))
            .collect();
        w.add_series(Labels::from_pairs([("__name__", "up")]), &samples);
        let b = w.encode(1, Vec::new()).unwrap();
        b.upload(&store).unwrap();
        ulids.push(b.meta.ulid);
    }
    let deleted = run(
        &store,
        &RetentionOptions {
            retention_ms: Some(3 * H),
            max_bytes: None,
        },
    )
    .unwrap();
    assert_eq!(deleted, ulids[..2]);
    // Blocks written in the same millisecond have ULIDs in random order, so
    // compare the survivors as a set.
    let mut left: Vec<String> = list_blocks(&store)
        .unwrap()
        .into_iter()
        .map(|m| m.ulid)
        .collect();
    left.sort();
    let mut kept = ulids[2..].to_vec();
    kept.sort();
    assert_eq!(left, kept);
    for u in &ulids[..2] {
        assert!(store.list(u).unwrap().is_empty());
    }
}
