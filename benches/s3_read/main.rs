//! A `rate()` over one day of 10,000 series read from blocks on S3 (a
//! local moto server, as `scripts/install-peers.sh` installs it): wall
//! time and object-store requests with a cold disk cache, warm in the same
//! process, warm after a "restart" (new readers, same cache directory),
//! and without a cache.
//!
//! ```sh
//! cargo bench --bench s3_read     # CAIRN_BENCH_SERIES / _HOURS / _RUNS
//! ```
//!
//! The day is written as two 12 h blocks (what compaction makes of it),
//! 10k request counters (100 instances x 10 models x 10 routes) scraped
//! every 15 s with jitter; the query is `sum by (model)
//! (rate(infer_requests_total[5m]))` at a 60 s step over the whole day,
//! evaluated by cairn-query on one `BlocksQuerier`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::block::cache::DiskCache;
use cairn_engine::block::store::StoreRequests;
use cairn_engine::block::{BlockOptions, BlockStore, BlockWriter, BlocksQuerier};
use cairn_engine::{Labels, Sample};
use cairn_query::{Engine, EngineOptions};

const QUERY: &str = "sum by (model) (rate(infer_requests_total[5m]))";
const SCRAPE_MS: i64 = 15_000;
/// A multiple of 12 h.
const BASE: i64 = 1_764_979_200_000;

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// moto's S3 server on a free port, killed on drop.
struct Moto(Child, String);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> Moto {
    let peers = std::env::var_os("CAIRN_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cairn-peers")
        });
    let bin = peers.join("py-venv/bin/moto_server");
    assert!(
        bin.exists(),
        "{} missing: run scripts/install-peers.sh",
        bin.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let moto = Moto(child, endpoint.clone());
    let client = reqwest::blocking::Client::new();
    for _ in 0..300 {
        if client
            .get(&endpoint)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            let r = client
                .put(format!("{endpoint}/bench"))
                .send()
                .expect("create bucket");
            assert!(r.status().is_success());
            return moto;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto_server did not start");
}

/// A splitmix64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn write_blocks(store: &BlockStore, series: i64, hours: i64) -> u64 {
    let instances = (series / 100).max(1);
    let half = hours * 3_600_000 / 2;
    let mut samples_total = 0;
    for part in 0..2 {
        let mut w = BlockWriter::new(BlockOptions::default());
        let mut rng = Rng(7 + part as u64);
        for inst in 0..instances {
            // One scrape's jitter for every series of the instance.
            let times: Vec<i64> = (0..half / SCRAPE_MS)
                .map(|k| BASE + part * half + k * SCRAPE_MS + (rng.next() % 40) as i64)
                .collect();
            for m in 0..10 {
                for r in 0..10 {
                    let mut v = ((inst * 7 + m * 3 + r) * 1000 + part * 5_000_000) as f64;
                    let samples: Vec<Sample> = times
                        .iter()
                        .map(|&t| {
                            v += (rng.next() % 30) as f64;
                            Sample::new(t, v)
                        })
                        .collect();
                    samples_total += samples.len() as u64;
                    w.add_series(
                        Labels::from_pairs([
                            ("__name__", "infer_requests_total".to_string()),
                            (
                                "instance",
                                format!("10.0.{}.{}:8000", inst / 250, inst % 250),
                            ),
                            ("job", "inference".to_string()),
                            ("model", format!("model-{m}")),
                            ("route", format!("/v1/route-{r}")),
                        ]),
                        &samples,
                    );
                }
            }
        }
        let block = w.encode(2, Vec::new()).expect("encode");
        block.upload(store).expect("upload");
    }
    samples_total
}

/// The S3 store (endpoint and credentials from the `AWS_*` variables the
/// parent process set), with or without a disk cache.
fn store(cache: Option<&std::path::Path>) -> BlockStore {
    let s = BlockStore::from_url("s3://bench/day").expect("s3 store");
    match cache {
        Some(dir) => s.with_cache(Arc::new(DiskCache::open(dir, 4 << 30).expect("cache"))),
        None => s,
    }
}

