//! Crash test: nothing acknowledged is lost, nothing never sent appears.
//!
//! The binary has no test harness. Run without arguments it is the parent:
//! in a loop of 20 rounds it starts itself as a child (marked by an
//! environment variable), which opens a `Db` in a shared temporary
//! directory, appends deterministic batches and prints `ack <k> ok` after
//! each append returns; the parent kills the child with SIGKILL after a
//! random delay (fixed seed), reopens the database itself and checks that
//! every acknowledged batch is fully present, bit-exact, and that every
//! stored sample belongs to a batch the child had sent. The next child
//! resumes at the first unacknowledged batch, so an in-flight batch that
//! did reach the disk is resent and must not duplicate.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_engine::{Db, DbOptions, Labels, MatchOp, Matcher, STALE_NAN_BITS, Sample, WriteSeries};

const CHILD_DIR_ENV: &str = "CAIRN_CRASH_CHILD_DIR";
const CHILD_START_ENV: &str = "CAIRN_CRASH_CHILD_START";
const ROUNDS: usize = 20;
/// A child stops by itself after this many batches (a bound, never reached
/// in practice within the kill delays).
const MAX_BATCHES_PER_CHILD: u64 = 200_000;

fn main() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let start: u64 = std::env::var(CHILD_START_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        child(Path::new(&dir), start);
        return;
    }
    parent();
    println!("crash test: ok");
}

/// The samples batch `k` writes, as (series labels, t, value).
fn batch_samples(k: u64) -> Vec<(Labels, i64, f64)> {
    let mut out = Vec::new();
    let base = (k * 100) as i64;
    for j in 0..8u64 {
        let id = (k * 3 + j) % 64;
        let v = if k.is_multiple_of(5) && j == 0 {
            f64::from_bits(STALE_NAN_BITS)
        } else {
            (k * 1000 + j) as f64 / 7.0
        };
        let l = Labels::from_pairs([("__name__", "crash_metric"), ("id", &id.to_string())]);
        out.push((l, base + j as i64, v));
    }
    if k >= 5 {
        // Out of order for its series, well within the 10 minute window.
        let l = Labels::from_pairs([("__name__", "crash_metric"), ("id", "0")]);
        out.push((l, ((k - 5) * 100 + 50) as i64, -(k as f64)));
    }
    // A series created by this batch.
    let l = Labels::from_pairs([("__name__", "crash_new"), ("k", &k.to_string())]);
    out.push((l, base, 1.0));
    out
}

fn batch(k: u64) -> Vec<WriteSeries> {
    batch_samples(k)
        .into_iter()
        .map(|(labels, t, v)| WriteSeries {
            labels,
            samples: vec![Sample::new(t, v)],
        })
        .collect()
}

fn child(dir: &Path, start: u64) {
    let db = match Db::open(dir, DbOptions::default()) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("child: open failed: {e}");
            std::process::exit(2);
        }
    };
    let stdout = std::io::stdout();
    for k in start..start + MAX_BATCHES_PER_CHILD {
        match db.append(&batch(k)) {
            Ok(out) if out.rejected.is_empty() => {
                let mut lock = stdout.lock();
                // One write per line: a kill cannot leave a partial number
                // that parses.
                let _ = lock.write_all(format!("ack {k} ok\n").as_bytes());
                let _ = lock.flush();
            }
            Ok(out) => {
                eprintln!("child: batch {k} rejected: {:?}", out.rejected);
                std::process::exit(3);
            }
            Err(e) => {
                eprintln!("child: append failed: {e}");
                std::process::exit(4);
            }
        }
    }
}

/// A small fixed-seed generator for the kill delays.
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
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("db");
    let exe = std::env::current_exe().expect("own path");
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut next_start: u64 = 0;
    let mut rounds_with_acks = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .env(CHILD_DIR_ENV, &dir)
            .env(CHILD_START_ENV, next_start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (first_ack_tx, first_ack_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split(' ');
                if let (Some("ack"), Some(k), Some("ok"), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                    && let Ok(k) = k.parse::<u64>()
                {
                    if acks.is_empty() {
                        let _ = first_ack_tx.send(());
                    }
                    acks.push(k);
                }
            }
            acks
        });
        // Even rounds kill at a random moment after the child's first
        // acknowledgement, so they always test acknowledged data however slow
        // the machine is; odd rounds kill at a random moment after the start,
        // which may fall in WAL replay or before the first append.
        let wait_for_ack = round % 2 == 0;
        if wait_for_ack {
            // Bounded: a child that acknowledges nothing in this time fails
            // the check below.
            let _ = first_ack_rx.recv_timeout(Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(rng.next() % 100));
        } else {
            std::thread::sleep(Duration::from_millis(20 + rng.next() % 130));
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        assert!(
            status.code().is_none(),
            "round {round}: the child exited by itself ({status}) instead of being killed"
        );
        let acks = reader.join().expect("reader thread");
        for w in acks.windows(2) {
            assert_eq!(w[1], w[0] + 1, "acks are sequential");
        }
        if let Some(&first) = acks.first() {
            assert_eq!(first, next_start);
            rounds_with_acks += 1;
        } else {
            assert!(
                !wait_for_ack,
                "round {round}: the child acknowledged nothing within 30 s"
            );
        }
        acked.extend(acks.iter().copied());
        // The child may have sent one batch past its last acknowledgement.
        let max_sent = acks.last().map_or(next_start, |&k| k + 1);
        verify(&dir, &acked, max_sent, round);
        next_start = acks.last().map_or(next_start, |&k| k + 1);
    }
    assert!(
        rounds_with_acks >= ROUNDS / 2,
        "only {rounds_with_acks} of {ROUNDS} rounds acknowledged anything"
    );
    println!(
        "crash test: {} batches acknowledged over {ROUNDS} kills",
        acked.len()
    );
}

/// Reopens the database and checks it against what was acknowledged and
/// what could have been sent.
fn verify(dir: &Path, acked: &BTreeSet<u64>, max_sent: u64, round: usize) {
    let db = Db::open(dir, DbOptions::default())
        .unwrap_or_else(|e| panic!("round {round}: reopen after SIGKILL failed: {e}"));
    let q = db.querier();
    let all = Matcher::new(MatchOp::RegexMatch, "__name__", ".+").expect("matcher");
    let mut stored: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for s in q.select(&[all], i64::MIN, i64::MAX).expect("select") {
        let name = s.labels.to_string();
        for x in s.samples() {
            let prev = stored.insert((name.clone(), x.t), x.v.to_bits());
            assert!(
                prev.is_none(),
                "round {round}: {name} has two samples at {}",
                x.t
            );
        }
    }
    // Everything that could exist, with the batch that wrote it.
    let mut expected: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    for k in 0..=max_sent {
        for (l, t, v) in batch_samples(k) {
            expected.insert((l.to_string(), t), (v.to_bits(), k));
        }
    }
    for &k in acked {
        for (l, t, v) in batch_samples(k) {
            let key = (l.to_string(), t);
            match stored.get(&key) {
                Some(&bits) => assert_eq!(
                    bits,
                    v.to_bits(),
                    "round {round}: acknowledged batch {k}: {key:?} has the wrong value"
                ),
                None => panic!("round {round}: acknowledged batch {k} lost {key:?}"),
            }
        }
    }
    for (key, bits) in &stored {
        match expected.get(key) {
            Some(&(want, _)) => assert_eq!(*bits, want, "round {round}: {key:?}"),
            None => panic!("round {round}: {key:?} was never sent (max sent batch {max_sent})"),
        }
    }
    db.close().expect("close");
}
