//! Tests of the compaction planner (tables over metas) and executor (real
//! blocks in an in-memory object store).

use super::*;
use crate::block::{BlockStats, Compaction, list_blocks};
use crate::labels::Labels;
use crate::matcher::{MatchOp, Matcher};
use crate::sample::Sample;

const H: i64 = 3_600_000;

fn meta(ulid: &str, min: i64, max: i64, level: u32, sources: &[&str]) -> BlockMeta {
    BlockMeta {
        version: crate::block::FORMAT_VERSION,
        ulid: ulid.into(),
        min_time: min,
        max_time: max,
        stats: BlockStats {
            num_series: 1,
            num_samples: 1,
            num_chunks: 1,
        },
        compaction: Compaction {
            level,
            sources: if sources.is_empty() {
                vec![ulid.into()]
            } else {
                sources.iter().map(|s| s.to_string()).collect()
            },
        },
        files: Vec::new(),
    }
}

/// A level-1 block covering the 2 h range starting at `start_h` hours,
/// with samples 15 s apart from its start to 15 s before its end.
fn l1(ulid: &str, start_h: i64) -> BlockMeta {
    meta(ulid, start_h * H, start_h * H + 2 * H - 15_000, 1, &[])
}

fn check_plan(metas: &[BlockMeta], expect: Option<&[&str]>) {
    let got = plan(metas, &DEFAULT_RANGES_MS);
    let got: Option<Vec<&str>> = got
        .as_ref()
        .map(|g| g.iter().map(|m| m.ulid.as_str()).collect());
    assert_eq!(got.as_deref(), expect, "plan of {metas:#?}");
}

#[test]
fn plan_leveled() {
    // Nothing, or one block: nothing to do.
    check_plan(&[], None);
    check_plan(&[l1("a", 0)], None);
    // Blocks of a 12 h range that is not full and that the newest block
    // considered (the newest but one) still sits in: wait for the rest.
    check_plan(&[l1("a", 0), l1("b", 2), l1("c", 4)], None);
    // The six blocks of [0h, 12h) plus a newer one: merged.
    let mut six: Vec<BlockMeta> = (0..6).map(|i| l1(&format!("b{i}"), 2 * i)).collect();
    six.push(l1("new", 12));
    check_plan(&six, Some(&["b0", "b1", "b2", "b3", "b4", "b5"]));
    // The newest block is never part of a leveled plan, even when it
    // completes its range: it waits for one more block.
    let only_six: Vec<BlockMeta> = (0..6).map(|i| l1(&format!("b{i}"), 2 * i)).collect();
    check_plan(&only_six, None);
    // A range with gaps that lies before the newest blocks is merged.
    check_plan(&[l1("a", 0), l1("b", 4), l1("c", 14)], None);
    check_plan(
        &[l1("a", 0), l1("b", 4), l1("c", 14), l1("d", 16)],
        Some(&["a", "b"]),
    );
    // Two 12 h blocks of a full 48 h range are not enough; four are, once
    // a newer block exists.
    let twelve = |u: &str, start_h: i64| meta(u, start_h * H, start_h * H + 12 * H - 1, 2, &[u]);
    check_plan(&[twelve("x", 0), twelve("y", 12), l1("n", 24)], None);
    check_plan(
        &[
            twelve("w", 0),
            twelve("x", 12),
            twelve("y", 24),
            twelve("z", 36),
            l1("n", 48),
        ],
        Some(&["w", "x", "y", "z"]),
    );
    // A 48 h block is never merged further (no larger range).
    check_plan(
        &[
            meta("big", 0, 48 * H - 1, 3, &["big"]),
            meta("big2", 48 * H, 96 * H - 1, 3, &["big2"]),
            l1("n", 96),
        ],
        None,
    );
}

#[test]
fn plan_overlapping_first() {
    // Overlapping blocks are merged whatever their range, before any
    // leveled merge, including the newest block.
    check_plan(
        &[l1("a", 0), meta("ooo", H, 3 * H, 1, &[]), l1("b", 2)],
        Some(&["a", "ooo", "b"]),
    );
    // Only the overlapping run, not the disjoint blocks around it.
    check_plan(
        &[l1("a", 0), l1("b", 20), meta("c", 21 * H, 22 * H, 1, &[])],
        Some(&["b", "c"]),
    );
    // Touching is not overlapping (max_time is inclusive).
    check_plan(&[meta("a", 0, 10, 1, &[]), meta("b", 11, 20, 1, &[])], None);
    check_plan(
        &[meta("a", 0, 10, 1, &[]), meta("b", 10, 20, 1, &[])],
        Some(&["a", "b"]),
    );
}

