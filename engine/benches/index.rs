//! Label index benchmarks: matcher resolution over 1M series shaped like an
//! LLM-serving fleet, `add` throughput, and index memory per series.
//!
//! The fleet: 70 instances (job, region, version, gpu and cluster derived
//! from the instance), 20 models, 4 routes, 6 adapters, and per combination
//! 33 series: 5 counters, 2 gauges and 2 classic histograms of 13 `le`
//! buckets each; 10 to 11 labels per series. The first 1,000,000 series in
//! scrape order (instance by instance, metric family by metric family, as
//! the head would number them on a first scrape) are indexed. Everything is
//! enumerated, no randomness, so every run indexes the same data.
//!
//! Run: `cargo bench -p cairn-engine --bench index`. The memory figures are
//! printed to stderr once, before the benchmarks.

use std::hint::black_box;
use std::sync::OnceLock;

use cairn_engine::index::{Interner, Postings, SeriesRef};
use cairn_engine::{Labels, MatchOp, Matcher};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const SERIES: usize = 1_000_000;

const MODELS: [&str; 20] = [
    "llama-3-8b",
    "llama-3-70b",
    "llama-3.1-405b",
    "llama-guard-3",
    "mistral-7b",
    "mixtral-8x7b",
    "mixtral-8x22b",
    "qwen2-7b",
    "qwen2-72b",
    "gemma-2-9b",
    "gemma-2-27b",
    "phi-3-mini",
    "phi-3-medium",
    "deepseek-v2",
    "deepseek-coder",
    "command-r",
    "command-r-plus",
    "yi-34b",
    "falcon-40b",
    "dbrx",
];
const ROUTES: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
];
const ADAPTERS: [&str; 6] = [
    "none",
    "lora-support",
    "lora-code",
    "lora-sql",
    "lora-chat",
    "lora-legal",
];
const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"];
const VERSIONS: [&str; 3] = ["v1.4.2", "v1.5.0", "v1.5.1"];
const COUNTERS: [&str; 5] = [
    "infer_requests_total",
    "infer_errors_total",
    "tokens_in_total",
    "tokens_out_total",
    "infer_cost_usd_total",
];
const GAUGES: [&str; 2] = ["gpu_utilization", "queue_depth"];
const HISTOGRAMS: [&str; 2] = ["infer_latency_ms_bucket", "ttft_ms_bucket"];
const LE: [&str; 13] = [
    "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000", "+Inf",
];
const PER_COMBO: usize = COUNTERS.len() + GAUGES.len() + HISTOGRAMS.len() * LE.len();

/// The label set of series number `n` of the fleet.
fn fleet_series(n: usize) -> Labels {
    // Scrape order: instance by instance, each target exposing metric by
    // metric (one family's series together), then model, route, adapter.
    let combos = MODELS.len() * ROUTES.len() * ADAPTERS.len();
    let instance = n / (PER_COMBO * combos);
    let metric = n / combos % PER_COMBO;
    let combo = n % combos;
    let adapter = combo % ADAPTERS.len();
    let route = combo / ADAPTERS.len() % ROUTES.len();
    let model = combo / (ADAPTERS.len() * ROUTES.len());
    let region = REGIONS[instance % REGIONS.len()];
    let mut pairs: Vec<(&str, String)> = vec![
        (
            "job",
            if instance < 50 { "vllm" } else { "tgi" }.to_string(),
        ),
        ("instance", format!("node-{instance:03}:8080")),
        ("region", region.to_string()),
        (
            "cluster",
            format!(
                "{}-{}",
                region,
                if instance.is_multiple_of(2) { "a" } else { "b" }
            ),
        ),
        (
            "gpu",
            if instance.is_multiple_of(3) {
                "a100"
            } else {
                "h100"
            }
            .to_string(),
        ),
        ("version", VERSIONS[instance % VERSIONS.len()].to_string()),
        ("model", MODELS[model].to_string()),
        ("route", ROUTES[route].to_string()),
        ("adapter", ADAPTERS[adapter].to_string()),
    ];
    if metric < COUNTERS.len() {
        pairs.push(("__name__", COUNTERS[metric].to_string()));
    } else if metric < COUNTERS.len() + GAUGES.len() {
        pairs.push(("__name__", GAUGES[metric - COUNTERS.len()].to_string()));
    } else {
        let h = metric - COUNTERS.len() - GAUGES.len();
        pairs.push(("__name__", HISTOGRAMS[h / LE.len()].to_string()));
        pairs.push(("le", LE[h % LE.len()].to_string()));
    }
    Labels::from_pairs(pairs)
}

struct Fleet {
    _interner: Interner,
    postings: Postings,
}

