//! Range-query evaluation speed on dashboard-shaped queries: 10k counter
//! series and 10k classic-histogram bucket series (1k histograms of 10
//! buckets), 6 h of 15 s samples, evaluated at a 15 s step.
//!
//! Data are deterministic (fixed seed), appended to a real `Db` (head
//! chunks) in a temporary directory, and read back through its querier, so
//! the figures include selecting and decoding.

use std::hint::black_box;

use cairn_engine::{Labels, Sample};
use cairn_query::promqltest::{DbStorage, TestStorage};
use cairn_query::{Engine, EngineOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const HOURS: i64 = 6;
const SCRAPE_MS: i64 = 15_000;
const MODELS: usize = 10;
const ROUTES: usize = 10;

/// A small xorshift generator: deterministic and dependency free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn counter(rng: &mut Rng, points: i64, rate: f64) -> Vec<Sample> {
    let mut v = 0.0;
    (0..points)
        .map(|i| {
            v += rate * rng.unit() * 15.0;
            Sample::new(i * SCRAPE_MS + (rng.next() % 20) as i64, v)
        })
        .collect()
}

fn data(dir: &std::path::Path) -> DbStorage {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let points = HOURS * 3600 * 1000 / SCRAPE_MS;
    let mut batch = Vec::new();
    // 10k request counters: model x route x 100 instances.
    for m in 0..MODELS {
        for r in 0..ROUTES {
            for i in 0..100 {
                let labels = Labels::from_pairs([
                    ("__name__", "infer_requests_total".to_string()),
                    ("model", format!("model-{m}")),
                    ("route", format!("/v1/route-{r}")),
                    ("instance", format!("10.0.{m}.{i}:9100")),
                    ("job", "inference".to_string()),
                ]);
                batch.push((labels, counter(&mut rng, points, 5.0)));
            }
        }
    }
    // 1k latency histograms of 10 buckets: model x 100 instances.
    let bounds = [
        "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "+Inf",
    ];
    for m in 0..MODELS {
        for i in 0..100 {
            let base = counter(&mut rng, points, 10.0);
            for (bi, le) in bounds.iter().enumerate() {
                let frac = (bi + 1) as f64 / bounds.len() as f64;
                let labels = Labels::from_pairs([
                    ("__name__", "infer_latency_ms_bucket".to_string()),
                    ("model", format!("model-{m}")),
                    ("instance", format!("10.0.{m}.{i}:9100")),
                    ("job", "inference".to_string()),
                    ("le", le.to_string()),
                ]);
                let s = base
                    .iter()
                    .map(|p| Sample::new(p.t, (p.v * frac).floor()))
                    .collect();
                batch.push((labels, s));
            }
        }
    }
    let mut st = DbStorage::open(dir).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = st.load(batch) {
        panic!("loading bench data: {e}");
    }
    st
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let st = data(&tmp.path().join("db"));
    // One thread and one per core: the same queries, the same answers.
    let engines = [
        (
            "1_thread",
            Engine::new(EngineOptions {
                threads: 1,
                ..EngineOptions::default()
            }),
        ),
        ("all_cores", Engine::new(EngineOptions::default())),
    ];
    let end = HOURS * 3600 * 1000;
    let steps = (end / SCRAPE_MS + 1) as u64;
    let queries = [
        (
            "sum_by_rate",
            "sum by (model) (rate(infer_requests_total[5m]))",
        ),
        (
            "histogram_quantile",
            "histogram_quantile(0.95, sum by (le, model) (rate(infer_latency_ms_bucket[5m])))",
        ),
        (
            "error_ratio",
            "sum by (model, route) (rate(infer_requests_total{route=~\".*-1\"}[5m])) / sum by (model, route) (rate(infer_requests_total[5m]))",
        ),
        ("count_by_job", "count by (job) ({__name__=~\".+\"})"),
    ];
    let mut g = c.benchmark_group("range_query_6h_15s");
    // The storage share of the queries: select the 10k counters and decode
    // all their samples, as a range query over the whole window does.
    g.bench_function("select_and_decode_only", |b| {
        let m = [cairn_engine::Matcher::equal(
            "__name__",
            "infer_requests_total",
        )];
        b.iter(|| {
            let series = st.querier().select(&m, -300_000, end).expect("select");
            let mut buf = Vec::new();
            let mut n = 0;
            for s in &series {
                buf.clear();
                s.read_samples(-300_000, end, &mut buf);
                n += buf.len();
            }
            black_box(n)
        })
    });
    g.sample_size(10);
    // Output points per series x 10k input series.
    g.throughput(Throughput::Elements(steps * 10_000));
    for (name, q) in queries {
        for (threads, engine) in &engines {
            g.bench_function(format!("{name}/{threads}"), |b| {
                b.iter(|| {
                    let r = engine.range_query(st.querier(), q, 0, end, SCRAPE_MS);
                    black_box(r.map(|r| r.value))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