#[test]
fn obsolete_blocks_are_those_held_by_a_higher_level() {
    let metas = [
        l1("a", 0),
        l1("b", 2),
        l1("c", 4),
        meta("ab", 0, 4 * H, 2, &["a", "b"]),
    ];
    let got: Vec<String> = obsolete_blocks(&metas)
        .into_iter()
        .map(|m| m.ulid)
        .collect();
    assert_eq!(got, ["a", "b"]);
    // A level-2 block held by a level-3 one, and nothing held by a block
    // of the same level.
    let metas = [
        meta("ab", 0, 4 * H, 2, &["a", "b"]),
        meta("abc", 0, 6 * H, 3, &["a", "b", "c"]),
        meta("cd", 4 * H, 8 * H, 2, &["c", "d"]),
    ];
    let got: Vec<String> = obsolete_blocks(&metas)
        .into_iter()
        .map(|m| m.ulid)
        .collect();
    assert_eq!(got, ["ab"]);
}

fn labels(job: &str) -> Labels {
    Labels::from_pairs([("__name__", "up"), ("job", job)])
}

/// Writes a level-1 block of `series` and returns its meta.
fn put_block(store: &BlockStore, series: &[(Labels, Vec<Sample>)]) -> BlockMeta {
    let mut w = BlockWriter::new(BlockOptions::default());
    for (l, s) in series {
        w.add_series(l.clone(), s);
    }
    let b = w.encode(1, Vec::new()).unwrap();
    b.upload(store).unwrap();
    b.meta
}

fn samples(from: i64, to: i64, step: i64, v: f64) -> Vec<Sample> {
    (0..)
        .map(|i| from + i * step)
        .take_while(|t| *t < to)
        .map(|t| Sample::new(t, v + t as f64))
        .collect()
}

