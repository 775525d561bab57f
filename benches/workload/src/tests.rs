//! Whole-generator tests on a small fleet: determinism, series counts,
//! counter and histogram invariants, timestamps, the payloads decoding back
//! to the generated samples, and the sender against a local receiver.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use crate::fleet::SeriesLabels;
use crate::remote_write::{decode_payload, read_manifest};
use crate::sim::{Scrape, Sink, Summary, WorkloadConfig, generate};
use crate::{Format, OutputOptions, generate_to_dir, send};

const START: i64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z, a 2 h boundary

fn small_config() -> WorkloadConfig {
    let mut c = WorkloadConfig::new(9, 700, START, 20 * 60_000);
    c.adapters = 3;
    c.churn_per_hour = 6.0;
    c.restart_probability = 0.02;
    c
}

/// One scrape as recorded: instance, timestamp, (series, value) pairs.
type RecordedScrape = (String, i64, Vec<(SeriesLabels, f64)>);

/// Keeps every sample, keyed by the series' text form.
#[derive(Default)]
struct Recorder {
    /// series -> [(t, v)] in arrival order
    series: BTreeMap<String, Vec<(i64, f64)>>,
    /// (instance, t) -> [(series, v)], one entry per scrape
    scrapes: Vec<RecordedScrape>,
}

fn key(labels: &SeriesLabels) -> String {
    labels
        .0
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn label<'a>(labels: &'a SeriesLabels, name: &str) -> &'a str {
    labels
        .0
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| &**v)
        .unwrap_or("")
}

impl Sink for Recorder {
    fn scrape(&mut self, scrape: &Scrape<'_>) -> Result<(), crate::Error> {
        let mut one = Vec::new();
        for (labels, v) in scrape.series.iter().zip(scrape.values) {
            self.series
                .entry(key(labels))
                .or_default()
                .push((scrape.t_ms, *v));
            one.push((labels.clone(), *v));
        }
        let instance = label(&scrape.series[0], "instance").to_string();
        self.scrapes.push((instance, scrape.t_ms, one));
        Ok(())
    }
    fn finish(&mut self) -> Result<(), crate::Error> {
        Ok(())
    }
}

fn record(config: &WorkloadConfig) -> (Recorder, Summary) {
    let mut rec = Recorder::default();
    let summary = generate(config, &mut [&mut rec]).expect("generates");
    (rec, summary)
}

fn is_counter(name: &str) -> bool {
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("reads dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("prefix").display().to_string();
                out.insert(rel, std::fs::read(&p).expect("reads"));
            }
        }
    }
    out
}

fn output(dir: &Path) -> OutputOptions {
    OutputOptions {
        dir: dir.to_path_buf(),
        formats: vec![Format::RemoteWrite, Format::OpenMetrics],
        shards: 3,
        samples_per_request: 2_000,
    }
}

#[test]
fn same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut config = small_config();
    config.duration_ms = 5 * 60_000;
    generate_to_dir(&config, &output(a.path())).expect("gen a");
    generate_to_dir(&config, &output(b.path())).expect("gen b");
    config.seed += 1;
    generate_to_dir(&config, &output(c.path())).expect("gen c");
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert!(fa.len() > 3, "{:?}", fa.keys());
    assert_eq!(fa, fb);
    assert_ne!(fa.get("openmetrics.txt"), fc.get("openmetrics.txt"));
}

#[test]
fn series_counts_match_the_topology() {
    let mut config = small_config();
    config.churn_per_hour = 0.0;
    let (rec, summary) = record(&config);
    assert!(
        summary.active_series.abs_diff(700) <= 50,
        "{}",
        summary.active_series
    );
    assert_eq!(rec.series.len(), summary.active_series);
    assert_eq!(summary.total_series, summary.active_series);
    assert_eq!(
        summary.samples,
        rec.series.values().map(|v| v.len() as u64).sum::<u64>()
    );
    // Every series is scraped every round: 20 min / 15 s = 80 samples.
    assert!(rec.series.values().all(|v| v.len() == 80));

    // With churn, new versions add series; each scrape still has the same size.
    let (rec, summary) = record(&small_config());
    assert!(summary.redeploys > 0);
    assert_eq!(rec.series.len(), summary.total_series);
    assert!(summary.total_series > summary.active_series);
    let per_instance: HashMap<&str, usize> = rec
        .scrapes
        .iter()
        .map(|(i, _, s)| (i.as_str(), s.len()))
        .collect();
    assert_eq!(per_instance.values().sum::<usize>(), summary.active_series);
}

