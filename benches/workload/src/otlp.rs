//! OTLP output: the same data as the remote-write payloads, as binary
//! `ExportMetricsServiceRequest` files an OpenTelemetry SDK would send to
//! `POST /v1/metrics`.
//!
//! Each scrape of a target becomes one `ResourceMetrics` (resource
//! attributes `service.name` = `job`, `service.instance.id` = `instance`,
//! which a Prometheus-compatible receiver turns back into `job` and
//! `instance`). Within it, series are rebuilt into OTLP metrics the way an
//! SDK would have produced them:
//!
//! - `*_total` series: cumulative monotonic sums named without `_total`
//!   (the receiver adds the suffix back);
//! - `*_bucket{le}` with `*_sum` and `*_count`: one explicit-bucket
//!   histogram point per label set, with per-bucket (not cumulative)
//!   counts, as OTLP requires;
//! - everything else: gauges.
//!
//! So a receiver that follows Prometheus's OTLP translation stores exactly
//! the series of the remote-write payloads. Files are sharded by target and
//! cut at `samples_per_request` Prometheus samples (a histogram point
//! counts its buckets plus `_sum` and `_count`); the manifest has the same
//! columns as the remote-write one ([`crate::remote_write::MANIFEST`]), so
//! the sender walks both alike.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cairn_proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use cairn_proto::opentelemetry::proto::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value,
};
use cairn_proto::opentelemetry::proto::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use cairn_proto::opentelemetry::proto::resource::v1::Resource;
use cairn_proto::prost::Message;

use crate::Error;
use crate::remote_write::{Payload, write_manifest};
use crate::sim::{Scrape, Sink};

/// The OTLP directory inside a generator output directory.
pub fn otlp_dir(out: &Path) -> PathBuf {
    out.join("otlp")
}

struct Pending {
    resources: Vec<ResourceMetrics>,
    samples: u64,
    min_t_ms: i64,
    max_t_ms: i64,
    next_seq: usize,
}

pub struct OtlpSink {
    dir: PathBuf,
    samples_per_request: usize,
    /// Counters' start time: the workload's start (a real SDK reports its
    /// process start; resets in the data are not reflected here).
    start_time_unix_nano: u64,
    shards: Vec<Pending>,
    manifest: Vec<Payload>,
    buf: Vec<u8>,
}

impl OtlpSink {
    pub fn create(
        dir: &Path,
        shards: usize,
        samples_per_request: usize,
        start_ms: i64,
    ) -> Result<OtlpSink, Error> {
        if shards == 0 || samples_per_request == 0 {
            return Err(Error::BadArgument {
                what: "shards / samples per request",
                value: format!("{shards} / {samples_per_request}"),
            });
        }
        fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(OtlpSink {
            dir: dir.to_path_buf(),
            samples_per_request,
            start_time_unix_nano: ms_to_nanos(start_ms),
            shards: (0..shards)
                .map(|_| Pending {
                    resources: Vec::new(),
                    samples: 0,
                    min_t_ms: i64::MAX,
                    max_t_ms: i64::MIN,
                    next_seq: 0,
                })
                .collect(),
            manifest: Vec::new(),
            buf: Vec::new(),
        })
    }

    fn flush(&mut self, shard: usize) -> Result<(), Error> {
        let pending = &mut self.shards[shard];
        if pending.resources.is_empty() {
            return Ok(());
        }
        let request = ExportMetricsServiceRequest {
            resource_metrics: std::mem::take(&mut pending.resources),
        };
        self.buf.clear();
        request.encode(&mut self.buf).map_err(|e| Error::Encode {
            reason: e.to_string(),
        })?;
        let file = format!("s{shard:02}-{:06}.pb", pending.next_seq);
        let path = self.dir.join(&file);
        fs::write(&path, &self.buf).map_err(|source| Error::Io { path, source })?;
        self.manifest.push(Payload {
            file,
            shard,
            seq: pending.next_seq,
            samples: pending.samples,
            min_t_ms: pending.min_t_ms,
            max_t_ms: pending.max_t_ms,
        });
        pending.next_seq += 1;
        pending.samples = 0;
        pending.min_t_ms = i64::MAX;
        pending.max_t_ms = i64::MIN;
        Ok(())
    }
}

