//! Append throughput through `Db` (WAL on, fsync per append, temp dir) into
//! existing and into new series, and head memory per active series with 10
//! labels. Inputs are deterministic (fixed seeds).
//!
//! Run: `cargo bench -p cairn-engine --bench append`. The memory figures are
//! printed before the throughput groups run: bytes per series from
//! `HeadStats` and from the process RSS delta, after one sample per series
//! and after two hours of 15 s scrapes (480 samples per series). CPU
//! seconds per sample, by labels and by series handle:
//! `cargo bench -p cairn-engine --bench append -- cpu_per_sample`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use cairn_engine::head::{Head, HeadOptions};
use cairn_engine::{Db, DbOptions, Labels, Sample, SeriesHandle, WriteSeries, WriteTarget};
use common::{Rng, scrape_jitter};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The label set of series `i`: 10 labels as on an LLM-serving fleet.
fn fleet_labels(i: u64) -> Labels {
    let metrics = [
        "infer_requests_total",
        "infer_errors_total",
        "infer_tokens_in_total",
        "infer_tokens_out_total",
        "infer_cost_usd_total",
        "infer_latency_ms_bucket",
        "ttft_ms_bucket",
        "gpu_utilization",
        "queue_depth",
        "kv_cache_hit_ratio",
    ];
    let les = [
        "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "+Inf",
    ];
    Labels::from_pairs([
        ("__name__", metrics[(i % 10) as usize].to_string()),
        ("le", les[((i / 10) % 10) as usize].to_string()),
        ("model", format!("model-{}", (i / 100) % 8)),
        ("adapter", format!("lora-{}", (i / 800) % 5)),
        (
            "route",
            format!(
                "/v1/{}",
                ["chat", "completions", "embeddings"][((i / 4000) % 3) as usize]
            ),
        ),
        ("version", format!("v{}", (i / 12_000) % 3)),
        (
            "region",
            ["eu-west-1", "us-east-1"][((i / 36_000) % 2) as usize].to_string(),
        ),
        (
            "instance",
            format!("10.0.{}.{}:9090", (i / 256) % 256, i % 256),
        ),
        ("job", "inference".to_string()),
        ("cluster", "prod".to_string()),
    ])
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// CPU seconds (user + system, all threads) this process has used, from
/// /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime
            // are fields 14 and 15 of the whole line.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Samples per CPU-second through `Db::append` (WAL and fsync included, the
/// WAL thread's CPU counted), which is what "per core" means on a machine
/// shared with other work where wall-clock rates mostly measure the queue
/// for the CPU. Printed once.
fn cpu_per_sample(_c: &mut Criterion) {
    if !report_selected("cpu_per_sample") {
        return;
    }
    for (n_series, per_series, rounds) in [(10_000u64, 1i64, 300i64), (1_000, 10, 300)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path(), DbOptions::default()).expect("open");
        let labels: Vec<Labels> = (0..n_series).map(fleet_labels).collect();
        let batches: Vec<Vec<WriteSeries>> = (0..rounds)
            .map(|r| {
                labels
                    .iter()
                    .map(|l| WriteSeries {
                        labels: l.clone(),
                        samples: (0..per_series)
                            .map(|j| Sample::new(r * per_series + j, (r * 7 + j) as f64))
                            .collect(),
                    })
                    .collect()
            })
            .collect();
        db.append(&batches[0]).expect("create series");
        let half = rounds as usize / 2;
        let cpu0 = cpu_seconds();
        let wall0 = std::time::Instant::now();
        for b in &batches[1..half] {
            black_box(db.append(b).expect("append"));
        }
        let cpu = cpu_seconds() - cpu0;
        let wall = wall0.elapsed().as_secs_f64();
        let samples = (n_series * per_series as u64 * (half as u64 - 1)) as f64;
        println!(
            "Db::append {n_series} series x {per_series} samples per batch: \
             {:.2} M samples per CPU-second ({:.2} M/s wall, {:.1} CPU-s, {} fsyncs)",
            samples / cpu / 1e6,
            samples / wall / 1e6,
            cpu,
            db.stats().wal.fsyncs,
        );
        // The same through series handles, as the server's remote-write
        // path appends to series it has seen (the series cache).
        let mut handles = vec![None; n_series as usize];
        db.append_series(
            batches[half]
                .iter()
                .map(|w| (WriteTarget::Labels(&w.labels), w.samples.as_slice())),
            |i, h| handles[i] = Some(h),
        )
        .expect("look up");
        let handles: Vec<SeriesHandle> = handles.into_iter().map(|h| h.expect("handle")).collect();
        let cpu0 = cpu_seconds();
        let wall0 = std::time::Instant::now();
        for b in &batches[half + 1..] {
            let out = db
                .append_series(
                    handles
                        .iter()
                        .zip(b)
                        .map(|(h, w)| (WriteTarget::Handle(h), w.samples.as_slice())),
                    |_, _| {},
                )
                .expect("append");
            assert_eq!(out.samples_appended, n_series * per_series as u64);
        }
        let cpu = cpu_seconds() - cpu0;
        let wall = wall0.elapsed().as_secs_f64();
        let samples = (n_series * per_series as u64 * (rounds as usize - half - 1) as u64) as f64;
        println!(
            "Db::append_series by handle, {n_series} series x {per_series} samples per batch: \
             {:.2} M samples per CPU-second ({:.2} M/s wall, {:.1} CPU-s)",
            samples / cpu / 1e6,
            samples / wall / 1e6,
            cpu,
        );
        // Restart: replaying the WAL into a fresh head.
        let total = db.stats().samples;
        db.close().expect("close");
        let t0 = std::time::Instant::now();
        let cpu0 = cpu_seconds();
        let db = Db::open(dir.path(), DbOptions::default()).expect("reopen");
        let cpu = cpu_seconds() - cpu0;
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(db.stats().samples, total);
        println!(
            "  reopen replays {total} samples in {:.0} ms wall, {:.2} CPU-s \
             ({:.2} M samples per CPU-second)",
            secs * 1e3,
            cpu,
            total as f64 / cpu / 1e6
        );
    }
}