#[test]
fn counters_only_fall_when_their_instance_restarts() {
    let (rec, summary) = record(&small_config());
    assert!(summary.restarts > 0, "the test needs a restart");
    // (instance, t) of each scrape where some counter fell.
    let mut falls: HashMap<(String, i64), (usize, usize)> = HashMap::new();
    let mut previous: HashMap<String, f64> = HashMap::new();
    for (instance, t, scrape) in &rec.scrapes {
        for (labels, v) in scrape {
            if !is_counter(labels.metric_name()) {
                continue;
            }
            assert!(v.is_finite() && *v >= 0.0);
            if let Some(prev) = previous.insert(key(labels), *v) {
                let entry = falls.entry((instance.clone(), *t)).or_default();
                entry.1 += 1;
                if *v < prev {
                    entry.0 += 1;
                }
            }
        }
    }
    let restart_scrapes: Vec<_> = falls.iter().filter(|(_, (fell, _))| *fell > 0).collect();
    assert!(!restart_scrapes.is_empty());
    assert!(restart_scrapes.len() as u64 <= summary.restarts);
    // A restart resets the instance's counters together: most of them fall.
    for ((instance, t), (fell, counters)) in restart_scrapes {
        assert!(
            *fell * 2 > *counters,
            "{instance} at {t}: only {fell} of {counters} counters fell"
        );
    }
}

#[test]
fn histogram_buckets_are_cumulative_and_inf_equals_count() {
    let (rec, _) = record(&small_config());
    let mut checked = 0;
    for (_, _, scrape) in &rec.scrapes {
        // group key (series without le) -> [(le, v)], plus _count values.
        let mut buckets: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        let mut counts: HashMap<String, f64> = HashMap::new();
        for (labels, v) in scrape {
            let name = labels.metric_name();
            if let Some(family) = name.strip_suffix("_bucket") {
                let le: f64 = match label(labels, "le") {
                    "+Inf" => f64::INFINITY,
                    x => x.parse().expect("le parses"),
                };
                let rest: Vec<_> = labels
                    .0
                    .iter()
                    .filter(|(n, _)| *n != "le" && *n != "__name__")
                    .collect();
                buckets
                    .entry(format!("{family}{rest:?}"))
                    .or_default()
                    .push((le, *v));
            } else if let Some(family) = name.strip_suffix("_count") {
                let rest: Vec<_> = labels.0.iter().filter(|(n, _)| *n != "__name__").collect();
                counts.insert(format!("{family}{rest:?}"), *v);
            }
        }
        for (group, mut bs) in buckets {
            bs.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(bs.windows(2).all(|w| w[0].1 <= w[1].1), "{group}: {bs:?}");
            let inf = bs.last().expect("has +Inf");
            assert!(inf.0.is_infinite());
            assert_eq!(Some(&inf.1), counts.get(&group), "{group}");
            checked += 1;
        }
    }
    assert!(checked > 100);
}

#[test]
fn timestamps_are_jittered_but_ordered_per_series_and_in_the_window() {
    let config = small_config();
    let (rec, summary) = record(&config);
    let mut deltas = std::collections::HashSet::new();
    for samples in rec.series.values() {
        for w in samples.windows(2) {
            let d = w[1].0 - w[0].0;
            assert!(
                (d - config.scrape_interval_ms).abs() <= 2 * config.jitter_ms,
                "delta {d}"
            );
            deltas.insert(d);
        }
        assert!(
            samples
                .iter()
                .all(|(t, _)| (START..START + config.duration_ms).contains(t))
        );
    }
    assert!(deltas.len() > 10, "not jittered: {deltas:?}");
    assert!(
        rec.scrapes.windows(2).all(|w| w[0].1 <= w[1].1),
        "scrapes out of time order"
    );
    assert!(
        summary.first_sample_ms >= START && summary.last_sample_ms < START + config.duration_ms
    );
}

