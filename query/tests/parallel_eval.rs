//! Evaluation on several threads gives exactly the answer of one thread:
//! values bit for bit (aggregations fold series in the same order),
//! the same warnings and infos in the same order, the same errors.
//!
//! The data is a few hundred series with counter resets, gaps, staleness
//! markers and NaNs, enough for selections to be split into batches.

use cairn_engine::{Labels, STALE_NAN_BITS, Sample};
use cairn_query::promqltest::{DbStorage, TestStorage};
use cairn_query::{Engine, EngineOptions};

const H: i64 = 3_600_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn storage() -> (tempfile::TempDir, DbStorage) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut st = DbStorage::open(&tmp.path().join("db")).expect("db");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut batch = Vec::new();
    for i in 0..300 {
        let name = if i % 7 == 0 {
            "tokens_used"
        } else {
            "req_total"
        };
        let labels = Labels::from_pairs([
            ("__name__", name.to_string()),
            ("job", format!("job-{}", i % 3)),
            ("model", format!("m{}", i % 11)),
            ("instance", format!("i{i}")),
        ]);
        let mut v = 0.0;
        let mut samples = Vec::new();
        let mut t = (rng.next() % 15_000) as i64;
        while t < 2 * H {
            let r = rng.next() % 1000;
            if r < 3 {
                v = 0.0; // a counter reset
            }
            v += (rng.next() % 100) as f64 / 7.0;
            let value = match r {
                3..=5 => f64::from_bits(STALE_NAN_BITS),
                6 => f64::NAN,
                _ => v,
            };
            samples.push(Sample::new(t, value));
            // Gaps longer than the lookback now and then.
            t += if r == 7 { 400_000 } else { 15_000 };
        }
        batch.push((labels, samples));
    }
    st.load(batch).expect("load");
    (tmp, st)
}

#[test]
fn every_thread_count_gives_the_single_thread_answer() {
    let (_tmp, st) = storage();
    let engine = |threads| {
        Engine::new(EngineOptions {
            threads,
            ..EngineOptions::default()
        })
    };
    let serial = engine(1);
    let queries = [
        "sum by (model) (rate(req_total[5m]))",
        "avg by (job) (increase(tokens_used[10m]))",
        "rate({__name__=~\".+\"}[5m])",
        "count by (job) ({__name__=~\".+\"})",
        "sum by (job) (req_total)",
        "stddev by (model) (req_total)",
        "quantile_over_time(1.5, req_total[5m])",
        "quantile_over_time(0.9, req_total[5m])",
        "absent_over_time(req_total{job=\"nope\"}[5m])",
        "absent_over_time(req_total[1m])",
        "max_over_time(rate(req_total[5m])[30m:1m])",
        "sum(deriv(tokens_used[15m]))",
        "timestamp(req_total)",
        "req_total offset 5m",
        "last_over_time(req_total[3m] @ 3600)",
    ];
    for q in queries {
        let (start, end, step) = (0, 2 * H, 60_000);
        let want = serial.range_query(st.querier(), q, start, end, step);
        for threads in [2, 3, 8] {
            let got = engine(threads).range_query(st.querier(), q, start, end, step);
            match (&want, &got) {
                (Ok(w), Ok(g)) => {
                    assert_eq!(
                        format!("{:?}", w.value),
                        format!("{:?}", g.value),
                        "{q} on {threads} threads"
                    );
                    assert_eq!(w.warnings, g.warnings, "{q}");
                    assert_eq!(w.infos, g.infos, "{q}");
                    assert_eq!(w.stats.samples_read, g.stats.samples_read, "{q}");
                }
                (Err(w), Err(g)) => assert_eq!(w.to_string(), g.to_string(), "{q}"),
                _ => panic!("{q} on {threads} threads: {want:?} vs {got:?}"),
            }
        }
        // The instant form too (a range vector returned as such included).
        let want = serial.instant_query(st.querier(), q, H);
        let got = engine(2).instant_query(st.querier(), q, H);
        assert_eq!(
            format!("{:?}", want.map(|r| (r.value, r.warnings, r.infos))),
            format!("{:?}", got.map(|r| (r.value, r.warnings, r.infos))),
            "{q} instant"
        );
    }
    // Sanity: the data exercises what it should.
    let r = serial
        .range_query(
            st.querier(),
            "quantile_over_time(1.5, req_total[5m])",
            0,
            2 * H,
            60_000,
        )
        .expect("query");
    assert!(!r.warnings.is_empty(), "a warning is expected");
    let r = serial
        .instant_query(st.querier(), "count(req_total[2h])", 2 * H)
        .err();
    assert!(r.is_some(), "count of a range vector is a type error");
}

#[test]
fn the_sample_limit_holds_on_every_thread_count() {
    let (_tmp, st) = storage();
    for threads in [1, 2] {
        let e = Engine::new(EngineOptions {
            threads,
            max_samples: 1_000,
            ..EngineOptions::default()
        });
        let err = e
            .range_query(st.querier(), "sum(rate(req_total[5m]))", 0, 2 * H, 60_000)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "query processing would load too many samples into memory in query execution"
        );
    }
}