/// Whether a once-printed report runs: criterion passes name filters as
/// free arguments; a report runs when there is none or one selects it.
fn report_selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// How the head-memory bench's series move.
#[derive(Clone, Copy, PartialEq)]
enum SeriesData {
    /// The codec bench's fleet mix ([`FleetSeries`]).
    Fleet,
    /// The worst case: every timestamp jittered uniformly over 40 ms and
    /// every value random (counters by 0-19 a scrape, gauges uniform).
    Uniform,
}

/// One series of the fleet mix, by `i % 10` as in the codec bench: 70%
/// classic-histogram bucket counters, 20% request and token counters, 10%
/// one-decimal gauges (GPU utilisation).
struct FleetSeries {
    v: f64,
    /// Expected increments a scrape (counters and buckets).
    lambda: f64,
    kind: u64,
}

/// P(latency <= le) for the `le` values of `fleet_labels`, latencies
/// lognormal around 600 ms (sigma 1): the codec bench's buckets.
const BUCKET_SHARE: [f64; 10] = [
    0.0, 0.00002, 0.0007, 0.0065, 0.037, 0.19, 0.43, 0.69, 0.92, 1.0,
];

impl FleetSeries {
    fn new(i: u64, rng: &mut Rng) -> Self {
        let kind = i % 10;
        let uptime_scrapes = rng.range(0, 20_000) as f64;
        let lambda = match kind {
            0..=6 => rng.log_uniform(0.02, 50.0) * BUCKET_SHARE[((i / 10) % 10) as usize],
            7 => rng.log_uniform(0.05, 100.0),
            8 => rng.log_uniform(0.05, 100.0) * 1000.0,
            _ => 0.0,
        };
        let v = match kind {
            0..=8 => (lambda * uptime_scrapes).round(),
            _ => (rng.f64() * 1000.0).round() / 10.0,
        };
        FleetSeries { v, lambda, kind }
    }