/// A histogram being rebuilt from its `_bucket`, `_sum` and `_count` series.
#[derive(Default)]
struct HistogramParts {
    /// (upper bound, cumulative count), `+Inf` included.
    buckets: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

/// Attributes of a point: every label but `__name__`, `le`, `job` and
/// `instance` (the last two are the resource's).
fn point_attributes(labels: &[(&'static str, std::sync::Arc<str>)]) -> Vec<KeyValue> {
    labels
        .iter()
        .filter(|(n, _)| !matches!(*n, "__name__" | "le" | "job" | "instance"))
        .map(|(n, v)| string_kv(n, v))
        .collect()
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn ms_to_nanos(t_ms: i64) -> u64 {
    u64::try_from(t_ms).unwrap_or(0).saturating_mul(1_000_000)
}

/// Builds one target's scrape as OTLP metrics; returns them with the
/// number of Prometheus samples they stand for.
fn scrape_metrics(scrape: &Scrape<'_>, start_time_unix_nano: u64) -> (Vec<Metric>, u64) {
    let time_unix_nano = ms_to_nanos(scrape.t_ms);
    let number = |labels: &[(&'static str, std::sync::Arc<str>)], v: f64| NumberDataPoint {
        attributes: point_attributes(labels),
        start_time_unix_nano,
        time_unix_nano,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    // Metrics in first-seen order, points grouped per metric name.
    let mut order: Vec<String> = Vec::new();
    let mut sums: BTreeMap<String, Vec<NumberDataPoint>> = BTreeMap::new();
    let mut gauges: BTreeMap<String, Vec<NumberDataPoint>> = BTreeMap::new();
    // Histogram name -> attribute key (labels without le) -> parts.
    let mut histograms: BTreeMap<String, BTreeMap<Vec<(String, String)>, HistogramParts>> =
        BTreeMap::new();
    let mut samples = 0u64;
    for (labels, &v) in scrape.series.iter().zip(scrape.values) {
        samples += 1;
        let name = labels.metric_name();
        let key = || -> Vec<(String, String)> {
            labels
                .0
                .iter()
                .filter(|(n, _)| !matches!(*n, "__name__" | "le"))
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let mut note = |n: &str| {
            if !order.iter().any(|o| o == n) {
                order.push(n.to_string());
            }
        };
        if let Some(base) = name.strip_suffix("_bucket") {
            let le = labels
                .0
                .iter()
                .find(|(n, _)| *n == "le")
                .and_then(|(_, v)| {
                    if &**v == "+Inf" {
                        Some(f64::INFINITY)
                    } else {
                        v.parse().ok()
                    }
                });
            if let Some(le) = le {
                note(base);
                let parts = histograms
                    .entry(base.to_string())
                    .or_default()
                    .entry(key())
                    .or_default();
                parts.buckets.push((le, v));
                continue;
            }
        }
        if let Some(base) = name
            .strip_suffix("_sum")
            .or_else(|| name.strip_suffix("_count"))
        {
            // Only the _sum/_count of a histogram of this scrape; the
            // buckets of a target come before their _sum and _count.
            if let Some(parts) = histograms.get_mut(base).and_then(|h| h.get_mut(&key())) {
                if name.ends_with("_sum") {
                    parts.sum = Some(v);
                } else {
                    parts.count = Some(v);
                }
                continue;
            }
        }
        if let Some(base) = name.strip_suffix("_total") {
            note(base);
            sums.entry(base.to_string())
                .or_default()
                .push(number(&labels.0, v));
        } else {
            note(name);
            gauges
                .entry(name.to_string())
                .or_default()
                .push(number(&labels.0, v));
        }
    }
    let mut metrics = Vec::with_capacity(order.len());
    for name in order {
        let data = if let Some(points) = sums.remove(&name) {
            metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })
        } else if let Some(points) = gauges.remove(&name) {
            metric::Data::Gauge(Gauge {
                data_points: points,
            })
        } else if let Some(series) = histograms.remove(&name) {
            let data_points = series
                .into_iter()
                .map(|(attrs, mut parts)| {
                    parts.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let mut bucket_counts = Vec::with_capacity(parts.buckets.len());
                    let mut previous = 0.0;
                    for &(_, cumulative) in &parts.buckets {
                        bucket_counts.push((cumulative - previous).max(0.0).round() as u64);
                        previous = cumulative;
                    }
                    let explicit_bounds = parts
                        .buckets
                        .iter()
                        .map(|&(le, _)| le)
                        .filter(|le| le.is_finite())
                        .collect();
                    HistogramDataPoint {
                        attributes: attrs
                            .iter()
                            .filter(|(n, _)| n != "job" && n != "instance")
                            .map(|(n, v)| string_kv(n, v))
                            .collect(),
                        start_time_unix_nano,
                        time_unix_nano,
                        count: parts.count.unwrap_or(previous).max(0.0).round() as u64,
                        sum: parts.sum,
                        bucket_counts,
                        explicit_bounds,
                        ..Default::default()
                    }
                })
                .collect();
            metric::Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })
        } else {
            continue;
        };
        metrics.push(Metric {
            name,
            data: Some(data),
            ..Default::default()
        });
    }
    (metrics, samples)
}

impl Sink for OtlpSink {
    fn scrape(&mut self, scrape: &Scrape<'_>) -> Result<(), Error> {
        let Some(first) = scrape.series.first() else {
            return Ok(());
        };
        let label = |name: &str| {
            first
                .0
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        let (job, instance) = (label("job"), label("instance"));
        // Shard by target, so that one target's scrapes stay in order.
        let shard = (fnv1a(instance.as_bytes()) % self.shards.len() as u64) as usize;
        let (metrics, samples) = scrape_metrics(scrape, self.start_time_unix_nano);
        let pending = &mut self.shards[shard];
        pending.resources.push(ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    string_kv("service.name", &job),
                    string_kv("service.instance.id", &instance),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "cairn-workload".to_string(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        });
        pending.samples += samples;
        pending.min_t_ms = pending.min_t_ms.min(scrape.t_ms);
        pending.max_t_ms = pending.max_t_ms.max(scrape.t_ms);
        if pending.samples >= self.samples_per_request as u64 {
            self.flush(shard)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        for shard in 0..self.shards.len() {
            self.flush(shard)?;
        }
        write_manifest(&self.dir, &mut self.manifest)
    }
}