/// Every series of the store with its samples, through a fresh
/// [`BlocksQuerier`].
fn dump(store: &BlockStore) -> Vec<(Labels, Vec<Sample>)> {
    let q = crate::block::BlocksQuerier::open(store.clone()).unwrap();
    let all = Matcher::new(MatchOp::RegexMatch, "__name__", ".*").unwrap();
    let mut out: Vec<(Labels, Vec<Sample>)> = q
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

/// Counts every sample stored, without the read path's de-duplication:
/// the sum of the blocks' sample counts.
fn stored_samples(store: &BlockStore) -> u64 {
    list_blocks(store)
        .unwrap()
        .iter()
        .map(|m| m.stats.num_samples)
        .sum()
}

#[test]
fn compaction_merges_leveled_blocks_and_deletes_sources() {
    let store = BlockStore::from_url("memory://").unwrap();
    let mut ulids = Vec::new();
    for i in 0..7 {
        let from = i * 2 * H;
        let mut series = vec![(labels("a"), samples(from, from + 2 * H, 15_000, 0.0))];
        // A series that exists only in some blocks.
        if i % 2 == 0 {
            series.push((labels("b"), samples(from, from + 2 * H, 60_000, 1.0)));
        }
        ulids.push(put_block(&store, &series).ulid);
    }
    let before = dump(&store);
    let report = run(&store, &CompactionOptions::default()).unwrap();
    assert_eq!(report.created.len(), 1);
    assert_eq!(report.deleted, ulids[..6]);
    let metas = list_blocks(&store).unwrap();
    assert_eq!(metas.len(), 2, "{metas:#?}");
    let merged = metas.iter().find(|m| m.ulid == report.created[0]).unwrap();
    assert_eq!(merged.compaction.level, 2);
    let mut want_sources = ulids[..6].to_vec();
    want_sources.sort();
    assert_eq!(merged.compaction.sources, want_sources);
    assert_eq!((merged.min_time, merged.max_time), (0, 12 * H - 15_000));
    // The sources' objects are gone, not only their meta.json.
    for u in &ulids[..6] {
        assert!(store.list(u).unwrap().is_empty(), "{u} left objects");
    }
    assert_eq!(dump(&store), before);
    // A second run has nothing to do.
    assert_eq!(
        run(&store, &CompactionOptions::default()).unwrap(),
        CompactionReport::default()
    );
}

#[test]
fn compaction_dedupes_overlapping_blocks() {
    let store = BlockStore::from_url("memory://").unwrap();
    // Two writers with the same series over the same hour, one of them
    // with extra samples in between, and the second with a series of its
    // own.
    put_block(&store, &[(labels("a"), samples(0, H, 30_000, 0.0))]);
    put_block(
        &store,
        &[
            (labels("a"), samples(0, H, 15_000, 0.0)),
            (labels("c"), samples(H / 2, H, 15_000, 5.0)),
        ],
    );
    let before = dump(&store);
    assert_eq!(stored_samples(&store), 120 + 240 + 120);
    let report = run(&store, &CompactionOptions::default()).unwrap();
    assert_eq!(report.created.len(), 1);
    assert_eq!(dump(&store), before);
    // Each timestamp is stored once now.
    assert_eq!(stored_samples(&store), 240 + 120);
}

#[test]
fn compaction_keeps_the_oldest_blocks_value_for_a_duplicate_timestamp() {
    let store = BlockStore::from_url("memory://").unwrap();
    put_block(&store, &[(labels("a"), vec![Sample::new(1000, 1.0)])]);
    put_block(&store, &[(labels("a"), vec![Sample::new(1000, 2.0)])]);
    let before = dump(&store);
    run(&store, &CompactionOptions::default()).unwrap();
    assert_eq!(dump(&store), before);
    assert_eq!(dump(&store)[0].1, vec![Sample::new(1000, 1.0)]);
}

#[test]
fn sources_left_by_a_crash_after_publication_are_deleted() {
    let store = BlockStore::from_url("memory://").unwrap();
    let a = put_block(&store, &[(labels("a"), samples(0, H, 15_000, 0.0))]);
    let b = put_block(&store, &[(labels("a"), samples(H / 2, 2 * H, 15_000, 0.0))]);
    let before = dump(&store);
    // Publish the compacted block as compact_blocks does, but "crash"
    // before deleting the sources.
    let readers: Vec<Arc<dyn Querier>> = [&a, &b]
        .iter()
        .map(|m| Arc::new(BlockReader::new(store.clone(), (*m).clone())) as Arc<dyn Querier>)
        .collect();
    let mut w = BlockWriter::new(BlockOptions::default());
    w.add_from_querier(&MergedQuerier::new(readers), i64::MIN, i64::MAX)
        .unwrap();
    let mut srcs = vec![a.ulid.clone(), b.ulid.clone()];
    srcs.sort();
    let merged = w.encode(2, srcs).unwrap();
    merged.upload(&store).unwrap();
    // Readers see both and count each sample once.
    assert_eq!(list_blocks(&store).unwrap().len(), 3);
    assert_eq!(dump(&store), before);
    // The next run deletes the sources and does not compact again.
    let report = run(&store, &CompactionOptions::default()).unwrap();
    assert!(report.created.is_empty(), "{report:?}");
    let mut deleted = report.deleted.clone();
    deleted.sort();
    let mut want = vec![a.ulid.clone(), b.ulid.clone()];
    want.sort();
    assert_eq!(deleted, want);
    let metas = list_blocks(&store).unwrap();
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].ulid, merged.meta.ulid);
    assert_eq!(dump(&store), before);
}

#[test]
fn interrupted_source_deletion_leaves_an_unpublished_directory() {
    let store = BlockStore::from_url("memory://").unwrap();
    let a = put_block(&store, &[(labels("a"), samples(0, H, 15_000, 0.0))]);
    // delete_block removes meta.json first: simulate a crash right after.
    store.delete(&format!("{}/{META_FILE}", a.ulid)).unwrap();
    assert!(list_blocks(&store).unwrap().is_empty());
    assert_eq!(
        crate::block::clean_partial_blocks(&store).unwrap(),
        vec![a.ulid.clone()]
    );
    assert!(store.list(&a.ulid).unwrap().is_empty());
}