    fn next(&mut self, rng: &mut Rng) -> f64 {
        match self.kind {
            0..=7 => self.v += rng.poisson(self.lambda) as f64,
            // Tokens: requests times 50-2000 tokens each.
            8 => {
                let requests = rng.poisson(self.lambda / 1000.0);
                self.v += (0..requests).map(|_| rng.range(50, 2000)).sum::<i64>() as f64;
            }
            _ => {
                let x = (self.v + 5.0 * rng.normal()).clamp(0.0, 100.0);
                self.v = (x * 10.0).round() / 10.0;
            }
        }
        self.v
    }
}

/// Head memory per active series, printed once: on the fleet mix
/// (`head_memory`), or on uniformly random data when asked for by name
/// (`head_memory_uniform`, in its own process: a second head in the same
/// process would reuse the first one's freed memory and hide its RSS).
fn head_memory(_c: &mut Criterion) {
    let uniform_asked = std::env::args().skip(1).any(|a| a == "head_memory_uniform");
    if uniform_asked {
        head_memory_on(SeriesData::Uniform);
    } else if report_selected("head_memory") {
        head_memory_on(SeriesData::Fleet);
    }
}

fn head_memory_on(data: SeriesData) {
    const SERIES: u64 = 100_000;
    let rss0 = rss_bytes();
    let head = Head::new(HeadOptions::default());
    let series: Vec<_> = (0..SERIES)
        .map(|i| head.get_or_create(&fleet_labels(i)).0)
        .collect();
    let t0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 7_200_000;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut fleet_rng = Rng(0x00c0_ffee_cafe_f00d);
    let mut values: Vec<f64> = vec![0.0; SERIES as usize];
    let mut fleet: Vec<FleetSeries> = match data {
        SeriesData::Fleet => (0..SERIES)
            .map(|i| FleetSeries::new(i, &mut fleet_rng))
            .collect(),
        SeriesData::Uniform => Vec::new(),
    };
    let name = match data {
        SeriesData::Fleet => "fleet mix",
        SeriesData::Uniform => "uniform random data",
    };
    let report = |head: &Head, samples: u64, rss0: u64| {
        let (series_bytes, chunks) = head.memory_bytes();
        let index_bytes = (head.interner().memory_bytes() + head.postings().memory_bytes()) as u64;
        let total = series_bytes + index_bytes;
        let rss = rss_bytes().saturating_sub(rss0);
        println!(
            "head memory, {SERIES} series x 10 labels, {samples} samples/series, {name}: \
             HeadStats {:.0} B/series (series+chunks {:.0}, index {:.0}), {chunks} chunks; \
             RSS delta {:.0} B/series",
            total as f64 / SERIES as f64,
            series_bytes as f64 / SERIES as f64,
            index_bytes as f64 / SERIES as f64,
            rss as f64 / SERIES as f64,
        );
    };
    for step in 0..480i64 {
        for (i, s) in series.iter().enumerate() {
            let sample = match data {
                // 15 s scrapes, 1 s after the block boundary, jittered.
                SeriesData::Fleet => Sample::new(
                    t0 + 1_000 + step * 15_000 + scrape_jitter(&mut fleet_rng),
                    fleet[i].next(&mut fleet_rng),
                ),
                SeriesData::Uniform => {
                    let t = t0 + step * 15_000 + rng.below(40) as i64;
                    let v = &mut values[i];
                    match i % 10 {
                        0..=6 => *v += rng.below(20) as f64,
                        7 => *v = (rng.below(1000) as f64) / 10.0,
                        8 => *v = rng.below(50) as f64,
                        _ => *v = (rng.below(1000) as f64) / 1000.0,
                    }
                    Sample::new(t, *v)
                }
            };
            head.append_samples(s, &[sample], |_| {});
        }
        if step == 0 {
            report(&head, 1, rss0);
        }
    }
    report(&head, 480, rss0);
    black_box(&head);
    fleet.clear();
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("db_append");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));

    // Into existing series: one remote-write-like batch of 10k series with
    // one sample each, and 1k series with 10 samples each.
    for (n_series, per_series) in [(10_000u64, 1i64), (1_000, 10)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path(), DbOptions::default()).expect("open");
        let labels: Vec<Labels> = (0..n_series).map(fleet_labels).collect();
        let mut t: i64 = 0;
        let make = |t: &mut i64| -> Vec<WriteSeries> {
            let batch = labels
                .iter()
                .map(|l| WriteSeries {
                    labels: l.clone(),
                    samples: (0..per_series)
                        .map(|j| Sample::new(*t + j, (*t + j) as f64))
                        .collect(),
                })
                .collect();
            *t += per_series;
            batch
        };
        db.append(&make(&mut t)).expect("create series");
        g.throughput(Throughput::Elements(n_series * per_series as u64));
        g.bench_function(format!("existing_series/{n_series}x{per_series}"), |b| {
            b.iter_batched(
                || make(&mut t),
                |batch| {
                    let out = db.append(&batch).expect("append");
                    assert_eq!(out.samples_appended, n_series * per_series as u64);
                    // Returned so that criterion drops it outside the timing.
                    batch
                },
                BatchSize::LargeInput,
            )
        });
    }

    // Two appenders at once into disjoint sets of 5k existing series: group
    // commit lets them share fsyncs.
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = std::sync::Arc::new(Db::open(dir.path(), DbOptions::default()).expect("open"));
        let sets: Vec<Vec<Labels>> = (0..2u64)
            .map(|th| (0..5_000).map(|i| fleet_labels(th * 5_000 + i)).collect())
            .collect();
        let mut t: i64 = 0;
        g.throughput(Throughput::Elements(10_000));
        g.bench_function("existing_series/2_threads_x_5000x1", |b| {
            b.iter_batched(
                || {
                    t += 1;
                    sets.iter()
                        .map(|set| {
                            set.iter()
                                .map(|l| WriteSeries {
                                    labels: l.clone(),
                                    samples: vec![Sample::new(t, t as f64)],
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                },
                |batches| {
                    std::thread::scope(|s| {
                        for batch in &batches {
                            let db = &db;
                            s.spawn(move || db.append(batch).expect("append"));
                        }
                    });
                    batches
                },
                BatchSize::LargeInput,
            )
        });
    }

    // The head alone (no WAL): the CPU cost of the append rules and chunks.
    {
        let head = Head::new(HeadOptions::default());
        let labels: Vec<Labels> = (0..10_000).map(fleet_labels).collect();
        let mut t: i64 = 0;
        g.throughput(Throughput::Elements(10_000));
        g.bench_function("head_only/existing_series/10000x1", |b| {
            b.iter(|| {
                t += 1;
                for l in &labels {
                    let (s, _) = head.get_or_create(l);
                    head.append_samples(&s, &[Sample::new(t, t as f64)], |_| {});
                }
            })
        });
    }

    // Into new series: every batch creates 1k series.
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path(), DbOptions::default()).expect("open");
        let mut next: u64 = 0;
        g.throughput(Throughput::Elements(1_000));
        g.bench_function("new_series/1000x1", |b| {
            b.iter_batched(
                || {
                    let batch: Vec<WriteSeries> = (next..next + 1_000)
                        .map(|i| WriteSeries {
                            labels: fleet_labels(i),
                            samples: vec![Sample::new(1_000, 1.0)],
                        })
                        .collect();
                    next += 1_000;
                    batch
                },
                |batch| {
                    let out = db.append(&batch).expect("append");
                    assert_eq!(out.series_created, 1_000);
                    batch
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, head_memory, cpu_per_sample, append);
criterion_main!(benches);