#[test]
fn payloads_decode_back_to_the_generated_samples() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let summary = generate_to_dir(&config, &output(dir.path())).expect("gen");
    let (rec, _) = record(&config);
    let rw = send::remote_write_dir(dir.path());
    let manifest = read_manifest(&rw).expect("manifest");
    // In each shard's send order, every series' samples are in time order.
    let mut decoded: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut total = 0;
    for p in &manifest {
        let body = std::fs::read(rw.join(&p.file)).expect("reads");
        let req = decode_payload(&body).expect("decodes");
        assert!(req.timeseries.len() <= 2_000);
        assert_eq!(req.timeseries.len() as u64, p.samples);
        for ts in req.timeseries {
            assert!(ts.labels.windows(2).all(|w| w[0].name < w[1].name));
            let k = ts
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",");
            for s in ts.samples {
                assert!((p.min_t_ms..=p.max_t_ms).contains(&s.timestamp));
                decoded
                    .entry(k.clone())
                    .or_default()
                    .push((s.timestamp, s.value));
                total += 1;
            }
        }
    }
    assert_eq!(total, summary.samples);
    assert_eq!(decoded.len(), rec.series.len());
    for (k, want) in &rec.series {
        let got = decoded.get(k).expect("series present");
        let bits = |v: &[(i64, f64)]| v.iter().map(|(t, x)| (*t, x.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(got), bits(want), "{k}");
    }
    // The OpenMetrics file has one line per sample and the terminator.
    let text = std::fs::read_to_string(dir.path().join(crate::OPENMETRICS_FILE)).expect("reads");
    assert_eq!(text.lines().count() as u64, summary.samples + 1);
    assert!(text.ends_with("# EOF\n"));
    let summary_back = crate::read_summary(dir.path()).expect("summary");
    assert_eq!(summary_back, summary);
}

/// A one-connection-at-a-time HTTP receiver on 127.0.0.1 answering with
/// `statuses` in turn (the last one repeated); returns its URL.
fn receiver(statuses: Vec<u16>, requests: usize) -> (String, std::thread::JoinHandle<Vec<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!(
        "http://{}/api/v1/write",
        listener.local_addr().expect("addr")
    );
    let handle = std::thread::spawn(move || {
        let mut sizes = Vec::new();
        for i in 0..requests {
            let (stream, _) = listener.accept().expect("accepts");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            for _ in 0..64 {
                line.clear();
                reader.read_line(&mut line).expect("reads header");
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().expect("length");
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("reads body");
            sizes.push(
                decode_payload(&body)
                    .map(|r| r.timeseries.len())
                    .unwrap_or(0),
            );
            let status = statuses[i.min(statuses.len() - 1)];
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
            )
            .expect("writes");
        }
        sizes
    });
    (url, handle)
}

#[test]
fn sender_retries_server_errors_and_counts_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config();
    config.duration_ms = 60_000;
    let summary = generate_to_dir(&config, &output(dir.path())).expect("gen");
    let rw = send::remote_write_dir(dir.path());
    let payloads = read_manifest(&rw).expect("manifest").len();
    let options = |url: String| send::SendOptions {
        url,
        concurrency: 2,
        protocol: send::Protocol::RemoteWrite,
        max_attempts: 3,
        timeout: Duration::from_secs(10),
        limit: None,
    };

    // 503 then 429 are retried; everything is accepted in the end.
    let (url, server) = receiver(vec![503, 429, 204], payloads + 2);
    let report = send::send_dir(&rw, &options(url)).expect("sends");
    let sizes = server.join().expect("server");
    assert_eq!(report.accepted_samples, summary.samples);
    assert_eq!(report.rejected_samples, 0);
    assert_eq!(report.retries, 2);
    assert_eq!(
        sizes.iter().sum::<usize>() as u64,
        summary.samples + sizes[0] as u64 + sizes[1] as u64
    );

    // 400 is final: every sample rejected, no retry.
    let (url, server) = receiver(vec![400], payloads);
    let report = send::send_dir(&rw, &options(url)).expect("sends");
    server.join().expect("server");
    assert_eq!(report.accepted_samples, 0);
    assert_eq!(report.rejected_samples, summary.samples);
    assert_eq!(report.retries, 0);
    assert!(report.first_rejection.is_some_and(|r| r.contains("400")));
}

/// `le` as the test compares it: the parsed bound's shortest form.
fn normal_le(le: &str) -> String {
    match le {
        "+Inf" => "+Inf".to_string(),
        v => format!("{}", v.parse::<f64>().expect("numeric le")),
    }
}

