//! Chunk codec benchmark: encode and decode throughput in samples/s, and the
//! size in bytes per sample, on deterministic data shaped like an LLM
//! serving fleet's metrics (fixed seeds).
//!
//! Data kinds, 240 samples per chunk (an hour at a 15 s scrape interval,
//! as the head cuts them):
//! - timestamps: 15 s apart plus scrape jitter, per sample independently:
//!   90% within ±2 ms, 9% within ±10 ms, 1% within ±100 ms;
//! - `buckets`: classic-histogram bucket counters (12 `le` buckets,
//!   lognormal latencies around 600 ms, request rates log-uniform between
//!   0.02 and 50 per scrape, so many buckets stay flat), cumulative,
//!   starting from a random uptime;
//! - `counters`: a third each request counts, token counts and dollar cost
//!   (float increments of tokens times a per-token price: many decimals);
//! - `gauges`: GPU utilisation 0-100 with one decimal, a random walk;
//! - `mix`: 70% bucket series, 20% counters, 10% gauges, the shape of a
//!   real fleet (its bytes/sample is the weighted figure the targets use).
//!
//! Run: `cargo bench -p cairn-engine --bench chunk -- --quick`.
//! The sizes are printed before the timings.

mod common;

use std::hint::black_box;

use cairn_engine::Sample;
use cairn_engine::chunk::{Chunk, ChunkEncoder, Encoding, SplitStreams};
use common::{Rng, scrape_jitter};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// As the head cuts chunks (`HeadOptions::default()`): an hour of 15 s
/// scrapes.
const SAMPLES_PER_CHUNK: usize = 240;
const SCRAPE_MS: i64 = 15_000;
const BUCKETS_LE_MS: [f64; 12] = [
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    f64::INFINITY,
];

fn timestamps(rng: &mut Rng) -> Vec<i64> {
    let start = 1_795_000_000_000 + rng.range(0, SCRAPE_MS - 1);
    (0..SAMPLES_PER_CHUNK as i64)
        .map(|i| start + i * SCRAPE_MS + scrape_jitter(rng))
        .collect()
}

fn zip(ts: Vec<i64>, vs: Vec<f64>) -> Vec<Sample> {
    ts.into_iter()
        .zip(vs)
        .map(|(t, v)| Sample { t, v })
        .collect()
}

/// The 12 bucket series of one histogram.
fn histogram(rng: &mut Rng) -> Vec<Vec<Sample>> {
    let lambda = rng.log_uniform(0.02, 50.0);
    let uptime_scrapes = rng.range(0, 20_000) as f64;
    let latency = |rng: &mut Rng| (600f64.ln() + 1.0 * rng.normal()).exp();
    // Start from the counts after `uptime_scrapes` scrapes, approximately.
    let mut counts = [0u64; 12];
    for _ in 0..200 {
        let l = latency(rng);
        for (c, le) in counts.iter_mut().zip(BUCKETS_LE_MS) {
            if l <= le {
                *c += 1;
            }
        }
    }
    let scale = lambda * uptime_scrapes / 200.0;
    for c in &mut counts {
        *c = (*c as f64 * scale).round() as u64;
    }
    let mut series: Vec<Vec<f64>> = (0..12)
        .map(|_| Vec::with_capacity(SAMPLES_PER_CHUNK))
        .collect();
    for _ in 0..SAMPLES_PER_CHUNK {
        for _ in 0..rng.poisson(lambda) {
            let l = latency(rng);
            for (c, le) in counts.iter_mut().zip(BUCKETS_LE_MS) {
                if l <= le {
                    *c += 1;
                }
            }
        }
        for (s, c) in series.iter_mut().zip(counts) {
            s.push(c as f64);
        }
    }
    series
        .into_iter()
        .map(|vs| zip(timestamps(rng), vs))
        .collect()
}

