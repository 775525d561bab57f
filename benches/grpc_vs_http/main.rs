//! The gRPC query service against the HTTP JSON API on one large range
//! result (issue #11's benchmark): starts the release `cairn` binary on
//! 127.0.0.1, loads 10,000 series of 240 points by remote-write, then
//! runs the same range query (10,000 series x 240 points) through both
//! and reports, per protocol, the client's end-to-end time (request sent
//! to every value decoded), the server's evaluation time (its own stats)
//! and the server's peak RSS above its idle RSS while answering
//! (`/proc/<pid>/status`, sampled every 2 ms).
//!
//! Both clients decode the whole result: the gRPC client is tonic's
//! generated stub reading every streamed message; the HTTP client parses
//! the JSON body with serde_json into values and then parses every value
//! string to an `f64`, as a program that uses the numbers must.
//!
//! Run: `cargo bench --bench grpc_vs_http` (settings from the environment:
//! `CAIRN_BENCH_SERIES` (10000), `CAIRN_BENCH_POINTS` (240),
//! `CAIRN_BENCH_RUNS` (5), `CAIRN_BENCH_SERIES_PER_MESSAGE` (0: the
//! server's default)). The figures go in docs/benchmarks.md.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cairn_proto::prometheus as rw;
use cairn_proto::prost::Message;
use cairn_proto::query::v1 as pb;
use cairn_proto::query::v1::query_service_client::QueryServiceClient;

/// The first sample (2023-11-14T22:13:20Z) and the scrape interval.
const T0: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 15_000;
const METRIC: &str = "bench_infer_latency_seconds";
/// Series per remote-write request while loading.
const SERIES_PER_WRITE: usize = 500;

fn env_usize(key: &str, default: usize) -> Result<usize> {
    match std::env::var(key) {
        Ok(v) => v.parse().with_context(|| format!("{key}={v:?}")),
        Err(_) => Ok(default),
    }
}

/// A running `cairn serve` with its addresses.
struct Server {
    child: Child,
    http: String,
    grpc: String,
}

