//! Crash test around compaction: no sample is lost or doubled, whenever the
//! compactor dies.
//!
//! The binary has no test harness. Run without arguments it is the parent:
//! for each of a bounded number of rounds it writes a fresh local block
//! store (fourteen 2 h level-1 blocks plus two overlapping blocks from a
//! "second writer" that repeat some samples and add others), starts itself
//! as a child (marked by an environment variable) that runs one compaction
//! pass ([`compact::run`]) over the store, and kills the child with SIGKILL
//! after a random delay (fixed seed) spread over the first half of the
//! time an uninterrupted pass takes. It then checks, as a reader would see the store right after
//! the crash, that every sample is returned exactly once with its value;
//! runs the restart clean-up ([`clean_partial_blocks`]) and a full
//! compaction pass in-process, and checks that every sample is now also
//! *stored* exactly once (the blocks' sample counts add up to the distinct
//! samples written), and that a further pass has nothing to do.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_engine::block::compact::{self, CompactionOptions, CompactionReport};
use cairn_engine::block::{
    BlockOptions, BlockStore, BlockWriter, BlocksQuerier, clean_partial_blocks, list_blocks,
};
use cairn_engine::{Labels, MatchOp, Matcher, Querier, Sample};

const CHILD_DIR_ENV: &str = "CAIRN_COMPACT_CRASH_CHILD_DIR";
const ROUNDS: usize = 12;
const H: i64 = 3_600_000;
const SERIES: usize = 10;

fn main() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let store = match BlockStore::local(Path::new(&dir)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("child: open store failed: {e}");
                std::process::exit(2);
            }
        };
        if let Err(e) = compact::run(&store, &CompactionOptions::default()) {
            eprintln!("child: compaction failed: {e}");
            std::process::exit(3);
        }
        return;
    }
    parent();
    println!("compaction crash test: ok");
}

fn labels(i: usize) -> Labels {
    Labels::from_pairs([("__name__", "compact_crash_metric"), ("id", &i.to_string())])
}

/// The value every writer gives series `i` at `t`, so that repeated
/// samples agree.
fn value(i: usize, t: i64) -> f64 {
    (t / 1000) as f64 * 0.5 + i as f64
}

/// Writes one level-1 block of every series over `[from, to)` every `step`
/// ms, offset by `offset` ms.
fn write_block(store: &BlockStore, from: i64, to: i64, step: i64, offset: i64) {
    let mut w = BlockWriter::new(BlockOptions::default());
    for i in 0..SERIES {
        let samples: Vec<Sample> = (0..)
            .map(|k| from + offset + k * step)
            .take_while(|t| *t < to)
            .map(|t| Sample::new(t, value(i, t)))
            .collect();
        w.add_series(labels(i), &samples);
    }
    let b = w.encode(1, Vec::new()).expect("encode");
    b.upload(store).expect("upload");
}

/// Writes the round's blocks; returns every distinct sample written.
fn populate(store: &BlockStore) -> BTreeMap<(usize, i64), u64> {
    for b in 0..14 {
        write_block(store, b * 2 * H, (b + 1) * 2 * H, 60_000, 0);
    }
    // The second writer: every 30 s over [3 h, 5 h) and [13 h, 14 h),
    // half its samples at timestamps the first writer has too.
    write_block(store, 3 * H, 5 * H, 30_000, 0);
    write_block(store, 13 * H, 14 * H, 30_000, 0);
    let mut want = BTreeMap::new();
    for i in 0..SERIES {
        for (from, to, step) in [
            (0, 28 * H, 60_000),
            (3 * H, 5 * H, 30_000),
            (13 * H, 14 * H, 30_000),
        ] {
            let mut t = from;
            while t < to {
                want.insert((i, t), value(i, t).to_bits());
                t += step;
            }
        }
    }
    want
}

/// Every sample a reader sees, checking that no timestamp repeats.
fn read(store: &BlockStore, what: &str) -> BTreeMap<(usize, i64), u64> {
    let q = BlocksQuerier::open(store.clone())
        .unwrap_or_else(|e| panic!("{what}: open the store: {e}"));
    let all = Matcher::new(MatchOp::RegexMatch, "__name__", ".+").expect("matcher");
    let mut out = BTreeMap::new();
    for s in q.select(&[all], i64::MIN, i64::MAX).expect("select") {
        let i: usize = s
            .labels
            .get("id")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}: unexpected series {}", s.labels));
        for x in s.samples() {
            let prev = out.insert((i, x.t), x.v.to_bits());
            assert!(
                prev.is_none(),
                "{what}: series {i} has two samples at {}",
                x.t
            );
        }
    }
    out
}

fn stored_samples(store: &BlockStore) -> u64 {
    list_blocks(store)
        .expect("list")
        .iter()
        .map(|m| m.stats.num_samples)
        .sum()
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
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    // Round 0 runs uninterrupted, to learn how long a pass takes.
    let mut pass_ms = 0u64;
    let mut killed = 0;
    for round in 0..ROUNDS {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = BlockStore::local(tmp.path()).expect("store");
        let want = populate(&store);
        assert_eq!(read(&store, "before compaction"), want);

        let started = Instant::now();
        let mut child = Command::new(&exe)
            .env(CHILD_DIR_ENV, tmp.path())
            .spawn()
            .expect("spawn child");
        if round == 0 {
            let status = child.wait().expect("reap the child");
            assert!(
                status.success(),
                "uninterrupted compaction failed: {status}"
            );
            pass_ms = started.elapsed().as_millis() as u64;
        } else {
            // Over the first half of a pass: later passes may run faster
            // than round 0's on a loaded machine.
            let delay = rng.next() % (pass_ms / 2).max(1);
            std::thread::sleep(Duration::from_millis(delay));
            let _ = child.kill();
            let status = child.wait().expect("reap the child");
            if status.code().is_none() {
                killed += 1;
            } else {
                assert!(
                    status.success(),
                    "round {round}: compaction failed: {status}"
                );
            }
        }

        let what = format!("round {round}, after the crash");
        assert_eq!(read(&store, &what), want, "{what}");

        // Restart: clean up, finish the work, and check it is stored once.
        clean_partial_blocks(&store).expect("clean partial blocks");
        compact::run(&store, &CompactionOptions::default()).expect("compaction after restart");
        let what = format!("round {round}, after restart");
        assert_eq!(read(&store, &what), want, "{what}");
        assert_eq!(
            stored_samples(&store),
            want.len() as u64,
            "{what}: samples stored more than once"
        );
        assert_eq!(
            compact::run(&store, &CompactionOptions::default()).expect("again"),
            CompactionReport::default(),
            "{what}: a second pass found work"
        );
    }
    // Coverage, not correctness (every round's checks hold whether or not
    // the kill landed mid-pass): kills depend on timing, so ask for one.
    assert!(
        killed >= 1,
        "only {killed} of {ROUNDS} children were killed mid-compaction (pass takes {pass_ms} ms)"
    );
    println!(
        "compaction crash test: {killed} kills mid-compaction over {ROUNDS} rounds, a pass takes {pass_ms} ms"
    );
}