/// A series key with `le` normalised, from sorted (name, value) pairs.
fn normal_key<'a>(pairs: impl Iterator<Item = (&'a str, String)>) -> String {
    let mut pairs: Vec<(&str, String)> = pairs
        .map(|(n, v)| {
            if n == "le" {
                (n, normal_le(&v))
            } else {
                (n, v)
            }
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn otlp_payloads_translate_back_to_the_remote_write_series() {
    use crate::otlp::otlp_dir;
    use cairn_proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
    use cairn_proto::opentelemetry::proto::common::v1::{KeyValue, any_value};
    use cairn_proto::opentelemetry::proto::metrics::v1::{metric, number_data_point};
    use cairn_proto::prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let mut out = output(dir.path());
    out.formats = vec![Format::Otlp];
    let summary = generate_to_dir(&config, &out).expect("gen");
    let (rec, _) = record(&config);
    let want: BTreeMap<String, Vec<(i64, u64)>> = rec
        .series
        .iter()
        .map(|(k, v)| {
            let pairs = k.split(',').map(|p| {
                let (n, v) = p.split_once('=').expect("pair");
                (n, v.to_string())
            });
            (
                normal_key(pairs),
                v.iter().map(|(t, x)| (*t, x.to_bits())).collect(),
            )
        })
        .collect();

    // Prometheus's translation, reduced to what the generator emits.
    let text = |kv: &KeyValue| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => panic!("non-string attribute {other:?}"),
    };
    let mut got: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    let mut push = |name: String,
                    base: &[(String, String)],
                    attrs: &[KeyValue],
                    extra: Option<(&str, String)>,
                    t: i64,
                    v: f64| {
        let mut pairs: Vec<(&str, String)> =
            base.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        pairs.extend(attrs.iter().map(|kv| (kv.key.as_str(), text(kv))));
        pairs.push(("__name__", name));
        pairs.extend(extra);
        got.entry(normal_key(pairs.into_iter()))
            .or_default()
            .push((t, v.to_bits()));
    };
    let manifest = read_manifest(&otlp_dir(dir.path())).expect("manifest");
    let mut total = 0;
    for p in &manifest {
        let body = std::fs::read(otlp_dir(dir.path()).join(&p.file)).expect("reads");
        let req = ExportMetricsServiceRequest::decode(body.as_slice()).expect("decodes");
        let mut in_file = 0;
        for rm in &req.resource_metrics {
            let resource = rm.resource.as_ref().expect("resource");
            let base: Vec<(String, String)> = resource
                .attributes
                .iter()
                .map(|kv| {
                    let name = match kv.key.as_str() {
                        "service.name" => "job",
                        "service.instance.id" => "instance",
                        other => panic!("unexpected resource attribute {other}"),
                    };
                    (name.to_string(), text(kv))
                })
                .collect();
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let number =
                    |p: &cairn_proto::opentelemetry::proto::metrics::v1::NumberDataPoint| match p
                        .value
                    {
                        Some(number_data_point::Value::AsDouble(v)) => v,
                        other => panic!("not a double: {other:?}"),
                    };
                match m.data.as_ref().expect("data") {
                    metric::Data::Sum(sum) => {
                        assert!(sum.is_monotonic);
                        for pt in &sum.data_points {
                            let t = (pt.time_unix_nano / 1_000_000) as i64;
                            push(
                                format!("{}_total", m.name),
                                &base,
                                &pt.attributes,
                                None,
                                t,
                                number(pt),
                            );
                            in_file += 1;
                        }
                    }
                    metric::Data::Gauge(g) => {
                        for pt in &g.data_points {
                            let t = (pt.time_unix_nano / 1_000_000) as i64;
                            push(m.name.clone(), &base, &pt.attributes, None, t, number(pt));
                            in_file += 1;
                        }
                    }
                    metric::Data::Histogram(h) => {
                        for pt in &h.data_points {
                            let t = (pt.time_unix_nano / 1_000_000) as i64;
                            assert_eq!(pt.bucket_counts.len(), pt.explicit_bounds.len() + 1);
                            let mut cumulative = 0u64;
                            for (i, c) in pt.bucket_counts.iter().enumerate() {
                                cumulative += c;
                                let le = pt
                                    .explicit_bounds
                                    .get(i)
                                    .map_or("+Inf".to_string(), |b| b.to_string());
                                push(
                                    format!("{}_bucket", m.name),
                                    &base,
                                    &pt.attributes,
                                    Some(("le", le)),
                                    t,
                                    cumulative as f64,
                                );
                            }
                            push(
                                format!("{}_sum", m.name),
                                &base,
                                &pt.attributes,
                                None,
                                t,
                                pt.sum.expect("sum"),
                            );
                            push(
                                format!("{}_count", m.name),
                                &base,
                                &pt.attributes,
                                None,
                                t,
                                pt.count as f64,
                            );
                            in_file += pt.bucket_counts.len() as u64 + 2;
                        }
                    }
                    other => panic!("unexpected metric type {other:?}"),
                }
            }
        }
        assert_eq!(in_file, p.samples, "{}", p.file);
        total += in_file;
    }
    assert_eq!(total, summary.samples);
    for series in got.values_mut() {
        series.sort();
    }
    let mut want = want;
    for series in want.values_mut() {
        series.sort();
    }
    assert_eq!(got.len(), want.len());
    for (k, w) in &want {
        assert_eq!(got.get(k), Some(w), "{k}");
    }
}
