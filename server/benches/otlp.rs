//! OTLP translation throughput, in data points/s and samples/s, next to
//! remote-write 1.0 decoding of the very same samples.
//!
//! The request is deterministic (a fixed-seed LCG): one resource of an
//! LLM-serving fleet, per export 1,000 counter points, 500 gauge points and
//! 250 histogram points with 12 explicit buckets (each becoming 15
//! samples), with `model`/`route`/`region` attributes. Benches:
//! - `translate`: an already-decoded `ExportMetricsServiceRequest` to series
//!   (names, labels, grouping; the per-stream state is warm);
//! - `decode_translate`: protobuf bytes to series (what an ingest does
//!   before `Db::append`);
//! - `remote_write_decode`: the same samples as a remote-write 1.0 body
//!   (uncompressed) decoded and validated, for the ratio.
//!
//! Run: `cargo bench -p cairn-server --bench otlp`.

use std::sync::Arc;

use cairn_proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use cairn_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use cairn_proto::opentelemetry::proto::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use cairn_proto::opentelemetry::proto::resource::v1::Resource;
use cairn_proto::prometheus as pb;
use cairn_proto::prost::Message;
use cairn_server::Config;
use cairn_server::http::AppState;
use cairn_server::metadata::MetadataStore;
use cairn_server::otlp::OtlpReceiver;
use cairn_server::remote_write::{self, DecodeLimits, Protocol};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const T0_NS: u64 = 1_700_000_000_000 * 1_000_000;

/// A fixed-seed linear congruential generator: deterministic inputs
/// without a dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

const MODELS: &[&str] = &[
    "llama-3-70b",
    "mistral-7b",
    "qwen-2-72b",
    "gemma-2-27b",
    "phi-3",
];
const ROUTES: &[&str] = &[
    "/v1/chat",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
];
const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "ap-south-1"];

fn attrs(i: usize, tag: usize) -> Vec<KeyValue> {
    vec![
        kv("model", MODELS[i % MODELS.len()]),
        kv("route", ROUTES[(i / 5) % ROUTES.len()]),
        kv("region", REGIONS[(i / 20) % REGIONS.len()]),
        kv("adapter", &format!("lora-{}", (i / 60) + tag)),
    ]
}

fn request(seed: u64, t_ns: u64) -> (ExportMetricsServiceRequest, u64) {
    let mut rng = Lcg(seed);
    let start = T0_NS - 3_600_000_000_000;
    let number = |i: usize, tag: usize, v: f64| NumberDataPoint {
        attributes: attrs(i, tag),
        start_time_unix_nano: start,
        time_unix_nano: t_ns,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let counters: Vec<NumberDataPoint> = (0..1000)
        .map(|i| number(i, 0, (rng.next() % 100_000) as f64))
        .collect();
    let gauges: Vec<NumberDataPoint> = (0..500)
        .map(|i| number(i, 1, (rng.next() % 1000) as f64 / 1000.0))
        .collect();
    let bounds: Vec<f64> = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]
        .iter()
        .map(|&b| b as f64)
        .collect();
    let hists: Vec<HistogramDataPoint> = (0..250)
        .map(|i| {
            let counts: Vec<u64> = (0..=bounds.len()).map(|_| rng.next() % 50).collect();
            HistogramDataPoint {
                attributes: attrs(i, 2),
                start_time_unix_nano: start,
                time_unix_nano: t_ns,
                count: counts.iter().sum(),
                sum: Some((rng.next() % 1_000_000) as f64),
                bucket_counts: counts,
                explicit_bounds: bounds.clone(),
                ..Default::default()
            }
        })
        .collect();
    let points = (counters.len() + gauges.len() + hists.len()) as u64;
    let metric = |name: &str, unit: &str, data| Metric {
        name: name.into(),
        description: String::new(),
        unit: unit.into(),
        data: Some(data),
        metadata: vec![],
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "llm-server"),
                    kv("service.namespace", "ml"),
                    kv("service.instance.id", "pod-17"),
                    kv("k8s.cluster.name", "eu-1"),
                    kv("host.name", "gpu-node-17"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(
                        "infer.requests",
                        "{request}",
                        Data::Sum(Sum {
                            data_points: counters,
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "gpu.utilization",
                        "1",
                        Data::Gauge(Gauge {
                            data_points: gauges,
                        }),
                    ),
                    metric(
                        "infer.latency",
                        "ms",
                        Data::Histogram(Histogram {
                            data_points: hists,
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        }),
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (req, points)
}

fn bench(c: &mut Criterion) {
    let app = Arc::new(AppState::new(Config::default(), MetadataStore::default()));
    let receiver = OtlpReceiver::new(app);
    let (req, points) = request(42, T0_NS);
    let bytes = req.encode_to_vec();
    let warm = receiver.translate(&req);
    let samples = warm.samples();
    assert_eq!(warm.rejected.points, 0, "{}", warm.rejected.message());

    // The same samples as a remote-write 1.0 body.
    let rw = pb::WriteRequest {
        timeseries: warm
            .series
            .iter()
            .map(|s| pb::TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| pb::Label {
                        name: l.name.to_string(),
                        value: l.value.to_string(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|x| pb::Sample {
                        value: x.v,
                        timestamp: x.t,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    }
    .encode_to_vec();
    let limits = DecodeLimits {
        max_timestamp: i64::MAX,
    };

    let mut g = c.benchmark_group("otlp");
    g.throughput(Throughput::Elements(points));
    g.bench_function("translate_points", |b| {
        b.iter(|| receiver.translate(std::hint::black_box(&req)).series.len())
    });
    g.bench_function("decode_translate_points", |b| {
        b.iter(|| {
            let r = ExportMetricsServiceRequest::decode(std::hint::black_box(bytes.as_slice()))
                .expect("decodes");
            receiver.translate(&r).series.len()
        })
    });
    g.throughput(Throughput::Elements(samples));
    g.bench_function("decode_translate_samples", |b| {
        b.iter(|| {
            let r = ExportMetricsServiceRequest::decode(std::hint::black_box(bytes.as_slice()))
                .expect("decodes");
            receiver.translate(&r).series.len()
        })
    });
    g.bench_function("remote_write_decode_samples", |b| {
        b.iter(|| {
            remote_write::decode(Protocol::V1, std::hint::black_box(rw.as_slice()), limits)
                .expect("decodes")
                .series
                .len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