fn counter(rng: &mut Rng, which: usize) -> Vec<Sample> {
    let lambda = rng.log_uniform(0.05, 100.0);
    let uptime = rng.range(0, 20_000) as f64 * lambda;
    let price_per_token =
        [0.000_002, 0.000_001_5, 0.000_000_6, 0.000_015][rng.range(0, 3) as usize];
    let mut v = match which {
        0 => uptime.round(),
        1 => (uptime * 700.0).round(),
        _ => uptime * 700.0 * price_per_token,
    };
    let mut vs = Vec::with_capacity(SAMPLES_PER_CHUNK);
    for _ in 0..SAMPLES_PER_CHUNK {
        let requests = rng.poisson(lambda);
        let tokens: u64 = (0..requests).map(|_| rng.range(50, 2000) as u64).sum();
        match which {
            0 => v += requests as f64,
            1 => v += tokens as f64,
            // Per-request cost added one request at a time, as an SDK does.
            _ => {
                for _ in 0..requests.min(50) {
                    v += (tokens / requests.max(1)) as f64 * price_per_token;
                }
            }
        }
        vs.push(v);
    }
    zip(timestamps(rng), vs)
}

fn gauge(rng: &mut Rng) -> Vec<Sample> {
    let mut x = rng.f64() * 100.0;
    let vs = (0..SAMPLES_PER_CHUNK)
        .map(|_| {
            x = (x + 5.0 * rng.normal()).clamp(0.0, 100.0);
            (x * 10.0).round() / 10.0
        })
        .collect();
    zip(timestamps(rng), vs)
}

struct Dataset {
    name: &'static str,
    series: Vec<Vec<Sample>>,
}

impl Dataset {
    fn samples(&self) -> u64 {
        self.series.iter().map(|s| s.len() as u64).sum()
    }
}

/// Series counts per kind: 70 histograms (840 bucket series), 240 counters,
/// 120 gauges: the 70/20/10 mix.
fn datasets() -> Vec<Dataset> {
    let mut rng = Rng(0x00c0_ffee_cafe_f00d);
    let buckets: Vec<_> = (0..70).flat_map(|_| histogram(&mut rng)).collect();
    let counters: Vec<_> = (0..240).map(|i| counter(&mut rng, i % 3)).collect();
    let gauges: Vec<_> = (0..120).map(|_| gauge(&mut rng)).collect();
    let mut ts_only: Vec<_> = (0..240)
        .map(|_| zip(timestamps(&mut rng), vec![0.0; SAMPLES_PER_CHUNK]))
        .collect();
    // Regular timestamps without jitter, to see the jitter's cost.
    ts_only.truncate(120);
    ts_only.extend((0..120).map(|_| {
        zip(
            (0..SAMPLES_PER_CHUNK as i64)
                .map(|i| 1_795_000_000_000 + i * SCRAPE_MS)
                .collect(),
            vec![0.0; SAMPLES_PER_CHUNK],
        )
    }));
    let by_kind = |k: usize| {
        counters
            .iter()
            .skip(k)
            .step_by(3)
            .cloned()
            .collect::<Vec<_>>()
    };
    let mix: Vec<_> = buckets
        .iter()
        .chain(&counters)
        .chain(&gauges)
        .cloned()
        .collect();
    vec![
        Dataset {
            name: "buckets",
            series: buckets.clone(),
        },
        Dataset {
            name: "counters",
            series: counters.clone(),
        },
        Dataset {
            name: "counters_requests",
            series: by_kind(0),
        },
        Dataset {
            name: "counters_tokens",
            series: by_kind(1),
        },
        Dataset {
            name: "counters_cost_usd",
            series: by_kind(2),
        },
        Dataset {
            name: "gauges",
            series: gauges,
        },
        Dataset {
            name: "timestamps_only_jitter",
            series: ts_only[..120].to_vec(),
        },
        Dataset {
            name: "timestamps_only_regular",
            series: ts_only[120..].to_vec(),
        },
        Dataset {
            name: "mix",
            series: mix,
        },
    ]
}

/// The encodings compared: the two a head appends in, and blocks' split
/// encoding (written whole from a sealed chunk's samples).
const ENCODINGS: [Encoding; 3] = [
    Encoding::XorDod,
    Encoding::DecimalGrid,
    Encoding::DecimalSplit,
];

