//! Crash test of the block lifecycle ([`Db::maintain`]): cutting blocks
//! from the head, truncating the head, checkpointing the WAL, compacting.
//! No acknowledged sample is lost or returned twice, whenever the process
//! dies.
//!
//! The binary has no test harness. Run without arguments it is the parent:
//! for each of a bounded number of rounds it writes 30 h of history into a
//! fresh database (small WAL segments, so checkpoints delete several) and
//! closes it, then starts itself as a child (marked by an environment
//! variable) that opens the database and runs maintenance passes until one
//! changes nothing, and kills the child with SIGKILL after a random delay
//! (fixed seed) within the time an uninterrupted child takes. The parent
//! then opens the database as a restarted server would and checks that
//! every sample is returned exactly once with its value; runs maintenance
//! to the end itself and checks again, and that every sample is now
//! *stored* once (blocks' sample counts plus the head's add up to the
//! distinct samples written).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_engine::{Db, DbOptions, Labels, MatchOp, Matcher, Sample, WriteSeries};

const CHILD_DIR_ENV: &str = "CAIRN_LIFECYCLE_CRASH_CHILD_DIR";
const ROUNDS: usize = 12;
const H: i64 = 3_600_000;
const STEP: i64 = 60_000;
const HOURS: i64 = 30;
const SERIES: usize = 8;

fn options() -> DbOptions {
    DbOptions {
        wal_segment_max_bytes: 32 * 1024,
        ..Default::default()
    }
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let db = match Db::open(Path::new(&dir), options()) {
            Ok(db) => db,
            Err(e) => {
                eprintln!("child: open failed: {e}");
                std::process::exit(2);
            }
        };
        for _ in 0..20 {
            match db.maintain() {
                Ok(r) if r.blocks_cut.is_empty() && r.compaction.created.is_empty() => break,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("child: maintenance failed: {e}");
                    std::process::exit(3);
                }
            }
        }
        return;
    }
    parent();
    println!("lifecycle crash test: ok");
}

fn labels(id: &str) -> Labels {
    Labels::from_pairs([("__name__", "lifecycle_crash_metric"), ("id", id)])
}

fn value(i: usize, t: i64) -> f64 {
    (t / STEP) as f64 * 0.25 + i as f64
}

/// Writes the history (a series that stops after the first hour, and
/// `SERIES` that go on) and closes the database; returns every sample.
fn populate(dir: &Path) -> BTreeMap<(String, i64), u64> {
    let db = Db::open(dir, options()).expect("open to populate");
    let mut want = BTreeMap::new();
    for h in 0..HOURS {
        let mut batch = Vec::new();
        for i in 0..=SERIES {
            let id = if i == SERIES {
                if h > 0 {
                    continue;
                }
                "gone".to_string()
            } else {
                i.to_string()
            };
            let samples: Vec<Sample> = (0..H / STEP)
                .map(|k| {
                    let t = h * H + k * STEP;
                    Sample::new(t, value(i, t))
                })
                .collect();
            for s in &samples {
                want.insert((id.clone(), s.t), s.v.to_bits());
            }
            batch.push(WriteSeries {
                labels: labels(&id),
                samples,
            });
        }
        let out = db.append(&batch).expect("append");
        assert!(out.rejected.is_empty(), "{out:?}");
    }
    db.close().expect("close");
    want
}

/// Every sample the database returns, checking no timestamp repeats.
fn read(db: &Db, what: &str) -> BTreeMap<(String, i64), u64> {
    let all = Matcher::new(MatchOp::RegexMatch, "__name__", ".+").expect("matcher");
    let mut out = BTreeMap::new();
    let series = db
        .querier()
        .select(&[all], i64::MIN, i64::MAX)
        .unwrap_or_else(|e| panic!("{what}: select: {e}"));
    for s in series {
        let id = s.labels.get("id").expect("id").to_string();
        for x in s.samples() {
            let prev = out.insert((id.clone(), x.t), x.v.to_bits());
            assert!(
                prev.is_none(),
                "{what}: series {id} has two samples at {}",
                x.t
            );
        }
    }
    out
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn parent() {
    let exe = std::env::current_exe().expect("own path");
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut pass_ms = 0u64;
    let mut killed = 0;
    for round in 0..ROUNDS {
        let tmp = tempfile::tempdir().expect("temp dir");
        let want = populate(tmp.path());

        let started = Instant::now();
        let mut child = Command::new(&exe)
            .env(CHILD_DIR_ENV, tmp.path())
            .spawn()
            .expect("spawn child");
        if round == 0 {
            let status = child.wait().expect("reap the child");
            assert!(
                status.success(),
                "uninterrupted maintenance failed: {status}"
            );
            pass_ms = started.elapsed().as_millis() as u64;
        } else {
            let delay = rng.next() % pass_ms.max(1);
            std::thread::sleep(Duration::from_millis(delay));
            let _ = child.kill();
            let status = child.wait().expect("reap the child");
            if status.code().is_none() {
                killed += 1;
            } else {
                assert!(
                    status.success(),
                    "round {round}: maintenance failed: {status}"
                );
            }
        }

        let what = format!("round {round}, after the crash");
        let db = Db::open(tmp.path(), options()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
        assert_eq!(read(&db, &what), want, "{what}");

        let what = format!("round {round}, after maintenance to the end");
        for _ in 0..20 {
            let r = db.maintain().unwrap_or_else(|e| panic!("{what}: {e}"));
            if r.blocks_cut.is_empty() && r.compaction.created.is_empty() {
                break;
            }
        }
        assert_eq!(read(&db, &what), want, "{what}");
        let in_blocks: u64 = db.blocks().iter().map(|m| m.stats.num_samples).sum();
        let in_head = db.stats().samples;
        assert_eq!(
            in_blocks + in_head,
            want.len() as u64,
            "{what}: {in_blocks} samples in blocks + {in_head} in the head"
        );
        // The head holds the newest ranges only; the series that stopped
        // in the first hour lives in blocks alone.
        assert_eq!(db.stats().series, SERIES as u64, "{what}");
        db.close().expect("close");
    }
    assert!(
        killed >= ROUNDS / 2,
        "only {killed} of {} rounds killed the child",
        ROUNDS - 1
    );
}
