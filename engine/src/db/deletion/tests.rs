//! Deleting series from a `Db`: hidden at once from head and blocks, kept
//! hidden across a restart (the WAL replays the samples), left out of
//! blocks cut later, removed from old blocks by `clean_tombstones`, and the
//! request dropped once applied everywhere.

use super::*;
use crate::block::{BlockStore, BlocksQuerier};
use crate::db::{DbOptions, WriteSeries};
use crate::labels::Labels;
use crate::matcher::MatchOp;
use crate::sample::Sample;

const H: i64 = 3_600_000;
const STEP: i64 = 60_000;

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

fn series() -> Vec<Labels> {
    ["a", "b"]
        .iter()
        .map(|j| Labels::from_pairs([("__name__", "up"), ("job", *j)]))
        .collect()
}

/// Appends hours `[from, to)` of both series, a sample a minute.
fn append_hours(db: &Db, from: i64, to: i64) {
    let batch: Vec<WriteSeries> = series()
        .into_iter()
        .map(|labels| WriteSeries {
            labels,
            samples: (from * H / STEP..to * H / STEP)
                .map(|i| Sample::new(i * STEP, i as f64))
                .collect(),
        })
        .collect();
    assert!(db.append(&batch).unwrap().rejected.is_empty());
}

/// (job, timestamps) of every series `q` returns over everything.
fn dump(q: &dyn Querier) -> Vec<(String, Vec<i64>)> {
    q.select(
        &[m(MatchOp::RegexMatch, "__name__", ".*")],
        i64::MIN,
        i64::MAX,
    )
    .unwrap()
    .into_iter()
    .map(|s| {
        let job = s.labels.get("job").unwrap_or("").to_string();
        (job, s.samples().iter().map(|x| x.t).collect())
    })
    .collect()
}

fn minutes(from: i64, to: i64) -> Vec<i64> {
    (from / STEP..to / STEP).map(|i| i * STEP).collect()
}

/// Minutes of `[from, to)` except those in `[lo, hi]`.
fn minutes_without(from: i64, to: i64, lo: i64, hi: i64) -> Vec<i64> {
    minutes(from, to)
        .into_iter()
        .filter(|t| *t < lo || *t > hi)
        .collect()
}

#[test]
fn deleted_head_samples_stay_hidden_across_a_restart_and_stay_out_of_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        BlockStore::from_url(&format!("file://{}", dir.path().join("blocks").display())).unwrap();
    let opts = || DbOptions {
        block_store: Some(store.clone()),
        ..DbOptions::default()
    };
    let db = Db::open(&dir.path().join("data"), opts()).unwrap();
    append_hours(&db, 0, 1);
    // Delete job a in [10 min, 20 min] and beyond the data (clamped).
    let (lo, hi) = (10 * STEP, 20 * STEP);
    let req = db
        .delete_series(&[m(MatchOp::Equal, "job", "a")], lo, hi)
        .unwrap()
        .expect("data in range");
    assert_eq!((req.min_time, req.max_time), (lo, hi));
    let until_now = db
        .delete_series(&[m(MatchOp::Equal, "job", "b")], 59 * STEP, i64::MAX)
        .unwrap()
        .expect("data in range");
    assert_eq!(
        until_now.max_time,
        59 * STEP,
        "clamped to the newest sample"
    );
    let want = vec![
        ("a".to_string(), minutes_without(0, H, lo, hi)),
        ("b".to_string(), minutes(0, 59 * STEP)),
    ];
    assert_eq!(dump(&*db.querier()), want);
    // No data in the range: nothing to delete.
    assert!(db.delete_series(&[], 5 * H, 6 * H).unwrap().is_none());

    // Samples written later, beyond the clamped range, are not hidden.
    append_hours(&db, 1, 5);
    let want = vec![
        ("a".to_string(), minutes_without(0, 5 * H, lo, hi)),
        (
            "b".to_string(),
            minutes_without(0, 5 * H, 59 * STEP, 59 * STEP),
        ),
    ];
    assert_eq!(dump(&*db.querier()), want);

    // After a restart (the WAL replays the deleted samples) they stay
    // hidden: the requests are in the store.
    db.close().unwrap();
    let db = Db::open(&dir.path().join("data"), opts()).unwrap();
    assert_eq!(db.tombstones().len(), 2);
    assert_eq!(dump(&*db.querier()), want);

    // Maintenance cuts [0, 2 h) and [2 h, 4 h) (newest sample 5 h - 1 min)
    // through the requests: the blocks themselves hold no deleted sample,
    // the head moves past the requests' ranges, and the requests go.
    let report = db.maintain().unwrap();
    assert_eq!(report.blocks_cut.len(), 2, "{report:?}");
    assert_eq!(report.tombstones_removed, 2, "{report:?}");
    assert!(db.tombstones().is_empty());
    assert!(crate::tombstone::load(&store).unwrap().is_empty());
    let raw = BlocksQuerier::open(store.clone()).unwrap();
    let in_blocks = dump(&raw);
    assert_eq!(in_blocks[0].1, minutes_without(0, 4 * H, lo, hi));
    assert_eq!(
        in_blocks[1].1,
        minutes_without(0, 4 * H, 59 * STEP, 59 * STEP)
    );
    assert_eq!(dump(&*db.querier()), want);
    db.close().unwrap();
}