/// The 1M-series index, built once for every group.
fn fleet() -> &'static Fleet {
    static FLEET: OnceLock<Fleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        let interner = Interner::new();
        let postings = Postings::new();
        let mut held = Vec::with_capacity(SERIES);
        for n in 0..SERIES {
            let l = interner.intern_labels(&fleet_series(n));
            postings.add(SeriesRef(n as u32), &l);
            // The head holds every series' labels; keep them so the
            // interned strings stay shared as they would be.
            held.push(l);
        }
        let strings = interner.memory_bytes();
        let index = postings.memory_bytes();
        let labels_vec = held.len() * (std::mem::size_of::<Labels>() + 10 * 32);
        eprintln!(
            "index memory for {SERIES} series: interner {strings} B ({} distinct strings), \
             postings {index} B, together {:.1} B/series; \
             (for reference, the head's per-series Labels vectors: ~{:.0} B/series)",
            interner.len(),
            (strings + index) as f64 / SERIES as f64,
            labels_vec as f64 / SERIES as f64,
        );
        drop(held);
        Fleet {
            _interner: interner,
            postings,
        }
    })
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).expect("bench matchers compile")
}

fn bench_select(c: &mut Criterion) {
    let f = fleet();
    use MatchOp::*;
    let cases: Vec<(&str, Vec<Matcher>)> = vec![
        (
            "eq_metric",
            vec![m(Equal, "__name__", "infer_requests_total")],
        ),
        (
            "eq_metric_model",
            vec![
                m(Equal, "__name__", "infer_requests_total"),
                m(Equal, "model", "llama-3-70b"),
            ],
        ),
        (
            "regex_alternation",
            vec![m(RegexMatch, "model", "llama-3-8b|mistral-7b|qwen2-72b")],
        ),
        ("regex_prefix", vec![m(RegexMatch, "instance", "node-01.*")]),
        (
            "regex_general",
            vec![m(RegexMatch, "instance", ".*-0[1-3]\\d:8080")],
        ),
        ("not_equal", vec![m(NotEqual, "route", "/v1/embeddings")]),
        (
            "eq_metric_not_equal",
            vec![
                m(Equal, "__name__", "infer_requests_total"),
                m(NotEqual, "route", "/v1/embeddings"),
            ],
        ),
        (
            "dashboard_3",
            vec![
                m(Equal, "__name__", "infer_latency_ms_bucket"),
                m(RegexMatch, "model", "llama.*"),
                m(Equal, "region", "us-east-1"),
            ],
        ),
        (
            "drilldown_instance_3",
            vec![
                m(Equal, "__name__", "infer_latency_ms_bucket"),
                m(Equal, "instance", "node-007:8080"),
                m(RegexMatch, "model", "llama.*"),
            ],
        ),
        ("name_nonempty", vec![m(RegexMatch, "__name__", ".+")]),
    ];
    let mut g = c.benchmark_group("index_select_1M");
    for (name, ms) in &cases {
        eprintln!("{name}: {} series", f.postings.select(ms).len());
        g.bench_function(*name, |b| {
            b.iter(|| black_box(f.postings.select(black_box(ms))))
        });
    }
    let within = f
        .postings
        .select(&[m(Equal, "__name__", "infer_requests_total")]);
    g.bench_function("label_values_model_within_metric", |b| {
        b.iter(|| black_box(f.postings.label_values("model", Some(black_box(&within)))))
    });
    g.bench_function("label_names_within_metric", |b| {
        b.iter(|| black_box(f.postings.label_names(Some(black_box(&within)))))
    });
    g.sample_size(10);
    g.bench_function("cardinality_top10", |b| {
        b.iter(|| black_box(f.postings.cardinality(10)))
    });
    g.finish();
}

fn bench_add(c: &mut Criterion) {
    const N: usize = 100_000;
    let sets: Vec<Labels> = (0..N).map(fleet_series).collect();
    let mut g = c.benchmark_group("index_add");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("intern_and_add_100k_new_series", |b| {
        b.iter_batched(
            || (Interner::new(), Postings::new()),
            |(interner, postings)| {
                for (n, l) in sets.iter().enumerate() {
                    postings.add(SeriesRef(n as u32), &interner.intern_labels(l));
                }
                (interner, postings)
            },
            BatchSize::PerIteration,
        )
    });
    // The postings alone, labels already interned (as on WAL replay after
    // the series records are read).
    let interner = Interner::new();
    let interned: Vec<Labels> = sets.iter().map(|l| interner.intern_labels(l)).collect();
    g.bench_function("add_100k_interned_series", |b| {
        b.iter_batched(
            Postings::new,
            |postings| {
                for (n, l) in interned.iter().enumerate() {
                    postings.add(SeriesRef(n as u32), l);
                }
                postings
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("add_batch_100k_interned_series", |b| {
        b.iter_batched(
            Postings::new,
            |postings| {
                postings.add_batch(
                    interned
                        .iter()
                        .enumerate()
                        .map(|(n, l)| (SeriesRef(n as u32), l)),
                );
                postings
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_select, bench_add);
criterion_main!(benches);
