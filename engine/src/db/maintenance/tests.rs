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