#[test]
fn clean_tombstones_rewrites_blocks_written_before_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::from_url("memory://").unwrap();
    let db = Db::open(
        dir.path(),
        DbOptions {
            block_store: Some(store.clone()),
            ..DbOptions::default()
        },
    )
    .unwrap();
    append_hours(&db, 0, 5);
    assert_eq!(db.maintain().unwrap().blocks_cut.len(), 2);
    let blocks_before: Vec<String> = db.blocks().iter().map(|m| m.ulid.clone()).collect();

    // Delete all of job a in the first block's range and a slice of the
    // second; the head (from 4 h) is not touched.
    let (lo, hi) = (0, 2 * H + 30 * STEP);
    db.delete_series(&[m(MatchOp::Equal, "job", "a")], i64::MIN, hi)
        .unwrap()
        .expect("data in range");
    let want = vec![
        ("a".to_string(), minutes_without(0, 5 * H, lo, hi)),
        ("b".to_string(), minutes(0, 5 * H)),
    ];
    assert_eq!(dump(&*db.querier()), want);
    // The blocks still hold the samples until cleaned; a maintenance pass
    // keeps the request.
    assert_eq!(
        dump(&BlocksQuerier::open(store.clone()).unwrap())[0].1,
        minutes(0, 4 * H)
    );
    assert_eq!(db.maintain().unwrap().tombstones_removed, 0);
    assert_eq!(db.tombstones().len(), 1);

    // ULIDs carry milliseconds: let the rewrite's be later than the
    // request's.
    std::thread::sleep(std::time::Duration::from_millis(2));
    let report = db.clean_tombstones().unwrap();
    assert_eq!(report.compaction.deleted.len(), 2, "{report:?}");
    assert_eq!(report.compaction.created.len(), 2, "{report:?}");
    assert_eq!(report.tombstones_removed, 1, "{report:?}");
    assert!(db.tombstones().is_empty());
    let after: Vec<crate::block::BlockMeta> = db.blocks();
    assert!(after.iter().all(|m| !blocks_before.contains(&m.ulid)));
    assert!(after.iter().all(|m| m.compaction.level == 1));
    let raw = dump(&BlocksQuerier::open(store.clone()).unwrap());
    assert_eq!(
        raw,
        vec![
            ("a".to_string(), minutes_without(0, 4 * H, lo, hi)),
            ("b".to_string(), minutes(0, 4 * H)),
        ]
    );
    assert_eq!(dump(&*db.querier()), want);
    // Nothing left to clean.
    let again = db.clean_tombstones().unwrap();
    assert!(again.compaction.created.is_empty() && again.compaction.deleted.is_empty());
    db.close().unwrap();
}

#[test]
fn a_rewritten_block_makes_its_original_obsolete() {
    // A crash after a rewrite was published but before the original was
    // deleted leaves both; the next compaction pass deletes the original.
    let store = BlockStore::from_url("memory://").unwrap();
    let mut w = crate::block::BlockWriter::new(Default::default());
    w.add_series(
        series()[0].clone(),
        &[Sample::new(1, 1.0), Sample::new(2, 2.0)],
    );
    let original = w.encode(1, Vec::new()).unwrap();
    original.upload(&store).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let mut w = crate::block::BlockWriter::new(Default::default());
    w.add_series(series()[0].clone(), &[Sample::new(2, 2.0)]);
    let rewrite = w.encode(1, vec![original.meta.ulid.clone()]).unwrap();
    rewrite.upload(&store).unwrap();
    let metas = crate::block::list_blocks(&store).unwrap();
    let obsolete = compact::obsolete_blocks(&metas);
    assert_eq!(obsolete.len(), 1);
    assert_eq!(obsolete[0].ulid, original.meta.ulid);
}

#[test]
fn a_snapshot_holds_every_sample_of_blocks_and_head_as_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("data"), DbOptions::default()).unwrap();
    append_hours(&db, 0, 5);
    assert_eq!(db.maintain().unwrap().blocks_cut.len(), 2);
    db.delete_series(&[m(MatchOp::Equal, "job", "b")], 4 * H, 4 * H + 10 * STEP)
        .unwrap()
        .expect("data in range");
    let want = dump(&*db.querier());
    let snap = dir.path().join("snap");
    let metas = db.snapshot(&snap, false).unwrap();
    assert_eq!(metas.len(), 3, "two blocks and the head");
    let store = BlockStore::local(&snap).unwrap();
    assert_eq!(dump(&BlocksQuerier::open(store).unwrap()), want);
    // Without the head: the blocks only.
    let only_blocks = db.snapshot(&dir.path().join("snap2"), true).unwrap();
    assert_eq!(only_blocks.len(), 2);
    db.close().unwrap();
}