fn diff(a: StoreRequests, b: StoreRequests) -> StoreRequests {
    StoreRequests {
        gets: b.gets - a.gets,
        range_gets: b.range_gets - a.range_gets,
        puts: b.puts - a.puts,
        lists: b.lists - a.lists,
        heads: b.heads - a.heads,
        deletes: b.deletes - a.deletes,
        bytes_fetched: b.bytes_fetched - a.bytes_fetched,
        cache_hits: b.cache_hits - a.cache_hits,
        errors: b.errors - a.errors,
        ..b
    }
}

/// Runs the query `runs` times on `q`; the median time, the requests of
/// the first run and the answer's series count.
fn measure(
    engine: &Engine,
    q: &BlocksQuerier,
    s: &BlockStore,
    end: i64,
    runs: usize,
) -> (Duration, StoreRequests, usize) {
    let mut times = Vec::new();
    let mut first = None;
    let mut series = 0;
    for _ in 0..runs {
        let before = s.requests();
        let t = Instant::now();
        let r = engine
            .range_query(q, QUERY, BASE, end, 60_000)
            .expect("query");
        times.push(t.elapsed());
        if first.is_none() {
            first = Some(diff(before, s.requests()));
        }
        series = match &r.value {
            cairn_query::Value::Matrix(m) => m.len(),
            _ => 0,
        };
    }
    times.sort();
    (times[times.len() / 2], first.unwrap_or_default(), series)
}

fn main() {
    // The store reads its endpoint and credentials from the environment:
    // start moto, then run the bench in a child process that has them.
    if std::env::var_os("CAIRN_BENCH_S3_CHILD").is_none() {
        let moto = start_moto();
        let status = Command::new(std::env::current_exe().expect("own path"))
            .env("CAIRN_BENCH_S3_CHILD", "1")
            .env("AWS_ENDPOINT", &moto.1)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench-secret")
            .env("AWS_REGION", "us-east-1")
            .status()
            .expect("run the bench");
        drop(moto);
        std::process::exit(status.code().unwrap_or(1));
    }
    let series = env_num("CAIRN_BENCH_SERIES", 10_000);
    let hours = env_num("CAIRN_BENCH_HOURS", 24);
    let runs = env_num("CAIRN_BENCH_RUNS", 3).max(1) as usize;
    let tmp = tempfile::tempdir().expect("temp dir");
    let writer = store(None);
    let t = Instant::now();
    let samples = write_blocks(&writer, series, hours);
    let written = writer.requests();
    println!(
        "wrote {samples} samples of {series} series over {hours} h as 2 blocks ({} bytes uploaded in {} PUTs) in {:.1} s",
        writer
            .list("")
            .expect("list")
            .iter()
            .map(|o| o.size_bytes)
            .sum::<u64>(),
        written.puts,
        t.elapsed().as_secs_f64()
    );
    let engine = Engine::new(EngineOptions::default());
    let end = BASE + hours * 3_600_000 - 1;
    let cache_dir = tmp.path().join("cache");

    println!(
        "| case | median time | requests (first run) | GETs | ranged GETs | bytes fetched | cache hits | result series |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let row = |name: &str, (d, r, n): (Duration, StoreRequests, usize)| {
        println!(
            "| {name} | {:.1} ms | {} | {} | {} | {} | {} | {n} |",
            d.as_secs_f64() * 1000.0,
            r.total(),
            r.gets,
            r.range_gets,
            r.bytes_fetched,
            r.cache_hits
        );
    };

    // Cold: empty disk cache, nothing open. One run (later runs are warm).
    let s = store(Some(&cache_dir));
    let q = BlocksQuerier::open(s.clone()).expect("open blocks");
    row(
        "cold (empty disk cache, blocks not open)",
        measure(&engine, &q, &s, end, 1),
    );
    row(
        "warm (same process: indexes open, disk cache filled)",
        measure(&engine, &q, &s, end, runs),
    );
    drop(q);
    // A restart: new readers, the disk cache kept.
    let s = store(Some(&cache_dir));
    let q = BlocksQuerier::open(s.clone()).expect("open blocks");
    row(
        "restart (disk cache kept, blocks not open)",
        measure(&engine, &q, &s, end, 1),
    );
    drop(q);
    // No disk cache: every run downloads the column chunks again.
    let s = store(None);
    let q = BlocksQuerier::open(s.clone()).expect("open blocks");
    let _ = measure(&engine, &q, &s, end, 1);
    row(
        "no disk cache, indexes open (repeat)",
        measure(&engine, &q, &s, end, runs),
    );
}
