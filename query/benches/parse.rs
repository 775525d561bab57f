//! Parse (and print) time of typical dashboard and alerting queries.
//!
//! Run with `cargo bench -p cairn-query --bench parse`. The target for the
//! headline query (`histogram_quantile(0.95, sum by (le, model)
//! (rate(...[5m])))`) is well under 10 µs.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const QUERIES: &[(&str, &str)] = &[
    (
        "p95_latency",
        "histogram_quantile(0.95, sum by (le, model) (rate(infer_latency_ms_bucket[5m])))",
    ),
    (
        "error_ratio",
        "sum by (model) (rate(infer_errors_total[5m])) / sum by (model) (rate(infer_requests_total[5m]))",
    ),
    (
        "topk_cost",
        "topk(10, sum by (model, adapter) (increase(infer_cost_usd_total[1h])))",
    ),
    (
        "burn_rate_alert",
        "(sum by (model) (rate(infer_errors_total{env=\"prod\",route=~\"/v1/(chat|completions)\"}[1h])) / sum by (model) (rate(infer_requests_total{env=\"prod\"}[1h]))) > (14.4 * 0.001) and (sum by (model) (rate(infer_errors_total{env=\"prod\"}[5m])) / sum by (model) (rate(infer_requests_total{env=\"prod\"}[5m]))) > (14.4 * 0.001)",
    ),
    (
        "selector",
        "up{job=\"gpu-exporter\", instance=\"10.0.0.1:9400\"}",
    ),
];

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, q) in QUERIES {
        g.throughput(Throughput::Bytes(q.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| cairn_query::parse(black_box(q)).expect("valid query"))
        });
    }
    g.finish();

    // Wide inputs: parse time must grow linearly with their size.
    let mut g = c.benchmark_group("parse_wide");
    for n in [1_000usize, 10_000] {
        let labels: Vec<String> = (0..n).map(|i| format!("l{i}")).collect();
        let q = format!("sum by ({}) (rate(x[5m]))", labels.join(", "));
        g.throughput(Throughput::Bytes(q.len() as u64));
        g.bench_function(format!("by_{n}_labels"), |b| {
            b.iter(|| cairn_query::parse(black_box(&q)).expect("valid query"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("format");
    for (name, q) in QUERIES {
        let e = cairn_query::parse(q).expect("valid query");
        g.bench_function(*name, |b| b.iter(|| black_box(&e).to_string()));
    }
    g.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