fn encode(enc: Encoding, series: &[Vec<Sample>]) -> Vec<Chunk> {
    series
        .iter()
        .map(|s| {
            if enc == Encoding::DecimalSplit {
                return SplitStreams::encode(s).to_chunk().expect("split chunk");
            }
            let mut e = ChunkEncoder::with_encoding(enc);
            for x in s {
                e.append(x.t, x.v);
            }
            e.finish()
        })
        .collect()
}

fn bytes_per_sample(enc: Encoding, d: &Dataset) -> f64 {
    let bytes: usize = encode(enc, &d.series)
        .iter()
        .map(|c| c.as_bytes().len())
        .sum();
    bytes as f64 / d.samples() as f64
}

/// Bytes per sample of the head's sealed chunks: each the shorter of
/// encodings 2 and 3 (`ChunkEncoder::seal`).
fn sealed_bytes_per_sample(d: &Dataset) -> f64 {
    let bytes: usize = d
        .series
        .iter()
        .map(|s| {
            let mut e = ChunkEncoder::new();
            for x in s {
                e.append(x.t, x.v);
            }
            e.seal().as_bytes().len()
        })
        .sum();
    bytes as f64 / d.samples() as f64
}

fn print_sizes(data: &[Dataset]) {
    println!("\nbytes/sample, {SAMPLES_PER_CHUNK} samples per chunk, header included:");
    print!("{:<26}", "data");
    for enc in ENCODINGS {
        print!("{:>14}", format!("{enc:?}"));
    }
    print!("{:>14}", "head sealed");
    println!();
    for d in data {
        print!("{:<26}", d.name);
        for enc in ENCODINGS {
            print!("{:>14.3}", bytes_per_sample(enc, d));
        }
        print!("{:>14.3}", sealed_bytes_per_sample(d));
        println!();
    }
    // The weighted figure: 70% buckets, 20% counters, 10% gauges.
    let get = |name: &str, enc| {
        bytes_per_sample(enc, data.iter().find(|d| d.name == name).expect("dataset"))
    };
    print!("{:<26}", "weighted 70/20/10");
    for enc in ENCODINGS {
        print!(
            "{:>14.3}",
            0.7 * get("buckets", enc) + 0.2 * get("counters", enc) + 0.1 * get("gauges", enc)
        );
    }
    println!();
    // Memory of an open chunk: what the head holds per series.
    print!("{:<26}", "open chunk heap bytes, mix");
    for enc in Encoding::ALL {
        let mix = &data.iter().find(|d| d.name == "mix").expect("mix").series;
        let total: usize = mix
            .iter()
            .map(|s| {
                let mut e = ChunkEncoder::with_encoding(enc);
                for x in s {
                    e.append(x.t, x.v);
                }
                e.encoded_bytes()
            })
            .sum();
        print!("{:>14.1}", total as f64 / mix.len() as f64);
    }
    println!(
        " (+{} bytes of state)\n",
        std::mem::size_of::<ChunkEncoder>()
    );
}

fn bench(c: &mut Criterion) {
    let data = datasets();
    print_sizes(&data);
    let timed = ["buckets", "counters", "gauges", "mix"];
    for d in data.iter().filter(|d| timed.contains(&d.name)) {
        let mut g = c.benchmark_group(format!("chunk/{}", d.name));
        g.throughput(Throughput::Elements(d.samples()));
        for enc in ENCODINGS {
            g.bench_with_input(
                BenchmarkId::new("encode", format!("{enc:?}")),
                &d.series,
                |b, series| b.iter(|| black_box(encode(enc, series))),
            );
            let chunks = encode(enc, &d.series);
            let mut out = Vec::with_capacity(SAMPLES_PER_CHUNK);
            g.bench_with_input(
                BenchmarkId::new("decode", format!("{enc:?}")),
                &chunks,
                |b, chunks| {
                    b.iter(|| {
                        let mut n = 0;
                        for c in chunks {
                            out.clear();
                            c.decode_into(i64::MIN, i64::MAX, &mut out)
                                .expect("decodes");
                            n += out.len();
                        }
                        black_box(n)
                    })
                },
            );
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