impl Server {
    /// Starts `cairn serve` on `dir` (a fresh directory, or one a
    /// previous server wrote: its WAL is replayed).
    fn start(dir: &std::path::Path) -> Result<Server> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--http-listen", "127.0.0.1:0", "--log-level", "info"])
            .args(["--otlp-grpc-listen", "127.0.0.1:0"])
            .args(["--otlp-http-listen", "127.0.0.1:0"])
            .args(["--grpc-listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start cairn")?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, rx) = std::sync::mpsc::channel::<(&'static str, String)>();
        // Drains stderr for the server's whole life.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let field = |key: &str| {
                    line.split(key)
                        .nth(1)
                        .map(|a| a.split_whitespace().next().unwrap_or("").to_string())
                };
                if line.contains("otlp_grpc=") {
                    continue;
                }
                if let Some(a) = field(" grpc=") {
                    let _ = tx.send(("grpc", a));
                } else if let Some(a) = field(" http=") {
                    let _ = tx.send(("http", a));
                }
            }
        });
        let (mut http, mut grpc) = (None, None);
        while http.is_none() || grpc.is_none() {
            let (k, a) = rx
                .recv_timeout(Duration::from_secs(60))
                .context("the server did not print its addresses")?;
            match k {
                "http" => http = Some(a),
                _ => grpc = Some(a),
            }
        }
        let server = Server {
            child,
            http: http.unwrap_or_default(),
            grpc: grpc.unwrap_or_default(),
        };
        let client = reqwest::blocking::Client::new();
        for _ in 0..1200 {
            if let Ok(r) = client.get(server.url("/-/ready")).send()
                && r.status().is_success()
            {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the server never became ready")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of a process in KiB (0 if unreadable).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Samples a process's RSS every 2 ms until dropped; keeps the peak.
struct RssPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        RssPeak {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// A deterministic xorshift generator (fixed seed: same data every run).
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Loads `series` series of `points` samples each: latencies with
/// realistic fractions, labels as an LLM-serving fleet has them.
fn load(server: &Server, series: usize, points: usize) -> Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut i = 0;
    while i < series {
        let batch: Vec<rw::TimeSeries> = (i..series.min(i + SERIES_PER_WRITE))
            .map(|n| {
                let labels = [
                    ("__name__", METRIC.to_string()),
                    ("instance", format!("gpu-node-{:03}:9400", n % 250)),
                    ("model", format!("llama-3-{}b", [8, 70, 405][n % 3])),
                    ("adapter", format!("lora-{}", n % 40)),
                    ("route", ["/v1/chat", "/v1/completions"][n % 2].to_string()),
                    ("series", n.to_string()),
                ];
                rw::TimeSeries {
                    labels: labels
                        .into_iter()
                        .map(|(name, value)| rw::Label {
                            name: name.into(),
                            value,
                        })
                        .collect(),
                    samples: (0..points as i64)
                        .map(|k| rw::Sample {
                            value: 0.05 + rng.next_f64() * 2.0,
                            timestamp: T0 + k * STEP_MS,
                        })
                        .collect(),
                    ..Default::default()
                }
            })
            .collect();
        i += batch.len();
        let body = rw::WriteRequest {
            timeseries: batch,
            metadata: vec![],
        }
        .encode_to_vec();
        let body = snap::raw::Encoder::new().compress_vec(&body)?;
        let r = client
            .post(server.url("/api/v1/write"))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()?;
        if !r.status().is_success() {
            bail!("remote-write: {} {}", r.status(), r.text()?);
        }
    }
    Ok(())
}

/// One run's figures.
struct Run {
    client: Duration,
    server_eval: Duration,
    series: usize,
    samples: usize,
    /// A checksum of the values (added in the same order by both), so
    /// that both protocols are seen to decode the same numbers.
    sum: f64,
    bytes: usize,
}

async fn run_grpc(addr: &str, points: usize, per_message: u32) -> Result<Run> {
    let started = Instant::now();
    // HTTP/2 windows of a few MiB, as a client fetching large results
    // sets them: with the 64 KiB default, 45 MB take ~700 window updates.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = QueryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut stream = client
        .range_query(pb::RangeQueryRequest {
            query: METRIC.into(),
            start_ms: T0,
            end_ms: T0 + (points as i64 - 1) * STEP_MS,
            step_ms: STEP_MS,
            max_series_per_message: per_message,
            ..Default::default()
        })
        .await?
        .into_inner();
    let (mut series, mut samples, mut sum, mut bytes) = (0, 0, 0.0, 0);
    let mut server_eval = Duration::ZERO;
    while let Some(msg) = stream.message().await? {
        bytes += msg.encoded_len();
        for s in &msg.series {
            series += 1;
            samples += s.samples.len();
            for p in &s.samples {
                sum += p.value;
            }
        }
        if let Some(stats) = msg.summary.and_then(|s| s.stats) {
            server_eval = Duration::from_nanos(stats.eval_time_ns + stats.queue_time_ns);
        }
    }
    Ok(Run {
        client: started.elapsed(),
        server_eval,
        series,
        samples,
        sum,
        bytes,
    })
}

fn run_http(server: &Server, points: usize) -> Result<Run> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let started = Instant::now();
    let start = T0 as f64 / 1000.0;
    let end = (T0 + (points as i64 - 1) * STEP_MS) as f64 / 1000.0;
    let body = client
        .get(server.url("/api/v1/query_range"))
        .query(&[
            ("query", METRIC.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", (STEP_MS as f64 / 1000.0).to_string()),
            ("stats", "all".to_string()),
        ])
        .send()?
        .bytes()?;
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    if json["status"] != "success" {
        bail!("query_range: {json}");
    }
    let (mut series, mut samples, mut sum) = (0, 0, 0.0);
    for s in json["data"]["result"].as_array().context("no result")? {
        series += 1;
        for p in s["values"].as_array().context("no values")? {
            let v: f64 = p[1].as_str().context("value")?.parse()?;
            let _t = p[0].as_f64().context("timestamp")?;
            samples += 1;
            sum += v;
        }
    }
    let eval = json["data"]["stats"]["timings"]["execTotalTime"]
        .as_f64()
        .unwrap_or(0.0);
    Ok(Run {
        client: started.elapsed(),
        server_eval: Duration::from_secs_f64(eval),
        series,
        samples,
        sum,
        bytes: body.len(),
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let series = env_usize("CAIRN_BENCH_SERIES", 10_000)?;
    let points = env_usize("CAIRN_BENCH_POINTS", 240)?;
    let runs = env_usize("CAIRN_BENCH_RUNS", 5)?.max(1);
    let per_message = u32::try_from(env_usize("CAIRN_BENCH_SERIES_PER_MESSAGE", 0)?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let loading = Instant::now();
    load(&server, series, points)?;
    eprintln!(
        "loaded {series} series x {points} points in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    // A check that both protocols return the whole result, the same
    // numbers.
    let g = rt.block_on(run_grpc(&server.grpc, points, per_message))?;
    let h = run_http(&server, points)?;
    if (g.series, g.samples) != (series, series * points)
        || (h.series, h.samples) != (g.series, g.samples)
        || g.sum != h.sum
    {
        bail!(
            "results differ: gRPC {} series {} samples sum {}, HTTP {} series {} samples sum {}",
            g.series,
            g.samples,
            g.sum,
            h.series,
            h.samples,
            h.sum
        );
    }
    drop(server);
    // Each protocol on a fresh server (the WAL replayed), so that its
    // peak RSS is not hidden in memory the other one left to the
    // allocator: one warm-up query, then the measured runs.
    let mut figures = Vec::new();
    for grpc in [true, false] {
        let server = Server::start(dir.path())?;
        let warm = |server: &Server| -> Result<Run> {
            if grpc {
                rt.block_on(run_grpc(&server.grpc, points, per_message))
            } else {
                run_http(server, points)
            }
        };
        let idle = server.rss_kib();
        let (mut client, mut eval, mut peak_kib) = (vec![], vec![], 0u64);
        let mut bytes = 0;
        for _ in 0..=runs {
            let peak = RssPeak::start(server.child.id());
            let r = warm(&server)?;
            peak_kib = peak_kib.max(peak.finish());
            client.push(r.client);
            eval.push(r.server_eval);
            bytes = r.bytes;
        }
        // The first run was the warm-up.
        client.remove(0);
        eval.remove(0);
        figures.push((median(client), median(eval), bytes, idle, peak_kib));
    }
    let [(gc, gs, gb, gi, gp), (hc, hs, hb, hi, hp)] = figures[..] else {
        bail!("two protocols measured");
    };
    println!(
        "range query: {series} series x {points} points ({} samples), median of {runs} runs",
        series * points
    );
    println!(
        "{:<10} {:>10} {:>15} {:>12} {:>32}",
        "protocol", "client ms", "server eval ms", "response MB", "server RSS MiB idle -> peak"
    );
    for (name, c, s, bytes, idle, peak) in [
        ("gRPC", gc, gs, gb, gi, gp),
        ("HTTP JSON", hc, hs, hb, hi, hp),
    ] {
        println!(
            "{name:<10} {:>10.1} {:>15.1} {:>12.1} {:>14.1} -> {:.1} (+{:.1})",
            ms(c),
            ms(s),
            bytes as f64 / 1e6,
            idle as f64 / 1024.0,
            peak as f64 / 1024.0,
            peak.saturating_sub(idle) as f64 / 1024.0
        );
    }
    println!(
        "gRPC end to end: {:.2}x faster than HTTP JSON; peak server RSS above idle {:.2}x smaller",
        hc.as_secs_f64() / gc.as_secs_f64(),
        hp.saturating_sub(hi) as f64 / gp.saturating_sub(gi).max(1) as f64
    );
    Ok(())
}
